//! The one cache trait the core needs, and the layout of a cached token.
//!
//! The store belongs to one configuration: it namespaces the names given here under that
//! configuration's cache key, so the core never sees or builds KV keys.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::base::secret::AccessToken;
use crate::keys::dpop_key::DpopKey;
use crate::oauth::token::{Scheme, Token};

/// Workers KV refuses an `expirationTtl` below 60 seconds; shorter-lived tokens stay in memory.
pub const KV_MIN_TTL_SECS: u64 = 60;

/// Name of the cached token entry.
pub const TOKEN_ENTRY: &str = "token";

/// A store write a flight leaves until its waiters have their answer.
pub(crate) enum Write {
    /// The token, for this long (seconds).
    Token(Token, u64),
    Put(&'static str, String, u64),
    Delete(&'static str),
}

/// Longest any one store operation may take; an implementation must give up by then (a read is
/// then a miss, a write skipped). Flights budget for it (see [`crate::source::token_source::FLIGHT_SLACK_MS`]).
pub const STORE_TIMEOUT_MS: u64 = 1_500;

/// A shared cache (Workers KV in production). Failures are reported as text and treated by the
/// caller as a miss or a skipped write: the cache is an optimisation, never a dependency. Every
/// operation settles within `STORE_TIMEOUT_MS` (1.5 s).
pub trait TokenStore {
    /// Reads an entry.
    fn get(&self, name: &str) -> impl Future<Output = Result<Option<String>, String>>;
    /// Writes an entry that expires after `ttl_secs` (at least `KV_MIN_TTL_SECS`, 60 s, as Workers KV requires).
    fn put(
        &self,
        name: &str,
        value: String,
        ttl_secs: u64,
    ) -> impl Future<Output = Result<(), String>>;
    /// Removes an entry.
    fn delete(&self, name: &str) -> impl Future<Output = Result<(), String>>;
}

/// No shared cache: memory only.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoStore;

impl TokenStore for NoStore {
    fn get(&self, _: &str) -> impl Future<Output = Result<Option<String>, String>> {
        std::future::ready(Ok(None))
    }
    fn put(&self, _: &str, _: String, _: u64) -> impl Future<Output = Result<(), String>> {
        std::future::ready(Ok(()))
    }
    fn delete(&self, _: &str) -> impl Future<Output = Result<(), String>> {
        std::future::ready(Ok(()))
    }
}

/// A map as a store, for tests and for embedding in other caches. TTLs are not enforced.
impl TokenStore for RefCell<HashMap<String, String>> {
    fn get(&self, name: &str) -> impl Future<Output = Result<Option<String>, String>> {
        std::future::ready(Ok(self.borrow().get(name).cloned()))
    }
    fn put(&self, name: &str, value: String, _: u64) -> impl Future<Output = Result<(), String>> {
        self.borrow_mut().insert(name.to_owned(), value);
        std::future::ready(Ok(()))
    }
    fn delete(&self, name: &str) -> impl Future<Output = Result<(), String>> {
        self.borrow_mut().remove(name);
        std::future::ready(Ok(()))
    }
}

/// A cached token as the writer saw it: when it was obtained and when it expires. Freshness and
/// the refresh window are not stored: each reader applies its own `OAUTH_EXPIRY_MARGIN_SECS`.
#[derive(Serialize, Deserialize)]
struct Record {
    v: u8,
    access_token: String,
    token_type: String,
    /// The send time of the token request the token came from (Unix seconds).
    issued_at: u64,
    expires_at: u64,
    /// The private JWK a DPoP token is bound to (RFC 9449): an isolate that reads the token
    /// needs the key to use it. The whole value is sealed before it reaches KV.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dpop_jwk: Option<String>,
}

/// Layout version of [`Record`]; values of any other version are misses.
const RECORD_VERSION: u8 = 2;

/// The setting name DPoP key errors would carry for a cached key; never shown (a bad cached
/// value is a miss), but [`DpopKey::from_jwk`] wants one.
const CACHED_KEY: &str = "TOKEN_CACHE";

/// Serialises a token for the shared cache.
pub fn encode_record(token: &Token) -> String {
    let record = Record {
        v: RECORD_VERSION,
        access_token: token.access_token().expose().to_owned(),
        token_type: token.scheme().as_str().to_owned(),
        issued_at: token.issued_at(),
        expires_at: token.expires_at(),
        dpop_jwk: token
            .dpop_key()
            .map(|k| k.private_jwk().expose().to_owned()),
    };
    serde_json::to_string(&record).expect("a record of strings and integers serialises")
}

/// Reads a cached token, applying the reader's own expiry `margin` (`OAUTH_EXPIRY_MARGIN_SECS`).
/// Anything unexpected (another version, another program's value, a token unsafe in a header,
/// an expiry before its issue time) is `None`: a miss, to be overwritten.
pub fn decode_record(raw: &str, margin: u64) -> Option<Token> {
    let r: Record = serde_json::from_str(raw).ok()?;
    let header_safe =
        !r.access_token.is_empty() && r.access_token.bytes().all(|b| b.is_ascii_graphic());
    if r.v != RECORD_VERSION || !header_safe || r.expires_at <= r.issued_at {
        return None;
    }
    let scheme = Scheme::parse(&r.token_type)?;
    let token = Token::new(
        AccessToken::new(r.access_token),
        scheme,
        r.issued_at,
        r.expires_at,
        margin,
    );
    // A DPoP token without its key is useless, and a Bearer token has none.
    match (scheme, r.dpop_jwk) {
        (Scheme::Bearer, None) => Some(token),
        (Scheme::DPoP, Some(jwk)) => {
            let key = DpopKey::from_jwk(CACHED_KEY, &jwk).ok()?;
            Some(token.with_dpop_key(std::rc::Rc::new(key)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let t = Token::new(AccessToken::new("abc.def"), Scheme::Bearer, 100, 3700, 60);
        assert_eq!(decode_record(&encode_record(&t), 60), Some(t.clone()));
        // The reader's own margin decides freshness, not the writer's.
        let strict = decode_record(&encode_record(&t), 600).unwrap();
        assert_eq!(strict.expires_at(), t.expires_at());
        assert_eq!(strict.fresh_until(), 3700 - 600);
    }

    #[test]
    fn dpop_tokens_keep_their_key() {
        let key = std::rc::Rc::new(
            DpopKey::from_jwk("OAUTH_DPOP_KEY", crate::keys::dpop_key::TEST_JWK).unwrap(),
        );
        let t = Token::new(AccessToken::new("abc.def"), Scheme::DPoP, 100, 3700, 60)
            .with_dpop_key(key.clone());
        let back = decode_record(&encode_record(&t), 60).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.dpop_key().map(|k| k.public()), Some(key.public()));
        assert_eq!(back.authorization().expose(), "DPoP abc.def");
        // A DPoP token without its key, or a Bearer token with one, is a miss.
        let keyless = Token::new(AccessToken::new("abc.def"), Scheme::DPoP, 100, 3700, 60);
        assert_eq!(decode_record(&encode_record(&keyless), 60), None);
        let bearer = encode_record(&Token::new(AccessToken::new("a"), Scheme::Bearer, 1, 99, 0));
        let with_key = bearer.replace(
            '}',
            &format!(
                r#","dpop_jwk":{}}}"#,
                serde_json::json!(crate::keys::dpop_key::TEST_JWK)
            ),
        );
        assert_eq!(decode_record(&with_key, 60), None);
    }

    #[test]
    fn foreign_or_corrupt_values_are_misses() {
        for raw in [
            "",
            "not json",
            "{}",
            // v1 records (the writer's freshness, no issue time) are no longer read.
            r#"{"v":1,"access_token":"a","token_type":"Bearer","expires_at":9,"fresh_until":8}"#,
            r#"{"v":3,"access_token":"a","token_type":"Bearer","issued_at":1,"expires_at":99}"#,
            r#"{"v":2,"access_token":"a\nb","token_type":"Bearer","issued_at":1,"expires_at":99}"#,
            r#"{"v":2,"access_token":"","token_type":"Bearer","issued_at":1,"expires_at":99}"#,
            r#"{"v":2,"access_token":"a","token_type":"mac","issued_at":1,"expires_at":99}"#,
            r#"{"v":2,"access_token":"a","token_type":"Bearer","issued_at":99,"expires_at":99}"#,
            r#"{"v":2,"access_token":"a","token_type":"Bearer","issued_at":-1,"expires_at":99}"#,
        ] {
            assert_eq!(decode_record(raw, 60), None, "{raw}");
        }
    }
}
