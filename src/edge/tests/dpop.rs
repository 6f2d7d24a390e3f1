//! DPoP with WebCrypto: thumbprints, proofs a resource server accepts, nonce challenges.

use super::*;

#[wasm_bindgen_test]
async fn jwk_thumbprint_matches_rfc7638_example() {
    use crate::edge::signers::assertions::thumbprint;
    use crate::keys::private_key::PublicJwk;
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
    use crate::edge::signers::dpop::{ath, generate, proof};
    use crate::keys::dpop_key::DpopKey;
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
