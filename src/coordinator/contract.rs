//! The coordinator tier: one caller of the token endpoint for a whole fleet of isolates.
//!
//! Token path, tier by tier: isolate memory → KV → coordinator → token endpoint. Without a
//! coordinator every isolate that misses KV (KV is eventually consistent: a write takes up to a
//! minute to reach other locations) asks the token endpoint itself. With one (a Durable Object
//! on Workers), isolates ask it instead: it answers from its memory or storage, or makes the one
//! token request for its configuration, and is the only writer of the configuration's KV entries.
//!
//! This module is the I/O-free part: the [`Coordinator`] trait the token source asks through,
//! and the wire format of asks and answers (JSON), so both sides are tested natively. A
//! coordinator that errs, is slow or is absent is never fatal: the source falls back to its own
//! token request and says so in the log.

use futures_util::future::LocalBoxFuture;
use serde::{Deserialize, Serialize};

use crate::base::error::Error;
use crate::oauth::holddown::{decode_hold, encode_hold, shared};
use crate::oauth::token::Token;
use crate::oauth::transport::HttpClient;
use crate::source::store::{decode_record, encode_record, TokenStore};
use crate::source::token_source::{Runtime, TokenSource};

/// What an isolate asks the coordinator.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Ask {
    /// The isolate's token is in its refresh window: answer a newer one than `have`, refreshing
    /// if need be, rather than the current one.
    pub refresh: bool,
    /// Issue time (Unix seconds) of the token the isolate holds, if any.
    pub have: Option<u64>,
    /// An upstream rejected this token (issue and expiry times, Unix seconds: the token itself
    /// never travels in an ask): evict it if it is still the coordinator's, once for the fleet.
    pub rejected: Option<(u64, u64)>,
}

/// What the coordinator answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A token (with its DPoP key, for a DPoP token).
    Token(Token),
    /// The token endpoint refused or is held down, until `until` (Unix seconds): the same
    /// answer the isolate would have got itself, without asking the endpoint.
    Held(Error, u64),
}

/// A coordinator as the token source sees it. `Err` is the coordinator's own trouble (absent,
/// slow, failing, another configuration): the source then does the work itself.
pub trait Coordinator {
    /// Asks for a token.
    fn ask(&self, ask: Ask) -> LocalBoxFuture<'static, Result<Answer, String>>;
}

/// The coordinator's side: answers `ask` at `now` from `source`, the coordinator's own token
/// source (its store is the coordinator's storage, mirrored to KV). `Err` means "do it
/// yourself": this coordinator cannot serve (its configuration is broken).
///
/// - A reported rejection of the coordinator's current token evicts it, once for the fleet
///   (later reports of the same token find a newer one and get it), whether the coordinator
///   held it in memory or loads it from its storage.
/// - A refresh ask gets a token newer than the isolate's, if the coordinator holds one that is
///   not itself due; otherwise the coordinator refreshes (one token request, joined by every
///   concurrent ask) and answers with the result.
/// - Any other ask gets the current token, fetched if need be.
pub async fn serve<H, S, R>(
    source: &TokenSource<H, S, R>,
    ask: Ask,
    now: u64,
) -> Result<Answer, String>
where
    H: HttpClient + 'static,
    S: TokenStore + 'static,
    R: Runtime + 'static,
{
    let rejected = |t: &Token| {
        ask.rejected
            .is_some_and(|(issued, expires)| t.issued_at() == issued && t.expires_at() == expires)
    };
    if let Some(current) = source.peek().filter(|t| rejected(t)) {
        source.invalidate(&current, now).await;
    }
    let newer = source.peek().filter(|t| {
        t.is_fresh(now) && !t.refresh_due(now) && ask.have.is_none_or(|h| t.issued_at() > h)
    });
    let mut result = match newer {
        Some(t) if ask.refresh => Ok(t),
        _ if ask.refresh => source.refresh(now).await,
        _ => source.token(now).await,
    };
    // A coordinator that was not in memory loads the rejected token from its storage: evict it
    // now, once, and answer with a new one. If its eviction hold-down keeps the token (an
    // upstream that rejects every token), that token is the answer, as it would be in an
    // isolate without a coordinator.
    if let Some(t) = result.as_ref().ok().filter(|t| rejected(t)).cloned() {
        if source.invalidate(&t, now).await {
            result = source.token(now).await;
        }
    }
    match result {
        Ok(t) => Ok(Answer::Token(t)),
        // What the endpoint answered (a refusal, nonsense, a 5xx or 429) is the fleet's answer:
        // the fleet backs off as one. The coordinator's own trouble (its network, a timeout, a
        // token that reached it too late) is not: the isolate then asks the endpoint itself.
        Err(e) => match source.hold(now) {
            Some((until, cause)) if shared(&cause) || answered_unavailable(&cause) => {
                Ok(Answer::Held(e, until))
            }
            _ => Err(format!("coordinator could not get a token: {e}")),
        },
    }
}

/// The endpoint answered with an unavailable status (5xx or 429): its state, not the
/// coordinator's network (see [`crate::oauth::token_response::parse_token_response`]).
fn answered_unavailable(err: &Error) -> bool {
    matches!(err, Error::Unavailable { reason, .. } if reason.starts_with("HTTP "))
}

#[derive(Serialize, Deserialize)]
struct Wire {
    v: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hold: Option<String>,
}

/// Serialises an answer. A token answer carries the token in the clear: it travels only between
/// the isolate and its own Durable Object, inside the platform.
pub fn encode_answer(answer: &Answer) -> String {
    let wire = match answer {
        Answer::Token(t) => Wire {
            v: 1,
            token: Some(encode_record(t)),
            hold: None,
        },
        Answer::Held(err, until) => Wire {
            v: 1,
            token: None,
            hold: encode_hold(*until, err),
        },
    };
    serde_json::to_string(&wire).expect("strings serialise")
}

/// Reads an answer, applying the isolate's own expiry `margin` to a token.
pub fn decode_answer(raw: &str, margin: u64) -> Result<Answer, String> {
    let wire: Wire =
        serde_json::from_str(raw).map_err(|_| "coordinator answer is not JSON".to_owned())?;
    if wire.v != 1 {
        return Err("coordinator answer of another version".into());
    }
    match (wire.token, wire.hold) {
        (Some(record), None) => decode_record(&record, margin)
            .map(Answer::Token)
            .ok_or_else(|| "coordinator token record unreadable".into()),
        (None, Some(hold)) => decode_hold(&hold)
            .map(|(until, err)| Answer::Held(err, until))
            .ok_or_else(|| "coordinator hold unreadable".into()),
        _ => Err("coordinator answer has neither a token nor a hold".into()),
    }
}

#[derive(Serialize, Deserialize)]
struct AskWire {
    name: String,
    /// The profile whose settings name the configuration (`M2M_PROFILES`): the object reads
    /// the same settings the isolate did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    profile: Option<String>,
    #[serde(flatten)]
    ask: Ask,
}

/// An ask as it travels: for the coordinator `name` (the configuration's cache identity, see
/// [`crate::config::cache_key`]), whose settings are the profile `profile`'s (`None`: the unprefixed
/// ones). A coordinator serving another configuration refuses, and the isolate falls back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addressed {
    /// The coordinator's name.
    pub name: String,
    /// The profile whose settings the coordinator reads.
    pub profile: Option<String>,
    /// The ask.
    pub ask: Ask,
}

/// Reads an ask.
pub fn decode_ask(raw: &str) -> Result<Addressed, String> {
    let wire: AskWire = serde_json::from_str(raw).map_err(|_| "not an ask".to_owned())?;
    Ok(Addressed {
        name: wire.name,
        profile: wire.profile,
        ask: wire.ask,
    })
}

/// Serialises an ask for the coordinator `name`, of the profile `profile`.
pub fn encode_ask(name: &str, profile: Option<&str>, ask: &Ask) -> String {
    serde_json::to_string(&AskWire {
        name: name.to_owned(),
        profile: profile.map(str::to_owned),
        ask: ask.clone(),
    })
    .expect("strings and integers serialise")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::error::ErrorCode;
    use crate::base::secret::AccessToken;
    use crate::oauth::token::Scheme;

    #[test]
    fn answers_round_trip_with_the_readers_margin() {
        let t = Token::new(AccessToken::new("tok"), Scheme::Bearer, 100, 3700, 60);
        let raw = encode_answer(&Answer::Token(t.clone()));
        assert_eq!(decode_answer(&raw, 60), Ok(Answer::Token(t)));
        match decode_answer(&raw, 600).unwrap() {
            Answer::Token(strict) => assert_eq!(strict.fresh_until(), 3100),
            other => panic!("{other:?}"),
        }
        let refused = Error::Refused {
            status: 401,
            code: ErrorCode::InvalidClient,
            description: Some("bad client".into()),
        };
        let raw = encode_answer(&Answer::Held(refused.clone(), 130));
        assert_eq!(decode_answer(&raw, 60), Ok(Answer::Held(refused, 130)));
        for bad in [
            "",
            "{}",
            r#"{"v":2,"token":"x"}"#,
            r#"{"v":1,"token":"garbage"}"#,
        ] {
            assert!(decode_answer(bad, 60).is_err(), "{bad}");
        }
    }

    #[test]
    fn asks_round_trip_and_carry_no_token() {
        let ask = Ask {
            refresh: true,
            have: Some(100),
            rejected: Some((100, 3700)),
        };
        let raw = encode_ask("m2m:v2:abc", None, &ask);
        let want = Addressed {
            name: "m2m:v2:abc".to_owned(),
            profile: None,
            ask: ask.clone(),
        };
        assert_eq!(decode_ask(&raw), Ok(want.clone()));
        let raw = encode_ask("m2m:v2:abc", Some("billing"), &ask);
        let want = Addressed {
            profile: Some("billing".into()),
            ..want
        };
        assert_eq!(decode_ask(&raw), Ok(want));
        assert!(decode_ask("nope").is_err());
    }
}
