//! The configuration contract: what a client's settings come to ([`Config`] and its parts).
//! Reading them is [`crate::config::parse`]'s: a pure function over a lookup closure, tested
//! natively, whose every error names the setting and never echoes its value.

use std::borrow::Cow;
use std::rc::Rc;

use url::Url;

use crate::base::secret::{ClientSecret, SharedSecret};
use crate::keys::dpop_key::DpopKey;
use crate::keys::private_key::PrivateKey;
use crate::settings::profile::Profile;

/// Default `OAUTH_EXPIRY_MARGIN_SECS`.
pub(crate) const DEFAULT_EXPIRY_MARGIN_SECS: u64 = 60;
/// Default `OAUTH_TIMEOUT_MS`.
pub(crate) const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// Default `OAUTH_HOLDDOWN_SECS`.
pub(crate) const DEFAULT_HOLDDOWN_SECS: u64 = 30;

/// How the client authenticates to the token endpoint (RFC 6749 §2.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClientAuth {
    /// `client_secret_basic`: HTTP Basic with the form-urlencoded id and secret (RFC 6749 §2.3.1).
    Basic(ClientSecret),
    /// `client_secret_post`: id and secret in the form body (RFC 6749 §2.3.1).
    Post(ClientSecret),
    /// `private_key_jwt`: a signed client assertion (RFC 7523 §2.2, OIDC Core §9).
    PrivateKeyJwt(PrivateKey),
}

impl ClientAuth {
    /// The method's registered name (RFC 7591 §2 `token_endpoint_auth_method`).
    pub fn method(&self) -> &'static str {
        match self {
            Self::Basic(_) => "client_secret_basic",
            Self::Post(_) => "client_secret_post",
            Self::PrivateKeyJwt(_) => "private_key_jwt",
        }
    }

    /// The credential as configured (client secret, or private key text), for cache-key
    /// fingerprints, error scrubbing and the KV sealing key. Never to be logged.
    pub fn credential(&self) -> &str {
        match self {
            Self::Basic(s) | Self::Post(s) => s.expose(),
            Self::PrivateKeyJwt(k) => k.raw.expose(),
        }
    }
}

/// Whether tokens are bound to a key with DPoP (RFC 9449), and to which.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Dpop {
    /// Bearer tokens (`OAUTH_DPOP` unset or `false`).
    #[default]
    Off,
    /// DPoP with a key generated per token and cached (sealed) with it (`OAUTH_DPOP=true`).
    GeneratedKey,
    /// DPoP with the key in `OAUTH_DPOP_KEY`, the same in every isolate.
    Key(Rc<DpopKey>),
}

impl Dpop {
    /// True unless DPoP is off.
    pub fn is_on(&self) -> bool {
        !matches!(self, Self::Off)
    }
}

/// Where the token endpoint is: exactly one of `OAUTH_TOKEN_URL` and `OAUTH_ISSUER`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    /// The token endpoint itself (RFC 6749 §3.2, `OAUTH_TOKEN_URL`): https, or http for loopback
    /// hosts only.
    TokenUrl(Url),
    /// The authorization server's issuer identifier (RFC 8414 §2, `OAUTH_ISSUER`): the token
    /// endpoint is discovered from its metadata.
    Issuer(Url),
}

/// Everything needed to obtain a token with the client credentials grant (RFC 6749 §4.4).
///
/// Made from settings ([`Config::from_lookup`], [`Config::for_profile`]); `#[non_exhaustive]`,
/// so a new setting is not a breaking change.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Config {
    /// The profile these settings were read for (`M2M_PROFILES`), `None` for the Worker's
    /// unprefixed settings.
    pub profile: Option<Profile>,
    /// Where the token endpoint is: configured, or discovered from the issuer.
    pub endpoint: Endpoint,
    /// `OAUTH_TOKEN_ENDPOINT_HOSTS`: the hosts a discovered token endpoint may be on (lower
    /// case, `host` or `host:port`); empty: any https host (RFC 8414 allows any).
    pub token_endpoint_hosts: Vec<String>,
    /// The client identifier (RFC 6749 §2.2).
    pub client_id: String,
    /// How the client authenticates.
    pub auth: ClientAuth,
    /// The Secrets Store binding the client credential (`OAUTH_CLIENT_SECRET` or
    /// `OAUTH_PRIVATE_KEY`) is read from, when its setting names one (`secrets-store:NAME`):
    /// the credential's identity then, whatever its value (see [`Config::same_source`]).
    pub credential_from_store: Option<String>,
    /// Space-separated scopes (RFC 6749 §3.3).
    pub scope: Option<String>,
    /// Auth0-style `audience` parameter.
    pub audience: Option<String>,
    /// RFC 8707 `resource` parameter.
    pub resource: Option<String>,
    /// Extra form parameters, in order (e.g. Okta's `redirect_uri` from the seed guide).
    pub extra_params: Vec<(String, String)>,
    /// Seconds before expiry at which a token is no longer used (see [`Token::fresh_until`](crate::Token::fresh_until)).
    pub expiry_margin_secs: u64,
    /// Bound on obtaining one token, retries included, in milliseconds.
    pub timeout_ms: u64,
    /// Seconds the token endpoint is left alone after it refused us (`OAUTH_HOLDDOWN_SECS`).
    pub holddown_secs: u64,
    /// Upstream statuses that mean "this token is no longer good" (`OAUTH_RETRY_STATUSES`):
    /// the token is evicted and the request replayed once with a fresh one.
    pub retry_statuses: Vec<u16>,
    /// Key material for sealing KV values (`TOKEN_CACHE_KEY`); the client secret when unset.
    pub cache_key_secret: Option<SharedSecret>,
    /// Refresh a token in the background when it enters its refresh window
    /// (`OAUTH_REFRESH_AHEAD`, default on; see [`Token::refresh_at`](crate::Token::refresh_at)).
    pub refresh_ahead: bool,
    /// `OAUTH_REFRESH_LEAD_SECS`: how long before expiry a token is refreshed (see
    /// [`Token`](crate::Token)'s rules); `None`: the default rule.
    pub refresh_lead_secs: Option<u64>,
    /// DPoP-bound tokens (`OAUTH_DPOP`, `OAUTH_DPOP_KEY`; RFC 9449).
    pub dpop: Dpop,
    /// `M2M_METRICS_INTERVAL_SECS`: how often an isolate writes its request counts to the
    /// `M2M_METRICS` dataset (default 60; 0: one data point per request).
    pub metrics_interval_secs: u64,
}

/// Default `M2M_METRICS_INTERVAL_SECS`: a minute's requests in one data point per kind.
pub(crate) const DEFAULT_METRICS_INTERVAL_SECS: u64 = 60;

impl Config {
    /// The name this configuration reads `setting` under (`BILLING_OAUTH_PRIVATE_KEY` for the
    /// profile `billing`), for errors found after parsing.
    pub fn setting(&self, setting: &'static str) -> Cow<'static, str> {
        match &self.profile {
            Some(p) => Cow::Owned(format!("{}{setting}", p.prefix())),
            None => Cow::Borrowed(setting),
        }
    }

    /// Whether a token source of `self` serves `other` too: the same configuration, or the
    /// same but for the value of a client credential read from the same Secrets Store binding
    /// (a rotation, which the source takes in place: see `TokenSource::rotate`).
    pub fn same_source(&self, other: &Config) -> bool {
        match (&self.credential_from_store, &other.credential_from_store) {
            (Some(a), Some(b)) if a == b && self.auth.method() == other.auth.method() => {
                let rotated = Config {
                    auth: other.auth.clone(),
                    ..self.clone()
                };
                rotated == *other
            }
            _ => self == other,
        }
    }
}

#[cfg(test)]
impl Config {
    /// A configuration for unit tests: `client_id` authenticating with `auth` at
    /// `https://idp.example/token`, no scope or extra parameters, the default timings.
    pub(crate) fn for_tests(client_id: &str, auth: ClientAuth) -> Self {
        Self {
            profile: None,
            endpoint: Endpoint::TokenUrl("https://idp.example/token".parse().expect("a valid URL")),
            token_endpoint_hosts: Vec::new(),
            client_id: client_id.into(),
            auth,
            credential_from_store: None,
            scope: None,
            audience: None,
            resource: None,
            extra_params: vec![],
            expiry_margin_secs: DEFAULT_EXPIRY_MARGIN_SECS,
            timeout_ms: 1000,
            holddown_secs: DEFAULT_HOLDDOWN_SECS,
            retry_statuses: vec![401],
            cache_key_secret: None,
            refresh_ahead: true,
            refresh_lead_secs: None,
            dpop: Dpop::Off,
            metrics_interval_secs: DEFAULT_METRICS_INTERVAL_SECS,
        }
    }
}
