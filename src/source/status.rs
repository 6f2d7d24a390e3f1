//! A source's status view for operators: the token's timings and where it came from, the
//! hold-down and its cause, the eviction window (see [`crate::source::evictions`]), the last
//! error and the counts (see [`crate::source::report`]).
//! Built from what the source holds, never from a token's value or a credential: every field
//! is a time, a count, a name or an error text that was scrubbed like every error.
//!
//! Written with `derive(Serialize)` rather than `serde_json::Value` maps: the same JSON for a
//! fraction of the wasm (see `keys/jwt.rs`).

use serde::Serialize;

use crate::oauth::token::Token;
use crate::source::evictions::{EvictionView, Evictions};
use crate::source::report::{Events, LastError, Report, Requests};
use crate::source::state::Hold;

/// What the status view is made of, at `now` (Unix seconds).
pub(crate) struct Parts<'a> {
    pub(crate) now: u64,
    pub(crate) token: Option<&'a Token>,
    pub(crate) hold: Option<&'a Hold>,
    /// Failed flights in a row (the outage schedule's step; 0: none).
    pub(crate) failed_flights: u32,
    pub(super) evictions: &'a Evictions,
    pub(crate) in_flight: bool,
    pub(crate) report: &'a Report,
}

#[derive(Serialize)]
struct View<'a> {
    now: u64,
    token: Option<TokenView>,
    hold_down: Option<HoldView>,
    failed_flights: u32,
    eviction: EvictionView,
    in_flight: bool,
    last_error: Option<LastError>,
    last_token_request: Option<u64>,
    requests: Requests,
    events: Events,
    #[serde(skip)]
    _parts: std::marker::PhantomData<&'a ()>,
}

#[derive(Serialize)]
struct TokenView {
    scheme: &'static str,
    issued_at: u64,
    expires_at: u64,
    expires_in: u64,
    fresh: bool,
    refresh_at: u64,
    refresh_due: bool,
    obtained_from: Option<&'static str>,
}

#[derive(Serialize)]
struct HoldView {
    until: u64,
    remaining_secs: u64,
    code: String,
    cause: String,
}

/// The status view as a JSON object's text.
pub(crate) fn status(p: Parts<'_>) -> String {
    let now = p.now;
    let view = View {
        now,
        token: p.token.map(|t| TokenView {
            scheme: t.scheme().as_str(),
            issued_at: t.issued_at(),
            expires_at: t.expires_at(),
            expires_in: t.expires_at().saturating_sub(now),
            fresh: t.is_fresh(now),
            refresh_at: t.refresh_at(),
            refresh_due: t.refresh_due(now),
            obtained_from: t.obtained().map(|s| s.as_str()),
        }),
        hold_down: p.hold.map(|h| HoldView {
            until: h.until,
            remaining_secs: h.until.saturating_sub(now),
            code: h.error.code().to_owned(),
            cause: h.error.to_string(),
        }),
        failed_flights: p.failed_flights,
        eviction: p.evictions.view(now),
        in_flight: p.in_flight,
        last_error: p.report.last_error(),
        last_token_request: p.report.last_token_request(),
        requests: p.report.requests(),
        events: p.report.events(),
        _parts: std::marker::PhantomData,
    };
    serde_json::to_string(&view).expect("numbers and strings serialise")
}

/// `object` (a JSON object's text) with `fields` (`"name":value` pairs, comma-separated) in
/// front: how the edge adds the profile, the coordinator's view or the fleet's marks.
pub(crate) fn with_fields(fields: &str, object: &str) -> String {
    match object.strip_prefix('{') {
        Some("}") => format!("{{{fields}}}"),
        Some(rest) => format!("{{{fields},{rest}"),
        None => object.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_go_in_front_of_an_object() {
        assert_eq!(with_fields(r#""a":1"#, r#"{"b":2}"#), r#"{"a":1,"b":2}"#);
        assert_eq!(with_fields(r#""a":1"#, "{}"), r#"{"a":1}"#);
    }
}
