//! When to try the token endpoint again, with no clock and no randomness of its own.
//!
//! Exponential backoff with "equal jitter" (half the delay fixed, half random), so isolates that
//! failed together do not retry together. The whole token acquisition, retries included, lives
//! within one budget (`OAUTH_TIMEOUT_MS`): a caller never waits longer than that for an answer.

/// First retry delay, before jitter.
pub(crate) const BASE_DELAY_MS: u64 = 200;
/// Longest delay between two attempts, before `Retry-After`.
pub(crate) const MAX_DELAY_MS: u64 = 2_000;
/// Longest `Retry-After` honoured by waiting inside one acquisition; a longer one ends the
/// acquisition and becomes a hold-down instead (see [`crate::oauth::holddown`]).
pub(crate) const RETRY_AFTER_WAIT_CAP_SECS: u64 = 5;

/// The delay before attempt number `failures + 1`, or `None` to give up now.
///
/// `failures` counts failed attempts so far (1 after the first), `retry_after` is the server's
/// `Retry-After` in seconds, `remaining_ms` what is left of the budget, `jitter` a number in
/// `[0, 1)`. A delay that would not leave time for another attempt is not worth waiting.
pub(crate) fn retry_delay(
    failures: u32,
    retry_after: Option<u64>,
    remaining_ms: u64,
    jitter: f64,
) -> Option<u64> {
    if let Some(secs) = retry_after {
        if secs > RETRY_AFTER_WAIT_CAP_SECS {
            return None;
        }
    }
    let exp = BASE_DELAY_MS
        .saturating_mul(1u64 << failures.saturating_sub(1).min(20))
        .min(MAX_DELAY_MS);
    let jitter = jitter.clamp(0.0, 1.0);
    let mut delay = exp / 2 + ((exp / 2) as f64 * jitter) as u64;
    if let Some(secs) = retry_after {
        delay = delay.max(secs * 1000);
    }
    // Leave at least a short attempt's worth of budget after waiting.
    (delay + MIN_ATTEMPT_MS <= remaining_ms).then_some(delay)
}

/// Shortest time worth giving an attempt.
pub(crate) const MIN_ATTEMPT_MS: u64 = 100;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_without_jitter_doubles_up_to_the_cap() {
        let lo: Vec<_> = (1..=6)
            .map(|n| retry_delay(n, None, 60_000, 0.0).unwrap())
            .collect();
        let hi: Vec<_> = (1..=6)
            .map(|n| retry_delay(n, None, 60_000, 0.999_999).unwrap())
            .collect();
        assert_eq!(lo, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(hi, [199, 399, 799, 1599, 1999, 1999]);
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        assert_eq!(retry_delay(1, Some(1), 10_000, 0.5), Some(1000));
        assert_eq!(retry_delay(1, Some(5), 10_000, 0.5), Some(5000));
        assert_eq!(
            retry_delay(1, Some(6), 60_000, 0.5),
            None,
            "longer waits become a hold-down"
        );
        assert_eq!(retry_delay(1, Some(0), 10_000, 0.0), Some(100));
    }

    #[test]
    fn never_past_the_budget() {
        assert_eq!(retry_delay(1, None, 150, 0.0), None);
        assert_eq!(retry_delay(1, None, 200, 0.0), Some(100));
        assert_eq!(retry_delay(1, Some(1), 1_050, 0.0), None);
        assert_eq!(
            retry_delay(30, None, 1_000_000, 0.0),
            Some(1000),
            "no overflow on many failures"
        );
    }
}
