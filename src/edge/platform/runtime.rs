//! The core's [`Runtime`] on Workers: flights as JS promises, `setTimeout`, `Math.random`.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;

use futures_util::future::LocalBoxFuture;
use js_sys::Promise;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::source::runtime::Runtime;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(callback: &js_sys::Function, ms: f64) -> JsValue;
}

/// Resolves after `ms` milliseconds (`setTimeout`, available in workerd and Node).
pub(crate) fn sleep(ms: u64) -> JsFuture {
    let promise = Promise::new(&mut |resolve, _reject| {
        set_timeout(&resolve, ms as f64);
    });
    JsFuture::from(promise)
}

/// A flight on Workers: the promise that runs it (for `ctx.waitUntil`), and the resolvers of
/// the callers waiting for it.
#[derive(Clone)]
pub(crate) struct FlightHandle {
    /// Settles when the flight is over, its writes included.
    pub promise: Promise,
    waiters: Rc<Waiters>,
}

#[derive(Default)]
struct Waiters {
    done: Cell<bool>,
    resolvers: RefCell<Vec<js_sys::Function>>,
}

impl Waiters {
    fn finish(&self) {
        self.done.set(true);
        for resolve in self.resolvers.borrow_mut().drain(..) {
            let _ = resolve.call0(&JsValue::UNDEFINED);
        }
    }
}

/// Runs flights so that every caller is woken in its own request's context.
///
/// workerd ties promises and timers to the request that created them: a continuation of a
/// promise created by request A is cancelled once A has answered. So a caller never awaits the
/// flight's own promise; it creates a promise of its own, in its own context, which the flight
/// resolves when it ends (workerd delivers that resolution into the caller's context).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct EdgeRuntime;

impl Runtime for EdgeRuntime {
    type Handle = FlightHandle;

    fn start(&self, work: LocalBoxFuture<'static, LocalBoxFuture<'static, ()>>) -> FlightHandle {
        let waiters = Rc::new(Waiters::default());
        let w = waiters.clone();
        // Waiters go on as soon as the answer is there; the promise (what `waitUntil` keeps
        // alive) settles only once the answer is written to KV too.
        let promise = wasm_bindgen_futures::future_to_promise(async move {
            let persist = work.await;
            w.finish();
            persist.await;
            Ok(JsValue::UNDEFINED)
        });
        FlightHandle { promise, waiters }
    }

    fn wait(&self, handle: &FlightHandle) -> LocalBoxFuture<'static, ()> {
        if handle.waiters.done.get() {
            return Box::pin(std::future::ready(()));
        }
        let waiters = handle.waiters.clone();
        let own =
            Promise::new(&mut |resolve, _reject| waiters.resolvers.borrow_mut().push(resolve));
        let fut = JsFuture::from(own);
        Box::pin(async move {
            let _ = fut.await;
        })
    }

    fn sleep(&self, ms: u64) -> impl Future<Output = ()> {
        let fut = sleep(ms);
        async move {
            let _ = fut.await;
        }
    }

    fn random(&self) -> f64 {
        js_sys::Math::random()
    }

    fn now_ms(&self) -> u64 {
        // workerd moves `Date.now()` on at I/O, which is what a flight's steps are.
        js_sys::Date::now() as u64
    }
}
