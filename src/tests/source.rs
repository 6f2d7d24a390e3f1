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
