//! The egress proxy: `/<path>?<query>` goes to `UPSTREAM_ORIGIN/<path>?<query>`, signed; with
//! profiles (`M2M_PROFILES`), `/<profile>/<path>?<query>` goes to that profile's upstream with
//! its token.
//! Bodies stream in both directions; only a small body is teed for a replay after a 401.

use std::cell::Cell;
use std::rc::Rc;

use futures_util::StreamExt;
use wasm_bindgen::{JsCast, JsValue};
use worker::{Context, Env};

use crate::base::error::Error;
use crate::base::log;
use crate::edge::assembly::client::TokenClient;
use crate::edge::assembly::send::REPLAY_LIMIT_BYTES;
use crate::edge::platform::secrets;
use crate::edge::proxy::guard::{check_shared_secret, unrouted};
use crate::edge::proxy::outbound;
use crate::edge::proxy::routed::{relocated, route, Intake};
use crate::proxy::admission::{check_request, error_body, ALLOWED_METHODS};
use crate::proxy::route::{join_upstream, Asked};

/// Serves one proxied request, `asked` as the JavaScript entry read it (none: the request did
/// not come through the entry, and is refused). Never fails: every error becomes a JSON error
/// response.
///
/// Works on the raw `web_sys` request and response: wrapping them in `worker::Request` and
/// `worker::Response` would parse the URL, read `cf` and rebuild the response on every request.
pub(crate) async fn handle(
    req: web_sys::Request,
    intake: Option<Intake>,
    env: &Env,
    ctx: &Context,
) -> web_sys::Response {
    // Secrets Store credentials first (when due): every decision below reads settings.
    secrets::refresh_due(env).await;
    let answer = match intake {
        Some(intake) => forward(req, intake.asked(), env, ctx).await,
        None => Err(Error::Other(
            "request did not come through the proxy's entry (build/index.js, from \
             scripts/entry.mjs), which reads its URL and its caller's pin"
                .into(),
        )),
    };
    match answer {
        Ok(resp) => resp,
        Err(err) => {
            let status = err.http_status();
            crate::edge::platform::js::log_line(&log::proxy_error(status, &err));
            error_response(&err)
        }
    }
}

/// The body to send upstream: counted as it streams and cut off past `limit`, declared length
/// or not (a service-binding caller's `Content-Length` is its own claim, not proof); with the
/// signal that aborts the upstream request, and the flag that says it was cut.
fn limited_body(req: &web_sys::Request, limit: u64) -> Result<LimitedBody, Error> {
    let Some(stream) = req.body() else {
        return Ok(LimitedBody::default());
    };
    let abort = web_sys::AbortController::new()
        .map_err(|e| Error::Other(crate::edge::platform::js::js_error_text(&e)))?;
    let signal = abort.signal();
    let (limited, overflow) = limit_stream(stream, limit, abort);
    Ok(LimitedBody {
        stream: Some(limited),
        signal: Some(signal),
        overflow: Some(overflow),
    })
}

/// See [`limited_body`].
#[derive(Default)]
struct LimitedBody {
    stream: Option<web_sys::ReadableStream>,
    signal: Option<web_sys::AbortSignal>,
    overflow: Option<Rc<Cell<bool>>>,
}

async fn forward(
    req: web_sys::Request,
    asked: Asked<'_>,
    env: &Env,
    ctx: &Context,
) -> Result<web_sys::Response, Error> {
    let js = |e: wasm_bindgen::JsValue| Error::Other(crate::edge::platform::js::js_error_text(&e));
    let inner = &req;
    let headers = inner.headers();
    let header = |name: &str| headers.get(name).ok().flatten();
    let presented = header("proxy-authorization");
    let routed = route(env, asked).and_then(|route| Ok((route.proxy(env)?, route)));
    let (proxy, route) = match routed {
        Ok(routed) => routed,
        Err(err) => return Err(unrouted(env, err, presented.as_deref()).await),
    };

    check_shared_secret(&proxy, presented.as_deref()).await?;
    let method = inner.method();
    let content_length = header("content-length");
    let transfer_encoding = header("transfer-encoding");
    check_request(
        &method,
        content_length
            .as_deref()
            .map(|v| ("content-length", v))
            .into_iter()
            .chain(
                transfer_encoding
                    .as_deref()
                    .map(|v| ("transfer-encoding", v)),
            ),
        proxy.max_body_bytes,
    )?;

    let client = TokenClient::of(&route.configs, env, route.profile)?;
    let target = join_upstream(proxy.upstream.as_str(), route.path_and_query);
    let connection_tokens = connection_tokens(header("connection"));

    // The token first: nothing below can fail after the body stream is wrapped, so the wrapper
    // is always consumed (or its request aborted) and never left behind.
    let token = client.current(Some(ctx)).await?;
    let proof = client.proof_for(&token, &method, &target).await?;
    let declared = content_length
        .as_deref()
        .and_then(|l| l.trim().parse::<u64>().ok());
    let LimitedBody {
        stream: body,
        signal,
        overflow,
    } = limited_body(inner, proxy.max_body_bytes)?;
    let small_body = declared.is_some_and(|l| l <= REPLAY_LIMIT_BYTES);
    let outbound = outbound::build(
        inner,
        outbound::Outbound {
            target: target.as_str(),
            connection_tokens: &connection_tokens,
            allowed: &proxy.forward_headers,
            token: &token,
            dpop: proof.as_deref(),
            body,
            length: declared,
            signal,
        },
    )
    .map_err(js)?;
    let spare = client.spare_copy(&outbound, small_body)?;
    match client.send_signed(token, outbound, spare, Some(ctx)).await {
        Err(Error::Upstream(_)) if overflow.as_ref().is_some_and(|o| o.get()) => {
            Err(too_large(proxy.max_body_bytes))
        }
        Ok(resp) => relocated(resp, &target, route.profile_segment()),
        Err(err) => Err(err),
    }
}

/// The names a caller listed in `Connection` (RFC 9110 §7.6.1), lower case: hop-by-hop for
/// this request, never forwarded.
pub(crate) fn connection_tokens(connection: Option<String>) -> Vec<String> {
    connection
        .map(|c| {
            c.split(',')
                .map(|t| t.trim().to_ascii_lowercase())
                .filter(|t| !t.is_empty())
                .collect()
        })
        .unwrap_or_default()
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

/// The JSON error response for `err`, with `Retry-After` when waiting helps and `Allow` on 405.
pub(crate) fn error_response(err: &Error) -> web_sys::Response {
    let build = || -> Result<web_sys::Response, JsValue> {
        let headers = web_sys::Headers::new()?;
        headers.set("content-type", "application/json")?;
        headers.set("cache-control", "no-store")?;
        if let Some(secs) = err.retry_after() {
            headers.set("retry-after", &secs.to_string())?;
        }
        if err.http_status() == 405 {
            headers.set("allow", &ALLOWED_METHODS.join(", "))?;
        }
        let init = web_sys::ResponseInit::new();
        init.set_status(err.http_status());
        init.set_headers(&headers);
        web_sys::Response::new_with_opt_str_and_init(Some(&error_body(err)), &init)
    };
    build().unwrap_or_else(|_| web_sys::Response::new().expect("an empty response"))
}
