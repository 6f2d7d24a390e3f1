//! The wire format of asks and answers between an isolate and its coordinator (JSON), so both
//! sides are tested natively.

use serde::{Deserialize, Serialize};

use crate::source::coordinator::{Answer, Ask};
use crate::source::records::{decode_hold, encode_hold};
use crate::source::records::{decode_record, encode_record};

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
pub(crate) fn encode_answer(answer: &Answer) -> String {
    let wire = match answer {
        Answer::Token(t) => Wire {
            v: 1,
            token: Some(encode_record(t)),
            hold: None,
        },
        Answer::Held { error, until } => Wire {
            v: 1,
            token: None,
            hold: encode_hold(*until, error, 0),
        },
    };
    serde_json::to_string(&wire).expect("strings serialise")
}

/// Reads an answer, applying the isolate's own expiry `margin` to a token.
pub(crate) fn decode_answer(raw: &str, margin: u64) -> Result<Answer, String> {
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
            .map(|h| Answer::Held {
                error: h.error,
                until: h.until,
            })
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
    /// A note (the fleet uses the token), not an ask: nothing to answer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    note: bool,
    /// A request for the coordinator's status view, not an ask.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    status: bool,
    #[serde(flatten)]
    ask: Ask,
}

/// What an isolate sends its coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Message {
    /// An ask for the fleet's token.
    Ask,
    /// A note that the fleet uses the token (see `Coordinator::note`): nothing to answer.
    Note,
    /// A request for the coordinator's status view (no token, no credential).
    Status,
}

/// An ask as it travels: for the coordinator `name` (the configuration's cache identity, see
/// [`crate::config::cache_key`]), whose settings are the profile `profile`'s (`None`: the unprefixed
/// ones). A coordinator serving another configuration refuses, and the isolate falls back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Addressed {
    /// The coordinator's name.
    pub name: String,
    /// The profile whose settings the coordinator reads.
    pub profile: Option<String>,
    /// What this is.
    pub message: Message,
    /// The ask (the default for a note or a status request).
    pub ask: Ask,
}

/// Reads an ask.
pub(crate) fn decode_ask(raw: &str) -> Result<Addressed, String> {
    let wire: AskWire = serde_json::from_str(raw).map_err(|_| "not an ask".to_owned())?;
    let message = match (wire.note, wire.status) {
        (false, false) => Message::Ask,
        (true, false) => Message::Note,
        (false, true) => Message::Status,
        (true, true) => return Err("both a note and a status request".into()),
    };
    Ok(Addressed {
        name: wire.name,
        profile: wire.profile,
        message,
        ask: wire.ask,
    })
}

/// Serialises an ask for the coordinator `name`, of the profile `profile`.
pub(crate) fn encode_ask(name: &str, profile: Option<&str>, ask: &Ask) -> String {
    encode(name, profile, Message::Ask, ask)
}

/// Serialises a note for the coordinator `name` (see `Coordinator::note`).
pub(crate) fn encode_note(name: &str, profile: Option<&str>) -> String {
    encode(name, profile, Message::Note, &Ask::default())
}

/// Serialises a status request for the coordinator `name`.
pub(crate) fn encode_status(name: &str, profile: Option<&str>) -> String {
    encode(name, profile, Message::Status, &Ask::default())
}

fn encode(name: &str, profile: Option<&str>, message: Message, ask: &Ask) -> String {
    serde_json::to_string(&AskWire {
        name: name.to_owned(),
        profile: profile.map(str::to_owned),
        note: message == Message::Note,
        status: message == Message::Status,
        ask: ask.clone(),
    })
    .expect("strings and integers serialise")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::error::{Error, ErrorCode};
    use crate::base::secret::AccessToken;
    use crate::oauth::token::Scheme;
    use crate::oauth::token::Token;

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
        let raw = encode_answer(&Answer::Held {
            error: refused.clone(),
            until: 130,
        });
        assert_eq!(
            decode_answer(&raw, 60),
            Ok(Answer::Held {
                error: refused,
                until: 130
            })
        );
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
            message: Message::Ask,
            ask: ask.clone(),
        };
        assert_eq!(decode_ask(&raw), Ok(want.clone()));
        assert!(!raw.contains("note"), "an ask as it always was: {raw}");
        let raw = encode_ask("m2m:v2:abc", Some("billing"), &ask);
        let want = Addressed {
            profile: Some("billing".into()),
            ..want
        };
        assert_eq!(decode_ask(&raw), Ok(want.clone()));
        assert!(decode_ask("nope").is_err());
        let note = decode_ask(&encode_note("m2m:v2:abc", Some("billing"))).unwrap();
        assert!(
            note.message == Message::Note
                && note.ask == Ask::default()
                && note.profile == want.profile
        );
        let status = decode_ask(&encode_status("m2m:v2:abc", None)).unwrap();
        assert_eq!(status.message, Message::Status);
        assert!(decode_ask(r#"{"name":"n","note":true,"status":true}"#).is_err());
    }
}
