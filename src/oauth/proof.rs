//! The signing input of a DPoP proof (RFC 9449 §4.2); the edge signs it with WebCrypto.

use crate::keys::jwt::{json_string, signing_input};
use crate::keys::private_key::{Alg, PublicJwk};

/// The JWT `typ` of a DPoP proof (RFC 9449 §4.2).
pub(crate) const PROOF_TYP: &str = "dpop+jwt";

/// The claims of one proof (RFC 9449 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProofClaims<'a> {
    /// The request method.
    pub htm: &'a str,
    /// The request URI without query and fragment (see [`htu`]).
    pub htu: &'a str,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// A unique identifier; the server refuses a proof it has seen (§11.1).
    pub jti: &'a str,
    /// base64url SHA-256 of the access token, on requests that carry one (§4.2, §7).
    pub ath: Option<&'a str>,
    /// The server's latest nonce, when it gave one (§8, §9).
    pub nonce: Option<&'a str>,
}

/// The JWS signing input `BASE64URL(header) "." BASE64URL(claims)` of a proof by the key whose
/// public members are `public` (RFC 9449 §4.2: `typ` `dpop+jwt`, `alg`, the public `jwk`).
pub(crate) fn proof_input(public: &PublicJwk, claims: &ProofClaims<'_>) -> String {
    let header = format!(
        r#"{{"typ":"{PROOF_TYP}","alg":"{}","jwk":{}}}"#,
        Alg::Es256.as_str(),
        public_jwk_json(public)
    );
    let optional = |name: &str, value: Option<&str>| {
        value.map_or_else(String::new, |v| format!(r#","{name}":{}"#, json_string(v)))
    };
    let body = format!(
        r#"{{"jti":{},"htm":{},"htu":{},"iat":{}{}{}}}"#,
        json_string(claims.jti),
        json_string(claims.htm),
        json_string(claims.htu),
        claims.iat,
        optional("ath", claims.ath),
        optional("nonce", claims.nonce),
    );
    signing_input(&header, &body)
}

/// The public JWK (RFC 7517 §4) of the proof header: its required members only.
fn public_jwk_json(public: &PublicJwk) -> String {
    let j = json_string;
    match public {
        PublicJwk::Ec { crv, x, y } => {
            format!(
                r#"{{"kty":"EC","crv":{},"x":{},"y":{}}}"#,
                j(crv),
                j(x),
                j(y)
            )
        }
        PublicJwk::Rsa { e, n } => format!(r#"{{"kty":"RSA","e":{},"n":{}}}"#, j(e), j(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::dpop_key::{DpopKey, TEST_JWK};
    use crate::keys::jwt::decode_part as decode;
    use crate::oauth::dpop::htu;
    use serde_json::json;

    #[test]
    fn a_proof_carries_the_public_key_and_the_claims_never_the_private_part() {
        let key = DpopKey::from_jwk("OAUTH_DPOP_KEY", TEST_JWK).unwrap();
        let claims = ProofClaims {
            htm: "POST",
            htu: htu("https://api.example/v1/things?page=2#top"),
            iat: 1_700_000_000,
            jti: "jti-1",
            ath: Some("fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"),
            nonce: Some("eyJ7S_zG.eyJH0-Z.HX4w-7v"),
        };
        let input = proof_input(key.public(), &claims);
        let (h, c) = input.split_once('.').unwrap();
        assert_eq!(
            decode(h),
            json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": {
                "kty": "EC", "crv": "P-256",
                "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0" } })
        );
        assert_eq!(
            decode(c),
            json!({ "jti": "jti-1", "htm": "POST", "htu": "https://api.example/v1/things",
                    "iat": 1_700_000_000u64, "ath": "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo",
                    "nonce": "eyJ7S_zG.eyJH0-Z.HX4w-7v" })
        );
        // The private part never goes into a proof.
        assert!(!h.contains("jpsQnn") && !decode(h).to_string().contains("jpsQnn"));
        // A token request's proof has neither ath nor nonce until the server asks.
        let bare = proof_input(
            key.public(),
            &ProofClaims {
                ath: None,
                nonce: None,
                ..claims
            },
        );
        let c = decode(bare.split('.').nth(1).unwrap());
        assert!(c.get("ath").is_none() && c.get("nonce").is_none());
    }
}
