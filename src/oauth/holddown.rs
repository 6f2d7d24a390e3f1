//! Leaving the token endpoint alone after it said no.
//!
//! Retrying a refusal (`invalid_client`, `invalid_scope`, any other 4xx) cannot succeed until
//! someone fixes the configuration, and hammering a rate-limited, per-token-billed endpoint with
//! it can lock out every other client of the organisation. So after a refusal, callers get the
//! same answer at once for `OAUTH_HOLDDOWN_SECS`; after a 429 or 503 with `Retry-After`, for as
//! long as the server asked (capped). The hold-down goes to KV too, so other isolates back off.

use crate::base::error::{Error, DEFAULT_RETRY_AFTER_SECS};

/// Longest hold-down taken from a server's `Retry-After`.
pub(crate) const MAX_RETRY_AFTER_HOLD_SECS: u64 = 300;

/// How long to leave the endpoint alone after `err`, in seconds (0: not at all).
pub(crate) fn hold_secs(err: &Error, refusal_holddown_secs: u64) -> u64 {
    match err {
        Error::Refused { .. } | Error::InvalidResponse { .. } => refusal_holddown_secs,
        Error::Unavailable { retry_after, .. } => retry_after
            .unwrap_or(DEFAULT_RETRY_AFTER_SECS)
            .min(MAX_RETRY_AFTER_HOLD_SECS),
        _ => 0,
    }
}

/// Whether a hold-down after `err` is the server's word, shared with other isolates (in KV, or
/// by the coordinator): a refusal, nonsense, or a `Retry-After`. This isolate's own network
/// trouble or timeout is not (others may reach the endpoint fine), nor is a DPoP nonce refusal
/// (nonces are per isolate, and another isolate's may be current).
pub(crate) fn shared(err: &Error) -> bool {
    !matches!(
        err,
        Error::Unavailable {
            retry_after: None,
            ..
        }
    ) && !crate::oauth::dpop::token_endpoint_wants_nonce(err)
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
    fn refusals_hold_for_the_holddown_and_unavailability_for_retry_after_capped() {
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
