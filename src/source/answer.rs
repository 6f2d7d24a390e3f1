//! What one answer of the token endpoint says (RFC 6749 §5.1, §5.2; RFC 9449 §5, §8): the token,
//! checked against what was asked for and bound to its DPoP key, or the error, scrubbed of what
//! was sent; and what an error means for the acquisition (a refused client, an endpoint gone,
//! a token that arrived too late). [`crate::source::acquire`] decides what to do about it.

use std::rc::Rc;

use crate::base::error::{Error, ErrorCode, Result};
use crate::base::log::Source;
use crate::base::redact::Redactor;
use crate::keys::dpop_key::DpopKey;
use crate::oauth::token::{Scheme, Token, MIN_REMAINING_SECS};
use crate::oauth::token_response::parse_token_response;
use crate::oauth::transport::{HttpResponse, TransportError};
use crate::source::context::Context;

/// What one answer of the token endpoint came to.
pub(super) struct Answered {
    pub(super) result: Result<Token>,
    pub(super) status: Option<u16>,
    pub(super) latency: u64,
    /// The answer carried a usable DPoP nonce (RFC 9449 §8).
    pub(super) got_nonce: bool,
}

/// The request an answer answers: what it is read against.
pub(super) struct AnswerTo<'a> {
    /// The DPoP key the token is to be bound to, with DPoP on.
    pub(super) key: Option<&'a Rc<DpopKey>>,
    pub(super) token_url: &'a str,
    /// When it was sent (Unix seconds): the token's lifetime counts from then.
    pub(super) sent_at: u64,
    /// Everything sent, kept from what comes back.
    pub(super) redactor: &'a Redactor,
}

/// What an answer (or a failure to get one) says: the token, checked and bound, or the error.
pub(super) fn read(
    answer: std::result::Result<HttpResponse, TransportError>,
    to: AnswerTo<'_>,
    cx: &mut Context<'_>,
) -> Answered {
    match answer {
        Ok(resp) => {
            let mut got_nonce = false;
            if let (Some(_), Some(nonce)) = (&to.key, resp.header("dpop-nonce")) {
                got_nonce = cx.state.token_nonces.remember(to.token_url, nonce);
            }
            let margin = cx.config.expiry_margin_secs;
            let lead = cx.config.refresh_lead_secs;
            let result = parse_token_response(&resp, to.sent_at, margin, to.redactor)
                .map(|t| t.with_refresh(lead, None).obtained_from(Source::Network))
                .and_then(|t| bind(t, to.key, resp.status));
            Answered {
                result,
                status: Some(resp.status),
                latency: resp.elapsed_ms,
                got_nonce,
            }
        }
        Err(e) => Answered {
            result: Err(Error::Unavailable {
                reason: format!("network error: {}", e.reason),
                retry_after: None,
            }),
            status: None,
            latency: e.elapsed_ms,
            got_nonce: false,
        },
    }
}

/// Whether the token endpoint refused the client's credential: `invalid_client` (RFC 6749 §5.2),
/// or any refusal with 401, as servers answer a wrong secret under other codes (Auth0's
/// `access_denied`, older Keycloak's `unauthorized_client`).
pub(super) fn client_refused(err: &Error) -> bool {
    matches!(
        err,
        Error::Refused {
            code: ErrorCode::InvalidClient,
            ..
        } | Error::Refused { status: 401, .. }
    )
}

/// Whether a failed token request says its endpoint cannot be reached, or is gone (404, 405):
/// a discovered endpoint is then forgotten, so the next attempt discovers it again instead of
/// trusting it for a day.
pub(super) fn endpoint_gone(err: &Error) -> bool {
    match err {
        Error::Unavailable { reason, .. } => reason.starts_with("network error"),
        Error::InvalidResponse { status, .. } => matches!(status, 404 | 405),
        _ => false,
    }
}

/// The error for a token that came back with too little life left to hand out.
///
/// It says the endpoint was too slow for the token's lifetime, as seen from this isolate: an
/// unavailability, held down here only (another isolate may reach the endpoint faster).
pub(super) fn arrived_too_late(token: &Token, now: u64, elapsed_ms: u64) -> Error {
    Error::Unavailable {
        reason: format!(
            "the token had {} s left when it arrived, after {elapsed_ms} ms (tokens are used \
             only with more than {} s left)",
            token.expires_at().saturating_sub(now),
            MIN_REMAINING_SECS
        ),
        retry_after: None,
    }
}

/// Checks the token type against what was asked for and binds a DPoP token to its key. A Bearer
/// token when DPoP was asked for means the server ignored the proof: using it as Bearer would
/// silently drop the protection the operator turned on (RFC 9449 §5).
fn bind(token: Token, key: Option<&Rc<DpopKey>>, status: u16) -> Result<Token> {
    let invalid = |reason: &str| Error::InvalidResponse {
        status,
        reason: reason.to_owned(),
    };
    match (token.scheme(), key) {
        (Scheme::DPoP, Some(key)) => Ok(token.with_dpop_key(key.clone())),
        (Scheme::Bearer, None) => Ok(token),
        (Scheme::Bearer, Some(_)) => Err(invalid(
            "`token_type` is Bearer, not DPoP: the server did not bind the token to the DPoP key",
        )),
        (Scheme::DPoP, None) => Err(invalid(
            "`token_type` is DPoP but OAUTH_DPOP is not true: the token needs proofs",
        )),
    }
}
