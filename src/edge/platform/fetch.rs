//! The platform `fetch` as the core's [`HttpClient`], bounded in time and in body size.

use std::future::Future;

use futures_util::StreamExt;
use js_sys::{Date, Promise, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortSignal, Headers, RequestInit, RequestRedirect};

use crate::oauth::transport::{
    HttpClient, HttpRequest, HttpResponse, TransportError, MAX_TOKEN_RESPONSE_BYTES,
};

#[wasm_bindgen]
extern "C" {
    /// The global `fetch`, the same in workerd and Node.
    #[wasm_bindgen(js_name = fetch)]
    pub(crate) fn global_fetch(request: &web_sys::Request) -> Promise;
}

/// The response headers the core reads (lower case).
const RESPONSE_HEADERS: &[&str] = &[
    "retry-after",
    "content-type",
    "dpop-nonce",
    "www-authenticate",
];

/// Sends token requests with the platform `fetch`, each cut off after its `timeout_ms`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PlatformHttp;

impl HttpClient for PlatformHttp {
    fn execute(
        &self,
        request: HttpRequest,
    ) -> impl Future<Output = Result<HttpResponse, TransportError>> {
        let timeout_ms = request.timeout_ms.clamp(1, u32::MAX as u64) as u32;
        async move {
            let start = Date::now();
            let signal = AbortSignal::timeout_with_u32(timeout_ms);
            let result = send(request, &signal).await;
            let elapsed_ms = (Date::now() - start).max(0.0) as u64;
            match result {
                Ok(mut resp) => {
                    resp.elapsed_ms = elapsed_ms;
                    Ok(resp)
                }
                Err(e) => Err(TransportError {
                    reason: if signal.aborted() {
                        format!("timed out after {timeout_ms} ms")
                    } else {
                        crate::edge::platform::js::js_error_text(&e)
                    },
                    elapsed_ms,
                }),
            }
        }
    }
}

async fn send(request: HttpRequest, signal: &AbortSignal) -> Result<HttpResponse, JsValue> {
    let headers = Headers::new()?;
    for (k, v) in &request.headers {
        headers.append(k, v)?;
    }
    let init = RequestInit::new();
    init.set_method(request.method);
    init.set_headers_headers(&headers);
    if !request.body.is_empty() {
        init.set_body_opt_u8_array(Some(&Uint8Array::from(request.body.as_slice())));
    }
    init.set_signal(Some(signal));
    // A redirect would re-send the client credentials to wherever it points: never follow one.
    init.set_redirect(RequestRedirect::Manual);
    let req = web_sys::Request::new_with_str_and_init(&request.url, &init)?;
    let resp: web_sys::Response = JsFuture::from(global_fetch(&req)).await?.dyn_into()?;

    let status = resp.status();
    let headers = RESPONSE_HEADERS
        .iter()
        .filter_map(|name| Some((name.to_string(), resp.headers().get(name).ok()??)))
        .collect();
    let mut body = Vec::new();
    if let Some(raw) = resp.body() {
        let mut stream = wasm_streams::ReadableStream::from_raw(raw).into_stream();
        // Read one byte past the cap so the core can tell "exactly at the cap" from "too large".
        while let Some(chunk) = stream.next().await {
            body.extend(chunk?.unchecked_into::<Uint8Array>().to_vec());
            if body.len() > MAX_TOKEN_RESPONSE_BYTES {
                body.truncate(MAX_TOKEN_RESPONSE_BYTES + 1);
                break;
            }
        }
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
        elapsed_ms: 0,
    })
}
