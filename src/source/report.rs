//! A token source's counters: every [`Metric`] it reports and how each call for a token was
//! served, counted since the source was made (for the status view) and handed to a
//! [`MetricSink`] (Workers Analytics Engine at the edge).
//!
//! Calls are counted, not written one by one: the hot path adds one to a counter, and every
//! `M2M_METRICS_INTERVAL_SECS` the counts since the last write go out as one [`Metric::Requests`]
//! per kind that moved, so a busy isolate writes a few data points a minute however many
//! requests it serves.

use std::cell::{Cell, RefCell};

use crate::base::error::Error;
use crate::base::log::Source;
use crate::source::metric::{Metric, MetricSink, Served};

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
            Metric::Eviction { skipped: false, .. } => events.evictions += 1,
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
    use std::rc::Rc;

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
        report.event(
            Metric::Eviction {
                skipped: true,
                window_secs: 2,
            },
            10,
        );
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
