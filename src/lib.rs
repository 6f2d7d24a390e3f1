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
//! in every location (see [`coordinator`]).
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

pub mod acquire;
pub mod backoff;
pub mod cache_key;
pub mod config;
pub mod coordinator;
pub mod discovery;
pub mod dpop;
pub mod error;
pub mod headers;
pub mod holddown;
pub mod jwt;
pub mod log;
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod lru;
pub mod private_key;
mod proxy_config;
pub mod redact;
pub mod route;
pub mod runtime;
pub mod secret;
pub mod settings;
pub mod source;
pub mod store;
mod tiers;
pub mod token;
pub mod token_request;
pub mod token_response;
pub mod transport;

#[cfg(target_arch = "wasm32")]
pub mod edge;

#[cfg(all(target_arch = "wasm32", feature = "proxy"))]
mod entry;

pub use config::{ClientAuth, Config};
pub use error::{Error, ErrorCode, Result};
pub use secret::{AccessToken, AuthorizationValue, ClientSecret};
pub use source::TokenSource;
pub use token::{Scheme, Token};

#[cfg(target_arch = "wasm32")]
pub use edge::client::TokenClient;
