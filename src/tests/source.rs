//! The cache and single flight, natively, with a fixed clock and test doubles.
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::task::Context;

use crate::config::client::Config;
use crate::oauth::transport::{HttpRequest, HttpResponse, TransportError};
use crate::source::records::HOLD_ENTRY;
use crate::source::records::{encode_record, TOKEN_ENTRY};
use crate::{AccessToken, Scheme, Token};
use futures_executor::block_on;
use futures_util::future::join_all;

use super::support::*;

#[test]
fn one_request_for_many_concurrent_callers_then_memory_only() {
    let ep = Endpoint::new(200, GOOD);
    let kv = Kv::default();
    let (lines, log) = logs();
    let source = source(&ep, &kv, log);
    let results = block_on(join_all((0..100).map(|_| source.token(NOW))));
    assert_eq!(
        ep.calls.get(),
        1,
        "100 concurrent callers share one token request"
    );
    assert!(results
        .iter()
        .all(|r| r.as_ref().unwrap().access_token().expose() == "tok-1"));
    assert_eq!(
        kv.reads.get(),
        2,
        "one flight: one read of the token entry, one of the hold entry"
    );
    // Stored for fresh_until - done = 3540 s (done by the flight's clock, which did not move).
    let (_, ttl) = kv.map.borrow().get(TOKEN_ENTRY).cloned().unwrap();
    assert_eq!(ttl, 3540);

    // Later calls within the token's fresh life touch neither the network nor KV.
    for t in [NOW + 1, NOW + 3539] {
        block_on(source.token(t)).unwrap();
    }
    assert_eq!((ep.calls.get(), kv.reads.get()), (1, 2));
    assert_eq!(count(&lines, r#""source":"network""#), 1);

    // Past the margin, a new token is fetched.
    ep.then(ok(GOOD2));
    let t = block_on(source.token(NOW + 3540)).unwrap();
    assert_eq!((t.access_token().expose(), ep.calls.get()), ("tok-2", 2));
}

#[test]
fn a_second_isolate_reads_kv_instead_of_the_network() {
    let ep = Endpoint::new(200, GOOD);
    let kv = Kv::default();
    block_on(source(&ep, &kv, logs().1).token(NOW)).unwrap();
    let (lines, log) = logs();
    let t = block_on(source(&ep, &kv, log).token(NOW + 10)).unwrap();
    assert_eq!((t.access_token().expose(), ep.calls.get()), ("tok-1", 1));
    assert!(
        lines.borrow()[0].contains(r#""source":"kv""#),
        "{:?}",
        lines.borrow()
    );
}

#[test]
fn stale_corrupt_or_foreign_kv_values_are_misses_and_get_overwritten() {
    // Which values are unreadable is the record format's business (`source/records.rs`); here,
    // one of each kind shows the source treats them all as a miss.
    let stale = Token::new(
        AccessToken::new("old"),
        Scheme::Bearer,
        NOW - 4000,
        NOW - 400,
        60,
    );
    for value in [
        encode_record(&stale),
        "garbage".into(),
        r#"{"v":1}"#.into(),
        r#"{"v":1,"access_token":"v1-tok","token_type":"Bearer","expires_at":9999999999,"fresh_until":9999999999}"#.into(),
        r#"{"v":2,"access_token":"x","token_type":"Bearer","issued_at":1700000000,"expires_at":1700000001}"#.into(),
    ] {
        let ep = Endpoint::new(200, GOOD);
        let kv = Kv::default();
        kv.map
            .borrow_mut()
            .insert(TOKEN_ENTRY.into(), (value.clone(), 60));
        let t = block_on(source(&ep, &kv, logs().1).token(NOW)).unwrap();
        assert_eq!(
            (t.access_token().expose(), ep.calls.get()),
            ("tok-1", 1),
            "{value}"
        );
        assert!(kv.map.borrow()[TOKEN_ENTRY].0.contains("tok-1"));
    }
}

#[test]
fn short_lived_tokens_stay_in_memory_only() {
    let ep = Endpoint::new(200, r#"{"access_token":"short","expires_in":70}"#);
    let kv = Kv::default();
    let source = source(&ep, &kv, logs().1);
    block_on(source.token(NOW)).unwrap();
    // 70 s lifetime, margin min(60, 17) = 17: fresh for 53 s, below KV's 60 s minimum TTL.
    assert!(!kv.map.borrow().contains_key(TOKEN_ENTRY));
    block_on(source.token(NOW + 52)).unwrap();
    assert_eq!(ep.calls.get(), 1);
}

#[test]
fn a_failing_kv_is_a_miss_not_an_error() {
    let ep = Endpoint::new(200, GOOD);
    let kv = Kv {
        fail: true,
        ..Kv::default()
    };
    let (lines, log) = logs();
    assert!(block_on(source(&ep, &kv, log).token(NOW)).is_ok());
    assert!(count(&lines, "read_error") >= 1 && count(&lines, "write_error") == 1);
}

#[test]
fn refusals_are_shared_logged_scrubbed_and_held_down() {
    let gate = Rc::new(Gate::default());
    let ep = Endpoint {
        gate: Some(gate.clone()),
        ..Endpoint::new(401, REFUSED)
    };
    let kv = Kv::default();
    let (lines, log) = logs();
    let source = source(&ep, &kv, log);
    let results = Rc::new(RefCell::new(Vec::new()));
    let mut pool = futures_executor::LocalPool::new();
    for _ in 0..5 {
        let (source, results) = (source.clone(), results.clone());
        futures_util::task::LocalSpawnExt::spawn_local(&pool.spawner(), async move {
            let r = source.token(NOW).await;
            results.borrow_mut().push(r);
        })
        .unwrap();
    }
    pool.run_until_stalled();
    assert_eq!(
        results.borrow().len(),
        0,
        "all five wait on the one request"
    );
    gate.open();
    pool.run();
    let results = results.take();
    assert_eq!((results.len(), ep.calls.get()), (5, 1));
    for r in &results {
        let e = r.as_ref().unwrap_err();
        assert_eq!((e.http_status(), e.code()), (502, "invalid_client"));
        assert!(!e.to_string().contains(SECRET), "{e}");
    }
    assert_eq!(
        count(&lines, r#""outcome":"error""#),
        1,
        "refusals are not retried"
    );
    assert!(lines.borrow().iter().all(|l| !l.contains(SECRET)));

    // 30 more calls during the 30 s hold-down: the same answer, no request.
    for i in 0..30 {
        let e = block_on(source.token(NOW + i)).unwrap_err();
        assert_eq!(e, *results[0].as_ref().unwrap_err());
    }
    assert_eq!(ep.calls.get(), 1);
    // Another isolate reads the hold-down from KV and stays away too.
    let other = Endpoint::new(401, REFUSED);
    assert!(block_on(self::source(&other, &kv, logs().1).token(NOW + 5)).is_err());
    assert_eq!(other.calls.get(), 0);
    // After the hold-down, one new try.
    let _ = block_on(source.token(NOW + 31));
    assert_eq!(ep.calls.get(), 2);
}

#[test]
fn unavailable_endpoints_are_retried_with_backoff_within_the_budget() {
    let ep = Endpoint::script(vec![
        Reply::Fail("connection reset", 10),
        Reply::Http(500, "", vec![]),
        with_retry_after(503, "1"),
        ok(GOOD),
    ]);
    let rt = TestRuntime::default();
    let kv = Kv::default();
    let config = Config {
        timeout_ms: 10_000,
        ..config()
    };
    let source = new_source(config, ep.clone(), kv.clone(), rt.clone(), logs().1);
    let t = block_on(source.token(NOW)).unwrap();
    assert_eq!((t.access_token().expose(), ep.calls.get()), ("tok-1", 4));
    // Equal jitter at 0.5: 150 ms, 300 ms; then the server's Retry-After: 1 s.
    assert_eq!(
        rt.sleeps
            .borrow()
            .iter()
            .filter(|ms| **ms < 5_000)
            .copied()
            .collect::<Vec<_>>(),
        vec![150, 300, 1000]
    );
    // Each attempt gets what is left of the 10 s budget.
    let budgets = ep.timeouts.borrow().clone();
    assert_eq!(budgets[0], 10_000);
    assert!(budgets.windows(2).all(|w| w[1] < w[0]), "{budgets:?}");
}

#[test]
fn a_budget_spent_on_timeouts_ends_in_503_and_a_short_hold() {
    let ep = Endpoint::script(vec![Reply::Fail("timed out after 1000 ms", 1000)]);
    let kv = Kv::default();
    let source = source(&ep, &kv, logs().1);
    let e = block_on(source.token(NOW)).unwrap_err();
    assert_eq!((e.http_status(), ep.calls.get()), (503, 1));
    assert!(e.retry_after().unwrap() >= 1);
    // Held down for the default 5 s: no new request meanwhile.
    assert!(block_on(source.token(NOW + 2)).is_err());
    assert_eq!(ep.calls.get(), 1);
}

#[test]
fn long_retry_after_is_a_hold_down_not_a_wait() {
    let ep = Endpoint::script(vec![with_retry_after(429, "20")]);
    let rt = TestRuntime::default();
    let kv = Kv::default();
    let source = new_source(config(), ep.clone(), kv.clone(), rt.clone(), logs().1);
    let e = block_on(source.token(NOW)).unwrap_err();
    assert_eq!((e.http_status(), e.retry_after()), (503, Some(20)));
    assert!(
        rt.sleeps.borrow().iter().all(|ms| *ms >= 5_000),
        "no backoff wait, only the waiter's bound"
    );
    let e = block_on(source.token(NOW + 15)).unwrap_err();
    assert_eq!(
        e.retry_after(),
        Some(5),
        "Retry-After counts down from the end of the exchange"
    );
    assert_eq!(ep.calls.get(), 1);
    assert!(kv.map.borrow().contains_key(HOLD_ENTRY));
}

#[test]
fn a_token_inside_its_margin_is_used_while_the_endpoint_fails_but_never_past_expiry() {
    let ep = Endpoint::new(200, GOOD);
    let source = source(&ep, &Kv::default(), logs().1);
    block_on(source.token(NOW)).unwrap(); // fresh until NOW+3540, expires NOW+3600
    ep.then(Reply::Http(503, "down", vec![]));
    let t = block_on(source.token(NOW + 3550)).unwrap();
    assert_eq!(t.access_token().expose(), "tok-1");
    let calls = ep.calls.get();
    assert!(calls > 2, "the 503 was retried within the budget");
    // During the hold-down, still the old token, without a request.
    assert_eq!(
        block_on(source.token(NOW + 3552))
            .unwrap()
            .access_token()
            .expose(),
        "tok-1"
    );
    assert_eq!(ep.calls.get(), calls);
    // At expiry it is gone: the caller gets the error, not an expired token.
    let e = block_on(source.token(NOW + 3600)).unwrap_err();
    assert_eq!(e.http_status(), 503);
}

#[test]
fn invalidate_evicts_once_and_the_rejected_token_is_never_reused() {
    let ep = Endpoint::new(200, GOOD);
    let kv = Kv::default();
    let source = source(&ep, &kv, logs().1);
    let old = block_on(source.token(NOW)).unwrap();
    ep.then(ok(GOOD2));
    // Many requests saw 401 with the same token: one eviction, one new token.
    let verdicts = block_on(join_all((0..10).map(|_| source.invalidate(&old, NOW + 1))));
    assert!(
        verdicts.iter().all(|v| *v),
        "every caller may retry with the new token"
    );
    assert!(!kv.map.borrow().contains_key(TOKEN_ENTRY));
    let fresh = block_on(join_all((0..10).map(|_| source.token(NOW + 1))));
    assert!(fresh
        .iter()
        .all(|t| t.as_ref().unwrap().access_token().expose() == "tok-2"));
    assert_eq!(ep.calls.get(), 2);
    // A late rejection of the old token does not evict the new one.
    block_on(source.invalidate(&old, NOW + 2));
    block_on(source.token(NOW + 2)).unwrap();
    assert_eq!(ep.calls.get(), 2);

    // An upstream that rejects every token: the new one is not evicted within the eviction
    // window (4 s here: tok-1 was rejected a second after it was minted, so the window doubled
    // from 2), so a persistent 401 costs one token request per window, not one per request.
    let new = block_on(source.token(NOW + 3)).unwrap();
    assert_eq!(eviction(&source, NOW + 3)["next_allowed_at"], NOW + 5);
    for t in NOW + 3..NOW + 5 {
        assert!(!block_on(source.invalidate(&new, t)));
    }
    block_on(source.token(NOW + 4)).unwrap();
    assert_eq!(ep.calls.get(), 2);
    assert!(
        block_on(source.invalidate(&new, NOW + 5)),
        "after the window, one more eviction"
    );
    assert_eq!(
        eviction(&source, NOW + 5)["window_secs"],
        8,
        "tok-2 was rejected 4 s after it was minted: the next window doubles again"
    );

    // KV is eventually consistent: a lagging copy of the rejected token is ignored.
    let lagging = Kv::default();
    let src = self::source(&ep, &lagging, logs().1);
    ep.then(ok(GOOD));
    let t1 = block_on(src.token(NOW)).unwrap();
    block_on(src.invalidate(&t1, NOW));
    lagging
        .map
        .borrow_mut()
        .insert(TOKEN_ENTRY.into(), (encode_record(&t1), 60));
    ep.then(ok(GOOD2));
    assert_eq!(
        block_on(src.token(NOW + 1))
            .unwrap()
            .access_token()
            .expose(),
        "tok-2"
    );
}

/// The status view's `eviction` object at `now`.
fn eviction(source: &Source, now: u64) -> serde_json::Value {
    let status: serde_json::Value = serde_json::from_str(&source.status(now)).unwrap();
    status["eviction"].clone()
}

/// The API as the proxy meets it, one request a second from `start` for `secs` seconds: a
/// request with a token `rejects` refuses is answered 401, evicts it when allowed and is
/// replayed once with the new token (as the proxy does); any other answer is an acceptance.
/// The seconds of each eviction, and how many 401s callers got.
fn traffic(
    source: &Source,
    start: u64,
    secs: u64,
    rejects: impl Fn(&Token) -> bool,
) -> (Vec<u64>, usize) {
    let (mut evicted, mut passed_through) = (Vec::new(), 0);
    for now in start..start + secs {
        let mut t = block_on(source.token(now)).unwrap();
        for replay in [false, true] {
            if !rejects(&t) {
                source.accepted(&t, now);
                break;
            }
            let evicts = block_on(source.invalidate(&t, now));
            if evicts {
                evicted.push(now - start);
            }
            if !evicts || replay {
                passed_through += 1;
                break;
            }
            t = block_on(source.token(now)).unwrap();
        }
    }
    (evicted, passed_through)
}

#[test]
fn an_upstream_that_rejects_every_token_costs_about_a_dozen_in_the_first_hour_then_one_an_hour() {
    // (seconds the first token worked before the upstream turned, evictions in the first hour)
    for (worked, first_hour) in [(0, 10), (3_000, 11)] {
        let ep = minted(64, 3_600);
        let source = source(&ep, &Kv::default(), logs().1);
        block_on(source.token(NOW)).unwrap();
        let start = NOW + worked;
        let (evicted, _) = traffic(&source, start, 2 * 3_600, |_| true);
        let in_hour = |h: u64| evicted.iter().filter(|s| **s / 3_600 == h).count();
        assert_eq!(
            (in_hour(0), in_hour(1)),
            (first_hour, 1),
            "worked {worked} s: {evicted:?}"
        );
        assert!(first_hour <= 13);
        assert_eq!(
            ep.calls.get() as usize,
            1 + evicted.len(),
            "one token per eviction, none per rejection"
        );
        let e = eviction(&source, start + 2 * 3_600);
        assert_eq!(
            (e["window_secs"].as_u64(), e["backing_off"].as_bool()),
            (Some(3_600), Some(true))
        );
        assert!(source.backing_off());
    }
}

#[test]
fn a_replacement_a_lagging_upstream_rejects_is_evicted_again_within_seconds() {
    // An hour-old token is revoked; (rejected tokens: the API's key cache may lag the
    // revocation and reject the first replacement too, seconds of each eviction, 401s callers
    // get, new tokens).
    for (rejected, evictions, passed_through, new_tokens) in [
        (&["tok-0"][..], &[0][..], 0, 1),
        (&["tok-0", "tok-1"][..], &[0, 2][..], 2, 2),
    ] {
        let ep = minted(8, 7_200);
        let source = source(&ep, &Kv::default(), logs().1);
        block_on(source.token(NOW)).unwrap();
        let rejects = |t: &Token| rejected.contains(&t.access_token().expose());
        let (evicted, seen) = traffic(&source, NOW + 3_600, 60, rejects);
        assert_eq!(
            (evicted.as_slice(), seen, ep.calls.get() - 1),
            (evictions, passed_through, new_tokens),
            "{rejected:?}"
        );
        assert!(
            !source.backing_off(),
            "the accepted token ended the backoff"
        );
        assert_eq!(eviction(&source, NOW + 3_660)["window_secs"], 2);
    }
}

#[test]
fn an_acceptance_of_the_token_held_ends_a_backoff() {
    let ep = minted(16, 3_600);
    let source = source(&ep, &Kv::default(), logs().1);
    block_on(source.token(NOW)).unwrap();
    // A spell of rejections: evictions at +0, +2, +6, +14, so a window of 16 s.
    let (evicted, _) = traffic(&source, NOW + 1_000, 20, |_| true);
    assert_eq!(evicted, [0, 2, 6, 14]);
    let at = NOW + 1_020;
    let held = source.peek().unwrap();
    let before = source.handed_out("Bearer tok-3").unwrap();
    let e = eviction(&source, at);
    assert_eq!(
        (
            &e["window_secs"],
            &e["last_at"],
            &e["next_allowed_at"],
            &e["backing_off"]
        ),
        (
            &16.into(),
            &(NOW + 1_014).into(),
            &(NOW + 1_030).into(),
            &true.into()
        )
    );
    // (token the upstream accepted, backing off after it)
    for (accepted, backing_off) in [(&before, true), (&held, false)] {
        source.accepted(accepted, at);
        assert_eq!(
            source.backing_off(),
            backing_off,
            "{:?}",
            accepted.access_token()
        );
    }
    let e = eviction(&source, at);
    assert_eq!(
        (&e["window_secs"], &e["next_allowed_at"], &e["reset_at"]),
        (&2.into(), &serde_json::Value::Null, &at.into())
    );
    // A rejection now evicts at once, not 16 s after the last eviction.
    assert!(block_on(source.invalidate(&held, at + 1)));
}

#[test]
fn a_long_lived_token_revoked_after_a_backoff_spell_is_evicted_and_the_window_resets() {
    // Nobody reports acceptances (a coordinator hears only of rejections).
    let ep = minted(16, 7_200);
    let source = source(&ep, &Kv::default(), logs().1);
    block_on(source.token(NOW)).unwrap();
    let (evicted, _) = traffic(&source, NOW + 100, 20, |_| true);
    assert_eq!(evicted, [0, 2, 6, 14]);
    assert!(source.backing_off());
    // The upstream then takes tok-4 (minted at +114) for 1000 s, and revokes it.
    let held = source.peek().unwrap();
    assert_eq!(held.access_token().expose(), "tok-4");
    let revoked_at = NOW + 1_114;
    assert!(block_on(source.invalidate(&held, revoked_at)));
    assert!(
        !source.backing_off(),
        "an old token: a revocation, not a rejecting upstream"
    );
    // Its replacement rejected at once (a lagging upstream) is evicted 2 s later.
    let next = block_on(source.token(revoked_at)).unwrap();
    assert!(!block_on(source.invalidate(&next, revoked_at + 1)));
    assert!(block_on(source.invalidate(&next, revoked_at + 2)));
}

#[test]
fn network_errors_are_unavailable() {
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    let http = move |_: &HttpRequest| -> Result<HttpResponse, TransportError> {
        c.set(c.get() + 1);
        Err(TransportError {
            reason: "connection refused".into(),
            elapsed_ms: 400,
        })
    };
    let source = new_source(
        config(),
        http,
        crate::source::store::NoStore,
        TestRuntime::default(),
        logs().1,
    );
    let e = block_on(source.token(NOW)).unwrap_err();
    assert_eq!(e.http_status(), 503);
    assert!(e.retry_after().is_some());
    assert!(e.to_string().contains("connection refused"));
    // 400 ms per failure in a 1000 ms budget: two attempts with a wait between.
    assert_eq!(calls.get(), 2);
}

#[test]
fn a_waiter_gives_up_on_a_flight_that_never_ends() {
    // The endpoint never answers (its gate stays shut), as when the request that started the
    // flight was cancelled and the platform dropped its I/O.
    let gate = Rc::new(Gate::default());
    let ep = Endpoint {
        gate: Some(gate),
        ..Endpoint::new(200, GOOD)
    };
    let kv = Kv::default();
    let rt = TestRuntime::default();
    let source = new_source(config(), ep.clone(), kv, rt.clone(), logs().1);
    let mut stuck = Box::pin(source.token(NOW));
    // Poll the first caller once so its flight starts, then forget it.
    let waker = futures_util::task::noop_waker();
    assert!(stuck
        .as_mut()
        .poll(&mut Context::from_waker(&waker))
        .is_pending());
    drop(stuck);
    rt.bounds_fire.set(true);
    // The next caller waits at most timeout + slack (the test runtime's sleep is immediate),
    // gets a 503, and the stuck flight no longer blocks the one after.
    let e = block_on(source.token(NOW + 1)).unwrap_err();
    assert_eq!(e.http_status(), 503);
    assert!(rt
        .sleeps
        .borrow()
        .contains(&(1000 + crate::source::token_source::FLIGHT_SLACK_MS)));
    let ep2_calls = ep.calls.get();
    let _ = Box::pin(source.token(NOW + 2))
        .as_mut()
        .poll(&mut Context::from_waker(&waker));
    assert_eq!(ep.calls.get(), ep2_calls + 1, "a new flight started");
}

#[test]
fn echoed_credentials_are_scrubbed_in_every_form() {
    // The server echoes the form-encoded secret and the Basic header into its description.
    let body: &'static str = Box::leak(
        format!(
            r#"{{"error":"invalid_client","error_description":"got client_secret=s3cr%25t%2B%3A%2F%3D%26 and {}"}}"#,
            crate::oauth::token_request::basic_credentials("client", SECRET)
        )
        .into_boxed_str(),
    );
    let ep = Endpoint::new(401, body);
    let (lines, log) = logs();
    let e = block_on(source(&ep, &Kv::default(), log).token(NOW)).unwrap_err();
    let shown = e.to_string();
    assert!(shown.matches("[redacted]").count() >= 2, "{shown}");
    assert!(
        !shown.contains("s3cr%25t") && !shown.contains("Basic "),
        "{shown}"
    );
    assert!(lines
        .borrow()
        .iter()
        .all(|l| !l.contains("s3cr%25t") && !l.contains("Basic ")));
}
