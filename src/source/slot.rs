//! A token source's one flight slot: the flight its callers join, which flight is current, and
//! when a flight is presumed dead (its waiters' bound has surely passed: the request that
//! started it was cancelled with the I/O it owned) and replaced instead of joined.

use std::cell::RefCell;
use std::rc::Rc;

use crate::base::error::Result;
use crate::oauth::token::Token;

/// Where a flight leaves its answer for its waiters.
pub(super) type Outcome = Rc<RefCell<Option<Result<Token>>>>;

/// A flight as its waiters hold it.
#[derive(Clone)]
pub(super) struct Joined<H> {
    /// Which flight: a newer one replaces it only once it is presumed dead.
    pub(super) generation: u64,
    /// What waiters await (see `Runtime::wait`).
    pub(super) handle: H,
    pub(super) outcome: Outcome,
}

/// The running flight.
struct Running<H> {
    joined: Joined<H>,
    /// Unix seconds at which it started.
    started: u64,
    /// `Runtime::now_ms` at which it started.
    started_ms: u64,
}

/// The running flight, if any, and how many have started.
pub(super) struct Slot<H> {
    running: Option<Running<H>>,
    generation: u64,
}

impl<H: Clone> Slot<H> {
    pub(super) const fn new() -> Self {
        Self {
            running: None,
            generation: 0,
        }
    }

    /// Whether a flight is running.
    pub(super) fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// The running flight to join at `now` (Unix seconds) and `now_ms` (the runtime's clock),
    /// unless it is presumed dead for waiters bound to `bound_ms`: by the clock, or by whole
    /// seconds, as `now` may lag the real time counted against it. A dead one is forgotten.
    pub(super) fn joinable(&mut self, now: u64, now_ms: u64, bound_ms: u64) -> Option<Joined<H>> {
        let dead = |f: &Running<H>| {
            now_ms.saturating_sub(f.started_ms) >= bound_ms
                || now.saturating_sub(f.started) > bound_ms.div_ceil(1000)
        };
        if self.running.as_ref().is_some_and(dead) {
            self.running = None;
        }
        self.running.as_ref().map(|f| f.joined.clone())
    }

    /// The generation of the next flight to start.
    pub(super) fn next_generation(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    /// `joined` started at `now` and `now_ms`: the flight callers join from now on.
    pub(super) fn occupy(&mut self, joined: Joined<H>, now: u64, now_ms: u64) {
        self.running = Some(Running {
            joined,
            started: now,
            started_ms: now_ms,
        });
    }

    /// True unless a newer flight has replaced flight `generation` (presumed dead, it may yet
    /// finish).
    pub(super) fn is_current(&self, generation: u64) -> bool {
        self.running
            .as_ref()
            .is_none_or(|f| f.joined.generation == generation)
    }

    /// Clears the slot if it still holds flight `generation`; the next miss starts anew.
    pub(super) fn end(&mut self, generation: u64) {
        if !self.is_current(generation) {
            return;
        }
        self.running = None;
    }
}
