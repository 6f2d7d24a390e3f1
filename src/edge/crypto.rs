//! WebCrypto, native in workerd and Node: smaller and faster than a Rust crypto crate in wasm.
//!
//! KV values are sealed with AES-256-GCM (NIST SP 800-38D) under a key derived with HKDF-SHA-256
//! (RFC 5869) from the client credential, so reading the KV namespace reveals no token. The KV
//! key is the GCM additional data: a value moved to another key fails to open.

use base64::Engine as _;
use js_sys::{Array, ArrayBuffer, Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::CryptoKey;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(thread_local_v2, js_namespace = crypto, js_name = subtle)]
    pub(crate) static SUBTLE: web_sys::SubtleCrypto;
    #[wasm_bindgen(thread_local_v2, js_name = crypto)]
    static CRYPTO: web_sys::Crypto;
}

/// Prefix of sealed values: the format version, so a future format can coexist.
const SEALED_PREFIX: &str = "m2m-gcm1.";
const IV_LEN: usize = 12;
/// HKDF salt: a fixed, public label that separates this use of the credential from any other.
const HKDF_SALT: &[u8] = b"worker-m2m/token-cache/v1";

pub(crate) fn text(e: JsValue) -> String {
    super::js_error_text(&e)
}

pub(crate) async fn call(promise: Result<js_sys::Promise, JsValue>) -> Result<JsValue, String> {
    JsFuture::from(promise.map_err(text)?).await.map_err(text)
}

pub(crate) fn object(pairs: &[(&str, &JsValue)]) -> Object {
    let o = Object::new();
    for (k, v) in pairs {
        let _ = Reflect::set(&o, &(*k).into(), v);
    }
    o
}

/// SHA-256 (FIPS 180-4) of `data`.
pub async fn sha256(data: &[u8]) -> Result<Vec<u8>, String> {
    let buf = call(SUBTLE.with(|s| s.digest_with_str_and_u8_array("SHA-256", data))).await?;
    Ok(Uint8Array::new(&buf.unchecked_into::<ArrayBuffer>()).to_vec())
}

/// The AES-256-GCM key for sealing cache values, derived from `ikm` with HKDF-SHA-256.
/// `info` binds the key to one cache namespace. Not extractable.
pub async fn sealing_key(ikm: &[u8], info: &[u8]) -> Result<CryptoKey, String> {
    let usages_derive = Array::of1(&"deriveKey".into());
    let base = call(SUBTLE.with(|s| {
        s.import_key_with_str("raw", &Uint8Array::from(ikm), "HKDF", false, &usages_derive)
    }))
    .await?;
    let params = object(&[
        ("name", &"HKDF".into()),
        ("hash", &"SHA-256".into()),
        ("salt", &Uint8Array::from(HKDF_SALT).into()),
        ("info", &Uint8Array::from(info).into()),
    ]);
    let target = object(&[("name", &"AES-GCM".into()), ("length", &256.into())]);
    let usages = Array::of2(&"encrypt".into(), &"decrypt".into());
    let key = call(SUBTLE.with(|s| {
        s.derive_key_with_object_and_object(&params, base.unchecked_ref(), &target, false, &usages)
    }))
    .await?;
    Ok(key.unchecked_into())
}

fn gcm_params(iv: &[u8], aad: &[u8]) -> Object {
    object(&[
        ("name", &"AES-GCM".into()),
        ("iv", &Uint8Array::from(iv).into()),
        ("additionalData", &Uint8Array::from(aad).into()),
    ])
}

/// `n` random bytes from the platform's CSPRNG.
pub fn random_bytes(n: usize) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; n];
    CRYPTO
        .with(|c| c.get_random_values_with_u8_array(&mut buf))
        .map_err(text)?;
    Ok(buf)
}

/// Seals `plaintext` under `key` with a random 96-bit IV; `aad` is authenticated, not stored.
pub async fn seal(key: &CryptoKey, plaintext: &[u8], aad: &[u8]) -> Result<String, String> {
    let mut iv = [0u8; IV_LEN];
    CRYPTO
        .with(|c| c.get_random_values_with_u8_array(&mut iv))
        .map_err(text)?;
    let ct = call(
        SUBTLE.with(|s| s.encrypt_with_object_and_u8_array(&gcm_params(&iv, aad), key, plaintext)),
    )
    .await?;
    let mut out = iv.to_vec();
    out.extend(Uint8Array::new(&ct.unchecked_into::<ArrayBuffer>()).to_vec());
    Ok(format!(
        "{SEALED_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
    ))
}

/// Opens a value made by [`seal`] with the same key and `aad`; any other value is an error.
pub async fn open(key: &CryptoKey, sealed: &str, aad: &[u8]) -> Result<Vec<u8>, String> {
    let body = sealed
        .strip_prefix(SEALED_PREFIX)
        .ok_or("cached value is not sealed by this version")?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| "cached value is not valid base64url")?;
    if raw.len() < IV_LEN + 16 {
        return Err("cached value is too short".into());
    }
    let (iv, ct) = raw.split_at(IV_LEN);
    let pt =
        call(SUBTLE.with(|s| s.decrypt_with_object_and_u8_array(&gcm_params(iv, aad), key, ct)))
            .await
            .map_err(|_| {
                "cached value failed authentication (another key, or tampered)".to_owned()
            })?;
    Ok(Uint8Array::new(&pt.unchecked_into::<ArrayBuffer>()).to_vec())
}
