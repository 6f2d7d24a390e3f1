//! What the platform provides the core besides HTTP and storage, and a flight's view of time.

use std::future::Future;
use std::rc::Rc;

use futures_util::future::LocalBoxFuture;

/// Receives one JSON log line at a time.
pub type LogSink = Rc<dyn Fn(&str)>;

/// What the platform provides besides HTTP and storage: running a flight, waiting, randomness.
///
/// A flight must not belong to any one caller: in workerd, a task woken from another request's
/// context is cancelled when that request ends, so the edge runs flights as JS promises that each
/// caller awaits from its own context.
pub trait Runtime {
    /// What waiters hold to await a flight.
    type Handle: Clone;
    /// Starts `work`, which runs to completion whichever caller waits. It has two phases: the
    /// first settles the flight's answer, and waiters are released as soon as it ends; the
    /// second (the future the first returns) writes the answer to the store, and whatever keeps
    /// the flight alive (`ctx.waitUntil`) must cover it too. It must not run `work` before
    /// returning: the flight is registered only after `start` returns.
    fn start(&self, work: LocalBoxFuture<'static, LocalBoxFuture<'static, ()>>) -> Self::Handle;
    /// Resolves when the first phase of the flight behind `handle` is over.
    fn wait(&self, handle: &Self::Handle) -> LocalBoxFuture<'static, ()>;
    /// Resolves after `ms` milliseconds.
    fn sleep(&self, ms: u64) -> impl Future<Output = ()>;
    /// A random number in `[0, 1)`, for backoff jitter.
    fn random(&self) -> f64;
    /// Milliseconds on a clock that never goes back: how long a flight's steps took, read only
    /// off the hot path (the hot path takes `now` from its caller).
    fn now_ms(&self) -> u64;
}

/// A flight's view of time: the caller's `now` (Unix seconds) moved on by what the runtime's
/// clock says has passed since, rounded up, so a deadline is never judged early.
pub(super) struct Clock<'a, R: Runtime> {
    runtime: &'a R,
    /// The caller's `now` when the flight started (Unix seconds).
    pub(crate) start_secs: u64,
    start_ms: u64,
}

impl<'a, R: Runtime> Clock<'a, R> {
    pub(crate) fn new(runtime: &'a R, now: u64) -> Self {
        Self {
            runtime,
            start_secs: now,
            start_ms: runtime.now_ms(),
        }
    }

    /// Milliseconds since the flight started.
    pub(crate) fn elapsed_ms(&self) -> u64 {
        self.runtime.now_ms().saturating_sub(self.start_ms)
    }

    /// Unix seconds now, at the latest.
    pub(crate) fn now(&self) -> u64 {
        self.start_secs + self.elapsed_ms().div_ceil(1000)
    }
}
