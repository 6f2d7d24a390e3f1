//! The egress-proxy Worker's entry point (default feature `proxy`).
//!
//! Takes and returns the raw `web_sys` types: the proxy streams the upstream's response back as
//! it is, without the `worker::Request`/`worker::Response` wrapping and rebuilding.
//!
//! The JavaScript entry (`scripts/entry.mjs`) reads every request before this handler sees it:
//! the one parse of its URL and its caller's pin travel as data, recorded against the request
//! object ([`asked_of`]), never as text Rust would parse again.

use wasm_bindgen::prelude::*;
use worker::{event, Context, Env, Result};

use crate::edge::proxy::routed::Intake;

#[wasm_bindgen(inline_js = r#"
export function asked_of(request) {
  const asked = globalThis[Symbol.for('worker-m2m.asked')]?.get(request);
  return Array.isArray(asked) ? asked : undefined;
}
"#)]
extern "C" {
    /// What the entry recorded for `request`: `[path, pinned]` (`url.pathname + url.search`,
    /// and `props.profile` or `undefined`), or `undefined` for a request it never read.
    fn asked_of(request: &web_sys::Request) -> Option<js_sys::Array>;
}

#[event(fetch)]
async fn fetch(req: web_sys::Request, env: Env, ctx: Context) -> Result<web_sys::Response> {
    let intake = asked_of(&req).as_ref().and_then(Intake::from_js);
    Ok(crate::edge::proxy::full::handle(req, intake, &env, &ctx).await)
}
