//! JWS compact serialisation (RFC 7515 §7.1) of client assertions (RFC 7523 §3), with no crypto:
//! the edge signs the input with WebCrypto.

use base64::Engine as _;

use crate::keys::private_key::Alg;

/// Lifetime of a client assertion: short, since it is used once (RFC 7523 §3 item 4; at most
/// five minutes, as Okta requires).
pub(crate) const ASSERTION_LIFETIME_SECS: u64 = 60;

/// base64url without padding (RFC 7515 §2).
pub(crate) fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `s` as a JSON string literal, quoted and escaped (RFC 8259 §7). JWT parts are written with
/// `format!` and this, not built as `serde_json::Value` maps: the same JSON for a fraction of
/// the wasm bytes.
pub(crate) fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string always serialises")
}

/// `BASE64URL(header) "." BASE64URL(claims)`, the JWS signing input (RFC 7515 §5.1).
pub(crate) fn signing_input(header: &str, claims: &str) -> String {
    format!(
        "{}.{}",
        b64url(header.as_bytes()),
        b64url(claims.as_bytes())
    )
}

/// The JWS signing input `BASE64URL(header) "." BASE64URL(claims)` of a client assertion for
/// `client_id` at `audience` (the token endpoint URL), issued at `now` with the unique `jti`.
pub(crate) fn client_assertion_input(
    alg: Alg,
    kid: Option<&str>,
    client_id: &str,
    audience: &str,
    jti: &str,
    now: u64,
) -> String {
    let kid = kid.map_or_else(String::new, |k| format!(r#","kid":{}"#, json_string(k)));
    let header = format!(r#"{{"alg":"{}","typ":"JWT"{kid}}}"#, alg.as_str());
    let client_id = json_string(client_id);
    let claims = format!(
        r#"{{"iss":{client_id},"sub":{client_id},"aud":{},"jti":{},"iat":{now},"exp":{}}}"#,
        json_string(audience),
        json_string(jti),
        now + ASSERTION_LIFETIME_SECS
    );
    signing_input(&header, &claims)
}

/// A JWS part decoded to JSON, for tests that read back what was signed.
#[cfg(test)]
pub(crate) fn decode_part(part: &str) -> serde_json::Value {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[cfg(test)]
mod tests {
    use super::decode_part as decode;
    use super::*;
    use serde_json::json;

    #[test]
    fn assertion_claims_with_a_fixed_clock() {
        let input = client_assertion_input(
            Alg::Es256,
            Some("k1"),
            "0oa-client",
            "https://idp.example/oauth2/v1/token",
            "jti-1",
            1_700_000_000,
        );
        let (h, c) = input.split_once('.').unwrap();
        assert_eq!(
            decode(h),
            json!({ "alg": "ES256", "typ": "JWT", "kid": "k1" })
        );
        assert_eq!(
            decode(c),
            json!({ "iss": "0oa-client", "sub": "0oa-client", "aud": "https://idp.example/oauth2/v1/token",
                    "jti": "jti-1", "iat": 1_700_000_000u64, "exp": 1_700_000_060u64 })
        );
        assert!(!input.contains('=') && !input.contains('+') && !input.contains('/'));
        let no_kid = client_assertion_input(Alg::Rs256, None, "c", "a", "j", 0);
        assert_eq!(
            decode(no_kid.split('.').next().unwrap()),
            json!({ "alg": "RS256", "typ": "JWT" })
        );
        // Whatever the settings hold stays inside its JSON string.
        let odd = client_assertion_input(Alg::Es256, Some("k\"1"), "c\"\\\n", "a", "j", 0);
        let (h, c) = odd.split_once('.').unwrap();
        assert_eq!(decode(h)["kid"], "k\"1");
        assert_eq!(decode(c)["iss"], "c\"\\\n");
    }
}
