//! DPoP (RFC 9449) in the token source, natively: proofs on token requests, the nonce retry,
//! token types, and the key travelling with the token through KV. Fixed clock, test doubles.
use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::config::client::Dpop;
use crate::keys::dpop_key::DpopKey;
use crate::oauth::dpop::Proofs;
use crate::source::records::HOLD_ENTRY;
use crate::source::records::TOKEN_ENTRY;
use crate::{Error, Result, Scheme, TokenSource};
use futures_executor::block_on;
use futures_util::future::LocalBoxFuture;

use super::support::*;

const TOKEN_URL: &str = "https://idp.example/token";
const DPOP_TOKEN: &str = r#"{"access_token":"dpop-1","token_type":"DPoP","expires_in":3600}"#;
const DPOP_TOKEN2: &str = r#"{"access_token":"dpop-2","token_type":"DPoP","expires_in":3600}"#;
const USE_NONCE: &str = r#"{"error":"use_dpop_nonce","error_description":"Authorization server requires nonce in DPoP proof"}"#;

/// A test key: the curve point is not checked here (WebCrypto does that at the edge).
fn key(n: u32) -> Rc<DpopKey> {
    let jwk = format!(r#"{{"kty":"EC","crv":"P-256","x":"x{n}","y":"y{n}","d":"d{n}"}}"#);
    Rc::new(DpopKey::from_jwk("OAUTH_DPOP_KEY", &jwk).unwrap())
}

/// What a proof was asked for.
#[derive(Debug, Clone, PartialEq)]
struct Asked {
    key: String,
    htm: String,
    htu: String,
    iat: u64,
    ath: Option<String>,
    nonce: Option<String>,
}

/// Proofs that record what they were asked for; keys are numbered as they are made.
#[derive(Clone, Default)]
struct TestProofs {
    configured: Option<Rc<DpopKey>>,
    made: Rc<Cell<u32>>,
    asked: Rc<RefCell<Vec<Asked>>>,
}

fn key_name(key: &DpopKey) -> String {
    match key.public() {
        crate::keys::private_key::PublicJwk::Ec { x, .. } => x.clone(),
        other => panic!("{other:?}"),
    }
}

impl Proofs for TestProofs {
    fn key(&self) -> LocalBoxFuture<'static, Result<Rc<DpopKey>>> {
        let key = self.configured.clone().unwrap_or_else(|| {
            self.made.set(self.made.get() + 1);
            key(self.made.get())
        });
        Box::pin(std::future::ready(Ok(key)))
    }

    fn proof(
        &self,
        key: &Rc<DpopKey>,
        htm: &str,
        htu: &str,
        iat: u64,
        ath: Option<&str>,
        nonce: Option<&str>,
    ) -> LocalBoxFuture<'static, Result<String>> {
        let mut asked = self.asked.borrow_mut();
        asked.push(Asked {
            key: key_name(key),
            htm: htm.into(),
            htu: htu.into(),
            iat,
            ath: ath.map(Into::into),
            nonce: nonce.map(Into::into),
        });
        Box::pin(std::future::ready(Ok(format!("proof-{}", asked.len()))))
    }
}

fn dpop_source(ep: &Endpoint, kv: &Kv, dpop: Dpop, proofs: &TestProofs) -> Source {
    logged_source(ep, kv, dpop, proofs, logs().1)
}

fn logged_source(
    ep: &Endpoint,
    kv: &Kv,
    dpop: Dpop,
    proofs: &TestProofs,
    log: crate::source::runtime::LogSink,
) -> Source {
    let mut config = config();
    config.dpop = dpop;
    let signers = Signers::for_config(
        &config,
        |_| unreachable!("no private_key_jwt here"),
        |_| Rc::new(proofs.clone()),
    );
    TokenSource::new(
        config,
        ep.clone(),
        signers,
        kv.clone(),
        TestRuntime::default(),
        log,
    )
}

fn nonce_reply(status: u16, body: &'static str, nonce: &str) -> Reply {
    Reply::Http(status, body, vec![("dpop-nonce".into(), nonce.into())])
}

fn dpop_header(ep: &Endpoint, i: usize) -> Option<String> {
    ep.requests.borrow()[i]
        .headers
        .iter()
        .find(|(k, _)| k == "dpop")
        .map(|(_, v)| v.clone())
}

#[test]
fn a_token_request_carries_a_proof_and_a_nonce_request_costs_one_retry() {
    let ep = Endpoint::script(vec![
        nonce_reply(400, USE_NONCE, "n-1"),
        nonce_reply(200, DPOP_TOKEN, "n-2"),
    ]);
    let kv = Kv::default();
    let proofs = TestProofs::default();
    let (lines, log) = logs();
    let source = logged_source(&ep, &kv, Dpop::GeneratedKey, &proofs, log);
    let t = block_on(source.token(NOW)).unwrap();
    // The expected nonce round trip is logged as such, not as a failed token request.
    assert_eq!(count(&lines, r#""outcome":"dpop_nonce""#), 1);
    assert_eq!(
        count(&lines, r#""outcome":"error""#),
        0,
        "{:?}",
        lines.borrow()
    );

    assert_eq!(
        ep.calls.get(),
        2,
        "the use_dpop_nonce answer is retried once"
    );
    assert_eq!(dpop_header(&ep, 0).as_deref(), Some("proof-1"));
    assert_eq!(dpop_header(&ep, 1).as_deref(), Some("proof-2"));
    let asked = proofs.asked.borrow().clone();
    let first = Asked {
        key: "x1".into(),
        htm: "POST".into(),
        htu: TOKEN_URL.into(),
        iat: NOW,
        ath: None,
        nonce: None,
    };
    assert_eq!(asked[0], first);
    assert_eq!(
        asked[1],
        Asked {
            nonce: Some("n-1".into()),
            ..first
        }
    );
    // One key for the flight, and the token is bound to it.
    assert_eq!(proofs.made.get(), 1);
    assert_eq!(t.scheme(), Scheme::DPoP);
    assert_eq!(t.authorization().expose(), "DPoP dpop-1");
    assert_eq!(t.dpop_key().map(|k| key_name(k)), Some("x1".into()));
    // The nonce that came with the token is the one remembered for the next request.
    assert_eq!(
        source.token_endpoint_nonce(TOKEN_URL).as_deref(),
        Some("n-2")
    );
    // The token endpoint's nonce is not offered to a resource server on the same origin.
    assert_eq!(source.dpop_nonce("https://idp.example/api/users"), None);

    // The next token request (after expiry) sends the remembered nonce at once: one request.
    ep.then(ok(DPOP_TOKEN2));
    let t2 = block_on(source.token(NOW + 3540)).unwrap();
    assert_eq!((t2.access_token().expose(), ep.calls.get()), ("dpop-2", 3));
    assert_eq!(proofs.asked.borrow()[2].nonce.as_deref(), Some("n-2"));
    assert_eq!(
        t2.dpop_key().map(|k| key_name(k)),
        Some("x2".into()),
        "a new key per token"
    );
}

#[test]
fn a_second_nonce_refusal_is_an_error_not_a_loop() {
    let ep = Endpoint::script(vec![
        nonce_reply(400, USE_NONCE, "n-1"),
        nonce_reply(400, USE_NONCE, "n-2"),
    ]);
    let proofs = TestProofs::default();
    let kv = Kv::default();
    let source = dpop_source(&ep, &kv, Dpop::GeneratedKey, &proofs);
    let err = block_on(source.token(NOW)).unwrap_err();
    assert!(
        matches!(&err, Error::Refused { status: 400, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("use_dpop_nonce"), "{err}");
    assert_eq!(ep.calls.get(), 2);
    // Held down in this isolate like any refusal: the next caller does not hit the endpoint
    // again. Not in KV: another isolate's nonce may be current.
    assert!(block_on(source.token(NOW + 1)).is_err());
    assert_eq!(ep.calls.get(), 2);
    assert!(!kv.map.borrow().contains_key(HOLD_ENTRY));
}

#[test]
fn a_nonce_refusal_without_a_usable_nonce_is_not_retried() {
    for reply in [
        Reply::Http(400, USE_NONCE, vec![]),
        nonce_reply(400, USE_NONCE, "bad nonce with spaces"),
    ] {
        let ep = Endpoint::script(vec![reply]);
        let source = dpop_source(
            &ep,
            &Kv::default(),
            Dpop::GeneratedKey,
            &TestProofs::default(),
        );
        assert!(block_on(source.token(NOW)).is_err());
        assert_eq!(ep.calls.get(), 1);
    }
}

#[test]
fn the_token_type_must_match_what_was_asked() {
    // DPoP asked, Bearer given: the server ignored the proof.
    let ep = Endpoint::new(200, GOOD);
    let source = dpop_source(
        &ep,
        &Kv::default(),
        Dpop::GeneratedKey,
        &TestProofs::default(),
    );
    let err = block_on(source.token(NOW)).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidResponse { reason, .. } if reason.contains("did not bind")),
        "{err:?}"
    );
    // DPoP off, DPoP given: unusable without proofs.
    let ep = Endpoint::new(200, DPOP_TOKEN);
    let source = new_source(
        config(),
        ep.clone(),
        Kv::default(),
        TestRuntime::default(),
        logs().1,
    );
    let err = block_on(source.token(NOW)).unwrap_err();
    assert!(err.to_string().contains("OAUTH_DPOP"), "{err}");
}

#[test]
fn a_second_isolate_reads_the_token_and_its_key_from_kv() {
    let ep = Endpoint::new(200, DPOP_TOKEN);
    let kv = Kv::default();
    let first = TestProofs::default();
    let t1 = block_on(dpop_source(&ep, &kv, Dpop::GeneratedKey, &first).token(NOW)).unwrap();
    // The record holds the private key (the store seals the whole value at the edge).
    assert!(kv.map.borrow()[TOKEN_ENTRY].0.contains(r#"\"d\":\"d1\""#));

    let second = TestProofs::default();
    let t2 = block_on(dpop_source(&ep, &kv, Dpop::GeneratedKey, &second).token(NOW + 5)).unwrap();
    assert_eq!(
        ep.calls.get(),
        1,
        "no token request from the second isolate"
    );
    assert_eq!(second.made.get(), 0, "and no key of its own");
    assert_eq!(t2, t1);
    assert_eq!(t2.dpop_key().map(|k| key_name(k)), Some("x1".into()));
}

#[test]
fn a_configured_key_is_used_and_a_token_bound_to_another_is_not() {
    let ep = Endpoint::new(200, DPOP_TOKEN);
    let kv = Kv::default();
    // A token bound to a generated key sits in KV (as after a switch to OAUTH_DPOP_KEY).
    block_on(dpop_source(&ep, &kv, Dpop::GeneratedKey, &TestProofs::default()).token(NOW)).unwrap();
    let proofs = TestProofs {
        configured: Some(key(7)),
        ..TestProofs::default()
    };
    ep.then(ok(DPOP_TOKEN2));
    let t = block_on(dpop_source(&ep, &kv, Dpop::Key(key(7)), &proofs).token(NOW + 5)).unwrap();
    assert_eq!((t.access_token().expose(), ep.calls.get()), ("dpop-2", 2));
    assert_eq!(t.dpop_key().map(|k| key_name(k)), Some("x7".into()));
    assert_eq!(proofs.made.get(), 0);
    assert_eq!(proofs.asked.borrow()[0].key, "x7");
}
