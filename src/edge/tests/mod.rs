//! The Workers edge in the wasm build, under Node (`wasm-pack test --node`): the real `fetch`
//! against a loopback token server, WebCrypto, and the KV cache over a Map-backed KV object.
//! This module is the harness; the tests are by subject in the modules below.

mod client;
mod dpop;
mod kv;
#[cfg(feature = "proxy")]
mod outbound;
use crate::edge::platform::crypto::{keyed_name, open, root_key, seal, sealing_key, sha256};
use crate::edge::platform::fetch::PlatformHttp;
use crate::edge::platform::kv::KvNamespace;
use crate::oauth::transport::{HttpClient, HttpRequest};
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
    pub(super) type TestServer;
    #[wasm_bindgen(catch)]
    async fn start_server(mode: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(method, getter)]
    pub(super) fn url(this: &TestServer) -> String;
    #[wasm_bindgen(method, getter)]
    pub(super) fn count(this: &TestServer) -> u32;
    #[wasm_bindgen(method, getter, js_name = lastAuth)]
    pub(super) fn last_auth(this: &TestServer) -> Option<String>;
    #[wasm_bindgen(method, getter, js_name = lastBody)]
    pub(super) fn last_body(this: &TestServer) -> String;
    #[wasm_bindgen(method)]
    pub(super) fn close(this: &TestServer);
    fn make_env(vars: &JsValue, kv_mode: &str) -> JsValue;
}

pub(super) async fn server(mode: &str) -> TestServer {
    start_server(mode).await.unwrap().unchecked_into()
}

pub(super) fn env(token_url: &str, secret: &str, extra: &[(&str, &str)]) -> JsValue {
    env_with_kv(token_url, secret, extra, "ok")
}

pub(super) fn env_with_kv(
    token_url: &str,
    secret: &str,
    extra: &[(&str, &str)],
    kv_mode: &str,
) -> JsValue {
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
pub(super) async fn written() {
    let _ = crate::edge::platform::runtime::sleep(50).await;
}

/// The names and the (sealed) values in the Map-backed KV namespace of `env`.
pub(super) fn kv_entries(env: &JsValue) -> (Vec<String>, Vec<String>) {
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

pub(super) fn kv_of(env: &JsValue) -> JsValue {
    js_sys::Reflect::get(env, &"TOKEN_CACHE".into()).unwrap()
}

#[wasm_bindgen_test]
fn var_names_lists_vars_and_secrets_and_no_binding() {
    let env_js = env(
        "https://idp.example/token",
        "s3cret",
        &[("OAUTH_SCOPES", "typo")],
    );
    let set = |k: &str, v: &JsValue| js_sys::Reflect::set(&env_js, &k.into(), v).unwrap();
    // TOML numbers and booleans in [vars] are settings; services and objects are bindings.
    set("OAUTH_TIMEOUT_MSS", &JsValue::from_f64(3000.0));
    set("PROXY_EXPOSE_AUTHORIZATIONS", &JsValue::TRUE);
    set(
        "UPSTREAM_SERVICE",
        &js_sys::Function::new_no_args("return 1").into(),
    );
    set("M2M_CLIENT_SECRET", &js_sys::Object::new().into());
    let mut names = crate::edge::platform::env::var_names(env_js.unchecked_ref::<Env>());
    names.sort();
    assert_eq!(
        names,
        [
            "OAUTH_CLIENT_ID",
            "OAUTH_CLIENT_SECRET",
            "OAUTH_SCOPE",
            "OAUTH_SCOPES",
            "OAUTH_TIMEOUT_MSS",
            "OAUTH_TOKEN_URL",
            "PROXY_EXPOSE_AUTHORIZATIONS",
        ]
    );
}
