//! The upstream request: the header policy in JavaScript, and the hot path.

use super::*;

#[wasm_bindgen_test]
fn outbound_headers_follow_the_policy_table() {
    use crate::base::secret::AccessToken;
    use crate::edge::proxy::outbound::{build, Outbound};
    use crate::proxy::headers::{header_dropped, DROPPED_NAMES, DROPPED_PREFIXES, NEVER_FORWARDED};
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
            "x_custom_ok",
            "x-anonymous-consumer",
            "x-authenticated-groups",
        ]
        .map(String::from),
    );
    // Every name again with `_` for `-`: the spelling CGI-style upstreams read as the same.
    let underscored: Vec<String> = names
        .iter()
        .filter(|n| n.contains('-'))
        .map(|n| n.replace('-', "_"))
        .collect();
    names.extend(underscored);
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
    let allowed = vec!["x-forwarded-user".to_owned(), "x_custom_ok".to_owned()];
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
    assert!(sent.has("x_custom_ok").unwrap() && !sent.has("x_forwarded_user").unwrap());
}

/// `HotPath::ready` for `req` as the entry calls it: the path from a WHATWG parse (the JS
/// `URL`), unpinned.
fn ready(req: &web_sys::Request, env: &Env) -> Option<js_sys::Array> {
    let global = js_sys::global();
    let ctor: js_sys::Function = js_sys::Reflect::get(&global, &"URL".into())
        .unwrap()
        .unchecked_into();
    let url = js_sys::Reflect::construct(&ctor, &js_sys::Array::of1(&req.url().into())).unwrap();
    let part = |name: &str| {
        js_sys::Reflect::get(&url, &name.into())
            .unwrap()
            .as_string()
            .unwrap()
    };
    let path = part("pathname") + &part("search");
    let asked = js_sys::Array::of2(&path.into(), &JsValue::UNDEFINED);
    crate::edge::proxy::hot::HotPath::ready(req, env, &asked)
}

fn request(
    url: &str,
    method: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> web_sys::Request {
    let h = web_sys::Headers::new().unwrap();
    for (k, v) in headers {
        h.set(k, v).unwrap();
    }
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    init.set_headers(&h);
    if let Some(b) = body {
        init.set_body(&JsValue::from_str(b));
    }
    web_sys::Request::new_with_str_and_init(url, &init).unwrap()
}

#[wasm_bindgen_test]
async fn the_hot_path_signs_a_warm_request_and_leaves_the_rest_to_the_full_path() {
    let srv = server("token").await;
    let env_js = env(
        &srv.url(),
        "hot-path-secret",
        &[("UPSTREAM_ORIGIN", "https://api.example:8443")],
    );
    let warm: &Env = env_js.unchecked_ref();
    let get = || {
        request(
            "https://proxy/v1/things?a=1",
            "GET",
            &[
                ("accept", "application/json"),
                ("x-forwarded-user", "admin"),
                ("authorization", "Bearer the-callers-own"),
            ],
            None,
        )
    };
    // Cold: no token in memory, so the full path (which fetches one) takes the request.
    assert!(ready(&get(), warm).is_none());
    assert_eq!(srv.count(), 0, "deciding costs no token request");
    TokenClient::from_env(warm).unwrap().token().await.unwrap();

    let parts = ready(&get(), warm).expect("a warm GET takes the hot path");
    assert_eq!(parts.length(), 2, "a Bearer token needs no proof");
    assert_eq!(
        parts.get(0).as_string().as_deref(),
        Some("https://api.example:8443/v1/things?a=1")
    );
    let init = parts.get(1);
    let field = |name: &str| js_sys::Reflect::get(&init, &name.into()).unwrap();
    let headers: web_sys::Headers = field("headers").unchecked_into();
    let header = |name: &str| headers.get(name).unwrap();
    assert_eq!(header("authorization").as_deref(), Some("Bearer tok-1"));
    assert_eq!(header("accept").as_deref(), Some("application/json"));
    assert_eq!(header("x-forwarded-user"), None, "the header policy holds");
    assert_eq!(field("redirect").as_string().as_deref(), Some("manual"));
    assert_eq!(field("method").as_string().as_deref(), Some("GET"));
    // Nothing escapes the origin on the hot path either.
    let parts = ready(
        &request("https://proxy//evil.example/x", "GET", &[], None),
        warm,
    )
    .expect("warm");
    assert_eq!(
        parts.get(0).as_string().as_deref(),
        Some("https://api.example:8443//evil.example/x")
    );

    // What must wait, or be refused, goes to the full path.
    let post = request("https://proxy/v1/things", "POST", &[], Some("body"));
    assert!(
        ready(&post, warm).is_none(),
        "a body is counted on the full path"
    );
    // (Node's `Request` refuses TRACE and CONNECT outright; workerd hands them to the Worker.)
    let propfind = request("https://proxy/v1/things", "PROPFIND", &[], None);
    assert!(
        ready(&propfind, warm).is_none(),
        "405 comes from the full path"
    );
    let guarded_js = env(
        &srv.url(),
        "hot-path-secret",
        &[
            ("UPSTREAM_ORIGIN", "https://api.example:8443"),
            ("PROXY_SHARED_SECRET", "callers-only-0123456789"),
        ],
    );
    assert!(
        ready(&get(), guarded_js.unchecked_ref()).is_none(),
        "a shared secret is checked on the full path"
    );
    let profiled_js = env(&srv.url(), "unused", &[("M2M_PROFILES", "billing")]);
    assert!(
        ready(&get(), profiled_js.unchecked_ref()).is_none(),
        "an unknown profile's 404 comes from the full path"
    );
    assert_eq!(srv.count(), 1);
    srv.close();
}
