//! The egress proxy: `/<path>?<query>` goes to `UPSTREAM_ORIGIN/<path>?<query>`, signed.
//! Bodies stream in both directions; only a small body is teed for a replay after a 401.

use std::cell::Cell;
use std::rc::Rc;

use futures_util::StreamExt;
use wasm_bindgen::{JsCast, JsValue};
use worker::{Context, Env, Request, Response};

use super::client::TokenClient;
use super::crypto::sha256;
use super::env::env_string;
use crate::config::ProxyConfig;
use crate::error::Error;
use crate::log;
use crate::route::{
    check_request, constant_time_eq, error_body, forwards_header, presented_proxy_secret,
    upstream_url, ALLOWED_METHODS,
};

/// Serves one proxied request. Never fails: every error becomes a JSON error response.
pub async fn handle(req: Request, env: &Env, ctx: &Context) -> Response {
    match forward(req, env, ctx).await {
        Ok(resp) => resp,
        Err(err) => {
            let status = err.http_status();
            super::log_line(&log::proxy_error(status, &err));
            error_response(&err)
        }
    }
}

async fn forward(req: Request, env: &Env, ctx: &Context) -> Result<Response, Error> {
    let js = |e: wasm_bindgen::JsValue| Error::Other(super::js_error_text(&e));
    let proxy = proxy_config(env)?;
    let inner = req.inner();
    let incoming_headers: Vec<(String, String)> = req.headers().entries().collect();

    if let Some(secret) = &proxy.shared_secret {
        let presented = presented_proxy_secret(
            inner
                .headers()
                .get("proxy-authorization")
                .ok()
                .flatten()
                .as_deref(),
        )
        .map(str::to_owned)
        .unwrap_or_default();
        // Digests first: equal lengths, so the comparison time says nothing about the secret.
        let (want, got) = (
            sha256(secret.expose().as_bytes()).await,
            sha256(presented.as_bytes()).await,
        );
        if !matches!((want, got), (Ok(w), Ok(g)) if constant_time_eq(&w, &g)) {
            return Err(Error::rejected(
                401,
                "unauthorized",
                "this proxy requires Proxy-Authorization: Bearer <PROXY_SHARED_SECRET>",
            ));
        }
    }
    check_request(
        &inner.method(),
        incoming_headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
        proxy.max_body_bytes,
    )?;

    let client = TokenClient::from_env(env)?;
    let incoming = req
        .url()
        .map_err(|e| Error::rejected(400, "invalid_request", e.to_string()))?;
    let target = upstream_url(&proxy.upstream, &incoming)?;

    let connection = inner.headers().get("connection").ok().flatten();
    let headers = web_sys::Headers::new().map_err(js)?;
    for (name, value) in &incoming_headers {
        if forwards_header(name, connection.as_deref()) {
            headers.append(name, value).map_err(js)?;
        }
    }
    // A declared length was checked above (and workerd holds the body to it); a body of unknown
    // length is counted as it streams and cut off past the limit.
    let declared = incoming_headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"));
    let init = web_sys::RequestInit::new();
    let (body, overflow) = match inner.body() {
        Some(stream) if !declared => {
            let abort = web_sys::AbortController::new().map_err(js)?;
            init.set_signal(Some(&abort.signal()));
            let (limited, overflow) = limit_stream(stream, proxy.max_body_bytes, abort);
            (Some(limited), Some(overflow))
        }
        other => (other, None),
    };
    init.set_method(&inner.method());
    init.set_headers_headers(&headers);
    init.set_body_opt_readable_stream(body.as_ref());
    // A redirect goes back to the caller; following it could carry our token to another origin.
    init.set_redirect(web_sys::RequestRedirect::Manual);
    let outbound = web_sys::Request::new_with_str_and_init(target.as_str(), &init).map_err(js)?;
    match client.send(outbound, Some(ctx)).await {
        Err(Error::Upstream(_)) if overflow.as_ref().is_some_and(|o| o.get()) => {
            Err(too_large(proxy.max_body_bytes))
        }
        other => other.map(Response::from),
    }
}

fn too_large(max: u64) -> Error {
    Error::rejected(
        413,
        "request_too_large",
        format!("request body exceeds {max} bytes"),
    )
}

/// Passes `raw` through until more than `max` bytes went by; then aborts the upstream request
/// (so the upstream sees a broken connection, never a body that merely ends early) and errors
/// the stream. The flag tells the caller why the request failed.
fn limit_stream(
    raw: web_sys::ReadableStream,
    max: u64,
    abort: web_sys::AbortController,
) -> (web_sys::ReadableStream, Rc<Cell<bool>>) {
    let overflow = Rc::new(Cell::new(false));
    let flag = overflow.clone();
    let mut seen = 0u64;
    let counted = wasm_streams::ReadableStream::from_raw(raw)
        .into_stream()
        .map(move |chunk| {
            let chunk = chunk?;
            seen += chunk.unchecked_ref::<js_sys::Uint8Array>().length() as u64;
            if seen > max {
                flag.set(true);
                abort.abort();
                return Err(JsValue::from_str("request body too large"));
            }
            Ok(chunk)
        });
    (
        wasm_streams::ReadableStream::from_stream(counted).into_raw(),
        overflow,
    )
}

thread_local! {
    // Proxy settings parsed for the last `env` seen (workerd passes the same one per isolate).
    static LAST_PROXY: std::cell::RefCell<Option<(JsValue, Rc<ProxyConfig>)>> = const { std::cell::RefCell::new(None) };
}

fn proxy_config(env: &Env) -> Result<Rc<ProxyConfig>, Error> {
    let env_js: &JsValue = env;
    let cached = LAST_PROXY.with(|last| {
        last.borrow()
            .as_ref()
            .filter(|(seen, _)| js_sys::Object::is(seen, env_js))
            .map(|(_, p)| p.clone())
    });
    if let Some(p) = cached {
        return Ok(p);
    }
    let parsed = Rc::new(ProxyConfig::from_lookup(|name| env_string(env, name))?);
    LAST_PROXY.with(|last| *last.borrow_mut() = Some((env_js.clone(), parsed.clone())));
    Ok(parsed)
}

/// The JSON error response for `err`, with `Retry-After` when waiting helps and `Allow` on 405.
pub fn error_response(err: &Error) -> Response {
    let headers = worker::Headers::new();
    let _ = headers.set("content-type", "application/json");
    let _ = headers.set("cache-control", "no-store");
    if let Some(secs) = err.retry_after() {
        let _ = headers.set("retry-after", &secs.to_string());
    }
    if err.http_status() == 405 {
        let _ = headers.set("allow", &ALLOWED_METHODS.join(", "));
    }
    Response::from_bytes(error_body(err).into_bytes())
        .map(|r| r.with_status(err.http_status()).with_headers(headers))
        .unwrap_or_else(|_| {
            Response::empty()
                .expect("an empty response")
                .with_status(500)
        })
}
