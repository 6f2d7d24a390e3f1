//! What a token source tells its operators: every event worth counting (a token obtained, a
//! failed token request, a fallback from the coordinator, an eviction, a replay) and how each
//! call was served, counted since the source was made and handed to a [`MetricSink`] (Workers
//! Analytics Engine at the edge).
//!
//! Calls are counted, not written one by one: the hot path adds one to a counter, and every
//! `M2M_METRICS_INTERVAL_SECS` the counts since the last write go out as one [`Metric::Requests`]
//! per kind that moved, so a busy isolate writes a few data points a minute however many
//! requests it serves. No metric carries a token, a credential or a client id.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::base::error::Error;
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
    const ALL: [Self; 5] = [
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

    fn index(self) -> usize {
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
    Eviction { skipped: bool },
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

/// A metric as one Analytics Engine data point (the README's "Operating it" gives the
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
    /// `double4`: seconds a token has left, or a failure's hold-down.
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
            Self::Eviction { skipped } => {
                p.kind = "eviction";
                p.detail = if *skipped { "skipped" } else { "evicted" };
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

/// The last failed token request, for the status view.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct LastError {
    /// Unix seconds.
    pub(crate) at: u64,
    pub(crate) code: String,
    pub(crate) status: Option<u16>,
    /// The error's text (scrubbed of what was sent, like every error).
    pub(crate) detail: String,
}

/// Events counted since the source was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Events {
    /// Tokens obtained from the token endpoint (the ones an identity provider bills).
    pub(crate) token_requests: u64,
    pub(crate) failures: u64,
    pub(crate) fallbacks: u64,
    pub(crate) evictions: u64,
    pub(crate) replays: u64,
}

/// Calls served, by how (see [`Served`]).
#[derive(serde::Serialize)]
#[cfg(any(target_arch = "wasm32", test))]
pub(crate) struct Requests {
    pub(crate) memory: u64,
    pub(crate) kv: u64,
    pub(crate) coordinator: u64,
    pub(crate) network: u64,
    pub(crate) failed: u64,
}

/// A source's counters and its sink.
pub(crate) struct Report {
    sink: Option<MetricSink>,
    /// Seconds between [`Metric::Requests`] writes; 0: one per call.
    interval_secs: u64,
    served: [Cell<u64>; 5],
    /// `served` as of the last [`Metric::Requests`] written.
    written: [Cell<u64>; 5],
    /// Unix seconds of the next [`Metric::Requests`] write (0: not scheduled yet).
    next_write: Cell<u64>,
    events: Cell<Events>,
    last_error: RefCell<Option<LastError>>,
    /// Unix seconds of the last token obtained from the token endpoint.
    last_token_request: Cell<Option<u64>>,
}

impl Report {
    /// Counters reporting to `sink` (none: counted for the status view only), writing call
    /// counts every `interval_secs`.
    pub(crate) fn new(sink: Option<MetricSink>, interval_secs: u64) -> Self {
        Self {
            sink,
            interval_secs,
            served: Default::default(),
            written: Default::default(),
            next_write: Cell::new(0),
            events: Cell::default(),
            last_error: RefCell::new(None),
            last_token_request: Cell::new(None),
        }
    }

    /// A call at `now` was served as `served`. One addition on the hot path, and with a sink,
    /// one comparison; the counts go out once the interval is over.
    pub(crate) fn served(&self, served: Served, now: u64) {
        let cell = &self.served[served.index()];
        cell.set(cell.get() + 1);
        if self.sink.is_none() {
            return;
        }
        let next = self.next_write.get();
        if next == 0 && self.interval_secs > 0 {
            self.next_write.set(now + self.interval_secs);
        } else if now >= next {
            self.write_counts(now);
        }
    }

    /// Writes the counts that moved since the last write, and schedules the next.
    pub(crate) fn write_counts(&self, now: u64) {
        self.next_write.set(now + self.interval_secs);
        let Some(sink) = &self.sink else { return };
        for served in Served::ALL {
            let (total, written) = (&self.served[served.index()], &self.written[served.index()]);
            let count = total.get() - written.get();
            if count > 0 {
                written.set(total.get());
                sink(&Metric::Requests { served, count });
            }
        }
    }

    /// Counts `metric`, which happened at `now`, and hands it to the sink.
    pub(crate) fn event(&self, metric: Metric, now: u64) {
        let mut events = self.events.get();
        match &metric {
            Metric::Token {
                source: Source::Network,
                ..
            } => {
                events.token_requests += 1;
                self.last_token_request.set(Some(now));
            }
            Metric::Failure { .. } => events.failures += 1,
            Metric::Fallback(_) => events.fallbacks += 1,
            Metric::Eviction { skipped: false } => events.evictions += 1,
            Metric::Replay { .. } => events.replays += 1,
            _ => {}
        }
        self.events.set(events);
        if let Some(sink) = &self.sink {
            sink(&metric);
        }
    }

    /// A token request failed at `now` with `err` (after `latency_ms`, HTTP `status`), holding
    /// the endpoint down for `held_secs`.
    pub(crate) fn failure(
        &self,
        err: &Error,
        status: Option<u16>,
        latency_ms: u64,
        held_secs: u64,
        now: u64,
    ) {
        *self.last_error.borrow_mut() = Some(LastError {
            at: now,
            code: err.code().to_owned(),
            status,
            detail: err.to_string(),
        });
        self.event(
            Metric::Failure {
                code: err.code().to_owned(),
                status,
                latency_ms,
                held_secs,
            },
            now,
        );
    }

    /// Calls served, by how, since the source was made.
    #[cfg(any(target_arch = "wasm32", test))]
    pub(crate) fn requests(&self) -> Requests {
        let n = |s: Served| self.served[s.index()].get();
        Requests {
            memory: n(Served::Memory),
            kv: n(Served::Kv),
            coordinator: n(Served::Coordinator),
            network: n(Served::Network),
            failed: n(Served::Failed),
        }
    }

    /// Events counted since the source was made.
    #[cfg(any(target_arch = "wasm32", test))]
    pub(crate) fn events(&self) -> Events {
        self.events.get()
    }

    /// The last failed token request, if any.
    #[cfg(any(target_arch = "wasm32", test))]
    pub(crate) fn last_error(&self) -> Option<LastError> {
        self.last_error.borrow().clone()
    }

    /// Unix seconds of the last token obtained from the token endpoint, if any.
    #[cfg(any(target_arch = "wasm32", test))]
    pub(crate) fn last_token_request(&self) -> Option<u64> {
        self.last_token_request.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recording(interval: u64) -> (Report, Rc<RefCell<Vec<Metric>>>) {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let sink = seen.clone();
        let report = Report::new(
            Some(Rc::new(move |m: &Metric| sink.borrow_mut().push(m.clone()))),
            interval,
        );
        (report, seen)
    }

    #[test]
    fn calls_are_written_as_counts_once_per_interval() {
        let (report, seen) = recording(60);
        for t in 0..5 {
            report.served(Served::Memory, 1_000 + t);
        }
        report.served(Served::Network, 1_010);
        assert!(seen.borrow().is_empty(), "nothing before the interval ends");
        report.served(Served::Memory, 1_060);
        assert_eq!(
            *seen.borrow(),
            vec![
                Metric::Requests {
                    served: Served::Memory,
                    count: 6
                },
                Metric::Requests {
                    served: Served::Network,
                    count: 1
                },
            ]
        );
        // The next interval counts only what came after.
        report.served(Served::Failed, 1_100);
        report.served(Served::Memory, 1_120);
        assert_eq!(
            seen.borrow()[2..],
            [
                Metric::Requests {
                    served: Served::Memory,
                    count: 1
                },
                Metric::Requests {
                    served: Served::Failed,
                    count: 1
                },
            ]
        );
        let r = report.requests();
        assert_eq!(
            (r.memory, r.kv, r.coordinator, r.network, r.failed),
            (7, 0, 0, 1, 1)
        );
    }

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
            (Metric::Eviction { skipped: true }, "eviction", "skipped"),
            (Metric::Replay { status: 401 }, "replay", "replayed"),
            (Metric::Stale, "stale", "memory"),
        ] {
            assert_eq!((m.point().kind, m.point().detail), (kind, detail));
        }
    }

    #[test]
    fn an_interval_of_zero_writes_every_call() {
        let (report, seen) = recording(0);
        report.served(Served::Kv, 5);
        report.served(Served::Kv, 5);
        assert_eq!(seen.borrow().len(), 2);
    }

    #[test]
    fn without_a_sink_calls_and_events_are_still_counted() {
        let report = Report::new(None, 60);
        report.served(Served::Coordinator, 1);
        report.event(
            Metric::Token {
                source: Source::Network,
                latency_ms: 12,
                expires_in: 300,
            },
            7,
        );
        report.failure(
            &Error::config("OAUTH_CLIENT_ID", "is not set"),
            None,
            0,
            120,
            9,
        );
        report.event(Metric::Eviction { skipped: true }, 10);
        let events = report.events();
        assert_eq!(
            (events.token_requests, events.failures, events.evictions),
            (1, 1, 0)
        );
        assert_eq!(report.last_token_request(), Some(7));
        let last = report.last_error().unwrap();
        assert_eq!((last.at, last.code.as_str()), (9, "configuration_error"));
    }
}
