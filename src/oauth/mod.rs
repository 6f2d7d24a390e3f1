//! The pure protocol pieces: the token request and response (RFC 6749 §4.4, §5), tokens and
//! their expiry, DPoP proofs and nonces (RFC 9449), upstream challenges (RFC 6750 §3), backoff,
//! hold-down rules, and the HTTP port they are sent through.

pub(crate) mod backoff;
// `challenge` and `proof` serve the Workers edge only: compiled for wasm32, where it lives, and
// for native tests.
#[cfg(any(target_arch = "wasm32", test))]
pub(crate) mod challenge;
pub(crate) mod dpop;
pub(crate) mod holddown;
#[cfg(any(target_arch = "wasm32", test))]
pub(crate) mod proof;
pub(crate) mod token;
pub(crate) mod token_request;
pub(crate) mod token_response;
pub(crate) mod transport;
