//! DPoP (RFC 9449): access tokens bound to a key the Worker holds, with no crypto and no I/O.
//!
//! A DPoP-bound token is worthless without its private key, so the key travels with the token:
//! it is part of the cached record (sealed with the token in KV, see [`crate::source::store`]), and any
//! isolate that reads the token can prove possession of it. With `OAUTH_DPOP_KEY` every isolate
//! has the same key anyway; without it, a key is generated for each token request.
//!
//! The core builds the proofs' signing input (§4.2), trims request URIs to `htu` (§4.3),
//! recognises nonce challenges (§8, §9) and remembers the latest nonce per origin. The edge
//! generates and imports keys, signs proofs and hashes tokens for `ath`, all with WebCrypto.

use std::rc::Rc;

use crate::base::bounded::Bounded;
use crate::base::error::{Error, ErrorCode, Result};
use crate::keys::dpop_key::DpopKey;
use futures_util::future::LocalBoxFuture;

/// The error code with which a server asks for a nonce (RFC 9449 §8, §9).
pub(crate) const USE_DPOP_NONCE: &str = "use_dpop_nonce";

/// The `htu` of a request to `url`: the URI without query and fragment (RFC 9449 §4.2, §4.3).
pub(crate) fn htu(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// `scheme://authority` of an absolute URL: nonces are per server (RFC 9449 §8.2).
fn origin(url: &str) -> &str {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url;
    };
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    &url[..end]
}

/// A syntactically valid nonce (RFC 9449 §8.1: `1*NQCHAR`), of a sane length. Anything else
/// from a server is ignored rather than echoed into a proof.
pub(crate) fn valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce.len() <= MAX_NONCE_LEN
        && nonce
            .bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

const MAX_NONCE_LEN: usize = 1024;

/// Servers whose nonces an isolate remembers; more is a misconfiguration, not a workload.
const MAX_ORIGINS: usize = 16;

/// The latest nonce each server gave (RFC 9449 §8.2: a server may send a new one with any
/// response, and expects it in the next proof).
#[derive(Debug)]
pub(crate) struct Nonces(Bounded<String, String>);

impl Default for Nonces {
    fn default() -> Self {
        Self(Bounded::new(MAX_ORIGINS))
    }
}

impl Nonces {
    /// The nonce for requests to `url`'s origin, if its server gave one.
    pub(crate) fn get(&self, url: &str) -> Option<&str> {
        let origin = origin(url);
        self.0.find(|o| o == origin).map(String::as_str)
    }

    /// Remembers `nonce` for `url`'s origin; returns false (and keeps the old one) when the
    /// nonce is malformed.
    pub(crate) fn remember(&mut self, url: &str, nonce: &str) -> bool {
        if !valid_nonce(nonce) {
            return false;
        }
        let origin = origin(url);
        match self.0.find_mut(|o| o == origin) {
            Some(n) if n == nonce => {}
            Some(n) => *n = nonce.to_owned(),
            None => self.0.insert(origin.to_owned(), nonce.to_owned()),
        }
        true
    }
}

/// Whether a token endpoint's refusal asks for a nonce (RFC 9449 §8: `400 use_dpop_nonce`).
pub(crate) fn token_endpoint_wants_nonce(err: &Error) -> bool {
    matches!(err, Error::Refused { code: ErrorCode::Other(c), .. } if c == USE_DPOP_NONCE)
}

/// Makes DPoP keys and proofs; the edge does it with WebCrypto.
pub trait Proofs {
    /// The key for a token about to be requested: the configured one, or a new one.
    fn key(&self) -> LocalBoxFuture<'static, Result<Rc<DpopKey>>>;
    /// A signed proof (RFC 9449 §4.2) by `key` with `claims` (a unique `jti` is added here).
    fn proof(
        &self,
        key: &Rc<DpopKey>,
        htm: &str,
        htu: &str,
        iat: u64,
        ath: Option<&str>,
        nonce: Option<&str>,
    ) -> LocalBoxFuture<'static, Result<String>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::challenge::resource_wants_nonce;

    #[test]
    fn htu_drops_query_and_fragment() {
        for (url, want) in [
            ("https://a.example/p?q=1", "https://a.example/p"),
            ("https://a.example/p#f", "https://a.example/p"),
            ("https://a.example/p?q#f?g", "https://a.example/p"),
            ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/"),
        ] {
            assert_eq!(htu(url), want);
        }
    }

    #[test]
    fn nonces_are_per_origin_and_the_latest_wins() {
        let mut n = Nonces::default();
        assert_eq!(n.get("https://a.example/token"), None);
        assert!(n.remember("https://a.example/token", "n1"));
        assert_eq!(n.get("https://a.example/other?x"), Some("n1"));
        assert_eq!(n.get("https://a.example:8443/token"), None);
        assert_eq!(n.get("https://b.example/token"), None);
        assert!(n.remember("https://a.example/x", "n2"));
        assert_eq!(n.get("https://a.example/token"), Some("n2"));
        // A malformed nonce is not kept (nor echoed into a proof).
        for bad in ["", "a b", "a\"b", "a\\b", "x\r\ny", &"n".repeat(2000)] {
            assert!(!n.remember("https://a.example/", bad), "{bad:?}");
        }
        assert_eq!(n.get("https://a.example/"), Some("n2"));
        for i in 0..40 {
            n.remember(&format!("https://h{i}.example/"), "n");
        }
        assert!(n.0.len() <= MAX_ORIGINS);
    }

    #[test]
    fn nonce_challenges_are_told_from_other_refusals() {
        assert!(resource_wants_nonce(
            401,
            Some(
                r#"DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof""#
            )
        ));
        assert!(resource_wants_nonce(
            401,
            Some(r#"DPoP algs="ES256", error=use_dpop_nonce"#)
        ));
        assert!(!resource_wants_nonce(
            401,
            Some(r#"DPoP error="invalid_token""#)
        ));
        assert!(!resource_wants_nonce(401, None));
        assert!(!resource_wants_nonce(
            400,
            Some(r#"DPoP error="use_dpop_nonce""#)
        ));
        let refusal = |code: &str| Error::Refused {
            status: 400,
            code: ErrorCode::parse(code),
            description: None,
        };
        assert!(token_endpoint_wants_nonce(&refusal("use_dpop_nonce")));
        assert!(!token_endpoint_wants_nonce(&refusal("invalid_dpop_proof")));
        assert!(!token_endpoint_wants_nonce(&refusal("invalid_client")));
    }
}
