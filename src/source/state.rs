//! What one token source remembers between flights, as named sub-states with the rules that
//! read them: the token in memory (and which tokens are old news), the hold-down, the eviction
//! window ([`crate::source::evictions`]), and the DPoP nonces of the token endpoint and the
//! resource servers. Private fields: only these methods change them.

use crate::base::error::Error;
use crate::base::secret::AccessToken;
use crate::config::client::{Config, Dpop};
use crate::oauth::dpop::Nonces;
use crate::oauth::holddown::held_error;
use crate::oauth::token::Token;
use crate::source::evictions::Evictions;

/// A hold-down: the token endpoint is left alone until `until` (Unix seconds), and callers get
/// `error` (what the endpoint said) meanwhile.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Hold {
    /// Unix seconds.
    pub until: u64,
    /// What caused it, as the endpoint gave it.
    pub error: Error,
}

/// The token in memory, and what tells news from old tokens.
#[derive(Default)]
pub(super) struct Memory {
    token: Option<Token>,
    /// The token before it: requests that carry it may still be out when an upstream rejects
    /// it, and the rejection names it.
    previous: Option<Token>,
    /// The newest token this source has held, by issue time: a KV record older than that (or as
    /// old and another token: times are whole seconds) is a replay (someone with write access
    /// put back an old value) or a stale read, never news.
    newest: Option<(u64, AccessToken)>,
    /// The last token an upstream rejected: never taken from KV again, whatever KV says.
    revoked: Option<Token>,
}

impl Memory {
    /// The token held, fresh or not.
    pub(super) fn token(&self) -> Option<&Token> {
        self.token.as_ref()
    }

    /// The token held if it is fresh at `now`.
    pub(super) fn fresh(&self, now: u64) -> Option<&Token> {
        self.token.as_ref().filter(|t| t.is_fresh(now))
    }

    /// The token held if it still has [`crate::oauth::token::MIN_REMAINING_SECS`] to live at
    /// `now` (it may be past its margin): the request that uses it still has to travel.
    pub(super) fn usable(&self, now: u64) -> Option<&Token> {
        self.token.as_ref().filter(|t| t.usable_at(now))
    }

    /// Takes `token` into memory, and remembers how new it is.
    pub(super) fn adopt(&mut self, token: Token) {
        if self
            .newest
            .as_ref()
            .is_none_or(|(at, _)| token.issued_at() >= *at)
        {
            self.newest = Some((token.issued_at(), token.access_token().clone()));
        }
        if let Some(old) = self.token.take().filter(|old| !old.same(&token)) {
            self.previous = Some(old);
        }
        self.token = Some(token);
    }

    /// The token held or the one before, by its `Authorization` value.
    pub(super) fn handed_out(&self, authorization: &str) -> Option<&Token> {
        [&self.token, &self.previous]
            .into_iter()
            .flatten()
            .find(|t| t.authorization().expose() == authorization)
    }

    /// Whether `t` is older than the newest token this source has held.
    pub(super) fn is_older(&self, t: &Token) -> bool {
        self.newest.as_ref().is_some_and(|(at, token)| {
            t.issued_at() < *at || (t.issued_at() == *at && t.access_token() != token)
        })
    }

    /// Whether `t` is the token an upstream last rejected.
    pub(super) fn is_revoked(&self, t: &Token) -> bool {
        self.revoked.as_ref().is_some_and(|r| r.same(t))
    }

    /// Whether `t` is the token held now.
    pub(super) fn holds(&self, t: &Token) -> bool {
        self.token.as_ref().is_some_and(|m| m.same(t))
    }

    /// The rejected token, for the coordinator's ask.
    pub(super) fn revoked(&self) -> Option<&Token> {
        self.revoked.as_ref()
    }

    /// Forgets `used` after an upstream rejected it; it is never taken from KV again.
    pub(super) fn evict(&mut self, used: &Token) {
        self.revoked = Some(used.clone());
        if let Some(old) = self.token.take() {
            self.previous = Some(old);
        }
    }
}

/// The hold-down in force, and how many flights in a row found the endpoint unavailable (the
/// outage schedule's step, see [`crate::oauth::holddown`]).
#[derive(Default)]
pub(super) struct HoldDown {
    hold: Option<Hold>,
    failed_flights: u32,
}

impl HoldDown {
    /// The hold in force at `now`.
    pub(super) fn active(&self, now: u64) -> Option<&Hold> {
        self.hold.as_ref().filter(|h| now < h.until)
    }

    /// Holds the endpoint down until `until` with `error`.
    pub(super) fn set(&mut self, until: u64, error: Error) {
        self.hold = Some(Hold { until, error });
    }

    /// A token was obtained: no hold any more, and the outage schedule starts over.
    pub(super) fn clear(&mut self) {
        self.hold = None;
        self.failed_flights = 0;
    }

    /// How many flights in a row found the endpoint unavailable.
    pub(super) fn failed_flights(&self) -> u32 {
        self.failed_flights
    }

    /// Goes on with an outage another reader of the store saw (`failed` flights in a row).
    pub(super) fn resume_outage(&mut self, failed: u32) {
        self.failed_flights = self.failed_flights.max(failed);
    }

    /// Counts a failed flight: one more step of the outage schedule when the endpoint was
    /// unavailable (refusals hold for their own fixed time). The step to pause for.
    pub(super) fn count_failure(&mut self, err: &Error) -> u32 {
        if let Error::Unavailable { .. } = err {
            self.failed_flights = self.failed_flights.saturating_add(1);
        }
        self.failed_flights
    }
}

/// Everything a token source remembers between flights.
#[derive(Default)]
pub(super) struct State {
    pub(super) memory: Memory,
    pub(super) hold_down: HoldDown,
    /// When an upstream's rejection may evict the token next.
    pub(super) evictions: Evictions,
    /// The latest DPoP nonce of the token endpoint's origin (RFC 9449 §8.2).
    pub(super) token_nonces: Nonces,
    /// The latest DPoP nonce of each resource server (RFC 9449 §9). Kept apart from the token
    /// endpoint's: an authorization server and an API on one origin keep separate nonces.
    pub(super) resource_nonces: Nonces,
}

impl State {
    /// While a hold-down lasts: the still-usable token if there is one, else the held error
    /// with its `Retry-After` counted down to `now`.
    pub(super) fn held_answer(&self, now: u64) -> Option<Result<Token, Error>> {
        let hold = self.hold_down.active(now)?;
        Some(
            self.memory
                .usable(now)
                .cloned()
                .ok_or_else(|| held_error(&hold.error, hold.until, now)),
        )
    }
}

/// Whether a cached token suits the configuration: DPoP-bound exactly when DPoP is on, and to
/// the configured key when there is one (the cache key says so too; this guards a stale entry).
pub(super) fn fits(config: &Config, t: &Token) -> bool {
    match (&config.dpop, t.dpop_key()) {
        (Dpop::Off, None) | (Dpop::GeneratedKey, Some(_)) => true,
        (Dpop::Key(want), Some(have)) => want == have,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::secret::AccessToken;
    use crate::oauth::token::Scheme;

    fn token(name: &str, at: u64) -> Token {
        Token::new(AccessToken::new(name), Scheme::Bearer, at, at + 3600, 60)
    }

    #[test]
    fn the_token_held_and_the_one_before_are_found_by_authorization_value() {
        let mut m = Memory::default();
        m.adopt(token("one", 100));
        m.adopt(token("two", 200));
        assert!(m
            .handed_out("Bearer two")
            .is_some_and(|t| t.access_token().expose() == "two"));
        assert!(
            m.handed_out("Bearer one").is_some(),
            "requests with it may still be out"
        );
        assert!(m.handed_out("Bearer zero").is_none());
        // The same token again does not push out the one before.
        m.adopt(token("two", 200));
        assert!(m.handed_out("Bearer one").is_some());
        // An evicted token is still known as rejected, never held.
        let two = token("two", 200);
        m.evict(&two);
        assert!(m.token().is_none() && m.is_revoked(&two));
        assert!(m.handed_out("Bearer two").is_some());
    }
}
