//! The egress-proxy Worker's entry point (default feature `proxy`).
//!
//! Takes and returns the raw `web_sys` types: the proxy streams the upstream's response back as
//! it is, without the `worker::Request`/`worker::Response` wrapping and rebuilding.

use worker::{event, Context, Env, Result};

#[event(fetch)]
async fn fetch(req: web_sys::Request, env: Env, ctx: Context) -> Result<web_sys::Response> {
    Ok(crate::edge::proxy::full::handle(req, &env, &ctx).await)
}
