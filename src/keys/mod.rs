//! Keys and JWS encoding: private keys for `private_key_jwt` (RFC 7523) and DPoP (RFC 9449),
//! JWK and JWS helpers (RFC 7515, RFC 7517).

pub(crate) mod dpop_key;
// JWS and JWK encoding serves the Workers edge (assertions, proofs, thumbprints) only.
#[cfg(any(target_arch = "wasm32", test))]
pub(crate) mod jwt;
pub(crate) mod private_key;
