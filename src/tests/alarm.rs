//! The coordinator's alarm (`coordinator::warm`): keeping the fleet's token fresh in KV
//! while the fleet is seen, harmless when duplicated, on the outage schedule when failing.
use futures_executor::block_on;

use super::support::*;
use crate::coordinator::warm::{alarm_after, keep_warm, Alarm, Fleet, IDLE_AFTER_SECS};
use crate::source::records::TOKEN_ENTRY;

#[test]
fn an_idle_fleet_stops_the_alarm_and_costs_no_token_request() {
    let ep = Endpoint::script(vec![ok(GOOD), ok(GOOD2)]);
    let storage = Kv::default();
    let object = source(&ep, &storage, logs().1);
    let t = block_on(object.token(NOW)).unwrap();
    let fleet = Fleet::default();
    // Never seen: stop.
    let due = t.refresh_at();
    assert_eq!(
        block_on(keep_warm(&object, &fleet, &storage, due)),
        Alarm::Stop
    );
    // Seen long ago: stop too.
    block_on(fleet.seen(&storage, NOW));
    let late = NOW + IDLE_AFTER_SECS;
    assert_eq!(
        block_on(keep_warm(&object, &fleet, &storage, late)),
        Alarm::Stop
    );
    assert_eq!(ep.calls.get(), 1);
}

#[test]
fn an_active_fleet_gets_its_token_refreshed_at_the_refresh_point_once() {
    let ep = Endpoint::script(vec![ok(GOOD), ok(GOOD2)]);
    let storage = Kv::default();
    let object = source(&ep, &storage, logs().1);
    let t = block_on(object.token(NOW)).unwrap();
    assert_eq!(alarm_after(t.refresh_at(), NOW), Alarm::At(t.refresh_at()));
    let fleet = Fleet::default();
    block_on(fleet.seen(&storage, NOW + 60));
    // Early (or duplicated): nothing to do but set the alarm where it belongs.
    let early = block_on(keep_warm(&object, &fleet, &storage, NOW + 100));
    assert_eq!((early, ep.calls.get()), (Alarm::At(t.refresh_at()), 1));
    // Due: one token request, written to the store (mirrored to KV), the next alarm set.
    let due = t.refresh_at();
    let Alarm::At(next) = block_on(keep_warm(&object, &fleet, &storage, due)) else {
        panic!("the alarm goes on");
    };
    assert_eq!(ep.calls.get(), 2);
    assert!(next > due + 3000, "the new token's refresh point: {next}");
    assert!(storage.map.borrow()[TOKEN_ENTRY].0.contains("tok-2"));
    // The platform delivers the same alarm again: harmless.
    let again = block_on(keep_warm(&object, &fleet, &storage, due + 1));
    assert_eq!((again, ep.calls.get()), (Alarm::At(next), 2));
}

#[test]
fn an_evicted_coordinator_knows_the_fleet_from_its_storage() {
    let ep = Endpoint::script(vec![ok(GOOD), ok(GOOD2)]);
    let storage = Kv::default();
    let t = block_on(source(&ep, &storage, logs().1).token(NOW)).unwrap();
    block_on(Fleet::default().seen(&storage, NOW + 10));
    // A new object (memory lost), woken by its stored alarm.
    let object = source(&ep, &storage, logs().1);
    let next = block_on(keep_warm(
        &object,
        &Fleet::default(),
        &storage,
        t.refresh_at(),
    ));
    assert!(matches!(next, Alarm::At(_)));
    assert_eq!(ep.calls.get(), 2, "refreshed, not stopped");
}

#[test]
fn a_failing_refresh_is_retried_by_the_alarm_when_the_pause_ends() {
    let ep = Endpoint::new(503, "down");
    let storage = Kv::default();
    let object = source(&ep, &storage, logs().1);
    let fleet = Fleet::default();
    block_on(fleet.seen(&storage, NOW));
    let Alarm::At(retry) = block_on(keep_warm(&object, &fleet, &storage, NOW)) else {
        panic!("the alarm goes on");
    };
    let hold = object.hold(NOW).expect("held down");
    assert_eq!(retry, hold.until);
    // The flight spent its budget (1 s here) on retries, then the schedule's first pause.
    assert!(retry > NOW && retry <= NOW + 1 + 5, "{}", retry - NOW);
}
