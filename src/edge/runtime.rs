//! The core's [`Runtime`] on Workers: flights as JS promises, `setTimeout`, `Math.random`.

use std::future::Future;

use futures_util::future::LocalBoxFuture;
use js_sys::Promise;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::source::Runtime;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(callback: &js_sys::Function, ms: f64) -> JsValue;
}

/// Resolves after `ms` milliseconds (`setTimeout`, available in workerd and Node).
pub fn sleep(ms: u64) -> JsFuture {
    let promise = Promise::new(&mut |resolve, _reject| {
        set_timeout(&resolve, ms as f64);
    });
    JsFuture::from(promise)
}

/// Flights as JS promises: each caller awaits the promise from its own request context, which
/// workerd allows, instead of being woken from the context of the request that started it
/// (workerd cancels such wake-ups once that request has answered).
#[derive(Debug, Default, Clone, Copy)]
pub struct EdgeRuntime;

impl Runtime for EdgeRuntime {
    type Handle = Promise;

    fn start(&self, work: LocalBoxFuture<'static, ()>) -> Promise {
        wasm_bindgen_futures::future_to_promise(async move {
            work.await;
            Ok(JsValue::UNDEFINED)
        })
    }

    fn wait(&self, handle: &Promise) -> LocalBoxFuture<'static, ()> {
        let fut = JsFuture::from(handle.clone());
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
}
