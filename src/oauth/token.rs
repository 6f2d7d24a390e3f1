//! An access token and its lifetime rules.
//!
//! A token is *fresh* until `expires_at - margin` and *expired* at `expires_at`. The margin covers
//! clock skew and the time a signed request spends in flight. It is capped for short-lived tokens,
//! because a 60 s margin on a 120 s token would throw away half its life:
//!
//! `margin = max(min(OAUTH_EXPIRY_MARGIN_SECS, lifetime / 4), 5)`
//!
//! so a 120 s token is used for 90 s, a one-hour token for 59 minutes. The floor of
//! [`MIN_REMAINING_SECS`] holds for every token handed out, whatever the settings: a request
//! signed with it still has time to reach the API.
//!
//! Before that, a token enters its *refresh window* at `refresh_at`: a request that sees it there
//! goes on with the token and starts one background refresh, so no request waits on the token
//! endpoint while a valid token exists. The window opens a quarter of the token's life (at most
//! five minutes) before the margin, and never earlier than half-way:
//!
//! `refresh_at = expires_at - min(margin + min(lifetime / 4, 300), lifetime / 2)`
//!
//! so a one-hour token is refreshed after 54 minutes (one token request per 54 minutes), a
//! 120 s token after 60 s (used until 90 s), a 20 s token after 10 s (used until 15 s).
//!
//! `OAUTH_REFRESH_LEAD_SECS` moves the window's opening to that many seconds before expiry
//! (never later than the margin, never earlier than a tenth into the token's life): a lead
//! longer than an outage of the token endpoint keeps callers from seeing it, at the price of
//! more token requests. A server's `refresh_in` (seconds after issue, as Entra ID sends it and
//! MSAL honours) opens it earlier still when it asks for earlier.

use std::rc::Rc;

use crate::base::log::Source;
use crate::base::secret::{AccessToken, AuthorizationValue};
use crate::keys::dpop_key::DpopKey;

/// The `Authorization` scheme a token is presented with (RFC 6750 §2.1; RFC 9449 §7.1 for DPoP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `Bearer`
    Bearer,
    /// `DPoP`: the token is bound to a key, and every request carries a proof (RFC 9449 §7.1).
    DPoP,
}

impl Scheme {
    /// The scheme as it goes into the header, normalised (`bearer` from a server becomes `Bearer`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bearer => "Bearer",
            Self::DPoP => "DPoP",
        }
    }

    /// Parses an RFC 6749 §5.1 `token_type`, case-insensitively (RFC 6749 §7.1).
    pub fn parse(token_type: &str) -> Option<Self> {
        if token_type.eq_ignore_ascii_case("bearer") {
            Some(Self::Bearer)
        } else if token_type.eq_ignore_ascii_case("dpop") {
            Some(Self::DPoP)
        } else {
            None
        }
    }
}

/// No token is handed out with less than this left before it expires (Unix seconds are whole,
/// so "now" may be up to a second later than the clock says: the checks keep that second too).
pub(crate) const MIN_REMAINING_SECS: u64 = 5;

/// The effective margin for a token of the given lifetime (see the module docs).
pub(crate) fn effective_margin(configured_margin: u64, lifetime: u64) -> u64 {
    configured_margin.min(lifetime / 4).max(MIN_REMAINING_SECS)
}

/// Longest refresh window, in seconds (see the module docs).
pub(crate) const MAX_REFRESH_WINDOW_SECS: u64 = 300;

/// Seconds before expiry at which the refresh window opens, for a token of the given lifetime
/// and effective margin (see the module docs).
pub(crate) fn refresh_window(margin: u64, lifetime: u64) -> u64 {
    (margin + (lifetime / 4).min(MAX_REFRESH_WINDOW_SECS))
        .min(lifetime / 2)
        .max(margin)
}

/// An access token ready to sign requests with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    access_token: AccessToken,
    scheme: Scheme,
    /// Unix seconds at which its token request was sent.
    issued_at: u64,
    /// Unix seconds at which the server stops accepting the token.
    expires_at: u64,
    /// Unix seconds after which the token is no longer handed out.
    fresh_until: u64,
    /// Unix seconds from which a use of the token starts a background refresh.
    refresh_at: u64,
    /// `<scheme> <token>`, formatted once per token rather than once per request.
    authorization: AuthorizationValue,
    /// The key a DPoP token is bound to (RFC 9449 §6); `None` for Bearer tokens.
    dpop_key: Option<Rc<DpopKey>>,
    /// The server's `refresh_in`, in seconds after issue, when it sent one.
    refresh_in: Option<u64>,
    /// Where this isolate got it (`None` until a tier of the token path says so).
    obtained: Provenance,
}

/// Where a token came from: not part of what the token is, so two copies of one token from KV
/// and from the endpoint are equal.
#[derive(Debug, Clone, Copy, Default)]
struct Provenance(Option<Source>);

impl PartialEq for Provenance {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Provenance {}

impl Token {
    /// A token obtained at `issued_at` that expires at `expires_at` (Unix seconds).
    pub fn new(
        access_token: AccessToken,
        scheme: Scheme,
        issued_at: u64,
        expires_at: u64,
        margin: u64,
    ) -> Self {
        let lifetime = expires_at.saturating_sub(issued_at);
        let margin = effective_margin(margin, lifetime);
        let fresh_until = expires_at - margin.min(expires_at);
        let refresh_at = expires_at - refresh_window(margin, lifetime).min(expires_at);
        let authorization =
            AuthorizationValue::new(format!("{} {}", scheme.as_str(), access_token.expose()));
        Self {
            access_token,
            scheme,
            issued_at: issued_at.min(expires_at),
            expires_at,
            fresh_until: fresh_until.min(expires_at),
            refresh_at: refresh_at.min(fresh_until).min(expires_at),
            authorization,
            dpop_key: None,
            refresh_in: None,
            obtained: Provenance(None),
        }
    }

    /// The same token, noted as obtained from `source` (the KV cache, the coordinator, the token
    /// endpoint), for callers who ask where their token came from.
    pub(crate) fn obtained_from(mut self, source: Source) -> Self {
        self.obtained = Provenance(Some(source));
        self
    }

    /// Where this isolate got the token, if a tier of the token path said so.
    pub(crate) fn obtained(&self) -> Option<Source> {
        self.obtained.0
    }

    /// The same token with its refresh window opened `lead` seconds before expiry (see the
    /// module docs; `None`: the default rule), and no later than the server's `refresh_in`.
    pub(crate) fn with_refresh(mut self, lead: Option<u64>, refresh_in: Option<u64>) -> Self {
        let lifetime = self.expires_at - self.issued_at;
        let mut at = self.refresh_at;
        if let Some(lead) = lead {
            let earliest = self.issued_at + lifetime / 10;
            at = self
                .expires_at
                .saturating_sub(lead)
                .clamp(earliest, self.fresh_until);
        }
        if let Some(secs) = refresh_in.or(self.refresh_in) {
            at = at.min(self.issued_at + secs.max(lifetime / 10));
        }
        self.refresh_at = at.min(self.fresh_until);
        self.refresh_in = refresh_in.or(self.refresh_in);
        self
    }

    /// The server's `refresh_in` (seconds after issue), kept with the token so every reader of a
    /// cached copy honours it too.
    pub(crate) fn refresh_in(&self) -> Option<u64> {
        self.refresh_in
    }

    /// The same token, bound to `key` (RFC 9449 §6): requests with it carry proofs by `key`.
    pub fn with_dpop_key(mut self, key: Rc<DpopKey>) -> Self {
        self.dpop_key = Some(key);
        self
    }

    /// The key a DPoP token is bound to; `None` for a Bearer token.
    pub fn dpop_key(&self) -> Option<&Rc<DpopKey>> {
        self.dpop_key.as_ref()
    }

    /// The token itself.
    pub fn access_token(&self) -> &AccessToken {
        &self.access_token
    }

    /// The scheme it is presented with.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// When the server stops accepting it (Unix seconds).
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }

    /// Until when it is handed out (Unix seconds).
    pub fn fresh_until(&self) -> u64 {
        self.fresh_until
    }

    /// From when (Unix seconds) a use of the token starts a background refresh.
    pub fn refresh_at(&self) -> u64 {
        self.refresh_at
    }

    /// True once the token is in its refresh window at `now`.
    pub fn refresh_due(&self, now: u64) -> bool {
        now >= self.refresh_at
    }

    /// Like [`Token::refresh_due`], with this isolate's `skew` in `[0, 1)` moving the start by up
    /// to half the window: isolates that read the same token from KV then refresh it at different
    /// moments, not all in the same second (KV takes one write per second per key).
    pub fn refresh_due_skewed(&self, now: u64, skew: f64) -> bool {
        self.refresh_due_after(now, 0, skew)
    }

    /// Like [`Token::refresh_due_skewed`], the window's start moved `delay` seconds later (at most
    /// half the window) first: isolates of a coordinator that refreshes at `refresh_at` itself
    /// look for the new token only once KV shows it everywhere.
    pub(crate) fn refresh_due_after(&self, now: u64, delay: u64, skew: f64) -> bool {
        let window = self.fresh_until.saturating_sub(self.refresh_at);
        let delay = delay.min(window / 2);
        let rest = (window - delay) as f64;
        now >= self.refresh_at + delay + (rest * skew.clamp(0.0, 1.0) / 2.0) as u64
    }

    /// True while the token may be handed out at `now` (Unix seconds).
    pub fn is_fresh(&self, now: u64) -> bool {
        now < self.fresh_until
    }

    /// True while the token has at least `MIN_REMAINING_SECS` (5 s) left at `now`: the last line
    /// every token handed out must pass, fresh or not, whatever its source.
    pub fn usable_at(&self, now: u64) -> bool {
        now + MIN_REMAINING_SECS < self.expires_at
    }

    /// When it was obtained (Unix seconds): the send time of its token request, from which its
    /// lifetime counts. Lets a reader of a cached copy apply its own rules, and tell an older
    /// copy from a newer one.
    pub fn issued_at(&self) -> u64 {
        self.issued_at
    }

    /// The `Authorization` header value (RFC 6750 §2.1).
    pub fn authorization(&self) -> &AuthorizationValue {
        &self.authorization
    }

    /// Whether `other` is this token (the same access token; copies from memory, KV or the
    /// coordinator differ in nothing else that matters).
    pub fn same(&self, other: &Token) -> bool {
        self.access_token == other.access_token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(issued: u64, lifetime: u64, margin: u64) -> Token {
        Token::new(
            AccessToken::new("t"),
            Scheme::Bearer,
            issued,
            issued + lifetime,
            margin,
        )
    }

    #[test]
    fn the_expiry_margin_shrinks_for_short_tokens_so_they_stay_usable() {
        // (lifetime, configured margin, seconds of use)
        for (lifetime, margin, usable) in [
            (3600, 60, 3540),
            (120, 60, 90),
            (60, 60, 45),
            (10, 60, 5),
            (3600, 0, 3595),
            (0, 60, 0),
        ] {
            let t = token(1_000, lifetime, margin);
            assert_eq!(
                t.fresh_until().saturating_sub(1_000),
                usable,
                "lifetime {lifetime} margin {margin}"
            );
        }
    }

    #[test]
    fn a_refresh_lead_opens_the_window_that_early_within_bounds() {
        // (lead, seconds after issue at which a one-hour token's refresh window opens)
        for (lead, opens) in [
            (None, 3240),
            (Some(900), 2700),
            (Some(2400), 1200),
            (Some(3600), 360),
            (Some(10), 3540),
        ] {
            let t = token(1_000, 3600, 60).with_refresh(lead, None);
            assert_eq!(t.refresh_at() - 1_000, opens, "lead {lead:?}");
            assert!(t.refresh_at() <= t.fresh_until());
        }
    }

    #[test]
    fn a_servers_refresh_in_opens_the_window_when_earlier_and_is_kept() {
        let t = token(1_000, 3600, 60).with_refresh(None, Some(1800));
        assert_eq!((t.refresh_at() - 1_000, t.refresh_in()), (1800, Some(1800)));
        let later = token(1_000, 3600, 60).with_refresh(None, Some(3500));
        assert_eq!(
            later.refresh_at() - 1_000,
            3240,
            "never later than our own rule"
        );
        // A reader that applies its own lead keeps the server's word.
        let again = t.with_refresh(Some(300), None);
        assert_eq!(again.refresh_at() - 1_000, 1800);
    }

    #[test]
    fn a_coordinated_isolate_looks_for_the_new_token_after_kv_shows_it() {
        let t = token(1_000, 3600, 60);
        let opens = t.refresh_at();
        assert!(t.refresh_due_after(opens, 0, 0.0));
        assert!(!t.refresh_due_after(opens + 119, 120, 0.0));
        assert!(t.refresh_due_after(opens + 120, 120, 0.0));
        // The delay never takes more than half the window (300 s here).
        assert!(t.refresh_due_after(opens + 150, 999, 0.0));
    }

    #[test]
    fn the_refresh_window_opens_at_a_fraction_of_the_lifetime() {
        // (lifetime, configured margin, seconds until the refresh window opens)
        for (lifetime, margin, opens) in [
            (3600, 60, 3240),
            (120, 60, 60),
            (300, 60, 165),
            (86_400, 60, 86_040),
            (60, 0, 40),
            (20, 60, 10),
            (40, 60, 20),
        ] {
            let t = token(1_000, lifetime, margin);
            assert_eq!(
                t.refresh_at() - 1_000,
                opens,
                "lifetime {lifetime} margin {margin}"
            );
            // A real window: due strictly before the token stops being fresh.
            assert!(t.refresh_at() < t.fresh_until(), "lifetime {lifetime}");
        }
        let t = token(1_000, 3600, 60);
        assert!(!t.refresh_due(4_239) && t.refresh_due(4_240) && t.is_fresh(4_240));
        // A skew moves the start by up to half of the 300 s window, never past it.
        assert!(t.refresh_due_skewed(4_240, 0.0));
        assert!(!t.refresh_due_skewed(4_314, 0.5) && t.refresh_due_skewed(4_315, 0.5));
        assert!(t.refresh_due_skewed(4_390, 1.0) && t.is_fresh(4_390));
    }

    #[test]
    fn never_handed_out_with_less_than_five_seconds_left() {
        // Whatever the lifetime and margin (0 included), a fresh token has more than
        // MIN_REMAINING_SECS left, counting the second `now` may lag the real time.
        for lifetime in [10, 11, 12, 19, 20, 60, 3600] {
            for margin in [0, 1, 5, 60] {
                let t = token(1_000, lifetime, margin);
                for now in 1_000..1_000 + lifetime {
                    if t.is_fresh(now) {
                        assert!(t.usable_at(now) && now + 1 + MIN_REMAINING_SECS <= t.expires_at());
                    }
                }
            }
        }
        let t = token(1_000, 3600, 60);
        assert!(t.usable_at(4_594) && !t.usable_at(4_595));
        assert_eq!(t.issued_at(), 1_000);
    }

    #[test]
    fn fresh_until_the_margin_then_not() {
        let t = token(1_000, 3600, 60);
        assert!(t.is_fresh(1_000));
        assert!(t.is_fresh(4_539));
        assert!(!t.is_fresh(4_540));
        assert!(!t.is_fresh(10_000));
    }

    #[test]
    fn scheme_is_case_insensitive_and_normalised() {
        for raw in ["bearer", "Bearer", "BEARER"] {
            assert_eq!(Scheme::parse(raw), Some(Scheme::Bearer));
        }
        assert_eq!(Scheme::parse("mac"), None);
        for raw in ["DPoP", "dpop", "DPOP"] {
            assert_eq!(Scheme::parse(raw), Some(Scheme::DPoP));
        }
        assert_eq!(Scheme::DPoP.as_str(), "DPoP");
        assert_eq!(token(0, 100, 0).authorization().expose(), "Bearer t");
    }
}
