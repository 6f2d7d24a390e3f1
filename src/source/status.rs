//! A source's status view for operators: the token's timings and where it came from, the
//! hold-down and its cause, the last error and the counts (see [`crate::source::report`]).
//! Built from what the source holds, never from a token's value or a credential: every field
//! is a time, a count, a name or an error text that was scrubbed like every error.

use serde_json::{json, Value};

use crate::oauth::token::Token;
use crate::source::report::Report;
use crate::source::state::Hold;

/// What the status view is made of, at `now` (Unix seconds).
pub(crate) struct Parts<'a> {
    pub(crate) now: u64,
    pub(crate) token: Option<&'a Token>,
    pub(crate) hold: Option<&'a Hold>,
    /// Failed flights in a row (the outage schedule's step; 0: none).
    pub(crate) failed_flights: u32,
    pub(crate) in_flight: bool,
    pub(crate) report: &'a Report,
}

/// The status view as JSON.
pub(crate) fn status(p: Parts<'_>) -> Value {
    let now = p.now;
    let token = p.token.map(|t| {
        json!({
            "scheme": t.scheme().as_str(),
            "issued_at": t.issued_at(),
            "expires_at": t.expires_at(),
            "expires_in": t.expires_at().saturating_sub(now),
            "fresh": t.is_fresh(now),
            "refresh_at": t.refresh_at(),
            "refresh_due": t.refresh_due(now),
            "obtained_from": t.obtained().map(|s| s.as_str()),
        })
    });
    let hold = p.hold.map(|h| {
        json!({
            "until": h.until,
            "remaining_secs": h.until.saturating_sub(now),
            "code": h.error.code(),
            "cause": h.error.to_string(),
        })
    });
    let last_error = p
        .report
        .last_error()
        .map(|e| json!({ "at": e.at, "code": e.code, "status": e.status, "detail": e.detail }));
    let events = p.report.events();
    let served: serde_json::Map<String, Value> = p
        .report
        .served_counts()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.into()))
        .collect();
    json!({
        "now": now,
        "token": token,
        "hold_down": hold,
        "failed_flights": p.failed_flights,
        "in_flight": p.in_flight,
        "last_error": last_error,
        "last_token_request": p.report.last_token_request(),
        "requests": served,
        "events": {
            "token_requests": events.token_requests,
            "failures": events.failures,
            "fallbacks": events.fallbacks,
            "evictions": events.evictions,
            "replays": events.replays,
        },
    })
}
