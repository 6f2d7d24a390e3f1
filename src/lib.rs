//! Machine-to-machine OAuth 2.0 for Cloudflare Workers.
//!
//! A Worker gets an access token with the client credentials grant (RFC 6749 §4.4), keeps it in
//! isolate memory and Workers KV until just before it expires, and signs every outbound
//! subrequest with it (RFC 6750 §2.1).
//!
//! Clients authenticate with `client_secret_basic`, `client_secret_post` or `private_key_jwt`
//! (RFC 7523, signed with WebCrypto); the token endpoint is configured or discovered from the
//! issuer (RFC 8414, OpenID Connect Discovery). Tokens can be bound to a key with DPoP (RFC 9449),
//! with a signed proof on every request. Tokens are refreshed ahead of expiry, retried with
//! backoff, held down after refusals, and sealed with AES-GCM in KV. With a `TOKEN_COORDINATOR`
//! Durable Object bound, one object per configuration makes the token request for every isolate
//! in every location (`TokenCoordinator`).
//!
//! The crate is an I/O-free core (configuration, request building, response parsing, expiry,
//! caching and single flight over small traits) plus a thin Workers edge (`fetch`, KV,
//! WebCrypto, `Date.now()`), compiled only for `wasm32`. The token path below isolate memory
//! is a synchronous state machine (quinn-proto style): it takes events with the time and
//! returns actions, and one small async driver performs them. Start reading at
//! `src/source/flight.rs`; docs/architecture.md's "Layout" gives every folder. With the default `proxy` feature the
//! crate is also a ready egress-proxy Worker; turn default features off to use it as a library
//! in a Worker that has its own `#[event(fetch)]`.
//!
//! ```ignore
//! use worker_m2m::TokenClient;
//! let api = TokenClient::from_env(&env)?;
//! let response = api.fetch(request).await?;
//! ```

#![warn(missing_docs, unreachable_pub)]

// Private modules, one folder a layer, each importing only those above it in this list (checked
// by `scripts/cycles.py` in `make lint`). The public surface is the re-exports below.
mod base;
mod config;
mod coordinator;
mod keys;
mod oauth;
// The proxy's decisions: for the proxy Worker (wasm32), native tests, and the fuzz targets (a
// native build, in which the parts only the Worker calls are unused).
#[cfg_attr(
    all(feature = "fuzzing", not(target_arch = "wasm32")),
    allow(dead_code)
)]
#[cfg(any(
    all(feature = "proxy", any(target_arch = "wasm32", test)),
    feature = "fuzzing"
))]
mod proxy;
mod settings;
mod source;

#[cfg(target_arch = "wasm32")]
mod edge;

#[cfg(all(target_arch = "wasm32", feature = "proxy"))]
mod entry;

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;

// The README's Rust samples compile as doc tests (`cargo test --doc`). A sample that copies a
// wasm32-only example is fenced `rust,ignore`; scripts/docs-check.mjs compares it with the file,
// which `make build-example` builds. A page of docs/ with a Rust sample is included the same way.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme_samples {}

/// Entry points for `cargo fuzz` (`make fuzz`): behind the `fuzzing` feature, not part of the API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::base::redact::Redactor;
    pub use crate::oauth::token_response::{parse_token_response, MIN_LIFETIME_SECS};
    pub use crate::proxy::admission::check_request;
    pub use crate::proxy::config::ProxyConfig;
    pub use crate::proxy::route::{
        join_upstream, route_asked, upstream_url, whatwg_path_and_query, Asked,
    };
}

// Settings and what they produce.
pub use config::client::{ClientAuth, Config, Dpop, Endpoint};
pub use keys::dpop_key::DpopKey;
pub use keys::private_key::PrivateKey;
pub use settings::profile::{Profile, PROFILES_SETTING};

// Tokens, secrets and errors.
pub use base::error::{Error, ErrorCode, Result};
pub use base::secret::{AccessToken, AuthorizationValue, ClientSecret, SharedSecret};
pub use oauth::token::{Scheme, Token};

// The Workers API (wasm32 only).
#[cfg(target_arch = "wasm32")]
pub use edge::assembly::client::{sign_with, TokenClient};
#[cfg(target_arch = "wasm32")]
pub use edge::assembly::send::REPLAY_LIMIT_BYTES;
#[cfg(target_arch = "wasm32")]
pub use edge::coordinator::object::TokenCoordinator;
#[cfg(target_arch = "wasm32")]
pub use edge::platform::bindings::{COORDINATOR_BINDING, KV_BINDING, METRICS_BINDING};
#[cfg(target_arch = "wasm32")]
pub use edge::platform::kv::KvNamespace;

// The I/O-free core, for running the token source on another platform or testing with it: the
// source, and the traits it is driven through.
pub use coordinator::serve::serve as serve_coordinator;
pub use coordinator::warm::{alarm_after, keep_warm, Alarm, Fleet, IDLE_AFTER_SECS};
pub use oauth::dpop::Proofs;
pub use oauth::transport::{HttpClient, HttpRequest, HttpResponse, TransportError};
pub use source::coordinator::{Answer, Ask, Coordinator, NOTE_ONE_IN};
pub use source::credentials::{Credentials, Rotation};
pub use source::evictions::{EVICTIONS_PER_HOUR, EVICT_WINDOW_MAX_SECS, EVICT_WINDOW_MIN_SECS};
pub use source::records::{HOLD_ENTRY, TOKEN_ENTRY};
pub use source::runtime::{LogSink, Runtime};
pub use source::signers::{Assertions, Signers};
pub use source::state::Hold;
pub use source::store::{NoStore, TokenStore};
pub use source::token_source::{TokenSource, KV_VISIBLE_SECS};
