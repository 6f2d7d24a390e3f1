//! DPoP keys and proofs (RFC 9449) with WebCrypto.
//!
//! Keys are generated (ES256, extractable so the private JWK can be cached, sealed, with the
//! token) or imported from `OAUTH_DPOP_KEY`, and kept as `CryptoKey`s per isolate: a proof costs
//! one signature, never an import. `ath` is hashed once per token, not per request.

use std::borrow::Cow;
use std::rc::Rc;

use futures_util::future::LocalBoxFuture;
use js_sys::{Array, Reflect};
use wasm_bindgen::JsCast;
use web_sys::CryptoKey;

use crate::base::error::{Error, Result};
use crate::base::secret::AccessToken;
use crate::edge::isolate;
use crate::edge::platform::crypto::{call, random_bytes, sha256, SUBTLE};
use crate::edge::signers::assertions::{import_jwk, import_params, sign_jws};
use crate::keys::dpop_key::DpopKey;
use crate::keys::jwt::b64url;
use crate::keys::private_key::Alg;
use crate::oauth::dpop::Proofs;
use crate::oauth::proof::{proof_input, ProofClaims};

fn failed(what: &str, reason: String) -> Error {
    Error::Other(format!("DPoP: {what} failed: {reason}"))
}

fn keep(key: Rc<DpopKey>, signing: CryptoKey) {
    isolate::with(|i| i.dpop_keys.borrow_mut().insert(key, signing));
}

/// A new ES256 key pair (RFC 9449 §5: a fresh key per token is allowed and limits a leaked
/// key's reach to one token).
pub(crate) async fn generate() -> Result<Rc<DpopKey>> {
    // Only the private key is ever used: the proof carries the public half as a JWK.
    let usages = Array::of1(&"sign".into());
    let pair = call(
        SUBTLE.with(|s| s.generate_key_with_object(&import_params(Alg::Es256), true, &usages)),
    )
    .await
    .map_err(|e| failed("generating a key", e))?;
    let private: CryptoKey = Reflect::get(&pair, &"privateKey".into())
        .map_err(|e| {
            failed(
                "generating a key",
                crate::edge::platform::js::js_error_text(&e),
            )
        })?
        .unchecked_into();
    let jwk = call(SUBTLE.with(|s| s.export_key("jwk", &private)))
        .await
        .map_err(|e| failed("exporting the key", e))?;
    let text: String = js_sys::JSON::stringify(&jwk)
        .map_err(|e| {
            failed(
                "exporting the key",
                crate::edge::platform::js::js_error_text(&e),
            )
        })?
        .into();
    let key = Rc::new(
        DpopKey::from_jwk("OAUTH_DPOP", &text)
            .map_err(|_| failed("reading the generated key", "unexpected JWK".into()))?,
    );
    keep(key.clone(), private);
    Ok(key)
}

/// The `CryptoKey` for `key`, imported on first use in this isolate (a key read from KV).
async fn signing_key(key: &Rc<DpopKey>) -> Result<CryptoKey> {
    if let Some(c) = known_key(key) {
        return Ok(c);
    }
    let imported = import_jwk(key.private_jwk().expose(), Alg::Es256, false)
        .await
        .map_err(|e| failed("importing the key", e))?;
    keep(key.clone(), imported.clone());
    Ok(imported)
}

/// `ath`: base64url SHA-256 of the access token (RFC 9449 §4.2), once per token.
pub(crate) async fn ath(token: &AccessToken) -> Result<Rc<str>> {
    if let Some(a) = known_ath(token) {
        return Ok(a);
    }
    let digest = sha256(token.expose().as_bytes())
        .await
        .map_err(|e| failed("hashing the token", e))?;
    let a: Rc<str> = Rc::from(b64url(&digest));
    isolate::with(|i| i.ath.borrow_mut().insert(token.clone(), a.clone()));
    Ok(a)
}

/// What the hot path needs to prove possession of `key` for a request with `token` without
/// waiting: the key's `CryptoKey` and the token's `ath`, when this isolate already has both
/// (after the first request with the token, which takes the full path).
#[cfg(feature = "proxy")]
pub(crate) fn ready_signing(
    key: &Rc<DpopKey>,
    token: &AccessToken,
) -> Option<(CryptoKey, Rc<str>)> {
    Some((known_key(key)?, known_ath(token)?))
}

/// The `CryptoKey` for `key`, if this isolate has imported or generated it.
fn known_key(key: &Rc<DpopKey>) -> Option<CryptoKey> {
    isolate::with(|i| {
        let keys = i.dpop_keys.borrow();
        keys.find(|k| Rc::ptr_eq(k, key) || k == key).cloned()
    })
}

/// `ath` of `token`, if it is the token last hashed.
fn known_ath(token: &AccessToken) -> Option<Rc<str>> {
    isolate::with(|i| i.ath.borrow().find(|t| t.same_as(token)).cloned())
}

/// The signing input of a proof by `key` (RFC 9449 §4.2: `header.claims`, base64url) with a
/// random 128-bit `jti`: what [`proof`] signs.
pub(crate) fn proof_input_now(
    key: &DpopKey,
    htm: &str,
    htu: &str,
    iat: u64,
    ath: Option<&str>,
    nonce: Option<&str>,
) -> Result<String> {
    let jti = b64url(&random_bytes(16).map_err(|e| failed("drawing a jti", e))?);
    Ok(proof_input(
        key.public(),
        &ProofClaims {
            htm,
            htu,
            iat,
            jti: &jti,
            ath,
            nonce,
        },
    ))
}

/// A signed proof by `key` (RFC 9449 §4.2) with a random 128-bit `jti`.
pub(crate) async fn proof(
    key: &Rc<DpopKey>,
    htm: &str,
    htu: &str,
    iat: u64,
    ath: Option<&str>,
    nonce: Option<&str>,
) -> Result<String> {
    let signing = signing_key(key).await?;
    let input = proof_input_now(key, htm, htu, iat, ath, nonce)?;
    sign_jws(Alg::Es256, &signing, input)
        .await
        .map_err(|e| failed("signing a proof", e))
}

/// The edge's [`Proofs`]: the configured key, or a new one per token request.
pub(crate) struct EdgeProofs {
    configured: Option<Rc<DpopKey>>,
    /// The key's setting (`OAUTH_DPOP_KEY`, or a profile's), named if WebCrypto refuses it.
    setting: Cow<'static, str>,
}

impl EdgeProofs {
    /// Proofs by `configured` (from the setting `setting`), or by keys generated as needed.
    pub(crate) fn new(configured: Option<Rc<DpopKey>>, setting: Cow<'static, str>) -> Self {
        Self {
            configured,
            setting,
        }
    }
}

impl Proofs for EdgeProofs {
    fn key(&self) -> LocalBoxFuture<'static, Result<Rc<DpopKey>>> {
        let (configured, setting) = (self.configured.clone(), self.setting.clone());
        Box::pin(async move {
            match configured {
                Some(key) => {
                    // Imported now, so a key WebCrypto refuses is a configuration error before
                    // any request reaches the token endpoint.
                    signing_key(&key).await.map_err(|e| {
                        Error::config(setting, format!("WebCrypto refused the key: {e}"))
                    })?;
                    Ok(key)
                }
                None => generate().await,
            }
        })
    }

    fn proof(
        &self,
        key: &Rc<DpopKey>,
        htm: &str,
        htu: &str,
        iat: u64,
        ath: Option<&str>,
        nonce: Option<&str>,
    ) -> LocalBoxFuture<'static, Result<String>> {
        let (key, htm, htu) = (key.clone(), htm.to_owned(), htu.to_owned());
        let (ath, nonce) = (ath.map(str::to_owned), nonce.map(str::to_owned));
        Box::pin(
            async move { proof(&key, &htm, &htu, iat, ath.as_deref(), nonce.as_deref()).await },
        )
    }
}
