//! Structured log lines: one JSON object per token acquisition and per error.
//!
//! Built here, printed by the edge. Fields are chosen so that no line can carry a secret:
//! outcomes, statuses, timings and error texts that were scrubbed of credentials.

use serde_json::{json, Value};

use crate::base::error::Error;

/// Where a token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The isolate's memory.
    Memory,
    /// The shared KV cache.
    Kv,
    /// A request to the token endpoint.
    Network,
    /// The fleet's coordinator (a Durable Object).
    Coordinator,
}

impl Source {
    /// The name used in log lines.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Kv => "kv",
            Self::Network => "network",
            Self::Coordinator => "coordinator",
        }
    }
}

/// A token was obtained from `source`; `status` and `latency_ms` describe the network exchange.
pub(crate) fn token_ok(
    source: Source,
    status: Option<u16>,
    latency_ms: Option<u64>,
    expires_in: u64,
) -> String {
    line(json!({
        "event": "token",
        "outcome": "ok",
        "source": source.as_str(),
        "status": status,
        "latency_ms": latency_ms,
        "expires_in": expires_in,
    }))
}

/// The token endpoint failed and a token past its margin, not yet expired, is used instead.
pub(crate) fn token_stale(expires_in: u64) -> String {
    line(
        json!({ "event": "token", "outcome": "stale", "source": Source::Memory.as_str(), "expires_in": expires_in }),
    )
}

/// A token request failed.
pub(crate) fn token_error(status: Option<u16>, latency_ms: Option<u64>, err: &Error) -> String {
    line(json!({
        "event": "token",
        "outcome": "error",
        "source": Source::Network.as_str(),
        "status": status,
        "latency_ms": latency_ms,
        "error": err.code(),
        "detail": err.to_string(),
    }))
}

/// Something worth knowing about the cache (a failed read or write, a corrupt entry).
pub(crate) fn cache_event(outcome: &str, detail: &str) -> String {
    line(json!({ "event": "cache", "outcome": outcome, "detail": detail }))
}

/// An upstream rejected the token; the request is replayed once with a fresh one.
#[cfg(any(target_arch = "wasm32", test))]
pub(crate) fn replay(status: u16) -> String {
    line(json!({ "event": "replay", "outcome": "retrying", "status": status }))
}

/// A request the proxy answered with an error.
#[cfg(all(feature = "proxy", target_arch = "wasm32"))]
pub(crate) fn proxy_error(status: u16, err: &Error) -> String {
    line(
        json!({ "event": "proxy", "outcome": "error", "status": status, "error": err.code(), "detail": err.to_string() }),
    )
}

/// A setting the Worker has that the crate never reads, and the known one it is closest to
/// (see `crate::settings::unknown`): a name, never its value, which nothing here is given.
#[cfg(any(target_arch = "wasm32", test))]
pub(crate) fn unknown_setting(setting: &str, nearest: Option<&str>) -> String {
    line(json!({
        "event": "config",
        "outcome": "unknown_setting",
        "setting": setting,
        "nearest": nearest,
    }))
}

/// `line` (one of the above) with the profile it is about first, so a Worker with several
/// profiles can tell their lines apart: `{"profile":"billing","event":"token",...}`. Profile
/// names need no escaping (lowercase letters, digits and `-`).
#[cfg(any(target_arch = "wasm32", test))]
pub(crate) fn tagged(line: &str, profile: &str) -> String {
    match line.strip_prefix('{') {
        Some(rest) => format!("{{\"profile\":\"{profile}\",{rest}"),
        None => line.to_owned(),
    }
}

fn line(mut v: Value) -> String {
    if let Value::Object(map) = &mut v {
        map.retain(|_, v| !v.is_null());
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_json_without_nulls() {
        let l = token_ok(Source::Kv, None, None, 30);
        let v: Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["source"], "kv");
        assert!(v.get("status").is_none());
        let e = token_error(
            Some(401),
            Some(3),
            &Error::config("OAUTH_CLIENT_ID", "is not set"),
        );
        let v: Value = serde_json::from_str(&e).unwrap();
        assert_eq!(
            (v["status"].as_u64(), v["error"].as_str()),
            (Some(401), Some("configuration_error"))
        );
    }

    #[test]
    fn an_unknown_setting_line_names_it_and_its_nearest_only_when_there_is_one() {
        assert_eq!(
            unknown_setting("OAUTH_SCOPES", Some("OAUTH_SCOPE")),
            r#"{"event":"config","nearest":"OAUTH_SCOPE","outcome":"unknown_setting","setting":"OAUTH_SCOPES"}"#
        );
        let v: Value = serde_json::from_str(&unknown_setting("PROXY_X\"y", None)).unwrap();
        assert_eq!(
            (v["setting"].as_str(), v.get("nearest")),
            (Some("PROXY_X\"y"), None)
        );
    }

    #[test]
    fn lines_name_their_profile() {
        let line = tagged(&replay(401), "eu-crm");
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            (v["profile"].as_str(), v["status"].as_u64()),
            (Some("eu-crm"), Some(401))
        );
    }
}
