//! The KV cache: WebCrypto hashing, sealing, keyed names, and a KV that fails.

use super::*;

#[wasm_bindgen_test]
async fn sha256_is_webcrypto_sha256() {
    let d = sha256(b"abc").await.unwrap();
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[wasm_bindgen_test]
async fn sealed_values_open_only_with_the_same_key_and_aad() {
    let root = root_key(b"client-secret", false).await.unwrap();
    let key = sealing_key(&root, b"m2m:v1:abc").await.unwrap();
    let sealed = seal(&key, b"{\"access_token\":\"eyJ\"}", b"m2m:v1:abc:token")
        .await
        .unwrap();
    assert!(
        sealed.starts_with("m2m-gcm1.") && !sealed.contains("eyJ"),
        "{sealed}"
    );
    assert_eq!(
        open(&key, &sealed, b"m2m:v1:abc:token").await.unwrap(),
        b"{\"access_token\":\"eyJ\"}"
    );
    // Two seals of the same value differ (random IV).
    assert_ne!(
        seal(&key, b"x", b"a").await.unwrap(),
        seal(&key, b"x", b"a").await.unwrap()
    );
    // Another key, another entry's AAD, a flipped byte, or plain text: all refused.
    let rotated = root_key(b"rotated-secret", false).await.unwrap();
    let other = sealing_key(&rotated, b"m2m:v1:abc").await.unwrap();
    assert!(open(&other, &sealed, b"m2m:v1:abc:token").await.is_err());
    assert!(open(&key, &sealed, b"m2m:v1:abc:hold").await.is_err());
    let mut tampered = sealed.clone().into_bytes();
    let last = tampered.len() - 3;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    assert!(open(
        &key,
        std::str::from_utf8(&tampered).unwrap(),
        b"m2m:v1:abc:token"
    )
    .await
    .is_err());
    assert!(open(&key, "{\"v\":1}", b"m2m:v1:abc:token").await.is_err());
}

#[wasm_bindgen_test]
async fn kv_names_are_keyed_not_a_hash_of_the_secret() {
    use crate::config::cache_key::{cache_key_material, NAME_KEY_INFO, STRETCH_ITERATIONS};
    let material = b"material with the secret in it";
    let plain = sha256(material).await.unwrap();
    // Stretched (a client secret) and not (TOKEN_CACHE_KEY): each a function of its root only.
    let stretched = root_key(b"weak", true).await.unwrap();
    let keyed = root_key(b"weak", false).await.unwrap();
    let a = keyed_name(&stretched, NAME_KEY_INFO, material)
        .await
        .unwrap();
    let b = keyed_name(&keyed, NAME_KEY_INFO, material).await.unwrap();
    assert_eq!(
        a,
        keyed_name(&stretched, NAME_KEY_INFO, material)
            .await
            .unwrap()
    );
    assert!(a != b && a != plain && b != plain && a.len() == 32);
    assert_eq!(STRETCH_ITERATIONS, 100_000);

    // Through the client: the name is neither SHA-256 of the material, nor the same with and
    // without TOKEN_CACHE_KEY (which does not select the token, only keys the cache).
    let srv = server("token").await;
    let mut names = Vec::new();
    for extra in [
        &[][..],
        &[("TOKEN_CACHE_KEY", "0123456789abcdef0123456789abcdef-k")][..],
    ] {
        let env_js = env(&srv.url(), "keyed-names-secret", extra);
        let client = TokenClient::from_env(env_js.unchecked_ref::<Env>()).unwrap();
        client.token().await.unwrap();
        written().await;
        let name = kv_entries(&env_js).0.remove(0);
        let config = Config::from_lookup(|k| {
            js_sys::Reflect::get(&env_js, &k.into())
                .ok()
                .and_then(|v| v.as_string())
        })
        .unwrap();
        let hashed = crate::config::cache_key::cache_key(
            &sha256(&cache_key_material(&config)).await.unwrap(),
        );
        assert!(
            name.starts_with("m2m:v2:") && !name.starts_with(&hashed),
            "{name}"
        );
        names.push(name);
    }
    assert_ne!(names[0], names[1]);
}

#[cfg(feature = "proxy")]
#[wasm_bindgen_test]
async fn kv_holds_no_readable_token() {
    let srv = server("token").await;
    let env_js = env(&srv.url(), "sealed-kv-secret", &[]);
    let client = TokenClient::from_env(env_js.unchecked_ref::<Env>()).unwrap();
    client.token().await.unwrap();
    written().await;
    let values = kv_entries(&env_js).1;
    assert_eq!(values.len(), 1);
    assert!(
        !values[0].contains("tok-") && !values[0].contains("access_token"),
        "{}",
        values[0]
    );
    srv.close();
}

#[wasm_bindgen_test]
async fn a_throwing_or_hanging_kv_never_fails_a_token() {
    for (mode, secret) in [("throw", "kv-throw-secret"), ("hang", "kv-hang-secret")] {
        let srv = server("token").await;
        let env_js = env_with_kv(&srv.url(), secret, &[], mode);
        let client = TokenClient::from_env(env_js.unchecked_ref::<Env>()).unwrap();
        let t = client
            .token()
            .await
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert_eq!(t.access_token().expose(), "tok-1", "{mode}");
        srv.close();
    }
}
