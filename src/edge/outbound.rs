//! Building the upstream request in one call across the wasm boundary.
//!
//! Copying headers one by one from Rust costs three boundary crossings and two string copies per
//! header on every request; the same work in JavaScript is one call. What to drop is still
//! decided in Rust ([`crate::route::DROPPED_HEADERS`] and the caller's `Connection` tokens).

use std::cell::RefCell;

use js_sys::{Array, JsString};
use wasm_bindgen::prelude::*;

use crate::route::DROPPED_HEADERS;
use crate::token::Token;

#[wasm_bindgen(inline_js = r#"
export function outbound_request(incoming, target, dropped, extra, authorization, dpop, body, signal) {
  const headers = new Headers(incoming.headers);
  for (const name of dropped) headers.delete(name);
  for (const name of extra) headers.delete(name);
  headers.set('authorization', authorization);
  if (dpop !== undefined) headers.set('dpop', dpop);
  const init = { method: incoming.method, headers, body, redirect: 'manual' };
  if (signal) init.signal = signal;
  return new Request(target, init);
}
"#)]
extern "C" {
    #[wasm_bindgen(catch)]
    fn outbound_request(
        incoming: &web_sys::Request,
        target: &str,
        dropped: &Array,
        extra: &Array,
        authorization: &JsString,
        dpop: Option<&str>,
        body: Option<web_sys::ReadableStream>,
        signal: Option<web_sys::AbortSignal>,
    ) -> Result<web_sys::Request, JsValue>;
}

thread_local! {
    static DROPPED: Array = DROPPED_HEADERS.iter().map(|h| JsValue::from_str(h)).collect();
    static EMPTY: Array = Array::new();
    // The last token's `Authorization` value as a JS string: converted once per token, not per
    // request (a JWT is a kilobyte of UTF-8 to re-encode).
    static AUTHORIZATION: RefCell<Option<(Token, JsString)>> = const { RefCell::new(None) };
}

fn authorization_js(token: &Token) -> JsString {
    AUTHORIZATION.with(|cell| {
        let mut cell = cell.borrow_mut();
        match cell.as_ref() {
            Some((t, js)) if t.authorization().same_as(token.authorization()) => js.clone(),
            _ => {
                let js = JsString::from(token.authorization().expose());
                *cell = Some((token.clone(), js.clone()));
                js
            }
        }
    })
}

/// The upstream request: `incoming`'s method and headers (minus the dropped ones and the names in
/// `connection_tokens`) with our `Authorization` (and `DPoP` proof, for a DPoP token), sent to
/// `target` with `body`; redirects are not followed.
pub fn build(
    incoming: &web_sys::Request,
    target: &str,
    connection_tokens: &[String],
    token: &Token,
    dpop: Option<&str>,
    body: Option<web_sys::ReadableStream>,
    signal: Option<web_sys::AbortSignal>,
) -> Result<web_sys::Request, JsValue> {
    // Usually empty: then the shared empty array, not a new one per request.
    let extra: Array = if connection_tokens.is_empty() {
        EMPTY.with(Array::clone)
    } else {
        connection_tokens
            .iter()
            .map(|h| JsValue::from_str(h))
            .collect()
    };
    DROPPED.with(|dropped| {
        outbound_request(
            incoming,
            target,
            dropped,
            &extra,
            &authorization_js(token),
            dpop,
            body,
            signal,
        )
    })
}
