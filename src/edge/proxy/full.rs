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
use crate::base::secret::SharedSecret;
use crate::edge::assembly::client::TokenClient;
use crate::edge::assembly::profiles::configs;
use crate::edge::assembly::send::REPLAY_LIMIT_BYTES;
use crate::edge::isolate;
use crate::edge::isolate::Configs;
use crate::edge::platform::crypto::sha256;
use crate::edge::platform::env::env_string;
use crate::edge::platform::secrets;
use crate::edge::proxy::outbound;
use crate::proxy::config::ProxyConfig;
use crate::proxy::redirect::{relocate, Relocation, UPSTREAM_LOCATION};
use crate::proxy::route::{
    check_request, constant_time_eq, error_body, join_upstream, presented_proxy_secret,
    route_asked, unknown_profile, Asked, ALLOWED_METHODS,
};
use crate::settings::profile::{Profile, PROFILES_SETTING};
use crate::settings::secrets::binding_in;

/// Serves one proxied request, `asked` as the JavaScript entry read it (none: the request did
/// not come through the entry, and is refused). Never fails: every error becomes a JSON error
/// response.
///
/// Works on the raw `web_sys` request and response: wrapping them in `worker::Request` and
/// `worker::Response` would parse the URL, read `cf` and rebuild the response on every request.
pub(crate) async fn handle(
    req: web_sys::Request,
    asked: Option<Asked<'_>>,
    env: &Env,
    ctx: &Context,
) -> web_sys::Response {
    // Secrets Store credentials first (when due): every decision below reads settings.
    secrets::refresh_due(env).await;
    let answer = match asked {
        Some(asked) => forward(req, asked, env, ctx).await,
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

/// Refuses a caller without the proxy's `PROXY_SHARED_SECRET`, when it has one.
async fn check_shared_secret(proxy: &ProxyConfig, presented: Option<&str>) -> Result<(), Error> {
    match &proxy.shared_secret {
        Some(secret) if !presents(secret, presented).await => Err(unauthorized()),
        _ => Ok(()),
    }
}

/// Whether the caller's `Proxy-Authorization` carries `secret`. Digests first: equal lengths,
/// so the comparison time says nothing about the secret. The configured secret's digest is made
/// once per isolate, the caller's per request.
async fn presents(secret: &SharedSecret, presented: Option<&str>) -> bool {
    // Nothing presented never matches, whatever the configured value (an empty one is refused
    // when read, but this must not depend on that).
    let Some(presented) = presented_proxy_secret(presented).filter(|p| !p.is_empty()) else {
        return false;
    };
    let (want, got) = (
        shared_secret_digest(secret).await,
        sha256(presented.as_bytes()).await,
    );
    matches!((want, got), (Ok(w), Ok(g)) if constant_time_eq(&w, &g))
}

fn unauthorized() -> Error {
    Error::rejected(
        401,
        "unauthorized",
        "this proxy requires Proxy-Authorization: Bearer <PROXY_SHARED_SECRET>",
    )
}

/// What a request that could not be routed or configured answers. When the Worker has any
/// `PROXY_SHARED_SECRET` (its own or a profile's) and the caller presents none of them, the same
/// 401 as everywhere else: an unauthenticated client must not tell a known profile from an
/// unknown one, nor read a broken profile's setting names.
async fn unrouted(env: &Env, err: Error, presented: Option<&str>) -> Error {
    let mut names = vec!["PROXY_SHARED_SECRET".to_owned()];
    // Read leniently: a broken `M2M_PROFILES` is itself one of the errors to hide.
    let listed = env_string(env, PROFILES_SETTING).unwrap_or_default();
    for profile in listed
        .split(',')
        .filter_map(|n| Profile::new(n.trim()).ok())
    {
        names.push(format!("{}PROXY_SHARED_SECRET", profile.prefix()));
    }
    // A secret named in the Secrets Store counts by its value (as this isolate last read it);
    // one that cannot be read cannot be presented either.
    let mut configured = false;
    let mut secrets = Vec::new();
    for name in &names {
        let Some(raw) = env_string(env, name) else {
            continue;
        };
        configured = true;
        match binding_in(name, &raw) {
            Ok(None) => secrets.push(raw),
            Ok(Some(binding)) => {
                secrets.extend(crate::edge::platform::secrets::cached(&binding).ok())
            }
            Err(_) => {}
        }
    }
    if !configured {
        return err;
    }
    // The Worker's own shared secret, broken (blank, short, empty in the store): every path
    // would answer this same error, so it tells no profile apart, and the operator sees it.
    if matches!(&err, Error::Config { setting, .. } if setting == "PROXY_SHARED_SECRET") {
        return err;
    }
    for secret in secrets {
        if presents(&SharedSecret::new(secret), presented).await {
            return err;
        }
    }
    // Hidden from the caller, not from the operator.
    if let Error::Config { .. } = &err {
        crate::edge::platform::js::log_line(&log::proxy_error(err.http_status(), &err));
    }
    unauthorized()
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
        Ok(resp) => Ok(relocated(resp, &target, route.profile_segment())),
        Err(err) => Err(err),
    }
}

/// `resp` with its `Location` made safe to follow through the caller's binding (see
/// [`crate::proxy::redirect`]): a redirect within the upstream stays in the profile, one
/// elsewhere comes back as `X-Upstream-Location` only. Anything but a redirect, untouched.
pub(crate) fn relocated(
    resp: web_sys::Response,
    target: &str,
    profile_segment: Option<&str>,
) -> web_sys::Response {
    if !(300..400).contains(&resp.status()) {
        return resp;
    }
    let Some(location) = resp.headers().get("location").ok().flatten() else {
        return resp;
    };
    let rebuilt = || -> Result<web_sys::Response, JsValue> {
        // A fetched response's headers are immutable: a new response around the same body.
        let headers = web_sys::Headers::new_with_headers(&resp.headers())?;
        match relocate(&location, target, profile_segment) {
            Relocation::Location(path) => headers.set("location", &path)?,
            Relocation::Moved => {
                headers.delete("location")?;
                headers.set(UPSTREAM_LOCATION, &location)?;
            }
        }
        let init = web_sys::ResponseInit::new();
        init.set_status(resp.status());
        init.set_status_text(&resp.status_text());
        init.set_headers(&headers);
        web_sys::Response::new_with_opt_readable_stream_and_init(resp.body().as_ref(), &init)
    };
    rebuilt().unwrap_or_else(|e| {
        // Never the upstream's Location unchecked: an honest 502 instead.
        error_response(&Error::Upstream(format!(
            "upstream redirect could not be rewritten: {}",
            crate::edge::platform::js::js_error_text(&e)
        )))
    })
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

/// Where a request goes: the Worker's configurations, the profile (pinned by the caller's
/// binding, or named by the first path segment with `M2M_PROFILES`), and the path and query to
/// send upstream.
pub(crate) struct Route<'u> {
    pub(crate) configs: Rc<Configs>,
    pub(crate) profile: Option<&'u str>,
    pub(crate) path_and_query: &'u str,
    /// Whether the profile came from the path (see [`Self::profile_segment`]).
    by_path: bool,
}

impl Route<'_> {
    /// The proxy settings of the routed profile.
    pub(crate) fn proxy(&self, env: &Env) -> Result<Rc<ProxyConfig>, Error> {
        self.configs.proxy(env, self.profile)
    }

    /// The profile as a path segment names it, when that is how this request chose it: what a
    /// redirect within the upstream must name again to come back to the same profile.
    pub(crate) fn profile_segment(&self) -> Option<&str> {
        self.profile.filter(|_| self.by_path)
    }
}

/// Routes what a caller `asked` (see [`route_asked`]): pinned, to its pin; with profiles, to
/// the one the first path segment names. A profile that is not configured is a 404 that costs
/// no token (a configuration error for a pin, which the caller's deployer chose).
pub(crate) fn route<'u>(env: &Env, asked: Asked<'u>) -> Result<Route<'u>, Error> {
    let configs = configs(env)?;
    let routed = route_asked(asked, configs.profiled())?;
    if let Some(profile) = routed.profile {
        if !configs.has(profile) {
            return Err(match asked.pinned {
                Some(_) => Error::config(
                    "props.profile",
                    "the caller's binding pins a profile that M2M_PROFILES does not list",
                ),
                None => unknown_profile(),
            });
        }
    }
    Ok(Route {
        configs,
        profile: routed.profile,
        path_and_query: routed.path_and_query,
        by_path: routed.by_path,
    })
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

/// SHA-256 of a `PROXY_SHARED_SECRET`, computed once per isolate (per secret value).
async fn shared_secret_digest(secret: &SharedSecret) -> Result<Vec<u8>, String> {
    let cached = isolate::with(|i| {
        let digests = i.secret_digests.borrow();
        digests.find(|s| s.same_as(secret)).cloned()
    });
    if let Some(digest) = cached {
        return Ok(digest);
    }
    let digest = sha256(secret.expose().as_bytes()).await?;
    isolate::with(|i| {
        let mut digests = i.secret_digests.borrow_mut();
        digests.insert(secret.clone(), digest.clone());
    });
    Ok(digest)
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
