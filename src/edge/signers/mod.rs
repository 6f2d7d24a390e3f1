//! Signers made with WebCrypto: client assertions (RFC 7523) and DPoP keys and proofs (RFC 9449).

pub(crate) mod assertions;
pub(crate) mod dpop;
