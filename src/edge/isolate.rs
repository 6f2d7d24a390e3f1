//! What an isolate remembers between requests, all in one place. Workers reuse an isolate for
//! many requests and may drop it at any moment: everything here is an optimisation that a new
//! isolate rebuilds (the token itself is shared through KV and the coordinator), and every
//! cache is bounded ([`Bounded`], [`Lru`]).
//!
//! | what | bound | kept by |
//! |---|---|---|
//! | the configurations of the last `env` (profiles, their sources and proxy settings) | one `env`, `M2M_PROFILES` entries | `assembly/profiles.rs` |
//! | token sources, one per configuration and bindings | [`MAX_SOURCES`], least recently used out | `assembly/registry.rs` |
//! | DPoP signing keys imported into WebCrypto | [`MAX_DPOP_KEYS`] | `signers/dpop.rs` |
//! | the last token's DPoP `ath` | one | `signers/dpop.rs` |
//! | SHA-256 of each `PROXY_SHARED_SECRET` | [`MAX_SOURCES`] | `proxy/full.rs` |
//! | values read from the Secrets Store, and the bindings the settings of the last `env` name | [`MAX_SECRETS`] | `platform/secrets.rs` |
//! | `PROXY_FORWARD_HEADERS` and the last `Authorization` value as JS values | one each | `proxy/outbound.rs` |
//! | whether the settings were checked for unknown names (each logged once) | one flag | `assembly/unknown.rs` |
//!
//! Each token source keeps its own state besides (memory and the token before, the hold-down,
//! nonces: see [`crate::source::state`]).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use web_sys::CryptoKey;

use crate::base::bounded::Bounded;
use crate::base::lru::{LastUse, Lru};
use crate::base::secret::AccessToken;
use crate::config::client::Config;
use crate::edge::platform::env::PerEnv;
use crate::edge::platform::fetch::PlatformHttp;
use crate::edge::platform::kv::EdgeStore;
use crate::edge::platform::runtime::EdgeRuntime;
use crate::keys::dpop_key::DpopKey;
#[cfg(feature = "proxy")]
use crate::proxy::config::ProxyConfig;
use crate::settings::profile::{Profile, MAX_PROFILES};
use crate::settings::secrets::Stored;
use crate::source::token_source::TokenSource;
#[cfg(feature = "proxy")]
use {
    crate::base::secret::{AuthorizationValue, SharedSecret},
    js_sys::{JsString, Set},
};

/// Configurations remembered per isolate: every profile, and one rotation of each.
pub(crate) const MAX_SOURCES: usize = 2 * MAX_PROFILES;

/// Secrets Store values held: every credential setting of every profile.
pub(crate) const MAX_SECRETS: usize = 5 * MAX_PROFILES;

/// DPoP signing keys held: the current token's, the configured one, and a rotation's worth of
/// spares.
pub(crate) const MAX_DPOP_KEYS: usize = 4;

/// A token source on Workers.
pub(crate) type EdgeSource = TokenSource<PlatformHttp, EdgeStore, EdgeRuntime>;

/// What tells one source from another: a configuration, and the bindings it is used with.
/// A configuration whose Secrets Store credential was rotated is the same source's
/// ([`Config::same_source`]), which takes the new value in place.
#[derive(Clone)]
pub(crate) struct SourceKey {
    pub(crate) config: Config,
    pub(crate) with_kv: bool,
    pub(crate) coordinated: bool,
}

impl PartialEq for SourceKey {
    fn eq(&self, other: &Self) -> bool {
        self.with_kv == other.with_kv
            && self.coordinated == other.coordinated
            && self.config.same_source(&other.config)
    }
}

/// A source in the registry, and its use mark.
#[derive(Clone)]
pub(crate) struct Registered {
    pub(crate) source: EdgeSource,
    /// Marks the source used, for the isolate's least-recently-used bound.
    pub(crate) used: LastUse,
}

/// What one `env` holds: its profiles, and the sources and proxy settings made for them so far
/// (a few dozen at most: a list costs less wasm than a map and is as fast at this size). Read
/// and filled by `assembly/profiles.rs`.
pub(crate) struct Configs {
    pub(in crate::edge) profiles: Option<Vec<Profile>>,
    pub(in crate::edge) sources: RefCell<Vec<(String, Registered)>>,
    #[cfg(feature = "proxy")]
    pub(in crate::edge) proxies: RefCell<Vec<(String, Rc<ProxyConfig>)>>,
}

/// Everything above, for one isolate.
pub(crate) struct Isolate {
    pub(crate) envs: PerEnv<Rc<Configs>>,
    pub(crate) sources: RefCell<Lru<SourceKey, EdgeSource>>,
    pub(crate) secrets: RefCell<Bounded<String, Stored>>,
    pub(crate) secret_bindings: PerEnv<Rc<Vec<String>>>,
    /// Whether "no KV: memory only" was logged (once per isolate).
    pub(crate) said_memory_only: Cell<bool>,
    /// Whether a data point the `M2M_METRICS` dataset refused was logged (once per isolate).
    pub(crate) said_metrics_refused: Cell<bool>,
    /// Whether the Worker's settings were checked for names the crate does not read (once per
    /// isolate: a new deployment is a new isolate).
    pub(crate) said_unknown_settings: Cell<bool>,
    pub(crate) dpop_keys: RefCell<Bounded<Rc<DpopKey>, CryptoKey>>,
    pub(crate) ath: RefCell<Bounded<AccessToken, Rc<str>>>,
    #[cfg(feature = "proxy")]
    pub(crate) secret_digests: RefCell<Bounded<SharedSecret, Vec<u8>>>,
    #[cfg(feature = "proxy")]
    pub(crate) forward_headers: RefCell<Bounded<Vec<String>, Set>>,
    /// The last token's `Authorization` value as a JS string: converted once per token, not
    /// per request (a JWT is a kilobyte of UTF-8 to re-encode).
    #[cfg(feature = "proxy")]
    pub(crate) authorization: RefCell<Bounded<AuthorizationValue, JsString>>,
}

thread_local! {
    static ISOLATE: Isolate = const {
        Isolate {
            envs: PerEnv::new(),
            sources: RefCell::new(Lru::new(MAX_SOURCES)),
            secrets: RefCell::new(Bounded::new(MAX_SECRETS)),
            secret_bindings: PerEnv::new(),
            said_memory_only: Cell::new(false),
            said_metrics_refused: Cell::new(false),
            said_unknown_settings: Cell::new(false),
            dpop_keys: RefCell::new(Bounded::new(MAX_DPOP_KEYS)),
            ath: RefCell::new(Bounded::new(1)),
            #[cfg(feature = "proxy")]
            secret_digests: RefCell::new(Bounded::new(MAX_SOURCES)),
            #[cfg(feature = "proxy")]
            forward_headers: RefCell::new(Bounded::new(1)),
            #[cfg(feature = "proxy")]
            authorization: RefCell::new(Bounded::new(1)),
        }
    };
}

/// Runs `f` with what this isolate remembers.
pub(crate) fn with<R>(f: impl FnOnce(&Isolate) -> R) -> R {
    ISOLATE.with(f)
}
