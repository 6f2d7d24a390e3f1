//! What a flight's state machines take with each event besides the event: the time it
//! happened, and the source's settings and state for the length of one synchronous step.

use crate::config::client::Config;
use crate::source::report::Report;
use crate::source::runtime::LogSink;
use crate::source::state::State;

/// When an event happened, by the flight's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Moment {
    /// Unix seconds, at the latest (never early for a deadline).
    pub(super) secs: u64,
    /// Milliseconds since the flight started.
    pub(super) ms: u64,
}

/// What a flight works with while it takes one event: the source's settings and state, and
/// the few inputs that are not events.
pub(super) struct Context<'a> {
    pub(super) config: &'a Config,
    pub(super) state: &'a mut State,
    pub(super) log: &'a LogSink,
    /// Counts what the flight reports (see [`crate::source::report`]).
    pub(super) report: &'a Report,
    /// A number in `[0, 1)`, drawn only when backoff jitter needs one.
    pub(super) random: &'a dyn Fn() -> f64,
    /// Whether this flight is still the source's current one: a flight presumed dead and
    /// replaced answers its own waiters but leaves memory and KV to the newer one.
    pub(super) current: bool,
    /// Whether the source has a coordinator to ask.
    pub(super) coordinated: bool,
}
