//! [`TokenClient`]: the library API for Rust Workers.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use worker::kv::KvStore;
use worker::{Env, Request, Response};

use super::env::env_string;
use super::fetch::{global_fetch, PlatformHttp};
use super::kv::EdgeStore;
use crate::cache_key::cache_key_material;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::log;
use crate::source::TokenSource;
use crate::token::Token;

/// Name of the KV binding used as the shared token cache.
pub const KV_BINDING: &str = "TOKEN_CACHE";

type EdgeSource = TokenSource<PlatformHttp, EdgeStore, PromiseFlights>;

thread_local! {
    // One token source per configuration per isolate, so that `from_env` on every request still
    // finds the token (and the in-flight request) of earlier ones. Keyed by the whole configuration,
    // so a rotated secret gets a fresh source.
    static SOURCES: RefCell<HashMap<Vec<u8>, EdgeSource>> = RefCell::new(HashMap::new());
    static WARNED_NO_KV: Cell<bool> = const { Cell::new(false) };
}

/// Gets client credentials tokens (RFC 6749 §4.4) and signs requests with them (RFC 6750 §2.1).
///
/// Cheap to create on every request: the token cache lives in the isolate, not in the client.
#[derive(Clone)]
pub struct TokenClient {
    source: EdgeSource,
}

impl TokenClient {
    /// Reads the settings of the configuration contract from the Worker's vars and secrets, and
    /// the `TOKEN_CACHE` KV binding when there is one (memory-only otherwise, said once in the log).
    pub fn from_env(env: &Env) -> Result<Self> {
        let config = Config::from_lookup(|name| env_string(env, name))?;
        Ok(Self::new(config, env.kv(KV_BINDING).ok()))
    }

    /// A client for an explicit configuration and optional KV namespace.
    pub fn new(config: Config, kv: Option<KvStore>) -> Self {
        if kv.is_none() && !WARNED_NO_KV.replace(true) {
            super::log_line(&log::cache_event(
                "memory_only",
                "no TOKEN_CACHE KV binding: tokens are cached in this isolate only",
            ));
        }
        let material = cache_key_material(&config);
        let mut registry_key = material.clone();
        registry_key.extend_from_slice(&config.timeout_ms.to_be_bytes());
        registry_key.extend_from_slice(&config.expiry_margin_secs.to_be_bytes());
        let source = SOURCES.with(|sources| {
            sources
                .borrow_mut()
                .entry(registry_key)
                .or_insert_with(|| {
                    TokenSource::with_flights(
                        config.clone(),
                        PlatformHttp::new(config.timeout_ms),
                        EdgeStore::new(kv, material),
                        PromiseFlights,
                        Rc::new(super::log_line),
                    )
                })
                .clone()
        });
        Self { source }
    }

    /// The current access token: from memory, else KV, else one token request shared by every
    /// concurrent caller in the isolate.
    pub async fn token(&self) -> Result<Token> {
        self.source.token(super::now_secs()).await
    }

    /// A new request like `request` (method, URL, headers, body, redirect mode) with
    /// `Authorization: <scheme> <token>`; the caller's own `Authorization` is replaced.
    pub async fn sign(&self, request: Request) -> Result<Request> {
        let token = self.token().await?;
        sign_with(&token, request)
    }

    /// Signs `request` and sends it with the platform `fetch`.
    pub async fn fetch(&self, request: Request) -> Result<Response> {
        let signed = self.sign(request).await?;
        let resp = JsFuture::from(global_fetch(signed.inner()))
            .await
            .map_err(|e| Error::Upstream(super::js_error_text(&e)))?;
        let resp: web_sys::Response = resp
            .dyn_into()
            .map_err(|_| Error::Other("fetch returned a non-Response".into()))?;
        Ok(Response::from(resp))
    }
}

/// Signs `request` with `token`. Requests are immutable in Workers, so this builds a new one.
pub fn sign_with(token: &Token, request: Request) -> Result<Request> {
    let js = |e: wasm_bindgen::JsValue| Error::Other(super::js_error_text(&e));
    let headers = web_sys::Headers::new_with_headers(&request.inner().headers()).map_err(js)?;
    headers
        .set("authorization", token.authorization().expose())
        .map_err(js)?;
    let init = web_sys::RequestInit::new();
    init.set_headers_headers(&headers);
    let signed = web_sys::Request::new_with_request_and_init(request.inner(), &init).map_err(js)?;
    Ok(Request::from(signed))
}

/// Flights as JS promises: each caller awaits the promise from its own request context, which
/// workerd allows, instead of being woken from the context of the request that started it.
#[derive(Debug, Default, Clone, Copy)]
pub struct PromiseFlights;

impl crate::source::Flights for PromiseFlights {
    type Handle = js_sys::Promise;
    fn start(&self, work: futures_util::future::LocalBoxFuture<'static, ()>) -> js_sys::Promise {
        wasm_bindgen_futures::future_to_promise(async move {
            work.await;
            Ok(wasm_bindgen::JsValue::UNDEFINED)
        })
    }
    fn wait(&self, handle: &js_sys::Promise) -> futures_util::future::LocalBoxFuture<'static, ()> {
        let fut = JsFuture::from(handle.clone());
        Box::pin(async move {
            let _ = fut.await;
        })
    }
}
