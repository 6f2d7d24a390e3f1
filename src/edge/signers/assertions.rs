//! Client assertions for `private_key_jwt` (RFC 7523 §2.2), signed with WebCrypto.
//!
//! The key is imported once per isolate, not extractable. ES256 signatures from WebCrypto are
//! already the raw `r || s` form JWS wants (RFC 7518 §3.4); RS256 is RSASSA-PKCS1-v1_5.

use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;

use futures_util::future::LocalBoxFuture;
use js_sys::{Array, ArrayBuffer, Object, Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use web_sys::CryptoKey;

use crate::base::error::{Error, Result};
use crate::edge::platform::crypto::{call, object, random_bytes, sha256, SUBTLE};
use crate::keys::jwt::{b64url, client_assertion_input};
use crate::keys::private_key::{Alg, KeyFormat, PrivateKey, PublicJwk};
use crate::source::signers::Assertions;

struct Inner {
    key: PrivateKey,
    client_id: String,
    /// The key's setting (`OAUTH_PRIVATE_KEY`, or a profile's), named if WebCrypto refuses it.
    setting: Cow<'static, str>,
    prepared: RefCell<Option<Rc<(CryptoKey, String)>>>,
}

/// Signs client assertions for one configuration.
#[derive(Clone)]
pub(crate) struct EdgeAssertions(Rc<Inner>);

impl EdgeAssertions {
    /// Assertions by `client_id`, signed with `key` from the setting `setting`.
    pub(crate) fn new(key: PrivateKey, client_id: String, setting: Cow<'static, str>) -> Self {
        Self(Rc::new(Inner {
            key,
            client_id,
            setting,
            prepared: RefCell::new(None),
        }))
    }
}

fn key_error(setting: &str, reason: String) -> Error {
    Error::config(
        setting.to_owned(),
        format!("WebCrypto refused the key: {reason}"),
    )
}

pub(super) fn import_params(alg: Alg) -> Object {
    match alg {
        Alg::Es256 => object(&[("name", &"ECDSA".into()), ("namedCurve", &"P-256".into())]),
        Alg::Rs256 => object(&[
            ("name", &"RSASSA-PKCS1-v1_5".into()),
            ("hash", &"SHA-256".into()),
        ]),
    }
}

fn sign_params(alg: Alg) -> Object {
    match alg {
        Alg::Es256 => object(&[("name", &"ECDSA".into()), ("hash", &"SHA-256".into())]),
        Alg::Rs256 => object(&[("name", &"RSASSA-PKCS1-v1_5".into())]),
    }
}

/// Imports a private JWK (JSON text) for signing with `alg`.
pub(super) async fn import_jwk(
    json: &str,
    alg: Alg,
    extractable: bool,
) -> std::result::Result<CryptoKey, String> {
    let jwk: Object = js_sys::JSON::parse(json)
        .map_err(|_| "not JSON".to_owned())?
        .unchecked_into();
    let usages = Array::of1(&"sign".into());
    let params = import_params(alg);
    call(SUBTLE.with(|s| s.import_key_with_object("jwk", &jwk, &params, extractable, &usages)))
        .await
        .map(JsCast::unchecked_into)
}

/// The JWS compact serialisation `input.signature` of `input` signed with `key` (RFC 7515 §7.1).
/// ES256 signatures from WebCrypto are already the raw `r || s` JWS wants.
pub(super) async fn sign_jws(
    alg: Alg,
    key: &CryptoKey,
    input: String,
) -> std::result::Result<String, String> {
    let sig = call(
        SUBTLE.with(|s| s.sign_with_object_and_u8_array(&sign_params(alg), key, input.as_bytes())),
    )
    .await?;
    let sig = Uint8Array::new(&sig.unchecked_into::<ArrayBuffer>()).to_vec();
    Ok(format!("{input}.{}", b64url(&sig)))
}

async fn import(key: &PrivateKey, setting: &str, extractable: bool) -> Result<CryptoKey> {
    let key_error = |e| key_error(setting, e);
    let usages = Array::of1(&"sign".into());
    let params = import_params(key.alg);
    let imported =
        match &key.format {
            KeyFormat::Jwk(json) => {
                return import_jwk(json.expose(), key.alg, extractable)
                    .await
                    .map_err(key_error)
            }
            KeyFormat::Pkcs8(der) => {
                let bytes: Object = Uint8Array::from(der.as_slice()).into();
                call(SUBTLE.with(|s| {
                    s.import_key_with_object("pkcs8", &bytes, &params, extractable, &usages)
                }))
                .await
            }
        };
    imported.map(JsCast::unchecked_into).map_err(key_error)
}

/// The public members of a PKCS#8 key, read from a throwaway extractable import.
async fn public_of_pkcs8(key: &PrivateKey, setting: &str) -> Result<PublicJwk> {
    let extractable = import(key, setting, true).await?;
    let jwk = call(SUBTLE.with(|s| s.export_key("jwk", &extractable)))
        .await
        .map_err(|e| key_error(setting, e))?;
    let member = |name: &str| {
        Reflect::get(&jwk, &name.into())
            .ok()
            .and_then(|v| v.as_string())
            .unwrap_or_default()
    };
    Ok(match key.alg {
        Alg::Es256 => PublicJwk::Ec {
            crv: member("crv"),
            x: member("x"),
            y: member("y"),
        },
        Alg::Rs256 => PublicJwk::Rsa {
            e: member("e"),
            n: member("n"),
        },
    })
}

/// The RFC 7638 JWK thumbprint (SHA-256, base64url) of a public key.
pub(crate) async fn thumbprint(public: &PublicJwk) -> Result<String> {
    let digest = sha256(public.thumbprint_input().as_bytes())
        .await
        .map_err(Error::Other)?;
    Ok(b64url(&digest))
}

impl Inner {
    /// The signing key and the `kid`, made once per isolate.
    async fn prepared(&self) -> Result<Rc<(CryptoKey, String)>> {
        if let Some(p) = self.prepared.borrow().clone() {
            return Ok(p);
        }
        let kid = match &self.key.kid {
            Some(kid) => kid.clone(),
            None => {
                let public = match &self.key.public {
                    Some(p) => p.clone(),
                    None => public_of_pkcs8(&self.key, &self.setting).await?,
                };
                thumbprint(&public).await?
            }
        };
        let signing = import(&self.key, &self.setting, false).await?;
        let prepared = Rc::new((signing, kid));
        *self.prepared.borrow_mut() = Some(prepared.clone());
        Ok(prepared)
    }

    async fn assertion(&self, now: u64, audience: &str) -> Result<String> {
        let prepared = self.prepared().await?;
        let (key, kid) = (&prepared.0, &prepared.1);
        let jti = b64url(&random_bytes(16).map_err(Error::Other)?);
        let input = client_assertion_input(
            self.key.alg,
            Some(kid),
            &self.client_id,
            audience,
            &jti,
            now,
        );
        sign_jws(self.key.alg, key, input)
            .await
            .map_err(|e| Error::Other(format!("signing the client assertion failed: {e}")))
    }
}

impl Assertions for EdgeAssertions {
    fn assertion(&self, now: u64, audience: &str) -> LocalBoxFuture<'static, Result<String>> {
        let inner = self.0.clone();
        let audience = audience.to_owned();
        Box::pin(async move { inner.assertion(now, &audience).await })
    }
}
