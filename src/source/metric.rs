//! What a token source reports: the events worth counting (a token obtained, a failed token
//! request, a fallback from the coordinator, an eviction, a replay, a stale token), how each
//! call for a token was served, and each as one Workers Analytics Engine data point (the
//! docs/operating.md's "Metrics" gives the layout). Counting them is [`crate::source::report`]'s job.
//! No metric carries a token, a credential or a client id.

use std::rc::Rc;

use crate::base::log::Source;

/// Receives each metric a source reports (see [`Metric`]).
pub(crate) type MetricSink = Rc<dyn Fn(&Metric)>;

/// How a call for a token was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Served {
    /// A fresh token was in the isolate's memory.
    Memory,
    /// The call waited for KV.
    Kv,
    /// The call waited for the coordinator.
    Coordinator,
    /// The call waited for a token request.
    Network,
    /// The call got no token (an error, or a hold-down's answer).
    Failed,
}

impl Served {
    pub(super) const ALL: [Self; 5] = [
        Self::Memory,
        Self::Kv,
        Self::Coordinator,
        Self::Network,
        Self::Failed,
    ];

    /// How a call that waited was served: by where its token came from.
    pub(crate) fn by(source: Option<Source>) -> Self {
        match source {
            Some(Source::Kv) => Self::Kv,
            Some(Source::Coordinator) => Self::Coordinator,
            Some(Source::Network) => Self::Network,
            Some(Source::Memory) | None => Self::Memory,
        }
    }

    /// The name in metrics and in the status view.
    #[cfg(any(target_arch = "wasm32", test))]
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Kv => "kv",
            Self::Coordinator => "coordinator",
            Self::Network => "network",
            Self::Failed => "failed",
        }
    }

    pub(super) fn index(self) -> usize {
        self as usize
    }
}

/// Why an isolate went to the token endpoint itself after asking the coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fallback {
    /// The coordinator failed, timed out or could not be reached.
    Unreachable,
    /// It answered a token this isolate cannot use (expired, rejected, another key).
    UnusableAnswer,
}

impl Fallback {
    #[cfg(any(target_arch = "wasm32", test))]
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Unreachable => "unreachable",
            Self::UnusableAnswer => "unusable_answer",
        }
    }
}

/// One thing worth counting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Metric {
    /// A token was obtained from `source` after `latency_ms`, with `expires_in` seconds left.
    Token {
        source: Source,
        latency_ms: u64,
        expires_in: u64,
    },
    /// A token request failed with `code` (RFC 6749 §5.2, or ours); `held_secs` is the
    /// hold-down it put in place (0: none).
    Failure {
        code: String,
        status: Option<u16>,
        latency_ms: u64,
        held_secs: u64,
    },
    /// The coordinator was asked and the isolate went on to the token endpoint.
    Fallback(Fallback),
    /// An upstream rejected a token; `skipped`: too soon after the last eviction, kept.
    /// `window_secs`: the eviction window after it (how long after the last eviction the next
    /// may come; see [`crate::source::evictions`]).
    Eviction { skipped: bool, window_secs: u64 },
    /// A request was sent again with a new token after the upstream answered `status`.
    #[cfg_attr(not(any(target_arch = "wasm32", test)), allow(dead_code))]
    Replay { status: u16 },
    /// The endpoint failed and a token past its margin (not expired) was used.
    Stale,
    /// `count` calls were served as `served` since the last such metric.
    Requests { served: Served, count: u64 },
}

/// Where a metric was reported: the `place` blob of its data point.
#[cfg(target_arch = "wasm32")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// A Worker isolate.
    Isolate,
    /// The fleet's coordinator (its `requests` count asks).
    Coordinator,
}

#[cfg(target_arch = "wasm32")]
impl Place {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Isolate => "isolate",
            Self::Coordinator => "coordinator",
        }
    }
}

/// A metric as one Analytics Engine data point (docs/operating.md's "Metrics" gives the
/// layout): four blobs, four doubles, the profile as the index.
#[derive(Debug, Clone, PartialEq)]
#[cfg(any(target_arch = "wasm32", test))]
pub(crate) struct Point<'a> {
    /// `blob1`: `token`, `failure`, `fallback`, `eviction`, `replay`, `stale` or `requests`.
    pub(crate) kind: &'static str,
    /// `blob2`: where a token came from, the error code, why, or how requests were served.
    pub(crate) detail: &'a str,
    /// `blob4`: `held` or `not_held` for a failure, else empty.
    pub(crate) held: &'static str,
    /// `double1`: how many (1 for an event).
    pub(crate) count: f64,
    /// `double2`: milliseconds (a token, a failure).
    pub(crate) latency_ms: f64,
    /// `double3`: the HTTP status (a failure, a replay), else 0.
    pub(crate) status: f64,
    /// `double4`: seconds a token has left, a failure's hold-down, or an eviction's window.
    pub(crate) secs: f64,
}

#[cfg(any(target_arch = "wasm32", test))]
impl Metric {
    /// This metric as a data point.
    pub(crate) fn point(&self) -> Point<'_> {
        let mut p = Point {
            kind: "",
            detail: "",
            held: "",
            count: 1.0,
            latency_ms: 0.0,
            status: 0.0,
            secs: 0.0,
        };
        match self {
            Self::Token {
                source,
                latency_ms,
                expires_in,
            } => {
                (p.kind, p.detail) = ("token", source.as_str());
                (p.latency_ms, p.secs) = (*latency_ms as f64, *expires_in as f64);
            }
            Self::Failure {
                code,
                status,
                latency_ms,
                held_secs,
            } => {
                (p.kind, p.detail) = ("failure", code.as_str());
                p.held = if *held_secs > 0 { "held" } else { "not_held" };
                p.latency_ms = *latency_ms as f64;
                p.status = status.map_or(0.0, f64::from);
                p.secs = *held_secs as f64;
            }
            Self::Fallback(why) => (p.kind, p.detail) = ("fallback", why.as_str()),
            Self::Eviction {
                skipped,
                window_secs,
            } => {
                p.kind = "eviction";
                p.detail = if *skipped { "skipped" } else { "evicted" };
                p.secs = *window_secs as f64;
            }
            Self::Replay { status } => {
                (p.kind, p.detail) = ("replay", "replayed");
                p.status = f64::from(*status);
            }
            Self::Stale => (p.kind, p.detail) = ("stale", "memory"),
            Self::Requests { served, count } => {
                (p.kind, p.detail) = ("requests", served.as_str());
                p.count = *count as f64;
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_map_to_the_documented_data_points() {
        let failure = Metric::Failure {
            code: "invalid_client".into(),
            status: Some(401),
            latency_ms: 31,
            held_secs: 300,
        };
        let p = failure.point();
        assert_eq!(
            (
                p.kind,
                p.detail,
                p.held,
                p.count,
                p.latency_ms,
                p.status,
                p.secs
            ),
            ("failure", "invalid_client", "held", 1.0, 31.0, 401.0, 300.0)
        );
        let token = Metric::Token {
            source: Source::Coordinator,
            latency_ms: 9,
            expires_in: 3500,
        };
        let p = token.point();
        assert_eq!(
            (p.kind, p.detail, p.held, p.secs),
            ("token", "coordinator", "", 3500.0)
        );
        for (skipped, window_secs, detail) in [(false, 4, "evicted"), (true, 3600, "skipped")] {
            let eviction = Metric::Eviction {
                skipped,
                window_secs,
            };
            let p = eviction.point();
            assert_eq!(
                (p.kind, p.detail, p.count, p.status, p.secs),
                ("eviction", detail, 1.0, 0.0, window_secs as f64)
            );
        }
        let p = Metric::Requests {
            served: Served::Failed,
            count: 17,
        };
        assert_eq!(
            (p.point().kind, p.point().detail, p.point().count),
            ("requests", "failed", 17.0)
        );
        for (m, kind, detail) in [
            (
                Metric::Fallback(Fallback::Unreachable),
                "fallback",
                "unreachable",
            ),
            (Metric::Replay { status: 401 }, "replay", "replayed"),
            (Metric::Stale, "stale", "memory"),
        ] {
            assert_eq!((m.point().kind, m.point().detail), (kind, detail));
        }
    }
}
