//! Discovery in the token source, natively: the OIDC fallback, the cached endpoint, a document
//! for another issuer, and `private_key_jwt` against the discovered endpoint.
use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::config::client::{ClientAuth, Config};
use crate::oauth::transport::{HttpRequest, HttpResponse, TransportError};
use crate::source::records::TOKEN_ENTRY;
use crate::TokenSource;
use futures_executor::block_on;
use futures_util::future::LocalBoxFuture;

use super::support::*;

/// An authorization server on closures: metadata at the OIDC location only, and a token endpoint.
fn discovering_server(
    calls: Rc<RefCell<Vec<String>>>,
    doc_issuer: &'static str,
) -> impl Fn(&HttpRequest) -> Result<HttpResponse, TransportError> {
    move |req: &HttpRequest| {
        calls
            .borrow_mut()
            .push(format!("{} {}", req.method, req.url));
        let (status, body): (u16, String) = match req.url.as_str() {
            "https://idp.example/oauth2/default/.well-known/openid-configuration" => (
                200,
                format!(
                    r#"{{"issuer":"{doc_issuer}","token_endpoint":"https://idp.example/oauth2/default/v1/token"}}"#
                ),
            ),
            "https://idp.example/oauth2/default/v1/token" => (200, GOOD.into()),
            _ => (404, String::new()),
        };
        Ok(HttpResponse {
            status,
            headers: vec![],
            body: body.into_bytes(),
            elapsed_ms: 1,
        })
    }
}

fn issuer_config() -> Config {
    Config {
        profile: None,
        endpoint: crate::config::client::Endpoint::Issuer(
            "https://idp.example/oauth2/default".parse().unwrap(),
        ),
        ..config()
    }
}

#[test]
fn discovery_falls_back_to_oidc_and_is_cached_in_memory_and_kv() {
    let calls = Rc::new(RefCell::new(Vec::new()));
    let kv = Kv::default();
    let http = discovering_server(calls.clone(), "https://idp.example/oauth2/default");
    let source = new_source(
        issuer_config(),
        http,
        kv.clone(),
        TestRuntime::default(),
        logs().1,
    );
    let t = block_on(source.token(NOW)).unwrap();
    assert_eq!(t.access_token().expose(), "tok-1");
    assert_eq!(
        *calls.borrow(),
        vec![
            "GET https://idp.example/.well-known/oauth-authorization-server/oauth2/default",
            "GET https://idp.example/oauth2/default/.well-known/openid-configuration",
            "POST https://idp.example/oauth2/default/v1/token",
        ]
    );
    // The next token needs no discovery; another isolate reads the endpoint from KV.
    block_on(source.token(NOW + 3600)).unwrap();
    assert_eq!(calls.borrow().len(), 4);
    assert!(kv
        .map
        .borrow()
        .contains_key(crate::source::records::META_ENTRY));
    kv.map.borrow_mut().remove(TOKEN_ENTRY);
    let calls2 = Rc::new(RefCell::new(Vec::new()));
    let other = new_source(
        issuer_config(),
        discovering_server(calls2.clone(), "x"),
        kv,
        TestRuntime::default(),
        logs().1,
    );
    block_on(other.token(NOW + 3601)).unwrap();
    assert_eq!(
        *calls2.borrow(),
        vec!["POST https://idp.example/oauth2/default/v1/token"]
    );
}

#[test]
fn a_discovered_endpoint_outside_the_pinned_hosts_is_refused_naming_the_setting() {
    for (hosts, allowed) in [
        (vec!["login.example".to_owned()], false),
        (
            vec!["login.example".to_owned(), "idp.example".to_owned()],
            true,
        ),
        (vec!["idp.example:8443".to_owned()], false),
    ] {
        let calls = Rc::new(RefCell::new(Vec::new()));
        let kv = Kv::default();
        let http = discovering_server(calls.clone(), "https://idp.example/oauth2/default");
        let config = Config {
            token_endpoint_hosts: hosts.clone(),
            ..issuer_config()
        };
        let source = new_source(config, http, kv.clone(), TestRuntime::default(), logs().1);
        let result = block_on(source.token(NOW));
        assert_eq!(result.is_ok(), allowed, "{hosts:?}");
        let posted = calls.borrow().iter().any(|c| c.starts_with("POST"));
        assert_eq!(
            posted, allowed,
            "no credential goes to a host outside the pin"
        );
        if let Err(e) = result {
            let text = e.to_string();
            assert!(
                text.contains("OAUTH_TOKEN_ENDPOINT_HOSTS") && text.contains("idp.example"),
                "{text}"
            );
            assert!(!kv
                .map
                .borrow()
                .contains_key(crate::source::records::META_ENTRY));
        }
    }
    // An endpoint stored before the pin was set is held to it too.
    let kv = Kv::default();
    let calls = Rc::new(RefCell::new(Vec::new()));
    let unpinned = new_source(
        issuer_config(),
        discovering_server(calls.clone(), "https://idp.example/oauth2/default"),
        kv.clone(),
        TestRuntime::default(),
        logs().1,
    );
    block_on(unpinned.token(NOW)).unwrap();
    kv.map.borrow_mut().remove(TOKEN_ENTRY);
    let pinned = new_source(
        Config {
            token_endpoint_hosts: vec!["login.example".into()],
            ..issuer_config()
        },
        discovering_server(calls.clone(), "https://idp.example/oauth2/default"),
        kv,
        TestRuntime::default(),
        logs().1,
    );
    assert!(block_on(pinned.token(NOW + 1)).is_err());
}

#[test]
fn a_document_for_another_issuer_is_refused_before_any_credential_is_sent() {
    let calls = Rc::new(RefCell::new(Vec::new()));
    let http = discovering_server(calls.clone(), "https://evil.example/oauth2/default");
    let source = new_source(
        issuer_config(),
        http,
        Kv::default(),
        TestRuntime::default(),
        logs().1,
    );
    let e = block_on(source.token(NOW)).unwrap_err();
    assert_eq!(e.http_status(), 502);
    assert!(e.to_string().contains("does not equal OAUTH_ISSUER"), "{e}");
    assert!(
        calls.borrow().iter().all(|c| c.starts_with("GET ")),
        "{:?}",
        calls.borrow()
    );
}

/// A signer double that records the audience and makes a new assertion for every call.
struct RecordingSigner(Rc<RefCell<Vec<(u64, String)>>>);

impl crate::source::signers::Assertions for RecordingSigner {
    fn assertion(
        &self,
        now: u64,
        audience: &str,
    ) -> LocalBoxFuture<'static, crate::Result<String>> {
        let mut seen = self.0.borrow_mut();
        seen.push((now, audience.to_owned()));
        let n = seen.len();
        Box::pin(std::future::ready(Ok(format!("h.assertion-{n}.s"))))
    }
}

#[test]
fn private_key_jwt_signs_a_fresh_assertion_for_the_discovered_endpoint_on_every_attempt() {
    let calls = Rc::new(RefCell::new(Vec::new()));
    let bodies = Rc::new(RefCell::new(Vec::new()));
    let (c, b) = (calls.clone(), bodies.clone());
    let attempts = Rc::new(Cell::new(0));
    let http = move |req: &HttpRequest| -> Result<HttpResponse, TransportError> {
        c.borrow_mut().push(req.url.clone());
        let (status, body): (u16, &str) = if req.url.ends_with("openid-configuration") {
            (
                200,
                r#"{"issuer":"https://idp.example/oauth2/default","token_endpoint":"https://idp.example/oauth2/default/v1/token"}"#,
            )
        } else if req.url.ends_with("/v1/token") {
            b.borrow_mut()
                .push(String::from_utf8(req.body.clone()).unwrap());
            attempts.set(attempts.get() + 1);
            if attempts.get() == 1 {
                (503, "")
            } else {
                (200, GOOD)
            }
        } else {
            (404, "")
        };
        Ok(HttpResponse {
            status,
            headers: vec![],
            body: body.as_bytes().to_vec(),
            elapsed_ms: 1,
        })
    };
    let key = crate::keys::private_key::parse_private_key(
        r#"{"kty":"EC","crv":"P-256","x":"a","y":"b","d":"c","kid":"k"}"#,
        None,
    )
    .unwrap();
    let config = Config {
        auth: ClientAuth::PrivateKeyJwt(key),
        ..issuer_config()
    };
    let signed = Rc::new(RefCell::new(Vec::new()));
    let signers = Signers::for_config(
        &config,
        |_| Rc::new(RecordingSigner(signed.clone())),
        |_| unreachable!("no DPoP here"),
    );
    let source = TokenSource::new(
        config,
        http,
        signers,
        Kv::default(),
        TestRuntime::default(),
        logs().1,
    );
    block_on(source.token(NOW)).unwrap();
    let signed = signed.borrow();
    assert_eq!(signed.len(), 2, "one assertion per attempt");
    assert!(signed
        .iter()
        .all(|(_, aud)| aud == "https://idp.example/oauth2/default/v1/token"));
    let bodies = bodies.borrow();
    assert!(
        bodies[0].contains("client_assertion=h.assertion-1.s")
            && bodies[1].contains("client_assertion=h.assertion-2.s")
    );
    assert!(bodies[0].contains(
        "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
    ));
}
