//! Workers KV as the core's [`TokenStore`]: namespaced by a keyed MAC of the configuration,
//! sealed with AES-256-GCM (both keyed from the cache's root, see [`crate::cache_key`]), and
//! bounded in time so a slow or failing KV never fails a request.

use std::cell::RefCell;

use futures_util::future::{select, Either, FutureExt, LocalBoxFuture, Shared};
use js_sys::{Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::CryptoKey;

use super::crypto::{keyed_name, open, root_key, seal, sealing_key};
use super::runtime::sleep;
use crate::cache_key::{cache_key, CacheRoot, NAME_KEY_INFO};
use crate::store::{TokenStore, KV_MIN_TTL_SECS, STORE_TIMEOUT_MS};

#[wasm_bindgen]
extern "C" {
    /// A Workers KV namespace binding, called directly: the three calls used here need none of
    /// the option serialisation a general-purpose wrapper carries into the wasm.
    #[derive(Clone, Debug)]
    pub type KvNamespace;
    #[wasm_bindgen(method, catch, js_name = get)]
    fn get_text(this: &KvNamespace, key: &str, kind: &str) -> Result<Promise, JsValue>;
    #[wasm_bindgen(method, catch, js_name = put)]
    fn put_text(
        this: &KvNamespace,
        key: &str,
        value: &str,
        options: &Object,
    ) -> Result<Promise, JsValue>;
    #[wasm_bindgen(method, catch, js_name = delete)]
    fn delete_key(this: &KvNamespace, key: &str) -> Result<Promise, JsValue>;
}

impl KvNamespace {
    /// The KV namespace bound as `name` on `env`, if there is an object there.
    pub fn from_env(env: &JsValue, name: &str) -> Option<Self> {
        Reflect::get(env, &name.into())
            .ok()
            .filter(JsValue::is_object)
            .map(JsCast::unchecked_into)
    }
}

async fn settle(op: &str, promise: Result<Promise, JsValue>) -> Result<JsValue, String> {
    let failed = |e: JsValue| format!("KV {op} failed: {}", super::js_error_text(&e));
    JsFuture::from(promise.map_err(failed)?)
        .await
        .map_err(failed)
}

/// Longest wait for one KV operation, key derivation included; past it the read is a miss and
/// the write is skipped.
pub const KV_TIMEOUT_MS: u64 = STORE_TIMEOUT_MS;

/// The `TOKEN_CACHE` namespace, or nothing (memory-only), for one configuration.
pub struct EdgeStore {
    kv: Option<KvNamespace>,
    /// The cache-key material; holds the client secret, so it is only ever MACed.
    material: Vec<u8>,
    /// The root secret (`TOKEN_CACHE_KEY`, else the credential) and whether to stretch it.
    root: Vec<u8>,
    stretch: bool,
    /// `m2m:v2:<hmac>` and the sealing key, made on first use (once per isolate: WebCrypto is
    /// async, `TokenClient::from_env` is not) and shared by the reads that start together, so
    /// the stretch runs once.
    prepared: RefCell<Option<Shared<LocalBoxFuture<'static, Prepared>>>>,
}

type Prepared = Result<(String, CryptoKey), String>;

impl EdgeStore {
    /// A store over `kv` (memory-only when `None`) for the configuration `material` describes,
    /// naming and sealing entries with keys derived from `root`.
    pub fn new(kv: Option<KvNamespace>, material: Vec<u8>, root: CacheRoot<'_>) -> Self {
        Self {
            kv,
            material,
            root: root.secret.as_bytes().to_vec(),
            stretch: root.stretch,
            prepared: RefCell::new(None),
        }
    }

    async fn prepared(&self) -> Prepared {
        let derivation = self
            .prepared
            .borrow_mut()
            .get_or_insert_with(|| {
                let (root, material, stretch) =
                    (self.root.clone(), self.material.clone(), self.stretch);
                async move {
                    let root = root_key(&root, stretch).await?;
                    let prefix = cache_key(&keyed_name(&root, NAME_KEY_INFO, &material).await?);
                    let key = sealing_key(&root, prefix.as_bytes()).await?;
                    Ok((prefix, key))
                }
                .boxed_local()
                .shared()
            })
            .clone();
        let prepared = derivation.await;
        if prepared.is_err() {
            // A failed derivation is tried again by the next operation.
            self.prepared.borrow_mut().take();
        }
        prepared
    }
}

/// Runs a KV operation with a time bound.
async fn bounded<T>(
    op: &str,
    fut: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    let fut = std::pin::pin!(fut);
    match select(fut, sleep(KV_TIMEOUT_MS)).await {
        Either::Left((result, _)) => result,
        Either::Right(_) => Err(format!("KV {op} timed out after {KV_TIMEOUT_MS} ms")),
    }
}

impl TokenStore for EdgeStore {
    async fn get(&self, name: &str) -> Result<Option<String>, String> {
        let Some(kv) = &self.kv else { return Ok(None) };
        bounded("get", async {
            let (prefix, key) = self.prepared().await?;
            let kv_key = format!("{prefix}:{name}");
            let sealed = settle("get", kv.get_text(&kv_key, "text"))
                .await?
                .as_string();
            let Some(sealed) = sealed else {
                return Ok(None);
            };
            let plain = open(&key, &sealed, kv_key.as_bytes()).await?;
            String::from_utf8(plain)
                .map(Some)
                .map_err(|_| "cached value is not UTF-8".into())
        })
        .await
    }

    async fn put(&self, name: &str, value: String, ttl_secs: u64) -> Result<(), String> {
        let Some(kv) = &self.kv else { return Ok(()) };
        bounded("put", async {
            let (prefix, key) = self.prepared().await?;
            let kv_key = format!("{prefix}:{name}");
            let sealed = seal(&key, value.as_bytes(), kv_key.as_bytes()).await?;
            let options = Object::new();
            let _ = Reflect::set(
                &options,
                &"expirationTtl".into(),
                &(ttl_secs.max(KV_MIN_TTL_SECS) as f64).into(),
            );
            settle("put", kv.put_text(&kv_key, &sealed, &options))
                .await
                .map(drop)
        })
        .await
    }

    async fn delete(&self, name: &str) -> Result<(), String> {
        let Some(kv) = &self.kv else { return Ok(()) };
        bounded("delete", async {
            let (prefix, _) = self.prepared().await?;
            let kv_key = format!("{prefix}:{name}");
            settle("delete", kv.delete_key(&kv_key)).await.map(drop)
        })
        .await
    }
}
