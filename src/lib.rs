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
//! caching and single flight over two small traits) plus a thin Workers edge (`fetch`, KV,
//! WebCrypto, `Date.now()`), compiled only for `wasm32`. With the default `proxy` feature the
//! crate is also a ready egress-proxy Worker; turn default features off to use it as a library
//! in a Worker that has its own `#[event(fetch)]`.
//!
//! ```ignore
//! use worker_m2m::TokenClient;
//! let api = TokenClient::from_env(&env)?;
//! let response = api.fetch(request).await?;
//! ```

#![warn(missing_docs)]
// The edge (and with it the proxy) is built for wasm32 only: natively, the parts of the core
// that only the edge calls would all be reported unused. The wasm32 build checks them.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

// Private modules: the public surface is the re-exports below, nothing else.
mod acquire;
mod backoff;
mod cache_key;
mod challenge;
mod config;
mod coordinator;
mod discovery;
mod dpop;
mod error;
#[cfg(any(feature = "proxy", feature = "fuzzing"))]
mod headers;
mod holddown;
mod jwt;
mod log;
mod lru;
mod private_key;
mod profile;
#[cfg(any(feature = "proxy", feature = "fuzzing"))]
mod proxy_config;
mod redact;
#[cfg(any(feature = "proxy", feature = "fuzzing"))]
mod route;
mod runtime;
mod secret;
mod settings;
mod source;
mod store;
mod tiers;
mod token;
mod token_request;
mod token_response;
mod transport;
mod values;

#[cfg(target_arch = "wasm32")]
mod edge;

#[cfg(all(target_arch = "wasm32", feature = "proxy"))]
mod entry;

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;

/// Entry points for `cargo fuzz` (`make fuzz`): behind the `fuzzing` feature, not part of the API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::proxy_config::ProxyConfig;
    pub use crate::redact::Redactor;
    pub use crate::route::{check_request, upstream_url, upstream_url_from_raw};
    pub use crate::token_response::{parse_token_response, MIN_LIFETIME_SECS};
}

// Settings and what they produce.
pub use config::{ClientAuth, Config, Dpop};
pub use dpop::DpopKey;
pub use private_key::PrivateKey;
pub use profile::{Profile, PROFILES_SETTING};

// Tokens, secrets and errors.
pub use error::{Error, ErrorCode, Result};
pub use secret::{AccessToken, AuthorizationValue, ClientSecret, SharedSecret};
pub use token::{Scheme, Token};

// The Workers API (wasm32 only).
#[cfg(target_arch = "wasm32")]
pub use edge::client::{sign_with, TokenClient, KV_BINDING, REPLAY_LIMIT_BYTES};
#[cfg(target_arch = "wasm32")]
pub use edge::coordinator::{TokenCoordinator, COORDINATOR_BINDING};
#[cfg(target_arch = "wasm32")]
pub use edge::kv::KvNamespace;

// The I/O-free core, for running the token source on another platform or testing with it: the
// source, and the traits it is driven through.
pub use acquire::{Assertions, Signers};
pub use coordinator::{serve as serve_coordinator, Answer, Ask, Coordinator};
pub use dpop::Proofs;
pub use holddown::HOLD_ENTRY;
pub use runtime::{LogSink, Runtime};
pub use source::TokenSource;
pub use store::{NoStore, TokenStore, TOKEN_ENTRY};
pub use transport::{HttpClient, HttpRequest, HttpResponse, TransportError};
