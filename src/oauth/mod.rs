//! The pure protocol pieces: the token request and response (RFC 6749 §4.4, §5), tokens and
//! their expiry, DPoP proofs and nonces (RFC 9449), upstream challenges (RFC 6750 §3), backoff,
//! hold-down rules, and the HTTP port they are sent through.

pub(crate) mod backoff;
pub(crate) mod challenge;
pub(crate) mod dpop;
pub(crate) mod holddown;
pub(crate) mod token;
pub(crate) mod token_request;
pub(crate) mod token_response;
pub(crate) mod transport;
