//! The proxy's hot path without a Rust future: when the token a request needs is in memory,
//! one synchronous call builds the signed upstream request and the JavaScript entry
//! (`scripts/entry.mjs`) sends it with `fetch` itself.
//!
//! Only a request that needs nothing asynchronous takes it: no body, no `Content-Length` or
//! `Transfer-Encoding`, a forwarded method, no `PROXY_SHARED_SECRET` (its check hashes with
//! WebCrypto), and a fresh Bearer token that is not due for its background refresh. Everything
//! else (a token to fetch or refresh, DPoP, bodies, errors) takes the full path in
//! [`super::proxy`], unchanged. The decisions are the full path's own (routing, the origin
//! lock, the header policy): this module only skips the awaiting. An upstream's 4xx goes back
//! to Rust ([`HotPath::answered`]), which evicts a rejected token and replays once, as the full
//! path does.

use std::cell::RefCell;

use wasm_bindgen::prelude::*;
use worker::{Context, Env};

use super::outbound::{self, Outbound};
use super::proxy::{connection_tokens, error_response, route, Route};
use crate::error::Error;
use crate::log;
use crate::route::{join_upstream, ALLOWED_METHODS};
use crate::token::Token;

/// Tokens handed out lately, newest last: a rejection reported from JavaScript names its token
/// by its `Authorization` value, and is matched here (a token is replaced while requests that
/// carry the old one are still out).
const RECENT_TOKENS: usize = 4;

thread_local! {
    static RECENT: RefCell<Vec<Token>> = const { RefCell::new(Vec::new()) };
}

/// The hot path's entry points, as static methods of an exported class: worker-build exports
/// classes from its bundle, and a static call goes straight to the wasm.
#[wasm_bindgen]
pub struct HotPath;

#[wasm_bindgen]
impl HotPath {
    /// The signed upstream request for `req` as `[target, init]` for `fetch(target, init)`,
    /// when it needs nothing asynchronous; `undefined` sends the request down the full path
    /// (which also answers every error).
    pub fn ready(req: &web_sys::Request, env: &Env) -> Option<js_sys::Array> {
        prepare(req, env).ok().flatten()
    }

    /// The answer to `incoming` after the upstream answered `resp` (a 4xx) to `sent`: when it
    /// rejected the token (`OAUTH_RETRY_STATUSES`), the token is evicted and `sent` is signed
    /// with a new one and sent once more, as on the full path; otherwise `resp` untouched.
    pub async fn answered(
        incoming: web_sys::Request,
        sent: web_sys::Request,
        resp: web_sys::Response,
        env: Env,
        ctx: worker::worker_sys::Context,
    ) -> web_sys::Response {
        let url = incoming.url();
        let Ok(Route {
            configs, profile, ..
        }) = route(&env, &url)
        else {
            return resp;
        };
        let Ok(client) = configs.client(&env, profile) else {
            return resp;
        };
        let used = sent.headers().get("authorization").ok().flatten();
        let Some(token) = used.and_then(|used| recent(&used)) else {
            return resp;
        };
        // No body: the same request can be signed again.
        let spare = client
            .replays_enabled()
            .then(|| <web_sys::Request as Clone>::clone(&sent));
        let ctx = Context::new(ctx);
        let method = incoming.method();
        match client
            .answered(token, resp, false, &method, None, spare, Some(&ctx))
            .await
        {
            Ok(resp) => resp,
            Err(err) => failed(&err),
        }
    }

    /// The proxy's answer when `fetch` of the upstream request failed: 502 `upstream_unreachable`.
    pub fn unreachable(reason: String) -> web_sys::Response {
        failed(&Error::Upstream(reason))
    }
}

fn failed(err: &Error) -> web_sys::Response {
    super::log_line(&log::proxy_error(err.http_status(), err));
    error_response(err)
}

fn prepare(req: &web_sys::Request, env: &Env) -> Result<Option<js_sys::Array>, Error> {
    if req.body().is_some() {
        return Ok(None);
    }
    let headers = req.headers();
    let header = |name: &str| headers.get(name).ok().flatten();
    if header("content-length").is_some() || header("transfer-encoding").is_some() {
        return Ok(None);
    }
    if !ALLOWED_METHODS.contains(&req.method().as_str()) {
        return Ok(None);
    }
    let url = req.url();
    let Route {
        configs,
        profile,
        path_and_query,
    } = route(env, &url)?;
    let proxy = configs.proxy(env, profile)?;
    if proxy.shared_secret.is_some() {
        return Ok(None);
    }
    let client = configs.client(env, profile)?;
    let Some(token) = client.ready(super::now_secs()) else {
        return Ok(None);
    };
    let target = join_upstream(proxy.upstream.as_str(), path_and_query);
    let out = outbound::build_parts(
        req,
        Outbound {
            target: &target,
            connection_tokens: &connection_tokens(header("connection")),
            allowed: &proxy.forward_headers,
            token: &token,
            dpop: None,
            body: None,
            length: None,
            signal: None,
        },
    )
    .map_err(|e| Error::Other(super::js_error_text(&e)))?;
    remember(token);
    Ok(Some(out))
}

fn remember(token: Token) {
    RECENT.with(|recent| {
        let mut recent = recent.borrow_mut();
        if recent
            .last()
            .is_some_and(|t| t.authorization().same_as(token.authorization()))
        {
            return;
        }
        if recent.len() >= RECENT_TOKENS {
            recent.remove(0);
        }
        recent.push(token);
    });
}

fn recent(authorization: &str) -> Option<Token> {
    RECENT.with(|recent| {
        recent
            .borrow()
            .iter()
            .rev()
            .find(|t| t.authorization().expose() == authorization)
            .cloned()
    })
}
