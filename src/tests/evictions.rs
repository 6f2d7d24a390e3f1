//! Upstream verdicts on a token, natively: a rejection evicts it once (never reused after),
//! evictions back off from a short window while new tokens keep being rejected, at most a
//! dozen an hour, and an acceptance ends a backoff (see `src/source/evictions.rs`).
use crate::source::records::{encode_record, TOKEN_ENTRY};
use crate::Token;
use futures_executor::block_on;
use futures_util::future::join_all;

use super::support::*;

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
