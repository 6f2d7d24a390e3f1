//! The coordinator tier, natively: isolates (token sources with their own KV view) asking one
//! coordinator (a token source over its own storage) through the real `serve`.
use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::coordinator::serve::serve;
use crate::source::coordinator::{Answer, Ask, Coordinator};
use crate::source::records::HOLD_ENTRY;
use crate::source::records::TOKEN_ENTRY;
use futures_executor::block_on;
use futures_util::future::{join_all, LocalBoxFuture};

use super::support::*;

/// The coordinator as isolates reach it: `serve` on the coordinator's source, at the shared
/// test time; or failing, when `down` is set.
struct Local {
    source: Rc<RefCell<Source>>,
    now: Rc<Cell<u64>>,
    down: Rc<Cell<bool>>,
    asks: Rc<RefCell<Vec<Ask>>>,
}

impl Coordinator for Local {
    fn ask(&self, ask: Ask) -> LocalBoxFuture<'static, Result<Answer, String>> {
        self.asks.borrow_mut().push(ask.clone());
        let (source, now, down) = (
            self.source.borrow().clone(),
            self.now.get(),
            self.down.get(),
        );
        Box::pin(async move {
            if down {
                return Err("coordinator unreachable".into());
            }
            serve(&source, ask, now).await
        })
    }
}

struct Fleet {
    ep: Endpoint,
    /// The coordinator's storage, which it also mirrors nowhere here: each isolate's KV is its
    /// own (a location that has not seen the coordinator's KV write yet).
    storage: Kv,
    coordinator: Rc<RefCell<Source>>,
    isolates: Vec<(Source, Kv, Lines)>,
    now: Rc<Cell<u64>>,
    down: Rc<Cell<bool>>,
    asks: Rc<RefCell<Vec<Ask>>>,
}

fn fleet(n: usize, ep: Endpoint) -> Fleet {
    let storage = Kv::default();
    let coordinator = Rc::new(RefCell::new(source(&ep, &storage, logs().1)));
    let now = Rc::new(Cell::new(NOW));
    let down = Rc::new(Cell::new(false));
    let asks = Rc::default();
    let isolates = (0..n)
        .map(|_| {
            let kv = Kv::default();
            let (lines, log) = logs();
            let isolate = source(&ep, &kv, log);
            isolate.set_coordinator(Rc::new(Local {
                source: coordinator.clone(),
                now: now.clone(),
                down: down.clone(),
                asks: Rc::clone(&asks),
            }));
            (isolate, kv, lines)
        })
        .collect();
    Fleet {
        ep,
        storage,
        coordinator,
        isolates,
        now,
        down,
        asks,
    }
}

#[test]
fn cold_isolates_together_make_one_token_request_and_write_no_kv() {
    let f = fleet(8, Endpoint::new(200, GOOD));
    let all = f
        .isolates
        .iter()
        .flat_map(|(s, _, _)| (0..5).map(move |_| s.token(NOW)));
    let tokens = block_on(join_all(all));
    assert!(tokens
        .iter()
        .all(|t| t.as_ref().unwrap().access_token().expose() == "tok-1"));
    assert_eq!(f.ep.calls.get(), 1, "one token request for 8 cold isolates");
    assert_eq!(
        f.asks.borrow().len(),
        8,
        "one ask per isolate (single flight inside each)"
    );
    assert!(
        f.storage.map.borrow().contains_key(TOKEN_ENTRY),
        "the coordinator keeps it"
    );
    for (_, kv, lines) in &f.isolates {
        assert!(
            kv.map.borrow().is_empty(),
            "isolates never write KV themselves"
        );
        assert_eq!(count(lines, r#""source":"coordinator""#), 1);
    }
}

#[test]
fn isolates_in_their_refresh_window_refresh_once_for_the_fleet() {
    let f = fleet(6, Endpoint::script(vec![ok(GOOD), ok(GOOD2)]));
    for (s, _, _) in &f.isolates {
        block_on(s.token(NOW)).unwrap();
    }
    f.asks.borrow_mut().clear();
    // Past the refresh point (NOW + 3240), the time KV takes to show the coordinator's own
    // refresh everywhere (120 s: coordinated isolates look only then) and every isolate's skew
    // (0.5 of the rest here): each starts one background refresh, which asks the coordinator.
    let later = NOW + 3420;
    f.now.set(later);
    let mut flights = Vec::new();
    for (s, _, _) in &f.isolates {
        let (t, started) = ahead(s, later);
        assert_eq!(
            t.unwrap().access_token().expose(),
            "tok-1",
            "no caller waits"
        );
        flights.push(started.expect("a refresh started"));
    }
    block_on(join_all(flights));
    assert_eq!(f.ep.calls.get(), 2, "one refresh for the whole fleet");
    assert_eq!(
        f.asks.borrow().len(),
        6,
        "one coordinator request per isolate"
    );
    for (s, _, _) in &f.isolates {
        let t = block_on(s.token(later)).unwrap();
        assert_eq!(t.access_token().expose(), "tok-2");
    }
    assert_eq!(f.asks.borrow().len(), 6, "then memory again");
}

#[test]
fn a_token_rejected_in_every_isolate_costs_one_new_token() {
    let f = fleet(5, Endpoint::script(vec![ok(GOOD), ok(GOOD2)]));
    let first: Vec<_> = f
        .isolates
        .iter()
        .map(|(s, _, _)| block_on(s.token(NOW)).unwrap())
        .collect();
    for ((s, _, _), t) in f.isolates.iter().zip(&first) {
        assert!(block_on(s.invalidate(t, NOW + 10)));
        let fresh = block_on(s.token(NOW + 10)).unwrap();
        assert_eq!(fresh.access_token().expose(), "tok-2");
    }
    assert_eq!(
        f.ep.calls.get(),
        2,
        "one eviction and one new token for five reports"
    );
}

#[test]
fn an_upstream_rejecting_every_token_costs_the_fleet_about_a_dozen_then_one_an_hour() {
    // Three isolates take turns at one request a second; each rejection is reported to the
    // coordinator, whose own eviction window backs off as an isolate's does. Between its
    // evictions, the coordinator answers with the rejected token, which the isolates use.
    let f = fleet(3, minted(64, 3_600));
    let mut tokens_by_hour = [0; 2];
    let coordinator_evictions = |at: u64| {
        let status: serde_json::Value =
            serde_json::from_str(&f.coordinator.borrow().status(at)).unwrap();
        status["events"]["evictions"].as_u64().unwrap()
    };
    for s in 0..2 * 3_600 {
        let now = NOW + s;
        f.now.set(now);
        let calls = f.ep.calls.get();
        let isolate = &f.isolates[s as usize % 3].0;
        let t = block_on(isolate.token(now)).unwrap();
        if block_on(isolate.invalidate(&t, now)) {
            // The proxy replays with whatever token the isolate gets now (rejected again).
            let again = block_on(isolate.token(now)).unwrap();
            block_on(isolate.invalidate(&again, now));
        }
        tokens_by_hour[s as usize / 3_600] += f.ep.calls.get() - calls;
        if s == 3_599 {
            assert_eq!(coordinator_evictions(now), 10);
        }
    }
    // The first token is rejected at once: the fleet evicts at 0, 4, 12, 28, ..., 2044 s (ten
    // in the first hour), then at 4092 s, and its window stays at an hour.
    assert_eq!(tokens_by_hour, [1 + 10, 1], "tokens minted, by hour");
    assert_eq!(coordinator_evictions(NOW + 7_200), 11);
}

#[test]
fn a_failing_coordinator_means_each_isolate_fends_for_itself() {
    let f = fleet(3, Endpoint::new(200, GOOD));
    f.down.set(true);
    for (s, kv, lines) in &f.isolates {
        assert_eq!(
            block_on(s.token(NOW)).unwrap().access_token().expose(),
            "tok-1"
        );
        assert_eq!(count(lines, "coordinator_fallback"), 1);
        assert!(
            kv.map.borrow().contains_key(TOKEN_ENTRY),
            "the fallback writes KV itself"
        );
    }
    assert_eq!(
        f.ep.calls.get(),
        3,
        "what the fallback costs: one token per isolate"
    );
}

#[test]
fn a_restarted_coordinator_answers_from_its_storage() {
    let f = fleet(1, Endpoint::new(200, GOOD));
    block_on(f.isolates[0].0.token(NOW)).unwrap();
    // A new coordinator instance (redeployed or evicted) over the same storage, and a new
    // isolate: no token request.
    let restarted = new_source(
        config(),
        f.ep.clone(),
        f.storage.clone(),
        TestRuntime::default(),
        logs().1,
    );
    let answer = block_on(serve(&restarted, Ask::default(), NOW + 60)).unwrap();
    drop(f.coordinator);
    match answer {
        Answer::Token(t) => assert_eq!(t.access_token().expose(), "tok-1"),
        other => panic!("{other:?}"),
    }
    assert_eq!(f.ep.calls.get(), 1);
}

#[test]
fn a_rejection_reported_to_a_restarted_coordinator_evicts_once() {
    let f = fleet(4, Endpoint::script(vec![ok(GOOD), ok(GOOD2)]));
    let first: Vec<_> = f
        .isolates
        .iter()
        .map(|(s, _, _)| block_on(s.token(NOW)).unwrap())
        .collect();
    // The coordinator is evicted from memory (idle between refreshes): the next one starts
    // empty over the same storage, which still holds tok-1.
    *f.coordinator.borrow_mut() = source(&f.ep, &f.storage, logs().1);
    for ((s, _, lines), t) in f.isolates.iter().zip(&first) {
        assert!(block_on(s.invalidate(t, NOW + 10)));
        let fresh = block_on(s.token(NOW + 10)).unwrap();
        assert_eq!(fresh.access_token().expose(), "tok-2");
        assert_eq!(count(lines, "coordinator_fallback"), 0);
    }
    assert_eq!(
        f.ep.calls.get(),
        2,
        "one new token for four reports to a cold coordinator"
    );
}

#[test]
fn an_endpoint_the_coordinator_cannot_reach_is_the_fleets_answer_too() {
    // One backoff for the fleet: unreachable or too slow counts as an outage like a 503, and an
    // isolate that gets the coordinator's hold does not ask the endpoint itself.
    let unreachable = Endpoint::script(vec![Reply::Fail("connection refused", 5)]);
    let object = Rc::new(RefCell::new(source(&unreachable, &Kv::default(), logs().1)));
    let ep = Endpoint::new(200, GOOD);
    let (lines, log) = logs();
    let isolate = source(&ep, &Kv::default(), log);
    isolate.set_coordinator(Rc::new(Local {
        source: object,
        now: Rc::new(Cell::new(NOW)),
        down: Rc::new(Cell::new(false)),
        asks: Rc::default(),
    }));
    let e = block_on(isolate.token(NOW)).unwrap_err();
    assert_eq!(e.http_status(), 503);
    assert!(
        e.retry_after().is_some(),
        "the fleet's pause, as Retry-After"
    );
    assert_eq!(count(&lines, "coordinator_fallback"), 0);
    assert!(unreachable.calls.get() >= 1);
    assert_eq!(ep.calls.get(), 0, "the isolate left the endpoint alone");
    assert!(
        isolate.hold(NOW).is_some(),
        "and holds the fleet's pause itself"
    );
}

#[test]
fn a_refusal_is_held_for_the_fleet_by_the_coordinator() {
    let f = fleet(4, Endpoint::new(401, REFUSED));
    for (s, _, _) in &f.isolates {
        let e = block_on(s.token(NOW)).unwrap_err();
        assert_eq!((e.http_status(), e.code()), (502, "invalid_client"));
        assert!(!e.to_string().contains("s3cr%t"), "{e}");
    }
    assert_eq!(f.ep.calls.get(), 1, "one refusal, then the hold answers");
    assert!(f.storage.map.borrow().contains_key(HOLD_ENTRY));
    f.now.set(NOW + 31);
    let _ = block_on(f.isolates[0].0.token(NOW + 31));
    assert_eq!(f.ep.calls.get(), 2, "after the hold, one more try");
}
