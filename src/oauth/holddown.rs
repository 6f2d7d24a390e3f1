//! Leaving the token endpoint alone after it said no.
//!
//! Retrying a refusal (`invalid_client`, `invalid_scope`, any other 4xx) cannot succeed until
//! someone fixes the configuration, and hammering a rate-limited, per-token-billed endpoint with
//! it can lock out every other client of the organisation. So after a refusal, callers get the
//! same answer at once for `OAUTH_HOLDDOWN_SECS`; after a 429 or 503 with `Retry-After`, for as
//! long as the server asked (capped). The hold-down goes to KV too, so other isolates back off.
//!
//! An unavailable endpoint (5xx, 429, unreachable, too slow) is left alone for longer after each
//! flight that failed in a row: the *outage schedule*, 5 s, 10 s, 20 s, 40 s, 80 s, then every
//! 120 s (each with jitter down to three quarters, so isolates that failed together do not come
//! back together), or as long as a `Retry-After` asks if that is longer (at most 300 s). A
//! flight after a failed one makes a single attempt: the schedule replaces retries within a
//! flight. A token obtained resets it. With a coordinator, this is the fleet's one schedule:
//! every ask during a pause gets its answer at once.

use crate::base::error::{Error, DEFAULT_RETRY_AFTER_SECS};

/// Longest hold-down taken from a server's `Retry-After`.
pub(crate) const MAX_RETRY_AFTER_HOLD_SECS: u64 = 300;

/// The outage schedule's first pause, in seconds.
pub(crate) const OUTAGE_FIRST_PAUSE_SECS: u64 = DEFAULT_RETRY_AFTER_SECS;

/// The outage schedule's longest pause, in seconds: how late, at most, a recovered endpoint is
/// noticed.
pub(crate) const OUTAGE_MAX_PAUSE_SECS: u64 = 120;

/// The pause after the `failed`-th flight in a row that found the endpoint unavailable (1 after
/// the first), with `jitter` in `[0, 1)`, in seconds; a `Retry-After` of more is honoured up to
/// [`MAX_RETRY_AFTER_HOLD_SECS`].
pub(crate) fn outage_pause_secs(failed: u32, retry_after: Option<u64>, jitter: f64) -> u64 {
    let full = OUTAGE_FIRST_PAUSE_SECS
        .saturating_mul(1u64 << failed.saturating_sub(1).min(16))
        .min(OUTAGE_MAX_PAUSE_SECS);
    let pause = full - ((full / 4) as f64 * (1.0 - jitter.clamp(0.0, 1.0))) as u64;
    pause
        .max(retry_after.unwrap_or(0).min(MAX_RETRY_AFTER_HOLD_SECS))
        .max(1)
}

/// How long to leave the endpoint alone after `err`, in seconds (0: not at all), when it is the
/// `failed`-th failed flight in a row (see [`outage_pause_secs`]).
pub(crate) fn hold_secs(err: &Error, refusal_holddown_secs: u64, failed: u32, jitter: f64) -> u64 {
    match err {
        Error::Refused { .. } | Error::InvalidResponse { .. } => refusal_holddown_secs,
        Error::Unavailable { retry_after, .. } => {
            outage_pause_secs(failed.max(1), *retry_after, jitter)
        }
        _ => 0,
    }
}

/// Whether a hold-down after `err` is the server's word, shared with other isolates (in KV, or
/// by the coordinator's storage): a refusal, nonsense, a `Retry-After`, or an unavailable status
/// (5xx, 429: the endpoint's state, and the outage schedule's step goes with it). This isolate's
/// own network trouble or timeout is not (others may reach the endpoint fine), nor is a DPoP
/// nonce refusal (nonces are per isolate, and another isolate's may be current).
pub(crate) fn shared(err: &Error) -> bool {
    let own_trouble = matches!(
        err,
        Error::Unavailable { retry_after: None, reason } if !reason.starts_with("HTTP ")
    );
    !own_trouble && !crate::oauth::dpop::token_endpoint_wants_nonce(err)
}

/// The error callers get while a hold-down lasts; an unavailable endpoint's `Retry-After`
/// counts down to the hold's end.
pub(crate) fn held_error(err: &Error, until: u64, now: u64) -> Error {
    match err {
        Error::Unavailable { reason, .. } => Error::Unavailable {
            reason: reason.clone(),
            retry_after: Some(until.saturating_sub(now).max(1)),
        },
        other => other.clone(),
    }
}

/// A refusal as a token endpoint gives it, for tests.
#[cfg(test)]
pub(crate) fn refused() -> Error {
    Error::Refused {
        status: 401,
        code: crate::base::error::ErrorCode::InvalidClient,
        description: Some("client authentication failed".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outage_schedule_doubles_to_its_cap_with_jitter_and_honours_retry_after() {
        let top: Vec<u64> = (1..=8).map(|n| outage_pause_secs(n, None, 1.0)).collect();
        assert_eq!(top, [5, 10, 20, 40, 80, 120, 120, 120]);
        let low: Vec<u64> = (1..=8).map(|n| outage_pause_secs(n, None, 0.0)).collect();
        assert_eq!(
            low,
            [4, 8, 15, 30, 60, 90, 90, 90],
            "jitter takes at most a quarter"
        );
        assert_eq!(
            outage_pause_secs(1, Some(60), 0.5),
            60,
            "Retry-After when longer"
        );
        assert_eq!(
            outage_pause_secs(9, Some(10), 1.0),
            120,
            "the schedule when longer"
        );
        assert_eq!(
            outage_pause_secs(1, Some(99_999), 1.0),
            MAX_RETRY_AFTER_HOLD_SECS
        );
        assert_eq!(
            outage_pause_secs(40, None, 1.0),
            OUTAGE_MAX_PAUSE_SECS,
            "no overflow"
        );
    }

    #[test]
    fn refusals_hold_for_the_holddown_and_unavailability_for_retry_after_capped() {
        let hold_secs = |e: &Error, h| hold_secs(e, h, 1, 1.0);
        assert_eq!(hold_secs(&refused(), 30), 30);
        let invalid = Error::InvalidResponse {
            status: 200,
            reason: "HTML".into(),
        };
        assert_eq!(hold_secs(&invalid, 30), 30);
        let down = |ra| Error::Unavailable {
            reason: "HTTP 503".into(),
            retry_after: ra,
        };
        assert_eq!(hold_secs(&down(Some(20)), 30), 20);
        assert_eq!(
            hold_secs(&down(Some(99_999)), 30),
            MAX_RETRY_AFTER_HOLD_SECS
        );
        assert_eq!(hold_secs(&down(None), 30), DEFAULT_RETRY_AFTER_SECS);
        assert_eq!(hold_secs(&Error::config("X", "y"), 30), 0);
    }

    #[test]
    fn retry_after_counts_down() {
        let e = Error::Unavailable {
            reason: "HTTP 429".into(),
            retry_after: Some(20),
        };
        assert_eq!(held_error(&e, 1_020, 1_005).retry_after(), Some(15));
        assert_eq!(held_error(&refused(), 1_020, 1_005), refused());
    }
}
