//! Building the upstream request in one call across the wasm boundary.
//!
//! Copying headers one by one from Rust costs three boundary crossings and two string copies per
//! header on every request; the same work in JavaScript is one call. What to drop is still
//! decided by the tables in [`crate::proxy::headers`] (see `header_dropped`, which the
//! JavaScript below follows exactly) and the caller's `Connection` tokens.

use js_sys::{Array, JsString, Set};
use wasm_bindgen::prelude::*;

use crate::edge::isolate;
use crate::oauth::token::Token;
use crate::proxy::headers::{DROPPED_NAMES, DROPPED_PREFIXES, NEVER_FORWARDED};

#[wasm_bindgen(inline_js = r#"
// The dropped prefixes as one regular expression, made once (the array is the same object on
// every call: Rust keeps it).
let prefixArray;
let prefixRe;
export function outbound_init(incoming, never, names, prefixes, allowed, extra, authorization, dpop, body, length, signal) {
  if (prefixes !== prefixArray) {
    prefixArray = prefixes;
    const escaped = prefixes.map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
    prefixRe = new RegExp('^(?:' + escaped.join('|') + ')');
  }
  const headers = new Headers();
  for (const [name, value] of incoming.headers) {
    if (never.has(name) || (extra.length !== 0 && extra.includes(name))) continue;
    // `header_dropped` in src/proxy/headers.rs: a class, or any `_` (read as `-` by CGI-style
    // servers), unless PROXY_FORWARD_HEADERS lists the name.
    if ((name.includes('_') || names.has(name) || prefixRe.test(name)) && !allowed.has(name)) continue;
    headers.append(name, value);
  }
  headers.set('authorization', authorization);
  if (dpop !== undefined) headers.set('dpop', dpop);
  // A counted body is a stream of unknown length; workerd's FixedLengthStream keeps the declared
  // Content-Length on the wire and errors if the caller sends more or less than it declared.
  if (body && length !== undefined && typeof FixedLengthStream === 'function') {
    body = body.pipeThrough(new FixedLengthStream(length));
  }
  const init = { method: incoming.method, headers, body, redirect: 'manual' };
  if (signal) init.signal = signal;
  return init;
}
export function outbound_request(target, init) {
  return new Request(target, init);
}
export function target_and_init(target, init) {
  return [target, init];
}
"#)]
extern "C" {
    /// The `RequestInit` of the upstream request: method, the headers the policy keeps, ours,
    /// the body, no redirects.
    #[wasm_bindgen(catch)]
    fn outbound_init(
        incoming: &web_sys::Request,
        never: &Set,
        names: &Set,
        prefixes: &Array,
        allowed: &Set,
        extra: &Array,
        authorization: &JsString,
        dpop: Option<&str>,
        body: Option<web_sys::ReadableStream>,
        length: Option<f64>,
        signal: Option<web_sys::AbortSignal>,
    ) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch)]
    fn outbound_request(target: &str, init: &JsValue) -> Result<web_sys::Request, JsValue>;
    /// `[target, init]`, for the JavaScript entry to `fetch(target, init)` without a `Request`.
    fn target_and_init(target: &str, init: &JsValue) -> js_sys::Array;
}

fn js_set(names: &[&str]) -> Set {
    let set = Set::new(&JsValue::UNDEFINED);
    for n in names {
        set.add(&JsValue::from_str(n));
    }
    set
}

// The header policy as JS values, built once per isolate (constants, not memory).
thread_local! {
    static NEVER: Set = js_set(NEVER_FORWARDED);
    static NAMES: Set = js_set(DROPPED_NAMES);
    static PREFIXES: Array = DROPPED_PREFIXES.iter().map(|h| JsValue::from_str(h)).collect();
    static EMPTY: Array = Array::new();
}

/// `PROXY_FORWARD_HEADERS` as a JS set, made again only when the setting changes.
fn allowed_js(allowed: &[String]) -> Set {
    isolate::with(|i| {
        let mut cache = i.forward_headers.borrow_mut();
        if let Some(set) = cache.find(|names| names == allowed) {
            return set.clone();
        }
        let names: Vec<&str> = allowed.iter().map(String::as_str).collect();
        let set = js_set(&names);
        cache.insert(allowed.to_vec(), set.clone());
        set
    })
}

/// The token's `Authorization` value as a JS string, converted once per token.
fn authorization_js(token: &Token) -> JsString {
    isolate::with(|i| {
        let mut cache = i.authorization.borrow_mut();
        let value = token.authorization();
        if let Some(js) = cache.find(|a| a.same_as(value)) {
            return js.clone();
        }
        let js = JsString::from(value.expose());
        cache.insert(value.clone(), js.clone());
        js
    })
}

/// What goes upstream besides the headers: the target, our credentials, the body.
pub(crate) struct Outbound<'a> {
    /// `UPSTREAM_ORIGIN` with the incoming path and query.
    pub target: &'a str,
    /// Names the caller listed in `Connection` (RFC 9110 §7.6.1), lower case.
    pub connection_tokens: &'a [String],
    /// `PROXY_FORWARD_HEADERS`.
    pub allowed: &'a [String],
    /// The token to sign with, and for a DPoP token its proof.
    pub token: &'a Token,
    /// The `DPoP` proof for a DPoP token.
    pub dpop: Option<&'a str>,
    /// The (counted) body stream, and the length the caller declared for it.
    pub body: Option<web_sys::ReadableStream>,
    /// The caller's `Content-Length`, kept on the wire for a counted body.
    pub length: Option<u64>,
    /// Aborts the upstream request (a body over the limit).
    pub signal: Option<web_sys::AbortSignal>,
}

/// The upstream request: `incoming`'s method and the headers the policy keeps, with our
/// `Authorization` (and `DPoP` proof, for a DPoP token), sent to the target with the body;
/// redirects are not followed.
pub(crate) fn build(
    incoming: &web_sys::Request,
    out: Outbound<'_>,
) -> Result<web_sys::Request, JsValue> {
    let target = out.target;
    outbound_request(target, &init(incoming, out)?)
}

/// What [`build`] makes, as `[target, init]` for `fetch(target, init)`: the hot path sends it
/// without making a `Request` object first.
pub(crate) fn build_parts(
    incoming: &web_sys::Request,
    out: Outbound<'_>,
) -> Result<js_sys::Array, JsValue> {
    let target = out.target;
    Ok(target_and_init(target, &init(incoming, out)?))
}

fn init(incoming: &web_sys::Request, out: Outbound<'_>) -> Result<JsValue, JsValue> {
    // Usually empty: then the shared empty array, not a new one per request.
    let extra: Array = if out.connection_tokens.is_empty() {
        EMPTY.with(Array::clone)
    } else {
        out.connection_tokens
            .iter()
            .map(|h| JsValue::from_str(h))
            .collect()
    };
    let allowed = allowed_js(out.allowed);
    NEVER.with(|never| {
        NAMES.with(|names| {
            PREFIXES.with(|prefixes| {
                outbound_init(
                    incoming,
                    never,
                    names,
                    prefixes,
                    &allowed,
                    &extra,
                    &authorization_js(out.token),
                    out.dpop,
                    out.body,
                    out.length.map(|l| l as f64),
                    out.signal,
                )
            })
        })
    })
}
