//! The fleet's coordinator on Workers: a Durable Object (`TokenCoordinator`, bound as
//! `TOKEN_COORDINATOR`), one per configuration, named by the configuration's cache identity.
//!
//! Isolates ask it with `stub.fetch` (a Rust object cannot be an RPC server yet, workers-rs
//! #726) after a KV miss and when their token enters its refresh window. The object runs the
//! same token source as an isolate, over its own storage (sealed like KV, and mirrored to KV:
//! the one writer of the configuration's KV entries), and answers with [`serve`].

use std::cell::RefCell;
use std::rc::Rc;

use futures_util::future::{select, Either, LocalBoxFuture};
use js_sys::{Array, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use worker::Env;

use crate::base::log;
use crate::config::cache_key::{cache_key_material, CacheRoot};
use crate::config::client::Config;
use crate::coordinator::serve::serve;
use crate::coordinator::wire::{decode_answer, decode_ask, encode_answer, encode_ask, Addressed};
use crate::edge::assembly::profiles::read_config;
use crate::edge::assembly::registry::signers;
use crate::edge::platform::fetch::PlatformHttp;
use crate::edge::platform::kv::{bounded, EdgeStore, KvNamespace};
use crate::edge::platform::runtime::{sleep, EdgeRuntime};
use crate::edge::platform::seal::Sealer;
use crate::source::coordinator::{Answer, Ask, Coordinator};
use crate::source::records::HOLD_ENTRY;
use crate::source::records::TOKEN_ENTRY;
use crate::source::store::TokenStore;
use crate::source::token_source::{TokenSource, COORDINATOR_SLACK_MS};

/// Workers KV takes at most one write per second to one key.
const KV_WRITE_INTERVAL_MS: u64 = 1_100;

/// Name of the Durable Object binding.
pub const COORDINATOR_BINDING: &str = "TOKEN_COORDINATOR";

#[wasm_bindgen(inline_js = r#"
export function coordinator_ask(env, binding, name, body) {
  const ns = env[binding];
  const stub = ns.get(ns.idFromName(name));
  return stub.fetch('https://coordinator/token', { method: 'POST', body })
    .then(async (r) => [r.status, await r.text()]);
}
export function respond(status, body) {
  return new Response(body, { status, headers: { 'content-type': 'application/json' } });
}
"#)]
extern "C" {
    /// Asks the coordinator named `name` (`idFromName`, then `stub.fetch`): `[status, text]`.
    /// Called directly, as KV is: the general wrappers cost more wasm than the whole call.
    #[wasm_bindgen(catch)]
    fn coordinator_ask(
        env: &JsValue,
        binding: &str,
        name: &str,
        body: &str,
    ) -> Result<Promise, JsValue>;
    fn respond(status: u16, body: &str) -> web_sys::Response;

    /// A Durable Object's storage (`state.storage`), called directly.
    #[derive(Clone)]
    type ObjectStorage;
    #[wasm_bindgen(method, catch)]
    fn get(this: &ObjectStorage, key: &str) -> Result<Promise, JsValue>;
    #[wasm_bindgen(method, catch)]
    fn put(this: &ObjectStorage, key: &str, value: &str) -> Result<Promise, JsValue>;
    #[wasm_bindgen(method, catch, js_name = delete)]
    fn remove(this: &ObjectStorage, key: &str) -> Result<Promise, JsValue>;
}

async fn settle(promise: Result<Promise, JsValue>) -> Result<JsValue, String> {
    let text = |e: JsValue| crate::edge::platform::js::js_error_text(&e);
    JsFuture::from(promise.map_err(text)?).await.map_err(text)
}

/// The coordinator as an isolate reaches it.
pub struct EdgeCoordinator {
    env: Env,
    sealer: Rc<Sealer>,
    /// The profile whose settings the object reads (`None`: the unprefixed ones).
    profile: Option<String>,
    /// Bound on one ask: the coordinator may make one token request (`OAUTH_TIMEOUT_MS`).
    bound_ms: u64,
    /// This isolate's `OAUTH_EXPIRY_MARGIN_SECS`, applied to the tokens it is given.
    margin: u64,
}

impl EdgeCoordinator {
    /// The coordinator bound on `env`, if there is a binding, for the configuration `sealer`
    /// names.
    pub fn from_env(env: &Env, sealer: Rc<Sealer>, config: &Config) -> Option<Self> {
        let bound = js_sys::Reflect::get(env, &COORDINATOR_BINDING.into())
            .ok()
            .is_some_and(|b| b.is_object());
        bound.then(|| Self {
            env: env.clone(),
            sealer,
            profile: config.profile.as_ref().map(|p| p.name().to_owned()),
            bound_ms: config.timeout_ms + COORDINATOR_SLACK_MS,
            margin: config.expiry_margin_secs,
        })
    }
}

impl Coordinator for EdgeCoordinator {
    fn ask(&self, ask: Ask) -> LocalBoxFuture<'static, Result<Answer, String>> {
        let (env, sealer, profile, bound_ms, margin) = (
            self.env.clone(),
            self.sealer.clone(),
            self.profile.clone(),
            self.bound_ms,
            self.margin,
        );
        Box::pin(async move {
            let name = sealer.identity().await?;
            let call = async {
                let reply = settle(coordinator_ask(
                    &env,
                    COORDINATOR_BINDING,
                    &name,
                    &encode_ask(&name, profile.as_deref(), &ask),
                ))
                .await
                .map_err(|e| format!("coordinator: {e}"))?;
                let reply: Array = reply.unchecked_into();
                let status = reply.get(0).as_f64().unwrap_or_default();
                let text = reply.get(1).as_string().unwrap_or_default();
                if status != 200.0 {
                    return Err(format!(
                        "coordinator answered {status}: {}",
                        text.chars().take(200).collect::<String>()
                    ));
                }
                decode_answer(&text, margin)
            };
            let call = std::pin::pin!(call);
            match select(call, sleep(bound_ms)).await {
                Either::Left((answer, _)) => answer,
                Either::Right(_) => Err(format!("coordinator did not answer in {bound_ms} ms")),
            }
        })
    }
}

/// The coordinator's storage as the core's store: sealed like KV, and the token and hold-down
/// entries mirrored to KV, where isolates read them.
pub struct ObjectStore {
    storage: ObjectStorage,
    sealer: Rc<Sealer>,
    kv: EdgeStore,
}

impl TokenStore for ObjectStore {
    async fn get(&self, name: &str) -> Result<Option<String>, String> {
        bounded("storage get", async {
            let full = self.sealer.name(name).await?;
            let sealed = settle(self.storage.get(&full)).await?.as_string();
            match sealed {
                Some(sealed) => self.sealer.open(&full, &sealed).await.map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    async fn put(&self, name: &str, value: String, ttl_secs: u64) -> Result<(), String> {
        bounded("storage put", async {
            let (full, sealed) = self.sealer.seal(name, &value).await?;
            settle(self.storage.put(&full, &sealed)).await.map(drop)
        })
        .await?;
        // KV takes one write per second per key, and an eviction's delete and the new token's
        // write fall in the same second: a refused mirror write is tried once more after it.
        let mirrored = name == TOKEN_ENTRY || name == HOLD_ENTRY;
        if mirrored && self.kv.put(name, value.clone(), ttl_secs).await.is_err() {
            let _ = sleep(KV_WRITE_INTERVAL_MS).await;
            self.kv.put(name, value, ttl_secs).await?;
        }
        Ok(())
    }

    async fn delete(&self, name: &str) -> Result<(), String> {
        bounded("storage delete", async {
            let full = self.sealer.name(name).await?;
            settle(self.storage.remove(&full)).await.map(drop)
        })
        .await?;
        if name == TOKEN_ENTRY || name == HOLD_ENTRY {
            self.kv.delete(name).await?;
        }
        Ok(())
    }
}

type ObjectSource = TokenSource<PlatformHttp, ObjectStore, EdgeRuntime>;

/// A configuration's sealer (its identity) and token source, in the object.
type Ready = (Rc<Sealer>, ObjectSource);

/// The Durable Object: one per configuration (so one per profile), the only caller of its
/// token endpoint while isolates can reach it.
///
/// Written as a wasm-bindgen class rather than with workers-rs's `#[durable_object]`: that
/// macro goes through `worker::Request` and `worker::Response`, whose conversions cost more wasm
/// than this whole object. workerd needs a class with a `(state, env)` constructor and `fetch`.
#[wasm_bindgen]
pub struct TokenCoordinator {
    inner: Rc<Object>,
}

struct Object {
    storage: ObjectStorage,
    env: Env,
    /// The configuration's sealer (its identity) and token source, from the object's own vars
    /// and secrets, by the profile asks name (an object is named by its configuration, so all
    /// its asks name one profile, or profiles with identical settings); made on the first ask,
    /// synchronously, so asks that arrive together share one source and its single flight.
    sources: RefCell<Vec<(Option<String>, Ready)>>,
}

impl Object {
    fn source(&self, profile: Option<String>) -> Result<Ready, String> {
        if let Some((_, ready)) = self.sources.borrow().iter().find(|(p, _)| *p == profile) {
            return Ok(ready.clone());
        }
        let config = read_config(&self.env, profile.as_deref()).map_err(|e| e.to_string())?;
        let sealer = Rc::new(Sealer::new(
            cache_key_material(&config),
            CacheRoot::of(&config),
        ));
        let kv = EdgeStore::new(
            KvNamespace::from_env(&self.env, crate::edge::assembly::client::KV_BINDING),
            sealer.clone(),
        );
        let store = ObjectStore {
            storage: self.storage.clone(),
            sealer: sealer.clone(),
            kv,
        };
        let source = TokenSource::new(
            config.clone(),
            PlatformHttp,
            signers(&config),
            store,
            EdgeRuntime,
            crate::edge::platform::js::log_sink(&config),
        );
        self.sources
            .borrow_mut()
            .push((profile, (sealer.clone(), source.clone())));
        Ok((sealer, source))
    }

    async fn fetch(&self, req: web_sys::Request) -> web_sys::Response {
        let body = settle(req.text()).await.ok().and_then(|b| b.as_string());
        let Some(Ok(Addressed { name, profile, ask })) = body.as_deref().map(decode_ask) else {
            return respond(400, "not an ask");
        };
        let ready = match self.source(profile) {
            Ok((sealer, source)) => sealer.identity().await.map(|id| (id, source)),
            Err(e) => Err(e),
        };
        let (identity, source) = match ready {
            Ok(ready) => ready,
            Err(e) => {
                crate::edge::platform::js::log_line(&log::cache_event(
                    "coordinator_unavailable",
                    &e,
                ));
                return respond(503, "coordinator configuration unusable");
            }
        };
        // Another configuration (a deploy changed a secret, a stale isolate): let it fend for
        // itself rather than hand it this configuration's token.
        if name != identity {
            return respond(409, "another configuration");
        }
        match serve(&source, ask, crate::edge::platform::js::now_secs()).await {
            Ok(a) => respond(200, &encode_answer(&a)),
            Err(e) => respond(503, &e),
        }
    }
}

#[wasm_bindgen]
impl TokenCoordinator {
    /// Made by workerd with the object's `state` and the Worker's `env`.
    #[wasm_bindgen(constructor)]
    pub fn new(state: JsValue, env: Env) -> Self {
        let storage = js_sys::Reflect::get(&state, &"storage".into())
            .unwrap_or(JsValue::UNDEFINED)
            .unchecked_into();
        Self {
            inner: Rc::new(Object {
                storage,
                env,
                sources: RefCell::default(),
            }),
        }
    }

    /// Answers one ask: a `POST` whose body is an encoded ask, with an encoded answer.
    pub fn fetch(&self, req: web_sys::Request) -> Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(
            async move { Ok(JsValue::from(inner.fetch(req).await)) },
        )
    }
}
