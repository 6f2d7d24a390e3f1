//! Workers KV as the core's [`TokenStore`], namespaced by a hash of the configuration.

use std::cell::OnceCell;

use worker::kv::KvStore;

use crate::cache_key::cache_key;
use crate::store::{TokenStore, KV_MIN_TTL_SECS};

/// The `TOKEN_CACHE` namespace, or nothing (memory-only), for one configuration.
pub struct EdgeStore {
    kv: Option<KvStore>,
    /// The cache-key material; holds the client secret, so it is only ever hashed.
    material: Vec<u8>,
    /// `m2m:v1:<sha256>`, computed on first use: hashing is async, `TokenClient::from_env` is not.
    prefix: OnceCell<String>,
}

impl EdgeStore {
    /// A store over `kv` (or memory-only when `None`) for the configuration `material` describes.
    pub fn new(kv: Option<KvStore>, material: Vec<u8>) -> Self {
        Self {
            kv,
            material,
            prefix: OnceCell::new(),
        }
    }

    async fn key(&self, name: &str) -> Result<String, String> {
        if self.prefix.get().is_none() {
            let digest = super::crypto::sha256(&self.material).await?;
            let _ = self.prefix.set(cache_key(&digest));
        }
        Ok(format!("{}:{name}", self.prefix.get().expect("set above")))
    }
}

impl TokenStore for EdgeStore {
    async fn get(&self, name: &str) -> Result<Option<String>, String> {
        let Some(kv) = &self.kv else { return Ok(None) };
        let key = self.key(name).await?;
        kv.get(&key)
            .text()
            .await
            .map_err(|e| format!("KV get failed: {e}"))
    }

    async fn put(&self, name: &str, value: String, ttl_secs: u64) -> Result<(), String> {
        let Some(kv) = &self.kv else { return Ok(()) };
        let key = self.key(name).await?;
        kv.put(&key, value)
            .map_err(|e| format!("KV put failed: {e}"))?
            .expiration_ttl(ttl_secs.max(KV_MIN_TTL_SECS))
            .execute()
            .await
            .map_err(|e| format!("KV put failed: {e}"))
    }
}
