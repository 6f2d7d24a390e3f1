//! What an upstream's answer says about the token it was sent (RFC 6750 §3, RFC 9449 §7.1):
//! whether it calls for a new token, and whether the request may be sent again with one.

/// The `error` parameter of a `Bearer` or `DPoP` challenge (RFC 6750 §3), if the upstream gave one.
pub(crate) fn challenge_error(www_authenticate: &str) -> Option<&str> {
    // Parameters are `name=value` or `name="value"`, separated by commas and spaces; match the
    // name exactly so `error_description="... invalid_token ..."` is not mistaken for it.
    let mut rest = www_authenticate;
    while let Some(at) = rest.find("error=") {
        let before = rest[..at].chars().last();
        let value = &rest[at + "error=".len()..];
        if before.is_none_or(|c| c == ' ' || c == ',') {
            let value = value.strip_prefix('"').map_or_else(
                || value.split([',', ' ']).next().unwrap_or_default(),
                |quoted| quoted.split('"').next().unwrap_or_default(),
            );
            return Some(value);
        }
        rest = value;
    }
    None
}

/// Whether an upstream answer means "this token is no longer good" (RFC 6750 §3.1): a status in
/// `OAUTH_RETRY_STATUSES`, unless its challenge names another error (`insufficient_scope` is
/// not helped by a new token). A challenge without an `error` (RFC 6750 makes it optional)
/// counts as a rejection of the token.
pub(crate) fn token_rejected(
    status: u16,
    www_authenticate: Option<&str>,
    retry_statuses: &[u16],
) -> bool {
    retry_statuses.contains(&status)
        && www_authenticate
            .and_then(challenge_error)
            .is_none_or(|e| e == "invalid_token")
}

/// Whether a request rejected for its token may be sent again. Idempotent methods (RFC 9110
/// §9.2.2) may; `POST` and `PATCH` only when the upstream said `error="invalid_token"`, which
/// means it refused the request at authentication and did not act on it.
pub(crate) fn may_replay(method: &str, www_authenticate: Option<&str>) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE")
        || www_authenticate.and_then(challenge_error) == Some("invalid_token")
}

/// Whether a resource server's answer asks for a nonce (RFC 9449 §9): `401` with
/// `WWW-Authenticate: DPoP error="use_dpop_nonce"`.
pub(crate) fn resource_wants_nonce(status: u16, www_authenticate: Option<&str>) -> bool {
    status == 401
        && www_authenticate.and_then(challenge_error) == Some(crate::oauth::dpop::USE_DPOP_NONCE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_rejections_and_replays() {
        let invalid = Some(r#"Bearer error="invalid_token", error_description="revoked""#);
        assert!(token_rejected(401, None, &[401]));
        assert!(token_rejected(401, invalid, &[401]));
        assert!(!token_rejected(
            401,
            Some(r#"Bearer error="insufficient_scope""#),
            &[401]
        ));
        assert!(!token_rejected(403, None, &[401]));
        assert!(!token_rejected(401, None, &[]));
        assert!(may_replay("GET", None) && may_replay("PUT", None) && may_replay("POST", invalid));
        assert!(!may_replay("POST", None) && !may_replay("PATCH", Some("Bearer")));
        // A challenge without an error code still rejects the token (RFC 6750 §3: optional).
        assert!(token_rejected(401, Some(r#"Bearer realm="api""#), &[401]));
        // A description that mentions invalid_token is not the error code.
        let described =
            Some(r#"Bearer error="insufficient_scope", error_description="not an invalid_token""#);
        assert!(!token_rejected(401, described, &[401]));
        assert!(!may_replay("POST", described));
        assert_eq!(
            challenge_error(r#"DPoP algs="ES256", error=use_dpop_nonce"#),
            Some("use_dpop_nonce")
        );
        assert_eq!(challenge_error(r#"Bearer realm="x""#), None);
    }
}
