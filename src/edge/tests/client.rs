//! `TokenClient` and the platform `fetch`: one flight, KV sharing, timeouts, limits, settings.

use super::*;

#[wasm_bindgen_test]
async fn from_env_fetches_once_caches_in_kv_and_shares_one_flight() {
    let srv = server("token").await;
    // A distinct secret per test: the isolate-wide registry is keyed by configuration.
    let env_js = env(&srv.url(), "p%+:/=&-flight", &[]);
    let client = TokenClient::from_env(env_js.unchecked_ref::<Env>()).unwrap();
    let tokens = join_all((0..10).map(|_| client.token())).await;
    assert_eq!(srv.count(), 1, "10 concurrent callers, one token request");
    for t in &tokens {
        assert_eq!(t.as_ref().unwrap().authorization().expose(), "Bearer tok-1");
    }
    assert_eq!(
        srv.last_auth().unwrap(),
        "Basic d2FzbS1jbGllbnQ6cCUyNSUyQiUzQSUyRiUzRCUyNi1mbGlnaHQ="
    );
    assert_eq!(srv.last_body(), "grant_type=client_credentials&scope=read");

    // Stored under a keyed name, for fresh_until - now = 3540 s, once the flight's writes are
    // done (callers have their token before that).
    written().await;
    let kv = kv_of(&env_js);
    let keys = kv_entries(&env_js).0;
    assert_eq!(keys.len(), 1);
    assert!(
        keys[0].starts_with("m2m:v2:")
            && keys[0].ends_with(":token")
            && !keys[0].contains("wasm-client")
    );
    let puts: js_sys::Array = js_sys::Reflect::get(&kv, &"puts".into())
        .unwrap()
        .unchecked_into();
    let ttl = js_sys::Reflect::get(
        &js_sys::Reflect::get(&puts.get(0), &"opts".into()).unwrap(),
        &"expirationTtl".into(),
    )
    .unwrap();
    assert!(
        (3539.0..=3540.0).contains(&ttl.as_f64().unwrap()),
        "{ttl:?}"
    );

    // A client made on a later request finds the token in memory: no KV read, no request.
    let reads = js_sys::Reflect::get(&kv, &"reads".into())
        .unwrap()
        .as_f64()
        .unwrap();
    let again = TokenClient::from_env(env_js.unchecked_ref::<Env>()).unwrap();
    assert_eq!(
        again.token().await.unwrap().access_token().expose(),
        "tok-1"
    );
    assert_eq!(
        js_sys::Reflect::get(&kv, &"reads".into())
            .unwrap()
            .as_f64()
            .unwrap(),
        reads
    );
    assert_eq!(srv.count(), 1);
    srv.close();
}

#[wasm_bindgen_test]
async fn a_new_isolate_reads_the_token_from_kv() {
    let srv = server("token").await;
    let env_js = env(&srv.url(), "kv-share-secret", &[]);
    let kv = KvNamespace::from_env(&env_js, "TOKEN_CACHE").unwrap();
    let config =
        Config::from_lookup(|k| js_sys::Reflect::get(&env_js, &k.into()).ok()?.as_string())
            .unwrap();
    let first = TokenClient::new(config.clone(), Some(kv.clone()));
    first.token().await.unwrap();
    written().await;
    // Same configuration but a different timeout: same cache key, a separate in-memory source,
    // as a second isolate would have.
    let mut other = config;
    other.timeout_ms += 1;
    let second = TokenClient::new(other, Some(kv));
    let reads = || {
        js_sys::Reflect::get(&kv_of(&env_js), &"reads".into())
            .unwrap()
            .as_f64()
            .unwrap()
    };
    let before = reads();
    assert_eq!(
        second.token().await.unwrap().access_token().expose(),
        "tok-1"
    );
    assert_eq!(srv.count(), 1);
    assert_eq!(
        reads(),
        before + 2.0,
        "the second source read KV once for the token, once for a hold-down"
    );
    srv.close();
}

#[wasm_bindgen_test]
async fn a_hanging_token_endpoint_times_out() {
    let srv = server("hang").await;
    let err = PlatformHttp
        .execute(HttpRequest {
            method: "POST",
            url: srv.url(),
            headers: vec![],
            body: b"grant_type=client_credentials".to_vec(),
            timeout_ms: 200,
        })
        .await
        .unwrap_err();
    assert!(
        err.reason.contains("timed out after 200 ms"),
        "{}",
        err.reason
    );
    srv.close();
}

#[wasm_bindgen_test]
async fn an_oversized_response_is_refused() {
    let srv = server("big").await;
    let env_js = env(&srv.url(), "big-secret", &[]);
    let client = TokenClient::from_env(env_js.unchecked_ref::<Env>()).unwrap();
    let err = client.token().await.unwrap_err();
    assert_eq!(err.http_status(), 502);
    assert!(err.to_string().contains("exceeds 65536 bytes"), "{err}");
    srv.close();
}

#[wasm_bindgen_test]
async fn missing_settings_are_named() {
    let vars = js_sys::Object::new();
    let err = TokenClient::from_env(make_env(&vars, "ok").unchecked_ref::<Env>())
        .err()
        .unwrap();
    assert!(err.to_string().contains("OAUTH_TOKEN_URL"), "{err}");
}
