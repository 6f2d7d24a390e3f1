//! Every record the token path stores, in one place: the token (with its DPoP key), the
//! hold-down another isolate shares, and the discovered token endpoint. Each is versioned JSON,
//! sealed by the edge before it reaches KV; anything unreadable is a miss, never an error.

use serde::{Deserialize, Serialize};

use crate::base::error::{Error, ErrorCode};
use crate::base::secret::AccessToken;
use crate::keys::dpop_key::DpopKey;
use crate::oauth::token::{Scheme, Token};
use crate::settings::values::parse_endpoint_url;

/// Name of the cached token entry.
pub const TOKEN_ENTRY: &str = "token";

/// Name of the hold-down entry in the store.
pub const HOLD_ENTRY: &str = "hold";

/// Name of the metadata entry in the store.
pub(crate) const META_ENTRY: &str = "meta";

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
    /// The server's `refresh_in` (seconds after issue): every reader honours it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_in: Option<u64>,
}

/// Layout version of [`Record`]; values of any other version are misses.
const RECORD_VERSION: u8 = 2;

/// The setting name DPoP key errors would carry for a cached key; never shown (a bad cached
/// value is a miss), but [`DpopKey::from_jwk`] wants one.
const CACHED_KEY: &str = "TOKEN_CACHE";

/// Serialises a token for the shared cache.
pub(crate) fn encode_record(token: &Token) -> String {
    let record = Record {
        v: RECORD_VERSION,
        access_token: token.access_token().expose().to_owned(),
        token_type: token.scheme().as_str().to_owned(),
        issued_at: token.issued_at(),
        expires_at: token.expires_at(),
        dpop_jwk: token
            .dpop_key()
            .map(|k| k.private_jwk().expose().to_owned()),
        refresh_in: token.refresh_in(),
    };
    serde_json::to_string(&record).expect("a record of strings and integers serialises")
}

/// Reads a cached token, applying the reader's own expiry `margin` (`OAUTH_EXPIRY_MARGIN_SECS`).
/// Anything unexpected (another version, another program's value, a token unsafe in a header,
/// an expiry before its issue time) is `None`: a miss, to be overwritten.
pub(crate) fn decode_record(raw: &str, margin: u64) -> Option<Token> {
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
    )
    .with_refresh(None, r.refresh_in);
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

#[derive(Serialize, Deserialize)]
struct HoldRecord {
    v: u8,
    until: u64,
    kind: String,
    status: u16,
    code: Option<String>,
    text: Option<String>,
    /// How many flights in a row had found the endpoint unavailable: the outage schedule's
    /// step, so a reader (a restarted coordinator, another isolate) goes on with it.
    #[serde(default, skip_serializing_if = "is_zero")]
    failed: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A hold-down as stored: until when, what caused it, and the outage schedule's step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredHold {
    pub(crate) until: u64,
    pub(crate) error: Error,
    pub(crate) failed: u32,
}

/// Serialises a hold-down for the shared store, at step `failed` of the outage schedule.
pub(crate) fn encode_hold(until: u64, err: &Error, failed: u32) -> Option<String> {
    let (kind, status, code, text) = match err {
        Error::Refused {
            status,
            code,
            description,
        } => (
            "refused",
            *status,
            Some(code.as_str().to_owned()),
            description.clone(),
        ),
        Error::InvalidResponse { status, reason } => {
            ("invalid", *status, None, Some(reason.clone()))
        }
        Error::Unavailable { reason, .. } => ("unavailable", 0, None, Some(reason.clone())),
        _ => return None,
    };
    let r = HoldRecord {
        v: 1,
        until,
        kind: kind.into(),
        status,
        code,
        text,
        failed,
    };
    serde_json::to_string(&r).ok()
}

/// Reads a hold-down; `None` for anything unreadable.
pub(crate) fn decode_hold(raw: &str) -> Option<StoredHold> {
    let r: HoldRecord = serde_json::from_str(raw).ok()?;
    if r.v != 1 {
        return None;
    }
    let err = match r.kind.as_str() {
        "refused" => Error::Refused {
            status: r.status,
            code: ErrorCode::parse(&r.code?),
            description: r.text,
        },
        "invalid" => Error::InvalidResponse {
            status: r.status,
            reason: r.text?,
        },
        "unavailable" => Error::Unavailable {
            reason: r.text?,
            retry_after: None,
        },
        _ => return None,
    };
    Some(StoredHold {
        until: r.until,
        error: err,
        failed: r.failed,
    })
}

/// The metadata entry as stored: the endpoint and until when (Unix seconds) it is trusted.
#[derive(serde::Serialize, serde::Deserialize)]
struct MetaRecord {
    v: u8,
    token_endpoint: String,
    until: u64,
}

/// Serialises a discovered endpoint for the store, trusted until `until` (Unix seconds).
pub(crate) fn encode_meta(endpoint: &str, until: u64) -> String {
    let record = MetaRecord {
        v: 1,
        token_endpoint: endpoint.to_owned(),
        until,
    };
    serde_json::to_string(&record).expect("strings and integers serialise")
}

/// A stored endpoint still trusted at `now`, held to the rules of a configured one; anything
/// else is `None`, and discovery runs again.
pub(crate) fn decode_meta(raw: &str, now: u64) -> Option<(String, u64)> {
    let meta: MetaRecord = serde_json::from_str(raw).ok()?;
    (meta.v == 1 && now < meta.until && parse_endpoint_url(&meta.token_endpoint).is_ok())
        .then_some((meta.token_endpoint, meta.until))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::holddown::refused;

    #[test]
    fn a_token_record_round_trips_and_the_reader_applies_its_own_margin() {
        let t = Token::new(AccessToken::new("abc.def"), Scheme::Bearer, 100, 3700, 60);
        assert_eq!(decode_record(&encode_record(&t), 60), Some(t.clone()));
        // The reader's own margin decides freshness, not the writer's.
        let strict = decode_record(&encode_record(&t), 600).unwrap();
        assert_eq!(strict.expires_at(), t.expires_at());
        assert_eq!(strict.fresh_until(), 3700 - 600);
        // A server's `refresh_in` travels with the token: every reader honours it.
        let early = t.clone().with_refresh(None, Some(1000));
        let back = decode_record(&encode_record(&early), 60).unwrap();
        assert_eq!((back.refresh_at(), back.refresh_in()), (1100, Some(1000)));
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

    #[test]
    fn a_hold_record_round_trips_and_garbage_is_a_miss() {
        for e in [
            refused(),
            Error::InvalidResponse {
                status: 200,
                reason: "HTML".into(),
            },
            Error::Unavailable {
                reason: "HTTP 503".into(),
                retry_after: None,
            },
        ] {
            let back = decode_hold(&encode_hold(77, &e, 3).unwrap()).unwrap();
            assert_eq!((back.until, back.failed), (77, 3));
            assert_eq!(back.error, e);
        }
        for raw in [
            "",
            "{}",
            r#"{"v":2,"until":1,"kind":"refused","status":1}"#,
            r#"{"v":1,"until":1,"kind":"x","status":1}"#,
        ] {
            assert_eq!(decode_hold(raw), None, "{raw}");
        }
    }
}
