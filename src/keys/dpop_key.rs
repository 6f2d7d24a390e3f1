//! The DPoP key pair (RFC 9449 §4.1): read from `OAUTH_DPOP_KEY` or generated at the edge. A
//! DPoP-bound token is worthless without it, so it travels with the token (see
//! [`crate::oauth::dpop`] for the proofs it signs).

use std::fmt;

use crate::base::error::{Error, Result};
use crate::base::secret::SharedSecret;
use crate::keys::private_key::{parse_key, Alg, KeyFormat, PublicJwk};

/// The RFC 7517 Appendix A.2 example EC private key, for tests.
#[cfg(test)]
pub(crate) const TEST_JWK: &str = r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","d":"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"}"#;

/// A DPoP key pair: ES256 (ECDSA P-256, RFC 7518 §3.4), the only algorithm proofs are signed
/// with, which every DPoP server accepts.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct DpopKey {
    private_jwk: SharedSecret,
    public: PublicJwk,
}

impl fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl DpopKey {
    /// Reads a private EC P-256 JWK (RFC 7517), as given in the setting `setting` (errors name
    /// it and show none of the key).
    pub fn from_jwk(setting: &str, raw: &str) -> Result<Self> {
        if !raw.trim_start().starts_with('{') {
            return Err(Error::config(
                setting.to_owned(),
                "must be a private EC P-256 JWK (JSON)",
            ));
        }
        let key = parse_key(setting, raw, None)?;
        match (key.alg, key.format, key.public) {
            (Alg::Es256, KeyFormat::Jwk(private_jwk), Some(public)) => Ok(Self {
                private_jwk,
                public,
            }),
            _ => Err(Error::config(
                setting.to_owned(),
                "must be an EC P-256 key (DPoP proofs are signed with ES256)",
            )),
        }
    }

    /// The private JWK as JSON text, for WebCrypto and the sealed cache record.
    pub(crate) fn private_jwk(&self) -> &SharedSecret {
        &self.private_jwk
    }

    /// The public members, for the proof header and the RFC 7638 thumbprint.
    #[cfg(any(target_arch = "wasm32", test))]
    pub(crate) fn public(&self) -> &PublicJwk {
        &self.public
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_p256_jwk_is_read_and_anything_else_refused_naming_the_setting() {
        let key = DpopKey::from_jwk("OAUTH_DPOP_KEY", TEST_JWK).unwrap();
        assert!(matches!(key.public(), PublicJwk::Ec { crv, .. } if crv == "P-256"));
        assert!(!format!("{key:?}").contains("jpsQnn"));
        for (raw, want) in [
            ("", "must be a private EC P-256 JWK"),
            (
                "-----BEGIN PRIVATE KEY-----\nMAMCAQA=\n-----END PRIVATE KEY-----",
                "must be a private EC P-256 JWK",
            ),
            ("{nope", "is not valid JSON"),
            (
                r#"{"kty":"EC","crv":"P-256","x":"a","y":"b"}"#,
                "is a public key",
            ),
            (
                r#"{"kty":"EC","crv":"P-384","x":"a","y":"b","d":"c"}"#,
                "crv P-256",
            ),
            (
                r#"{"kty":"RSA","n":"a","e":"b","d":"c","p":"d","q":"e","dp":"f","dq":"g","qi":"h"}"#,
                "must be an EC P-256 key",
            ),
        ] {
            let err = DpopKey::from_jwk("OAUTH_DPOP_KEY", raw)
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("configuration error: OAUTH_DPOP_KEY: "),
                "{err}"
            );
            assert!(err.contains(want), "{raw:?}: {err}");
        }
    }
}
