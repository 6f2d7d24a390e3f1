//! When an upstream's rejection of a token (RFC 6750 §3.1 `invalid_token`) may evict it: at most
//! once per eviction window, a window that starts short and backs off.
//!
//! A fixed window fails both ways (security review L3): long, and a fresh token rejected once
//! (an API whose key cache lags a signing-key rotation) is passed through as 401 for the whole
//! window; short, and an API that rejects everything costs a token per window forever. So the
//! window starts at [`EVICT_WINDOW_MIN_SECS`] and doubles, up to [`EVICT_WINDOW_MAX_SECS`], each
//! time a token minted around the previous eviction is rejected again; a token that worked for a
//! long time before its rejection (the normal revocation), or an upstream's acceptance of the
//! token held, brings it back to the minimum. Against an API that rejects everything, steady
//! traffic evicts at 0, 2, 6, 14, 30, 62, ... s: eleven in the first hour, then one an hour.

/// The eviction window after a normal revocation: a replacement rejected at once (the upstream
/// has not caught up yet) is evicted again this soon.
pub const EVICT_WINDOW_MIN_SECS: u64 = 2;

/// The longest eviction window: an upstream that rejects every token costs one an hour.
pub const EVICT_WINDOW_MAX_SECS: u64 = 3_600;

/// At most this many evictions in any hour, whatever reset the window. An acceptance is only
/// the word of whichever request the upstream answered: a caller who alternates a path that
/// rejects valid tokens (one with its own API-key check, say) with one that accepts them would
/// otherwise reset the window each time and make a token every
/// [`EVICT_WINDOW_MIN_SECS`]. With the budget that caller gets a dozen an hour, and an upstream
/// that rejects everything still backs off to one an hour.
pub const EVICTIONS_PER_HOUR: usize = 12;

/// The last eviction and the window that must pass after it before the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Evictions {
    /// Unix seconds of the last eviction.
    last: Option<u64>,
    /// Unix seconds of the evictions within the last hour, oldest first (at most
    /// [`EVICTIONS_PER_HOUR`]).
    recent: std::collections::VecDeque<u64>,
    /// Seconds after `last` during which rejections are passed through, not evicted.
    window: u64,
    /// Unix seconds of the last acceptance that ended a backoff.
    reset_at: Option<u64>,
}

impl Default for Evictions {
    fn default() -> Self {
        Self {
            last: None,
            recent: std::collections::VecDeque::new(),
            window: EVICT_WINDOW_MIN_SECS,
            reset_at: None,
        }
    }
}

impl Evictions {
    /// Whether a rejection at `now` comes within the window after the last eviction (and is
    /// passed through): an upstream that rejects every token must not turn each request into
    /// a token request.
    pub(super) fn too_soon(&self, now: u64) -> bool {
        self.next_allowed().is_some_and(|at| now < at)
    }

    /// Counts an eviction at `now` of a token issued at `issued_at`, and sets the window for
    /// the next one. A token younger than twice the window was minted around the previous
    /// eviction and is rejected again: the upstream rejects what we get, so wait twice as long.
    /// An older one worked for a while: a revocation, after which a quick second eviction is
    /// what a lagging upstream needs.
    pub(super) fn evict(&mut self, now: u64, issued_at: u64) {
        let age = now.saturating_sub(issued_at);
        self.window = if age < self.window.saturating_mul(2) {
            self.window.saturating_mul(2).min(EVICT_WINDOW_MAX_SECS)
        } else {
            EVICT_WINDOW_MIN_SECS
        };
        self.last = Some(now);
        if self.recent.len() == EVICTIONS_PER_HOUR {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
    }

    /// An upstream accepted the token held at `now`: the window goes back to the minimum, so
    /// a later revocation is acted on at once. Whether this ended a backoff.
    pub(super) fn accepted(&mut self, now: u64) -> bool {
        if !self.backing_off() {
            return false;
        }
        self.window = EVICT_WINDOW_MIN_SECS;
        self.reset_at = Some(now);
        true
    }

    /// Whether the window is above the minimum.
    pub(super) fn backing_off(&self) -> bool {
        self.window > EVICT_WINDOW_MIN_SECS
    }

    /// Seconds after the last eviction before the next one is allowed.
    pub(super) fn window(&self) -> u64 {
        self.window
    }

    /// Unix seconds from which a rejection evicts again (none yet: at once): after the window,
    /// and once the hour's budget has room.
    pub(super) fn next_allowed(&self) -> Option<u64> {
        let window = self.last.map(|at| at.saturating_add(self.window));
        let budget = (self.recent.len() == EVICTIONS_PER_HOUR)
            .then(|| self.recent.front().map(|first| first.saturating_add(3_600)))
            .flatten();
        window.max(budget)
    }

    /// What the status view shows of it at `now` (see [`crate::source::status`]).
    #[cfg(any(target_arch = "wasm32", test))]
    pub(super) fn view(&self, now: u64) -> EvictionView {
        EvictionView {
            window_secs: self.window,
            last_at: self.last,
            next_allowed_at: self.next_allowed().filter(|at| *at > now),
            backing_off: self.backing_off(),
            reset_at: self.reset_at,
        }
    }
}

/// When an upstream's rejection may evict the token next, as the status view shows it.
#[cfg(any(target_arch = "wasm32", test))]
#[derive(Debug, PartialEq, Eq, serde::Serialize)]
pub(super) struct EvictionView {
    /// Seconds after the last eviction before the next.
    pub(super) window_secs: u64,
    /// The last eviction.
    pub(super) last_at: Option<u64>,
    /// From when a rejection evicts again (`null`: at once).
    pub(super) next_allowed_at: Option<u64>,
    /// The window is above its minimum: tokens were rejected again soon after they were minted.
    pub(super) backing_off: bool,
    /// The last acceptance of the token that ended a backoff.
    pub(super) reset_at: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_window_doubles_after_a_young_token_and_resets_after_an_old_one() {
        // (window before, age of the rejected token, window after)
        for (before, age, after) in [
            (2, 0, 4),
            (2, 3, 4),
            (2, 4, 2),
            (8, 15, 16),
            (8, 16, 2),
            (2_048, 2_048, 3_600),
            (3_600, 3_600, 3_600),
            (3_600, 7_200, 2),
        ] {
            let mut e = Evictions {
                window: before,
                ..Evictions::default()
            };
            e.evict(10_000, 10_000 - age);
            assert_eq!(e.window(), after, "window {before}, age {age}");
            assert_eq!(e.next_allowed(), Some(10_000 + after));
        }
    }

    #[test]
    fn an_upstream_rejecting_everything_is_evicted_ever_more_rarely() {
        // One rejection a second of the token held; each eviction mints a new one. The first
        // token had worked for an hour.
        let mut e = Evictions::default();
        let mut issued_at = 0;
        let mut evicted = Vec::new();
        for now in 3_600..3_600 + 2 * 3_600 {
            if !e.too_soon(now) {
                e.evict(now, issued_at);
                issued_at = now;
                evicted.push(now - 3_600);
            }
        }
        assert_eq!(
            evicted,
            [0, 2, 6, 14, 30, 62, 126, 254, 510, 1022, 2046, 4094],
            "eleven in the first hour, then one an hour"
        );
        assert_eq!(e.window(), EVICT_WINDOW_MAX_SECS);
    }

    #[test]
    fn rejections_within_the_window_are_too_soon() {
        let mut e = Evictions::default();
        assert!(!e.too_soon(0), "the first rejection evicts");
        e.evict(100, 0);
        for (now, too_soon) in [(100, true), (101, true), (102, false), (500, false)] {
            assert_eq!(e.too_soon(now), too_soon, "at {now}");
        }
        e.evict(102, 100);
        assert_eq!(
            (e.window(), e.too_soon(105), e.too_soon(106)),
            (4, true, false)
        );
    }

    #[test]
    fn acceptances_between_rejections_still_leave_a_dozen_evictions_an_hour() {
        // A caller alternating a path that rejects valid tokens with one that accepts them.
        let mut e = Evictions::default();
        let mut issued_at = 0;
        let mut evicted = 0;
        for now in 1_000..1_000 + 3 * 3_600 {
            if now % 2 == 0 {
                e.accepted(now);
            } else if !e.too_soon(now) {
                e.evict(now, issued_at);
                issued_at = now;
                evicted += 1;
            }
        }
        assert_eq!(evicted, 3 * EVICTIONS_PER_HOUR);
    }

    #[test]
    fn an_acceptance_ends_a_backoff() {
        let mut e = Evictions::default();
        assert!(!e.accepted(5), "nothing to end");
        assert_eq!(e.view(0).reset_at, None);
        for now in [0, 2, 6, 14] {
            e.evict(now, now.saturating_sub(4));
        }
        assert!(e.backing_off() && e.window() == 32);
        assert!(e.accepted(20));
        assert!(!e.backing_off());
        assert_eq!(
            e.view(15),
            EvictionView {
                window_secs: 2,
                last_at: Some(14),
                next_allowed_at: Some(16),
                backing_off: false,
                reset_at: Some(20),
            }
        );
    }
}
