//! `OAUTH_PRIVATE_KEY` for `private_key_jwt` (RFC 7523 §2.2): a private JWK (RFC 7517) or a
//! PKCS#8 PEM (RFC 5958), ES256 or RS256 (RFC 7518 §3.4, §3.3).
//!
//! Parsing only decides the format, the algorithm and the key id; the key itself is imported
//! once per isolate by WebCrypto at the edge. Errors name the setting and say what is wrong,
//! never a byte of the key.

use std::fmt;

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::base::error::{Error, Result};
use crate::base::secret::SharedSecret;

#[cfg(test)]
const SETTING: &str = "OAUTH_PRIVATE_KEY";

/// A JWS signing algorithm this crate signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Alg {
    /// ECDSA P-256 with SHA-256 (RFC 7518 §3.4).
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 §3.3).
    Rs256,
}

impl Alg {
    /// The JWS `alg` value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
        }
    }
}

/// How the key is encoded.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) enum KeyFormat {
    /// A private JWK, as JSON text.
    Jwk(SharedSecret),
    /// PKCS#8 `PrivateKeyInfo`, DER bytes (from the PEM).
    Pkcs8(Vec<u8>),
}

impl fmt::Debug for KeyFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Jwk(_) => "Jwk([redacted])",
            Self::Pkcs8(_) => "Pkcs8([redacted])",
        })
    }
}

/// The public members of a JWK, in RFC 7638 §3.2 order, for its thumbprint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum PublicJwk {
    /// `{"crv","kty":"EC","x","y"}`
    Ec { crv: String, x: String, y: String },
    /// `{"e","kty":"RSA","n"}`
    Rsa { e: String, n: String },
}

impl PublicJwk {
    /// The RFC 7638 §3 thumbprint input: the required members, sorted, no whitespace.
    #[cfg(any(target_arch = "wasm32", test))]
    pub(crate) fn thumbprint_input(&self) -> String {
        match self {
            Self::Ec { crv, x, y } => {
                format!(r#"{{"crv":"{crv}","kty":"EC","x":"{x}","y":"{y}"}}"#)
            }
            Self::Rsa { e, n } => format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#),
        }
    }
}

/// A parsed `OAUTH_PRIVATE_KEY` (RFC 7517 JWK or RFC 5958 PKCS#8): opaque, imported by
/// WebCrypto at the edge; its `Debug` shows no key material.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PrivateKey {
    /// The key material.
    pub(crate) format: KeyFormat,
    /// Its algorithm.
    pub(crate) alg: Alg,
    /// The `kid` for the JWS header: the JWK's own, else `OAUTH_PRIVATE_KEY_ID`; when both are
    /// absent the edge uses the key's RFC 7638 thumbprint.
    pub(crate) kid: Option<String>,
    /// The public members, when known without WebCrypto (JWK input).
    pub(crate) public: Option<PublicJwk>,
    /// The setting's raw text: the credential, for cache keys and scrubbing.
    pub(crate) raw: SharedSecret,
}

/// Parses `OAUTH_PRIVATE_KEY`; `key_id` is `OAUTH_PRIVATE_KEY_ID`.
#[cfg(test)]
pub(crate) fn parse_private_key(raw: &str, key_id: Option<String>) -> Result<PrivateKey> {
    parse_key(SETTING, raw, key_id)
}

/// Parses a private key given in the setting named `setting` (errors name it).
pub(crate) fn parse_key(setting: &str, raw: &str, key_id: Option<String>) -> Result<PrivateKey> {
    let text = raw.trim();
    let (format, alg, kid, public) = if text.starts_with('{') {
        parse_jwk(setting, text)?
    } else if text.starts_with("-----BEGIN") {
        let (der, alg) = parse_pem(setting, text)?;
        (KeyFormat::Pkcs8(der), alg, None, None)
    } else {
        return Err(Error::config(
            setting.to_owned(),
            "must be a private JWK (JSON) or a PKCS#8 PEM",
        ));
    };
    Ok(PrivateKey {
        format,
        alg,
        kid: kid.or(key_id),
        public,
        raw: SharedSecret::new(raw),
    })
}

type Parsed = (KeyFormat, Alg, Option<String>, Option<PublicJwk>);

fn parse_jwk(setting: &str, text: &str) -> Result<Parsed> {
    let jwk: Map<String, Value> = serde_json::from_str(text)
        .map_err(|_| Error::config(setting.to_owned(), "is not valid JSON"))?;
    let member = |name: &str| {
        jwk.get(name)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
    };
    let require = |name: &str| {
        member(name)
            .map(str::to_owned)
            .ok_or_else(|| Error::config(setting.to_owned(), format!("JWK has no `{name}`")))
    };
    if member("d").is_none() {
        return Err(Error::config(
            setting.to_owned(),
            "JWK is a public key (no `d`); a private key is needed",
        ));
    }
    let (alg, public) = match member("kty") {
        Some("EC") => {
            if member("crv") != Some("P-256") {
                return Err(Error::config(
                    setting.to_owned(),
                    "EC JWK must use crv P-256 (ES256)",
                ));
            }
            (
                Alg::Es256,
                PublicJwk::Ec {
                    crv: "P-256".into(),
                    x: require("x")?,
                    y: require("y")?,
                },
            )
        }
        Some("RSA") => {
            for name in ["p", "q", "dp", "dq", "qi"] {
                require(name)?;
            }
            (
                Alg::Rs256,
                PublicJwk::Rsa {
                    e: require("e")?,
                    n: require("n")?,
                },
            )
        }
        _ => {
            return Err(Error::config(
                setting.to_owned(),
                "JWK `kty` must be EC or RSA",
            ))
        }
    };
    if let Some(declared) = member("alg") {
        if declared != alg.as_str() {
            return Err(Error::config(
                setting.to_owned(),
                format!("JWK `alg` must be {} for this key type", alg.as_str()),
            ));
        }
    }
    Ok((
        KeyFormat::Jwk(SharedSecret::new(text)),
        alg,
        member("kid").map(str::to_owned),
        Some(public),
    ))
}

/// DER encodings of the algorithm OIDs that identify a PKCS#8 key (RFC 5480, RFC 8017).
const OID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_RSA: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];

fn parse_pem(setting: &str, text: &str) -> Result<(Vec<u8>, Alg)> {
    let label = text.lines().next().unwrap_or_default().trim();
    match label {
        "-----BEGIN PRIVATE KEY-----" => {}
        "-----BEGIN ENCRYPTED PRIVATE KEY-----" => {
            return Err(Error::config(setting.to_owned(), "PEM is encrypted; store it unencrypted as a Worker secret"))
        }
        "-----BEGIN EC PRIVATE KEY-----" | "-----BEGIN RSA PRIVATE KEY-----" => {
            return Err(Error::config(
                setting.to_owned(),
                "PEM must be PKCS#8 (BEGIN PRIVATE KEY); convert with `openssl pkcs8 -topk8 -nocrypt`",
            ))
        }
        _ => return Err(Error::config(setting.to_owned(), "PEM must be a PKCS#8 private key (BEGIN PRIVATE KEY)")),
    }
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .flat_map(|l| l.trim().chars())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|_| Error::config(setting.to_owned(), "PEM body is not valid base64"))?;
    // PrivateKeyInfo: SEQUENCE { INTEGER 0, AlgorithmIdentifier { OID, params }, OCTET STRING };
    // the algorithm OIDs sit in the first few dozen bytes.
    let head = &der[..der.len().min(48)];
    let has = |oid: &[u8]| head.windows(oid.len()).any(|w| w == oid);
    let alg = if has(OID_EC_PUBLIC_KEY) {
        if !has(OID_P256) {
            return Err(Error::config(
                setting.to_owned(),
                "EC key must be on curve P-256 (ES256)",
            ));
        }
        Alg::Es256
    } else if has(OID_RSA) {
        Alg::Rs256
    } else {
        return Err(Error::config(
            setting.to_owned(),
            "PEM holds neither an EC P-256 nor an RSA key",
        ));
    };
    Ok((der, alg))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The RFC 7517 Appendix A.2 example EC private key: a published test vector.
    const EC_JWK: &str = r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","d":"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI","kid":"ec-1","alg":"ES256"}"#;
    const RSA_JWK_PUBLIC: &str = r#"{"kty":"RSA","n":"0vx7","e":"AQAB"}"#;

    // PKCS#8 headers of an EC P-256 and an RSA key: only the AlgorithmIdentifier is read here
    // (WebCrypto validates the rest at import; the end-to-end tests use real generated keys).
    const EC_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgevZzL1gdAFr88hb2\nOF/2NxApJCzGCEDdfSp6VQO30hyhRANCAAQRWz+jn65BtOMvdyHKcvjBeBSDZH2r\n1RTwjmYSi9R/zpBnuQ4EiMnCqfMPWiZqB4QdbAd0E7oH50VpuZ1P087G\n-----END PRIVATE KEY-----\n";
    const RSA_PEM_HEAD: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----";

    #[test]
    fn ec_and_rsa_keys_are_read_from_jwk_and_pem_and_a_jwk_kid_wins() {
        let k = parse_private_key(EC_JWK, None).unwrap();
        assert_eq!((k.alg, k.kid.as_deref()), (Alg::Es256, Some("ec-1")));
        let k = parse_private_key(EC_PEM, Some("pem-1".into())).unwrap();
        assert_eq!((k.alg, k.kid.as_deref()), (Alg::Es256, Some("pem-1")));
        assert!(matches!(k.format, KeyFormat::Pkcs8(_)));
        let k = parse_private_key(RSA_PEM_HEAD, None).unwrap();
        assert_eq!((k.alg, k.kid), (Alg::Rs256, None));
        // The JWK's own kid wins over OAUTH_PRIVATE_KEY_ID.
        assert_eq!(
            parse_private_key(EC_JWK, Some("other".into()))
                .unwrap()
                .kid
                .as_deref(),
            Some("ec-1")
        );
    }

    #[test]
    fn malformed_keys_name_the_setting_and_show_no_key_material() {
        let cases: &[(&str, &str)] = &[
            ("", "must be a private JWK"),
            ("not a key", "must be a private JWK"),
            ("{not json", "is not valid JSON"),
            (RSA_JWK_PUBLIC, "is a public key"),
            (r#"{"kty":"OKP","d":"x"}"#, "`kty` must be EC or RSA"),
            (
                r#"{"kty":"EC","crv":"P-384","d":"x","x":"a","y":"b"}"#,
                "crv P-256",
            ),
            (
                r#"{"kty":"EC","crv":"P-256","d":"x","x":"a"}"#,
                "JWK has no `y`",
            ),
            (r#"{"kty":"RSA","d":"x","n":"a","e":"b"}"#, "JWK has no `p`"),
            (
                r#"{"kty":"EC","crv":"P-256","d":"x","x":"a","y":"b","alg":"RS256"}"#,
                "`alg` must be ES256",
            ),
            (
                "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----",
                "must be PKCS#8",
            ),
            (
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----",
                "encrypted",
            ),
            (
                "-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----",
                "not valid base64",
            ),
            (
                "-----BEGIN PRIVATE KEY-----\nMAMCAQA=\n-----END PRIVATE KEY-----",
                "neither an EC P-256 nor an RSA",
            ),
        ];
        for (raw, want) in cases {
            let err = parse_private_key(raw, None).unwrap_err().to_string();
            assert!(
                err.starts_with("configuration error: OAUTH_PRIVATE_KEY: "),
                "{err}"
            );
            assert!(err.contains(want), "{raw:?}: got {err:?}");
            assert!(!err.contains("jpsQnn") && !err.contains("MIG"), "{err}");
        }
        assert!(!format!("{:?}", parse_private_key(EC_JWK, None).unwrap()).contains("jpsQnn"));
    }

    #[test]
    fn rfc7638_thumbprint_input() {
        // The RFC 7638 §3.1 example key's required members, in the order the RFC gives.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let public = PublicJwk::Rsa {
            e: "AQAB".into(),
            n: n.into(),
        };
        assert_eq!(
            public.thumbprint_input(),
            format!(r#"{{"e":"AQAB","kty":"RSA","n":"{n}"}}"#)
        );
        // The thumbprint itself: SHA-256 of that input, base64url, as RFC 7638 §3.1 gives it.
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(public.thumbprint_input().as_bytes());
        assert_eq!(
            crate::keys::jwt::b64url(&digest),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        let ec = PublicJwk::Ec {
            crv: "P-256".into(),
            x: "X".into(),
            y: "Y".into(),
        };
        assert_eq!(
            ec.thumbprint_input(),
            r#"{"crv":"P-256","kty":"EC","x":"X","y":"Y"}"#
        );
    }
}
