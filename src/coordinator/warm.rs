//! Keeping the fleet's token fresh in KV without waiting for an ask: the coordinator's alarm.
//!
//! After it hands out a token, the coordinator sets an alarm for the token's refresh point. When
//! it fires, and the fleet was active lately, the coordinator refreshes the token itself (one
//! token request) and writes KV; isolates, which look for a new token only once KV shows it
//! everywhere ([`crate::source::token_source::KV_VISIBLE_SECS`] after that point), find it
//! there and never ask. A refresh that fails is retried by the alarm on the outage schedule,
//! not by callers.
//!
//! Isolates served from KV never ask, so the coordinator cannot see them: one in
//! a few of the isolates that take a token from KV sends a note (fire and forget, after
//! its answer, see [`crate::source::coordinator::NOTE_ONE_IN`]). Asks and notes mark the fleet active; after [`IDLE_AFTER_SECS`] without either
//! the alarm stops, and an idle Worker costs no token requests. Alarms are at least once: an
//! alarm that finds the token not yet due only sets the next one.

use std::cell::Cell;

use crate::oauth::holddown::OUTAGE_MAX_PAUSE_SECS;
use crate::oauth::transport::HttpClient;
use crate::source::runtime::Runtime;
use crate::source::store::TokenStore;
use crate::source::token_source::TokenSource;

/// The fleet counts as idle after this long without an ask or a note (three token lifetimes
/// of an hour): the alarm stops, and the next ask starts it again.
pub const IDLE_AFTER_SECS: u64 = 3 * 3_600;

/// The coordinator's storage entry for when the fleet was last seen (not mirrored to KV).
pub(crate) const FLEET_ENTRY: &str = "fleet";

/// How stale the stored mark may get: it is written at most this often.
const MARK_EVERY_SECS: u64 = 300;

/// When the fleet was last seen: in memory, and in the coordinator's storage, where an alarm
/// that wakes an evicted object finds it.
#[derive(Debug, Default)]
pub struct Fleet {
    seen: Cell<Option<u64>>,
    stored: Cell<Option<u64>>,
}

impl Fleet {
    /// An ask or a note arrived at `now`.
    pub async fn seen(&self, store: &impl TokenStore, now: u64) {
        self.seen.set(Some(now));
        if self
            .stored
            .get()
            .is_some_and(|at| now < at + MARK_EVERY_SECS)
        {
            return;
        }
        self.stored.set(Some(now));
        // Best effort: a mark that is not written means at worst one refresh fewer.
        let _ = store
            .put(FLEET_ENTRY, now.to_string(), IDLE_AFTER_SECS)
            .await;
    }

    /// When this object last saw the fleet (an ask or a note), if it has since it started.
    pub fn seen_at(&self) -> Option<u64> {
        self.seen.get()
    }

    /// When the fleet was last seen, as this object or its storage knows.
    async fn last_seen(&self, store: &impl TokenStore) -> Option<u64> {
        if let Some(at) = self.seen.get() {
            return Some(at);
        }
        let stored = store.get(FLEET_ENTRY).await.ok().flatten()?;
        let at = stored.parse().ok()?;
        self.seen.set(Some(at));
        self.stored.set(Some(at));
        Some(at)
    }
}

/// Where an alarm leaves things.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alarm {
    /// Set the next alarm at this time (Unix seconds).
    At(u64),
    /// The fleet is idle: set none.
    Stop,
}

/// The alarm to set after `source` handed out a token whose refresh point is `refresh_at`.
pub fn alarm_after(refresh_at: u64, now: u64) -> Alarm {
    Alarm::At(refresh_at.max(now + 1))
}

/// The alarm fired at `now`: refreshes the fleet's token if the fleet is active and the token
/// is due, and says when the next alarm is.
pub async fn keep_warm<H, S, R>(
    source: &TokenSource<H, S, R>,
    fleet: &Fleet,
    store: &impl TokenStore,
    now: u64,
) -> Alarm
where
    H: HttpClient + 'static,
    S: TokenStore + 'static,
    R: Runtime + 'static,
{
    let active = fleet
        .last_seen(store)
        .await
        .is_some_and(|at| now < at + IDLE_AFTER_SECS);
    if !active {
        return Alarm::Stop;
    }
    // A duplicate or early alarm (at least once, retried by the platform) costs nothing.
    if let Some(t) = source
        .peek()
        .filter(|t| t.is_fresh(now) && !t.refresh_due(now))
    {
        return Alarm::At(t.refresh_at());
    }
    match source.refresh(now).await {
        Ok(t) if !t.refresh_due(now) => Alarm::At(t.refresh_at()),
        // Held down (the outage schedule): try again when the pause ends. Failed without a hold
        // (a configuration error): not before the schedule's longest pause.
        _ => Alarm::At(
            source
                .hold(now)
                .map_or(now + OUTAGE_MAX_PAUSE_SECS, |h| h.until.max(now + 1)),
        ),
    }
}
