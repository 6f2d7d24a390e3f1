//! The Workers edge in the wasm build, under Node (`wasm-pack test --node`): the real `fetch`
//! against a loopback token server, WebCrypto, and the KV cache over a Map-backed KV object.
use crate::edge::crypto::{keyed_name, open, root_key, seal, sealing_key, sha256};
use crate::edge::fetch::PlatformHttp;
use crate::edge::kv::KvNamespace;
use crate::transport::{HttpClient, HttpRequest};
use crate::{Config, TokenClient};
use futures_util::future::join_all;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::wasm_bindgen_test;
use worker::Env;

#[wasm_bindgen(inline_js = r#"
const http = process.getBuiltinModule('node:http');

// mode: 'token' answers a token after 20 ms; 'hang' never answers; 'big' sends 100 KB.
export function start_server(mode) {
  const state = { count: 0, lastAuth: null, lastBody: '' };
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      state.count += 1;
      state.lastAuth = req.headers.authorization ?? null;
      state.lastBody = body;
      if (mode === 'hang') return;
      if (mode === 'big') {
        res.writeHead(200, { 'content-type': 'application/json' });
        return res.end('{"access_token":"' + 'a'.repeat(100000) + '"}');
      }
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ access_token: 'tok-' + state.count, token_type: 'bearer', expires_in: 3600 }));
      }, 20);
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
    server.unref();
    resolve({
      url: 'http://127.0.0.1:' + server.address().port + '/token',
      get count() { return state.count; },
      get lastAuth() { return state.lastAuth; },
      get lastBody() { return state.lastBody; },
      close() { server.closeAllConnections(); server.close(); },
    });
  }));
}

// An Env with plain string vars and a Map-backed KV namespace, as workerd would pass it.
// kvMode: 'ok', 'throw' (every call throws), 'hang' (every call never settles).
export function make_env(vars, kvMode) {
  const map = new Map();
  if (kvMode === 'throw' || kvMode === 'hang') {
    const bad = kvMode === 'throw' ? () => { throw new Error('KV is down'); } : () => new Promise(() => {});
    return { ...vars, TOKEN_CACHE: { get: bad, getWithMetadata: bad, put: bad, list: bad, delete: bad } };
  }
  const kv = {
    map, reads: 0, puts: [],
    async get(key) { kv.reads += 1; return map.has(key) ? map.get(key) : null; },
    async getWithMetadata(key) { return { value: map.get(key) ?? null, metadata: null }; },
    async put(key, value, opts) { kv.puts.push({ key, opts }); map.set(key, value); },
    async list() { return { keys: [...map.keys()].map((name) => ({ name })), list_complete: true }; },
    async delete(key) { map.delete(key); },
  };
  return { ...vars, TOKEN_CACHE: kv };
}
"#)]
extern "C" {
    type TestServer;
    #[wasm_bindgen(catch)]
    async fn start_server(mode: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(method, getter)]
    fn url(this: &TestServer) -> String;
    #[wasm_bindgen(method, getter)]
    fn count(this: &TestServer) -> u32;
    #[wasm_bindgen(method, getter, js_name = lastAuth)]
    fn last_auth(this: &TestServer) -> Option<String>;
    #[wasm_bindgen(method, getter, js_name = lastBody)]
    fn last_body(this: &TestServer) -> String;
    #[wasm_bindgen(method)]
    fn close(this: &TestServer);
    fn make_env(vars: &JsValue, kv_mode: &str) -> JsValue;
}

async fn server(mode: &str) -> TestServer {
    start_server(mode).await.unwrap().unchecked_into()
}

fn env(token_url: &str, secret: &str, extra: &[(&str, &str)]) -> JsValue {
    env_with_kv(token_url, secret, extra, "ok")
}

fn env_with_kv(token_url: &str, secret: &str, extra: &[(&str, &str)], kv_mode: &str) -> JsValue {
    let vars = js_sys::Object::new();
    let set = |k: &str, v: &str| js_sys::Reflect::set(&vars, &k.into(), &v.into()).unwrap();
    set("OAUTH_TOKEN_URL", token_url);
    set("OAUTH_CLIENT_ID", "wasm-client");
    set("OAUTH_CLIENT_SECRET", secret);
    set("OAUTH_SCOPE", "read");
    for (k, v) in extra {
        set(k, v);
    }
    make_env(&vars, kv_mode)
}

/// Lets a flight's second phase (its KV writes, after callers have their answer) finish.
async fn written() {
    let _ = crate::edge::runtime::sleep(50).await;
}

/// The names and the (sealed) values in the Map-backed KV namespace of `env`.
fn kv_entries(env: &JsValue) -> (Vec<String>, Vec<String>) {
    let map: js_sys::Map = js_sys::Reflect::get(&kv_of(env), &"map".into())
        .unwrap()
        .unchecked_into();
    let strings = |it: js_sys::Iterator| -> Vec<String> {
        it.into_iter()
            .map(|v| v.unwrap().as_string().unwrap())
            .collect()
    };
    (strings(map.keys()), strings(map.values()))
}

fn kv_of(env: &JsValue) -> JsValue {
    js_sys::Reflect::get(env, &"TOKEN_CACHE".into()).unwrap()
}

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
    use crate::cache_key::{cache_key_material, NAME_KEY_INFO, STRETCH_ITERATIONS};
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
        let hashed =
            crate::cache_key::cache_key(&sha256(&cache_key_material(&config)).await.unwrap());
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
fn outbound_headers_follow_the_policy_table() {
    use crate::edge::outbound::{build, Outbound};
    use crate::headers::{header_dropped, DROPPED_NAMES, DROPPED_PREFIXES, NEVER_FORWARDED};
    use crate::secret::AccessToken;
    use crate::{Scheme, Token};
    let mut names: Vec<String> = NEVER_FORWARDED
        .iter()
        .chain(DROPPED_NAMES)
        .map(|n| n.to_string())
        .collect();
    names.extend(DROPPED_PREFIXES.iter().map(|p| format!("{p}probe")));
    names.extend(
        [
            "accept",
            "content-type",
            "x-request-id",
            "traceparent",
            "x-forwarded-user",
            "cf-access-authenticated-user-email",
            "x-custom",
            "x-conn-named",
        ]
        .map(String::from),
    );
    let headers = web_sys::Headers::new().unwrap();
    for n in &names {
        // Names workerd would refuse to let a caller set are still set here: Node allows them.
        let _ = headers.append(n, "v");
    }
    let init = web_sys::RequestInit::new();
    init.set_method("GET");
    init.set_headers(&headers);
    let incoming =
        web_sys::Request::new_with_str_and_init("https://proxy.internal/x", &init).unwrap();
    let token = Token::new(
        AccessToken::new("tok"),
        Scheme::Bearer,
        0,
        4_000_000_000,
        60,
    );
    let allowed = vec!["x-forwarded-user".to_owned()];
    let out = build(
        &incoming,
        Outbound {
            target: "https://api.example/x",
            connection_tokens: &["x-conn-named".to_owned()],
            allowed: &allowed,
            token: &token,
            dpop: None,
            body: None,
            length: None,
            signal: None,
        },
    )
    .unwrap();
    let sent = out.headers();
    for n in &names {
        if !incoming.headers().has(n).unwrap() {
            continue; // Node's Headers refused it (a forbidden name): nothing to forward.
        }
        let want = !header_dropped(n, &allowed) && n != "x-conn-named";
        let got = sent.has(n).unwrap();
        if n == "authorization" {
            assert_eq!(sent.get(n).unwrap().as_deref(), Some("Bearer tok"));
        } else {
            assert_eq!(got, want, "{n}: forwarded {got}, policy says {want}");
        }
    }
    assert!(sent.has("x-forwarded-user").unwrap() && !sent.has("x-forwarded-probe").unwrap());
}

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

#[wasm_bindgen_test]
async fn jwk_thumbprint_matches_rfc7638_example() {
    use crate::edge::signing::thumbprint;
    use crate::private_key::PublicJwk;
    let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
    let t = thumbprint(&PublicJwk::Rsa {
        e: "AQAB".into(),
        n: n.into(),
    })
    .await
    .unwrap();
    assert_eq!(t, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
}

#[wasm_bindgen(inline_js = r#"
// Checks a DPoP proof as a resource server would (RFC 9449 §4.3): the signature against the
// public key in its own header, and the `ath` computed here, independently, from `token`.
export async function check_proof(jws, token) {
  const [h, c, s] = jws.split('.');
  const dec = (x) => JSON.parse(Buffer.from(x, 'base64url').toString());
  const header = dec(h);
  const key = await crypto.subtle.importKey('jwk', header.jwk, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['verify']);
  const valid = await crypto.subtle.verify({ name: 'ECDSA', hash: 'SHA-256' }, key,
    Buffer.from(s, 'base64url'), new TextEncoder().encode(`${h}.${c}`));
  const ath = Buffer.from(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(token))).toString('base64url');
  return JSON.stringify({ valid, header, claims: dec(c), ath });
}
"#)]
extern "C" {
    async fn check_proof(jws: &str, token: &str) -> JsValue;
}

async fn checked(jws: &str, token: &str) -> serde_json::Value {
    serde_json::from_str(&check_proof(jws, token).await.as_string().unwrap()).unwrap()
}

#[wasm_bindgen_test]
async fn dpop_proofs_verify_against_the_key_in_their_header() {
    use crate::dpop::DpopKey;
    use crate::edge::dpop::{ath, generate, proof};
    use crate::AccessToken;

    let token = AccessToken::new("tok-abc.def");
    let a = ath(&token).await.unwrap();
    // A generated key, and the RFC 7517 A.2 example key as OAUTH_DPOP_KEY would give it.
    let configured = r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","d":"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"}"#;
    let keys = [
        generate().await.unwrap(),
        std::rc::Rc::new(DpopKey::from_jwk("OAUTH_DPOP_KEY", configured).unwrap()),
    ];
    for key in keys {
        let p = proof(
            &key,
            "PUT",
            "https://api.example/v1/x",
            1_700_000_000,
            Some(&a),
            Some("n-1"),
        )
        .await
        .unwrap();
        let v = checked(&p, "tok-abc.def").await;
        assert_eq!(v["valid"], true, "{v}");
        assert_eq!(v["header"]["typ"], "dpop+jwt");
        assert_eq!(v["header"]["alg"], "ES256");
        assert!(
            v["header"]["jwk"].get("d").is_none(),
            "no private part in the header"
        );
        let c = &v["claims"];
        assert_eq!(
            (c["htm"].as_str(), c["htu"].as_str()),
            (Some("PUT"), Some("https://api.example/v1/x"))
        );
        assert_eq!(
            (c["iat"].as_u64(), c["nonce"].as_str()),
            (Some(1_700_000_000), Some("n-1"))
        );
        assert_eq!(
            c["ath"], v["ath"],
            "ath is the base64url SHA-256 of the token"
        );
        // Every proof has its own jti (RFC 9449 §11.1).
        let again = checked(
            &proof(
                &key,
                "PUT",
                "https://api.example/v1/x",
                1_700_000_000,
                None,
                None,
            )
            .await
            .unwrap(),
            "x",
        )
        .await;
        assert_eq!(again["valid"], true);
        assert_ne!(again["claims"]["jti"], c["jti"]);
        assert!(again["claims"].get("ath").is_none() && again["claims"].get("nonce").is_none());
    }
}

#[wasm_bindgen(inline_js = r#"
const http = process.getBuiltinModule('node:http');

// A token endpoint and an API that both require DPoP nonces. Every proof's signature is checked
// against the key in its header, and the API checks `ath` and that the key is the one the token
// endpoint saw; what each proof claimed is recorded.
export function start_dpop_server() {
  const state = { tokenCalls: 0, apiCalls: 0, claims: [], problems: [], tokenKey: null };
  const dec = (x) => JSON.parse(Buffer.from(x, 'base64url').toString());
  async function verify(jws) {
    const [h, c, s] = jws.split('.');
    const header = dec(h);
    const key = await crypto.subtle.importKey('jwk', header.jwk, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['verify']);
    const ok = await crypto.subtle.verify({ name: 'ECDSA', hash: 'SHA-256' }, key,
      Buffer.from(s, 'base64url'), new TextEncoder().encode(`${h}.${c}`));
    return { ok, header, claims: dec(c) };
  }
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', async () => {
      const send = (status, obj, headers = {}) => {
        res.writeHead(status, { 'content-type': 'application/json', ...headers });
        res.end(JSON.stringify(obj));
      };
      const proof = req.headers.dpop ? await verify(req.headers.dpop) : null;
      if (!proof || !proof.ok) { state.problems.push('bad proof'); return send(400, { error: 'invalid_dpop_proof' }); }
      state.claims.push(proof.claims);
      if (req.url === '/token') {
        state.tokenCalls += 1;
        if (proof.claims.nonce !== 'as-1') return send(400, { error: 'use_dpop_nonce' }, { 'dpop-nonce': 'as-1' });
        state.tokenKey = JSON.stringify(proof.header.jwk);
        return send(200, { access_token: `dpop-tok-${state.tokenCalls}`, token_type: 'DPoP', expires_in: 3600 });
      }
      state.apiCalls += 1;
      const token = (req.headers.authorization ?? '').replace(/^DPoP /, '');
      const ath = Buffer.from(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(token))).toString('base64url');
      if (!req.headers.authorization?.startsWith('DPoP ') || proof.claims.ath !== ath
          || JSON.stringify(proof.header.jwk) !== state.tokenKey) {
        state.problems.push(`api: ${req.headers.authorization} ${proof.claims.ath}`);
        return send(401, { error: 'invalid_token' });
      }
      if (proof.claims.nonce !== 'rs-1') {
        return send(401, { error: 'use_dpop_nonce' }, { 'dpop-nonce': 'rs-1', 'www-authenticate': 'DPoP error="use_dpop_nonce"' });
      }
      send(200, { ok: true, method: req.method, body });
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
    server.unref();
    const base = 'http://127.0.0.1:' + server.address().port;
    resolve({
      base,
      state: () => JSON.stringify(state),
      close() { server.closeAllConnections(); server.close(); },
    });
  }));
}

export function request(url, method, body) {
  const init = { method };
  if (body !== undefined) {
    init.body = body;
    init.headers = { 'content-length': String(new TextEncoder().encode(body).length) };
  }
  return new Request(url, init);
}
"#)]
extern "C" {
    type DpopServer;
    async fn start_dpop_server() -> JsValue;
    #[wasm_bindgen(method, getter)]
    fn base(this: &DpopServer) -> String;
    #[wasm_bindgen(method)]
    fn state(this: &DpopServer) -> String;
    #[wasm_bindgen(method, js_name = close)]
    fn close_dpop(this: &DpopServer);
    fn request(url: &str, method: &str, body: Option<&str>) -> web_sys::Request;
}

#[wasm_bindgen_test]
async fn the_library_sends_dpop_requests_and_answers_nonce_challenges() {
    let srv: DpopServer = start_dpop_server().await.unchecked_into();
    let token_url = format!("{}/token", srv.base());
    let env = env(&token_url, "s", &[("OAUTH_DPOP", "true")]);
    let client = TokenClient::from_env(&env.unchecked_into::<Env>()).unwrap();

    // A GET: the token endpoint asks for its nonce, then the API for its own; the caller sees 200.
    let url = format!("{}/api/things?page=2#frag", srv.base());
    let resp = client.send(request(&url, "GET", None), None).await.unwrap();
    assert_eq!(resp.status(), 200);
    // A POST with a body, once both nonces are known: one request each, body intact.
    let resp = client
        .send(request(&url, "POST", Some("hello body")), None)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = wasm_bindgen_futures::JsFuture::from(resp.text().unwrap())
        .await
        .unwrap();
    let answer: serde_json::Value = serde_json::from_str(&body.as_string().unwrap()).unwrap();
    assert_eq!(answer["body"], "hello body");

    let state: serde_json::Value = serde_json::from_str(&srv.state()).unwrap();
    assert_eq!(state["problems"], serde_json::json!([]), "{state}");
    assert_eq!(state["tokenCalls"], 2, "nonce round trip, then the token");
    assert_eq!(state["apiCalls"], 3, "GET challenged, GET again, POST");
    let claims = state["claims"].as_array().unwrap();
    let api: Vec<_> = claims.iter().filter(|c| c["ath"].is_string()).collect();
    assert_eq!(api.len(), 3);
    for c in &api {
        assert_eq!(c["htu"], format!("{}/api/things", srv.base()));
    }
    assert_eq!(
        api.iter()
            .map(|c| c["htm"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["GET", "GET", "POST"]
    );
    assert_eq!(
        api.iter().map(|c| c["nonce"].as_str()).collect::<Vec<_>>(),
        [None, Some("rs-1"), Some("rs-1")]
    );

    // `sign` gives a request any fetch can send: DPoP scheme, a fresh proof with the known nonce.
    let signed = client
        .sign(worker::Request::from(request(&url, "GET", None)))
        .await
        .unwrap();
    let headers = signed.inner().headers();
    assert!(headers
        .get("authorization")
        .unwrap()
        .unwrap()
        .starts_with("DPoP dpop-tok-"));
    let proof = headers.get("dpop").unwrap().unwrap();
    let checked = checked(&proof, "dpop-tok-2").await;
    assert_eq!(checked["valid"], true);
    assert_eq!(checked["claims"]["nonce"], "rs-1");
    srv.close_dpop();
}
