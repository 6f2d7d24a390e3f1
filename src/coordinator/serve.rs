//! The coordinator's side of the coordinator tier: answering an isolate's ask from the
//! coordinator's own token source, one eviction per rejected token, one refresh for every ask.

use crate::oauth::dpop::token_endpoint_wants_nonce;
use crate::oauth::token::Token;
use crate::oauth::transport::HttpClient;
use crate::source::coordinator::{Answer, Ask};
use crate::source::runtime::Runtime;
use crate::source::store::TokenStore;
use crate::source::token_source::TokenSource;

/// Seconds an answer may take to reach an isolate, with the isolate's own use still ahead.
const TRIP_SECS: u64 = 5;

/// The coordinator's side: answers `ask` at `now` from `source`, the coordinator's own token
/// source (its store is the coordinator's storage, mirrored to KV). `Err` means "do it
/// yourself": this coordinator cannot serve (its configuration is broken).
///
/// - A reported rejection of the coordinator's current token evicts it, once for the fleet
///   (later reports of the same token find a newer one and get it), whether the coordinator
///   held it in memory or loads it from its storage. Evictions back off as an isolate's do
///   ([`TokenSource::invalidate`]), for the whole fleet: an upstream that rejects every token
///   costs the fleet about one token an hour. Isolates report rejections only, never
///   acceptances, so what ends the coordinator's backoff is a token that worked for a while
///   before it was rejected.
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
    // now, once, and answer with a new one. If its eviction window keeps the token (an
    // upstream that rejects every token), that token is the answer, as it would be in an
    // isolate without a coordinator.
    if let Some(t) = result.as_ref().ok().filter(|t| rejected(t)).cloned() {
        if source.invalidate(&t, now).await {
            result = source.token(now).await;
        }
    }
    match result {
        // A token past its margin that the coordinator keeps for want of a better one (the
        // endpoint is held down): worth sending only if it outlives the trip; otherwise the
        // hold is the answer, so the isolate does not take the endpoint on itself.
        Ok(t) if !t.is_fresh(now) && !t.usable_at(now + TRIP_SECS) => match source.hold(now) {
            Some(hold) => Ok(Answer::Held {
                error: hold.error,
                until: hold.until,
            }),
            None => Ok(Answer::Token(t)),
        },
        Ok(t) => Ok(Answer::Token(t)),
        // Whatever holds the coordinator's endpoint down (a refusal, nonsense, a 5xx or 429, an
        // endpoint unreachable or too slow) is the fleet's answer until the hold ends: the fleet
        // backs off as one, on one outage schedule, and no isolate asks the endpoint meanwhile.
        // A DPoP nonce refusal is not (nonces are per caller), nor is a configuration error (no
        // hold): the isolate then does the work itself.
        Err(e) => match source.hold(now) {
            Some(hold) if !token_endpoint_wants_nonce(&hold.error) => Ok(Answer::Held {
                error: e,
                until: hold.until,
            }),
            _ => Err(format!("coordinator could not get a token: {e}")),
        },
    }
}
