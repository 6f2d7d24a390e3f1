//! The egress proxy: `/<path>?<query>` goes to `UPSTREAM_ORIGIN/<path>?<query>`, signed.
//! Bodies stream in both directions; nothing is buffered.

use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use worker::{Env, Request, Response};

use super::client::TokenClient;
use super::env::env_string;
use super::fetch::global_fetch;
use crate::config::parse_upstream_origin;
use crate::error::Error;
use crate::log;
use crate::route::{error_body, forwards_header, upstream_url};

/// Serves one proxied request. Never fails: every error becomes a JSON error response.
pub async fn handle(req: Request, env: &Env) -> Response {
    match forward(req, env).await {
        Ok(resp) => resp,
        Err(err) => {
            let status = err.http_status();
            super::log_line(&log::proxy_error(status, &err));
            error_response(&err)
        }
    }
}

async fn forward(req: Request, env: &Env) -> Result<Response, Error> {
    let js = |e: wasm_bindgen::JsValue| Error::Other(super::js_error_text(&e));
    let origin = parse_upstream_origin(env_string(env, "UPSTREAM_ORIGIN"))?;
    let client = TokenClient::from_env(env)?;
    let incoming = req.url().map_err(|e| Error::BadRequest(e.to_string()))?;
    let target = upstream_url(&origin, &incoming)?;
    let token = client.token().await?;

    let inner = req.inner();
    let connection = inner.headers().get("connection").ok().flatten();
    let headers = web_sys::Headers::new().map_err(js)?;
    for (name, value) in req.headers().entries() {
        if forwards_header(&name, connection.as_deref()) {
            headers.append(&name, &value).map_err(js)?;
        }
    }
    headers
        .set("authorization", token.authorization().expose())
        .map_err(js)?;

    let init = web_sys::RequestInit::new();
    init.set_method(&inner.method());
    init.set_headers_headers(&headers);
    init.set_body_opt_readable_stream(inner.body().as_ref());
    // A redirect goes back to the caller; following it could carry our token to another origin.
    init.set_redirect(web_sys::RequestRedirect::Manual);
    let outbound = web_sys::Request::new_with_str_and_init(target.as_str(), &init).map_err(js)?;
    let resp = JsFuture::from(global_fetch(&outbound))
        .await
        .map_err(|e| Error::Upstream(super::js_error_text(&e)))?;
    let resp: web_sys::Response = resp
        .dyn_into()
        .map_err(|_| Error::Other("fetch returned a non-Response".into()))?;
    Ok(Response::from(resp))
}

/// The JSON error response for `err`, with `Retry-After` when waiting helps.
pub fn error_response(err: &Error) -> Response {
    let headers = worker::Headers::new();
    let _ = headers.set("content-type", "application/json");
    let _ = headers.set("cache-control", "no-store");
    if let Some(secs) = err.retry_after() {
        let _ = headers.set("retry-after", &secs.to_string());
    }
    Response::from_bytes(error_body(err).into_bytes())
        .map(|r| r.with_status(err.http_status()).with_headers(headers))
        .unwrap_or_else(|_| {
            Response::empty()
                .expect("an empty response")
                .with_status(500)
        })
}
