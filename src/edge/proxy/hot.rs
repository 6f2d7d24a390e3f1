//! The proxy's hot path without a Rust future: when the token a request needs is in memory,
//! one synchronous call builds the signed upstream request and the JavaScript entry
//! (`scripts/entry.mjs`) sends it with `fetch` itself.
//!
//! Only a request that needs nothing asynchronous takes it: no body, no `Content-Length` or
//! `Transfer-Encoding`, a forwarded method, no `PROXY_SHARED_SECRET` (its check hashes with
//! WebCrypto), and a fresh token that is not due for its background refresh. For a DPoP token,
//! the isolate must already hold the key's `CryptoKey` and the token's `ath`; Rust then makes
//! the proof's signing input and the entry signs it with WebCrypto. Everything else (a token to
//! fetch or refresh, a key to import, bodies, errors) takes the full path in [`crate::edge::proxy::full`],
//! unchanged. The decisions are the full path's own (routing, the origin
//! lock, the header policy): this module only skips the awaiting. An upstream's 4xx goes back
//! to Rust ([`HotPath::answered`]), which evicts a rejected token and replays once, as the full
//! path does.

use wasm_bindgen::prelude::*;
use worker::{Context, Env};

use crate::base::error::Error;
use crate::base::log;
use crate::edge::assembly::client::TokenClient;
use crate::edge::platform::secrets;
use crate::edge::proxy::full::{connection_tokens, error_response};
use crate::edge::proxy::outbound::{self, Outbound};
use crate::edge::proxy::routed::{relocated, route, Intake, Route};
use crate::oauth::dpop::htu;
use crate::proxy::admission::ALLOWED_METHODS;
use crate::proxy::route::{join_upstream, Asked};

/// The entry's record `asked` (`[path, pinned]`, see `scripts/intake.mjs`), decoded; an error
/// when it is not one (then nothing of the request is served).
fn intake(asked: &js_sys::Array) -> Result<Intake, Error> {
    Intake::from_js(asked)
        .ok_or_else(|| Error::Other("the entry's record of a request is not [path, pinned]".into()))
}

/// The hot path's entry points, as static methods of an exported class: worker-build exports
/// classes from its bundle, and a static call goes straight to the wasm.
#[wasm_bindgen]
pub struct HotPath;

#[wasm_bindgen]
impl HotPath {
    /// The signed upstream request for `req` (as the entry recorded it, `asked`: `[path,
    /// pinned]`, see [`Intake`]) as `[target, init]` for `fetch(target, init)`, when it needs nothing
    /// asynchronous; for a DPoP token `[target, init, input, key]`: the proof's signing input
    /// and the `CryptoKey` to sign it with (ES256), for the entry to put in a `DPoP` header;
    /// `true` at index 4 while evictions back off (the entry reports an acceptance then, see
    /// [`Self::accepted`]). `undefined` sends the request down the full path (which also answers
    /// every error).
    pub fn ready(
        req: &web_sys::Request,
        env: &Env,
        asked: &js_sys::Array,
    ) -> Option<js_sys::Array> {
        let intake = intake(asked).ok()?;
        prepare(req, env, intake.asked()).ok().flatten()
    }

    /// Remembers the DPoP nonce the API sent with its answer to `target` (RFC 9449 §9: any
    /// answer may announce the next one); whether it was a usable one.
    pub fn nonce(env: &Env, asked: &js_sys::Array, target: &str, nonce: &str) -> bool {
        let Ok(intake) = intake(asked) else {
            return false;
        };
        let Ok(Route {
            configs, profile, ..
        }) = route(env, intake.asked())
        else {
            return false;
        };
        TokenClient::of(&configs, env, profile)
            .is_ok_and(|client| client.remember_dpop_nonce(target, nonce))
    }

    /// The upstream's redirect `resp` to `target` with its `Location` made safe to follow
    /// through the caller's binding, as on the full path (see [`crate::proxy::redirect`]).
    pub fn relocated(
        resp: web_sys::Response,
        env: &Env,
        asked: &js_sys::Array,
        target: &str,
    ) -> web_sys::Response {
        // It routed a moment ago; if it no longer does, nothing of the upstream's goes back.
        let relocation = intake(asked).and_then(|intake| {
            let route = route(env, intake.asked())?;
            relocated(resp, target, route.profile_segment())
        });
        relocation.unwrap_or_else(|err| failed(&err))
    }

    /// The answer to the request the entry recorded as `asked` after the upstream
    /// answered `resp` (a 4xx) to `sent`: when it
    /// rejected the token (`OAUTH_RETRY_STATUSES`), the token is evicted and `sent` is signed
    /// with a new one and sent once more; when it asked for a DPoP nonce it gave
    /// (`nonce_given`), `sent` is signed again with it and sent once more: as on the full path.
    /// Otherwise `resp` untouched (a redirect after a replay is relocated, see
    /// [`Self::relocated`]).
    pub async fn answered(
        asked: js_sys::Array,
        sent: web_sys::Request,
        resp: web_sys::Response,
        env: Env,
        ctx: worker::worker_sys::Context,
        nonce_given: bool,
    ) -> web_sys::Response {
        secrets::refresh_due(&env).await;
        let target = sent.url();
        let Ok(intake) = intake(&asked) else {
            return resp;
        };
        let Ok(route) = route(&env, intake.asked()) else {
            return resp;
        };
        let Ok(client) = TokenClient::of(&route.configs, &env, route.profile) else {
            return resp;
        };
        let used = sent.headers().get("authorization").ok().flatten();
        // The token it carried, as the routed profile's own source knows it: each profile keeps
        // its own, so traffic on other profiles cannot push it out.
        let Some(token) = used.and_then(|used| client.handed_out(&used)) else {
            return resp;
        };
        // No body on the hot path: the same request can be signed again.
        let Ok(spare) = client.spare_copy(&sent, false) else {
            return resp;
        };
        let ctx = Context::new(ctx);
        let sent = client.sent(token, &sent, spare);
        match client.answered(sent, resp, nonce_given, Some(&ctx)).await {
            Ok(resp) => {
                relocated(resp, &target, route.profile_segment()).unwrap_or_else(|err| failed(&err))
            }
            Err(err) => failed(&err),
        }
    }

    /// The upstream accepted the request the entry recorded as `asked`, signed with
    /// `authorization`: a backoff of evictions ends. The entry calls this only while `ready`
    /// said evictions back off.
    pub fn accepted(env: &Env, asked: &js_sys::Array, authorization: &str) {
        let Ok(intake) = intake(asked) else {
            return;
        };
        let Ok(route) = route(env, intake.asked()) else {
            return;
        };
        if let Ok(client) = TokenClient::of(&route.configs, env, route.profile) {
            if let Some(token) = client.handed_out(authorization) {
                client.accepted(&token);
            }
        }
    }

    /// The proxy's answer when `fetch` of the upstream request failed: 502 `upstream_unreachable`.
    pub fn unreachable(reason: String) -> web_sys::Response {
        failed(&Error::Upstream(reason))
    }
}

fn failed(err: &Error) -> web_sys::Response {
    crate::edge::platform::js::log_line(&log::proxy_error(err.http_status(), err));
    error_response(err)
}

fn prepare(
    req: &web_sys::Request,
    env: &Env,
    asked: Asked<'_>,
) -> Result<Option<js_sys::Array>, Error> {
    if req.body().is_some() {
        return Ok(None);
    }
    let headers = req.headers();
    let header = |name: &str| headers.get(name).ok().flatten();
    if header("content-length").is_some() || header("transfer-encoding").is_some() {
        return Ok(None);
    }
    let method = req.method();
    if !ALLOWED_METHODS.contains(&method.as_str()) {
        return Ok(None);
    }
    let route = route(env, asked)?;
    let proxy = route.proxy(env)?;
    if proxy.shared_secret.is_some() {
        return Ok(None);
    }
    let client = TokenClient::of(&route.configs, env, route.profile)?;
    let now = crate::edge::platform::js::now_secs();
    let Some(token) = client.ready(now) else {
        return Ok(None);
    };
    let target = join_upstream(proxy.upstream.as_str(), route.path_and_query);
    // A DPoP proof: its input made here, signed by the entry (WebCrypto is asynchronous).
    let proof = match token.dpop_key() {
        None => None,
        Some(key) => {
            let Some((signing, ath)) =
                crate::edge::signers::dpop::ready_signing(key, token.access_token())
            else {
                return Ok(None);
            };
            let nonce = client.dpop_nonce(&target);
            let input = crate::edge::signers::dpop::proof_input_now(
                key,
                &method,
                htu(&target),
                now,
                Some(&ath),
                nonce.as_deref(),
            )?;
            Some((input, signing))
        }
    };
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
    .map_err(|e| Error::Other(crate::edge::platform::js::js_error_text(&e)))?;
    if let Some((input, signing)) = proof {
        out.push(&JsValue::from_str(&input));
        out.push(&signing);
    }
    if client.backing_off() {
        // Index 4, whether or not a proof took 2 and 3: the entry then reports an acceptance.
        out.set(4, JsValue::TRUE);
    }
    client.served_from_memory(now);
    Ok(Some(out))
}
