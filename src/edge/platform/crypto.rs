//! WebCrypto, native in workerd and Node: smaller and faster than a Rust crypto crate in wasm.
//!
//! KV entries are named with HMAC-SHA-256 (RFC 2104) and their values sealed with AES-256-GCM
//! (NIST SP 800-38D), under keys derived with HKDF-SHA-256 (RFC 5869) from the cache's root key
//! (see [`crate::config::cache_key`]), so reading or listing the namespace reveals no token and tests
//! no guess of the secret. The KV key is the GCM additional data: a value moved to another key
//! fails to open.

use base64::Engine as _;
use js_sys::{Array, ArrayBuffer, Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
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
use crate::config::cache_key::{ROOT_SALT, STRETCH_ITERATIONS};

pub(crate) fn text(e: JsValue) -> String {
    crate::edge::platform::js::js_error_text(&e)
}

pub(crate) use crate::edge::platform::js::settle as call;

pub(crate) fn object(pairs: &[(&str, &JsValue)]) -> Object {
    let o = Object::new();
    for (k, v) in pairs {
        let _ = Reflect::set(&o, &(*k).into(), v);
    }
    o
}

/// SHA-256 (FIPS 180-4) of `data`.
pub(crate) async fn sha256(data: &[u8]) -> Result<Vec<u8>, String> {
    let buf = call(SUBTLE.with(|s| s.digest_with_str_and_u8_array("SHA-256", data))).await?;
    Ok(Uint8Array::new(&buf.unchecked_into::<ArrayBuffer>()).to_vec())
}

/// The cache's root key as an HKDF base key: `secret` itself, or with `stretch`, 256 bits of
/// PBKDF2-HMAC-SHA-256 (RFC 8018 §5.2) over it, so that a guess of a weak client secret costs
/// [`STRETCH_ITERATIONS`] hashes. Not extractable.
pub(crate) async fn root_key(secret: &[u8], stretch: bool) -> Result<CryptoKey, String> {
    let usages_derive = Array::of1(&"deriveKey".into());
    let material = if stretch {
        let usages_bits = Array::of1(&"deriveBits".into());
        let password = call(SUBTLE.with(|s| {
            s.import_key_with_str(
                "raw",
                &Uint8Array::from(secret),
                "PBKDF2",
                false,
                &usages_bits,
            )
        }))
        .await?;
        let params = object(&[
            ("name", &"PBKDF2".into()),
            ("hash", &"SHA-256".into()),
            ("salt", &Uint8Array::from(ROOT_SALT).into()),
            ("iterations", &STRETCH_ITERATIONS.into()),
        ]);
        let bits = call(
            SUBTLE.with(|s| s.derive_bits_with_object(&params, password.unchecked_ref(), 256)),
        )
        .await?;
        Uint8Array::new(&bits.unchecked_into::<ArrayBuffer>()).to_vec()
    } else {
        secret.to_vec()
    };
    let key = call(SUBTLE.with(|s| {
        s.import_key_with_str(
            "raw",
            &Uint8Array::from(&material[..]),
            "HKDF",
            false,
            &usages_derive,
        )
    }))
    .await?;
    Ok(key.unchecked_into())
}

fn hkdf(info: &[u8]) -> Object {
    object(&[
        ("name", &"HKDF".into()),
        ("hash", &"SHA-256".into()),
        ("salt", &Uint8Array::from(ROOT_SALT).into()),
        ("info", &Uint8Array::from(info).into()),
    ])
}

/// The AES-256-GCM key for sealing the values of one cache namespace (`info`: its KV key
/// prefix), derived from `root` with HKDF-SHA-256. Not extractable.
pub(crate) async fn sealing_key(root: &CryptoKey, info: &[u8]) -> Result<CryptoKey, String> {
    let target = object(&[("name", &"AES-GCM".into()), ("length", &256.into())]);
    let usages = Array::of2(&"encrypt".into(), &"decrypt".into());
    let key =
        call(SUBTLE.with(|s| {
            s.derive_key_with_object_and_object(&hkdf(info), root, &target, false, &usages)
        }))
        .await?;
    Ok(key.unchecked_into())
}

/// HMAC-SHA-256 (RFC 2104) of `data` under a key derived from `root` with HKDF-SHA-256 and
/// `info`: names that only the holder of the root can compute.
pub(crate) async fn keyed_name(
    root: &CryptoKey,
    info: &[u8],
    data: &[u8],
) -> Result<Vec<u8>, String> {
    let target = object(&[("name", &"HMAC".into()), ("hash", &"SHA-256".into())]);
    let usages = Array::of1(&"sign".into());
    let key: CryptoKey =
        call(SUBTLE.with(|s| {
            s.derive_key_with_object_and_object(&hkdf(info), root, &target, false, &usages)
        }))
        .await?
        .unchecked_into();
    let mac = call(SUBTLE.with(|s| s.sign_with_str_and_u8_array("HMAC", &key, data))).await?;
    Ok(Uint8Array::new(&mac.unchecked_into::<ArrayBuffer>()).to_vec())
}

fn gcm_params(iv: &[u8], aad: &[u8]) -> Object {
    object(&[
        ("name", &"AES-GCM".into()),
        ("iv", &Uint8Array::from(iv).into()),
        ("additionalData", &Uint8Array::from(aad).into()),
    ])
}

/// `n` random bytes from the platform's CSPRNG.
pub(crate) fn random_bytes(n: usize) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; n];
    CRYPTO
        .with(|c| c.get_random_values_with_u8_array(&mut buf))
        .map_err(text)?;
    Ok(buf)
}

/// Seals `plaintext` under `key` with a random 96-bit IV; `aad` is authenticated, not stored.
pub(crate) async fn seal(key: &CryptoKey, plaintext: &[u8], aad: &[u8]) -> Result<String, String> {
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
pub(crate) async fn open(key: &CryptoKey, sealed: &str, aad: &[u8]) -> Result<Vec<u8>, String> {
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
