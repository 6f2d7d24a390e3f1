//! The egress-proxy Worker's entry point (default feature `proxy`).

use worker::{event, Context, Env, Request, Response, Result};

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    Ok(crate::edge::proxy::handle(req, &env, &ctx).await)
}
