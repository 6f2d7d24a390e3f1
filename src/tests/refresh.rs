//! Refresh ahead and the bounds on a flight, natively: a caller never waits for a refresh, a
//! failed refresh keeps the current token, and a dead flight is replaced, not joined.
use std::future::Future;
use std::rc::Rc;
use std::task::Context;

use crate::config::client::Config;
use crate::source::records::TOKEN_ENTRY;
use futures_executor::block_on;

use super::support::*;

#[test]
fn refresh_ahead_never_makes_a_caller_wait() {
    let ep = Endpoint::new(200, GOOD);
    let kv = Kv::default();
    let source = source(&ep, &kv, logs().1);
    block_on(source.token(NOW)).unwrap();
    // The refresh window of a one-hour token opens after 54 minutes (3240 s); this source, with
    // the test runtime's skew of 0.5, starts its refresh a quarter of the window later (3315 s).
    let (t, started) = ahead(&source, NOW + 3314);
    assert!(t.is_ok() && started.is_none());
    ep.then(ok(GOOD2));
    let (t, started) = ahead(&source, NOW + 3315);
    assert_eq!(
        t.unwrap().access_token().expose(),
        "tok-1",
        "answered at once with the current token"
    );
    let refresh = started.expect("a background refresh started");
    // While it runs, other callers get the current token and start nothing more.
    let (t, again) = ahead(&source, NOW + 3316);
    assert_eq!(
        (t.unwrap().access_token().expose(), again.is_none()),
        ("tok-1", true)
    );
    assert_eq!(ep.calls.get(), 1);
    block_on(refresh);
    assert_eq!(ep.calls.get(), 2);
    let (t, started) = ahead(&source, NOW + 3317);
    assert_eq!(
        (t.unwrap().access_token().expose(), started.is_none()),
        ("tok-2", true)
    );
    // KV now holds the new token: another isolate takes it without a request.
    let other = self::source(&ep, &kv, logs().1);
    assert_eq!(
        block_on(other.token(NOW + 3303))
            .unwrap()
            .access_token()
            .expose(),
        "tok-2"
    );
    assert_eq!(ep.calls.get(), 2);
}

#[test]
fn a_failed_background_refresh_keeps_the_current_token_and_backs_off() {
    let ep = Endpoint::new(200, GOOD);
    let source = source(&ep, &Kv::default(), logs().1);
    block_on(source.token(NOW)).unwrap();
    ep.then(Reply::Http(401, REFUSED, vec![]));
    let (_, started) = ahead(&source, NOW + 3315);
    block_on(started.unwrap());
    let calls = ep.calls.get();
    // Held down for 30 s: no new attempt, the current token keeps serving.
    for i in 1..30 {
        let (t, started) = ahead(&source, NOW + 3315 + i);
        assert_eq!(
            (t.unwrap().access_token().expose(), started.is_none()),
            ("tok-1", true)
        );
    }
    assert_eq!(ep.calls.get(), calls);
    // After the hold-down, the next due use tries again.
    let (_, started) = ahead(&source, NOW + 3346);
    assert!(started.is_some());
}

#[test]
fn a_background_refresh_does_not_take_a_kv_token_that_is_itself_due() {
    let ep = Endpoint::new(200, GOOD);
    let kv = Kv::default();
    let source = source(&ep, &kv, logs().1);
    block_on(source.token(NOW)).unwrap(); // KV holds tok-1, due at NOW+3240
    ep.then(ok(GOOD2));
    let (_, started) = ahead(&source, NOW + 3315);
    block_on(started.unwrap());
    assert_eq!(
        ep.calls.get(),
        2,
        "went to the network, not back to the due KV copy"
    );
    assert!(kv.map.borrow()[TOKEN_ENTRY].0.contains("tok-2"));
}

#[test]
fn refresh_ahead_can_be_turned_off() {
    let ep = Endpoint::new(200, GOOD);
    let config = Config {
        refresh_ahead: false,
        dpop: Default::default(),
        ..config()
    };
    let source = new_source(
        config,
        ep.clone(),
        Kv::default(),
        TestRuntime::default(),
        logs().1,
    );
    block_on(source.token(NOW)).unwrap();
    let (_, started) = ahead(&source, NOW + 3400);
    assert!(started.is_none());
    assert_eq!(ep.calls.get(), 1);
}

/// A source whose flight started at NOW and was abandoned by its caller, held at a gate.
fn stuck_flight() -> (Rc<Gate>, Endpoint, Source) {
    let gate = Rc::new(Gate::default());
    let ep = Endpoint {
        gate: Some(gate.clone()),
        ..Endpoint::new(200, GOOD)
    };
    let source = source(&ep, &Kv::default(), logs().1);
    let waker = futures_util::task::noop_waker();
    let mut stuck = Box::pin(source.token(NOW));
    assert!(stuck
        .as_mut()
        .poll(&mut Context::from_waker(&waker))
        .is_pending());
    drop(stuck);
    (gate, ep, source)
}

#[test]
fn a_flight_older_than_the_bound_is_replaced_not_joined() {
    let (gate, ep, source) = stuck_flight();
    let waker = futures_util::task::noop_waker();
    // 1000 ms budget + 5000 ms slack. In whole seconds, NOW + 6 may be only 5.001 s later:
    // still joined. Only NOW + 7, or the clock, proves the bound has passed.
    for later in [NOW + 5, NOW + 6] {
        let _ = Box::pin(source.token(later))
            .as_mut()
            .poll(&mut Context::from_waker(&waker));
        assert_eq!(
            ep.calls.get(),
            1,
            "still within the bound at {later}: joined"
        );
    }
    advance(5_999);
    let _ = Box::pin(source.token(NOW + 6))
        .as_mut()
        .poll(&mut Context::from_waker(&waker));
    assert_eq!(ep.calls.get(), 1, "5999 ms by the clock: joined");
    advance(1);
    gate.open();
    ep.then(ok(GOOD));
    let t = block_on(source.token(NOW + 6)).unwrap();
    assert_eq!((t.access_token().expose(), ep.calls.get()), ("tok-1", 2));
}

#[test]
fn a_dead_flight_is_also_replaced_by_whole_seconds() {
    let (gate, ep, source) = stuck_flight();
    gate.open();
    let t = block_on(source.token(NOW + 7)).unwrap();
    assert_eq!((t.access_token().expose(), ep.calls.get()), ("tok-1", 2));
}
