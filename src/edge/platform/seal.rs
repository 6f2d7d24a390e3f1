//! Naming and sealing cache entries, apart from where they are kept: KV and the coordinator's
//! storage seal the same way (see [`crate::config::cache_key`]), so either can hold what the other wrote.

use std::cell::RefCell;

use futures_util::future::{FutureExt, LocalBoxFuture, Shared};
use web_sys::CryptoKey;

use crate::config::cache_key::{cache_key, CacheRoot, NAME_KEY_INFO};
use crate::edge::platform::crypto::{keyed_name, open, root_key, seal, sealing_key};

type Prepared = Result<(String, CryptoKey), String>;

/// The name prefix and sealing key of one configuration's entries.
pub(crate) struct Sealer {
    /// The cache-key material; holds the client secret, so it is only ever MACed.
    material: Vec<u8>,
    /// The root secret (`TOKEN_CACHE_KEY`, else the credential) and whether to stretch it.
    root: Vec<u8>,
    stretch: bool,
    /// `m2m:v2:<hmac>` and the sealing key, made on first use (once per isolate: WebCrypto is
    /// async, `TokenClient::from_env` is not) and shared by the operations that start together,
    /// so the stretch runs once.
    prepared: RefCell<Option<Shared<LocalBoxFuture<'static, Prepared>>>>,
}

impl Sealer {
    /// A sealer for the configuration `material` describes, with keys derived from `root`.
    pub(crate) fn new(material: Vec<u8>, root: CacheRoot<'_>) -> Self {
        Self {
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

    /// The configuration's cache identity, `m2m:v2:<hmac>`: the prefix of its KV names and the
    /// name of its coordinator. Reveals neither the client id nor the secret.
    pub(crate) async fn identity(&self) -> Result<String, String> {
        Ok(self.prepared().await?.0)
    }

    /// The full name of entry `name`, and `value` sealed for it.
    pub(crate) async fn seal(&self, name: &str, value: &str) -> Result<(String, String), String> {
        let (prefix, key) = self.prepared().await?;
        let full = format!("{prefix}:{name}");
        let sealed = seal(&key, value.as_bytes(), full.as_bytes()).await?;
        Ok((full, sealed))
    }

    /// The full name of entry `name`.
    pub(crate) async fn name(&self, name: &str) -> Result<String, String> {
        Ok(format!("{}:{name}", self.identity().await?))
    }

    /// Opens `sealed`, read from the entry `full` (a name made by this sealer).
    pub(crate) async fn open(&self, full: &str, sealed: &str) -> Result<String, String> {
        let (_, key) = self.prepared().await?;
        let plain = open(&key, sealed, full.as_bytes()).await?;
        String::from_utf8(plain).map_err(|_| "cached value is not UTF-8".into())
    }
}
