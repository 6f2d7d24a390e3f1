//! Workers KV as the core's [`TokenStore`]: entries named and sealed by a [`Sealer`], each
//! operation bounded in time so a slow or failing KV never fails a request.

use std::rc::Rc;

use futures_util::future::{select, Either};
use js_sys::{Object, Promise, Reflect};
use wasm_bindgen::prelude::*;

use crate::edge::platform::runtime::sleep;
use crate::edge::platform::seal::Sealer;
use crate::source::store::{TokenStore, KV_MIN_TTL_SECS, STORE_TIMEOUT_MS};

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
    crate::edge::platform::js::settle(promise)
        .await
        .map_err(|e| format!("KV {op} failed: {e}"))
}

/// Longest wait for one KV operation, key derivation included; past it the read is a miss and
/// the write is skipped.
pub(crate) const KV_TIMEOUT_MS: u64 = STORE_TIMEOUT_MS;

/// The `TOKEN_CACHE` namespace, or nothing (memory-only), for one configuration.
pub(crate) struct EdgeStore {
    kv: Option<KvNamespace>,
    sealer: Rc<Sealer>,
}

impl EdgeStore {
    /// A store over `kv` (memory-only when `None`) naming and sealing entries with `sealer`.
    pub(crate) fn new(kv: Option<KvNamespace>, sealer: Rc<Sealer>) -> Self {
        Self { kv, sealer }
    }
}

/// Runs a store operation with a time bound.
pub(crate) async fn bounded<T>(
    op: &str,
    fut: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    let fut = std::pin::pin!(fut);
    match select(fut, sleep(KV_TIMEOUT_MS)).await {
        Either::Left((result, _)) => result,
        Either::Right(_) => Err(format!("{op} timed out after {KV_TIMEOUT_MS} ms")),
    }
}

impl TokenStore for EdgeStore {
    async fn get(&self, name: &str) -> Result<Option<String>, String> {
        let Some(kv) = &self.kv else { return Ok(None) };
        bounded("KV get", async {
            let full = self.sealer.name(name).await?;
            let sealed = settle("get", kv.get_text(&full, "text")).await?.as_string();
            match sealed {
                Some(sealed) => self.sealer.open(&full, &sealed).await.map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    async fn put(&self, name: &str, value: String, ttl_secs: u64) -> Result<(), String> {
        let Some(kv) = &self.kv else { return Ok(()) };
        bounded("KV put", async {
            let (full, sealed) = self.sealer.seal(name, &value).await?;
            let options = Object::new();
            let _ = Reflect::set(
                &options,
                &"expirationTtl".into(),
                &(ttl_secs.max(KV_MIN_TTL_SECS) as f64).into(),
            );
            settle("put", kv.put_text(&full, &sealed, &options))
                .await
                .map(drop)
        })
        .await
    }

    async fn delete(&self, name: &str) -> Result<(), String> {
        let Some(kv) = &self.kv else { return Ok(()) };
        bounded("KV delete", async {
            let full = self.sealer.name(name).await?;
            settle("delete", kv.delete_key(&full)).await.map(drop)
        })
        .await
    }
}
