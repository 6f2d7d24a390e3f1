//! What a request must be for the proxy to forward it, and what a refusal looks like: the
//! methods it forwards, a body's framing and size, the shared secret a caller presents, and
//! the JSON error body. No I/O: the edge applies these (`src/edge/proxy/`).

use crate::base::error::Error;

/// Methods the proxy forwards. `CONNECT` would open a tunnel and `TRACE` reflects the request
/// (our `Authorization` included) back to the caller: neither is forwarded.
pub(crate) const ALLOWED_METHODS: &[&str] =
    &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// Checks an incoming request before anything is forwarded: its method, that no header value
/// could split a header (CR, LF, NUL), that its `Content-Length` is a single number within
/// `max_body_bytes` (RFC 9112 §6.3: conflicting lengths are a smuggling attempt), and that it
/// does not declare both a length and a transfer coding.
///
/// The proxy passes only `Content-Length` and `Transfer-Encoding` here: workerd's HTTP parser and the `Headers` API
/// already refuse control characters in every header, so scanning them all on each request
/// would buy nothing.
#[allow(unreachable_pub)] // public for the fuzz targets (`crate::fuzzing`)
pub fn check_request<'a>(
    method: &str,
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    max_body_bytes: u64,
) -> Result<(), Error> {
    if !ALLOWED_METHODS.contains(&method) {
        return Err(Error::rejected(
            405,
            "method_not_allowed",
            format!("method {} is not forwarded", method.escape_debug()),
        ));
    }
    let mut framing = 0;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            framing += 1;
        }
        if framing > 1 {
            // RFC 9112 §6.1: both framings in one request is how requests are smuggled; a
            // server may refuse it, and the proxy does rather than pick one.
            return Err(Error::rejected(
                400,
                "invalid_request",
                "Content-Length and Transfer-Encoding together",
            ));
        }
        if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
            || name.bytes().any(|b| b.is_ascii_control())
        {
            return Err(Error::rejected(
                400,
                "invalid_request",
                "a header contains control characters",
            ));
        }
        if name.eq_ignore_ascii_case("content-length") {
            let len: u64 = value.trim().parse().map_err(|_| {
                Error::rejected(
                    400,
                    "invalid_request",
                    "Content-Length is not a single number",
                )
            })?;
            if len > max_body_bytes {
                return Err(Error::rejected(
                    413,
                    "request_too_large",
                    format!("request body exceeds {max_body_bytes} bytes"),
                ));
            }
        }
    }
    Ok(())
}

/// Compares two byte strings in time that depends only on their lengths (callers compare
/// fixed-length digests, so not even the secret's length leaks).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The credential a caller presents to the proxy: `Proxy-Authorization: Bearer <secret>`.
pub(crate) fn presented_proxy_secret(header: Option<&str>) -> Option<&str> {
    let value = header?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// The proxy's JSON error body, `{"error": ..., "error_description": ...}` (the RFC 6749 §5.2
/// shape, so callers parse one format whether we or the identity provider said no).
pub(crate) fn error_body(err: &Error) -> String {
    let description = match err {
        Error::Refused {
            code, description, ..
        } => match description {
            Some(d) => format!("token endpoint refused the request: {code}: {d}"),
            None => format!("token endpoint refused the request: {code}"),
        },
        other => other.to_string(),
    };
    serde_json::json!({ "error": err.code(), "error_description": description }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_with_unforwardable_methods_or_bodies_are_refused_with_their_status() {
        let ok = |m, h: &[(&str, &str)]| check_request(m, h.iter().copied(), 1000);
        assert!(ok(
            "POST",
            &[("content-length", "1000"), ("content-type", "text/plain")]
        )
        .is_ok());
        assert!(ok("GET", &[]).is_ok());
        let status = |r: Result<(), Error>| r.unwrap_err().http_status();
        assert_eq!(status(ok("CONNECT", &[])), 405);
        assert_eq!(status(ok("TRACE", &[])), 405);
        assert_eq!(status(ok("POST", &[("content-length", "1001")])), 413);
        assert_eq!(status(ok("POST", &[("content-length", "5, 5")])), 400);
        assert_eq!(
            status(ok(
                "POST",
                &[("content-length", "4"), ("transfer-encoding", "chunked")]
            )),
            400
        );
        assert!(ok("POST", &[("transfer-encoding", "chunked")]).is_ok());
        assert_eq!(status(ok("POST", &[("content-length", "-1")])), 400);
        assert_eq!(status(ok("GET", &[("x-a", "b\r\nx-evil: 1")])), 400);
    }

    #[test]
    fn the_shared_secret_is_read_from_bearer_and_compared_in_constant_time() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd") && !constant_time_eq(b"abc", b"ab"));
        assert_eq!(
            presented_proxy_secret(Some("Bearer s3cret")),
            Some("s3cret")
        );
        assert_eq!(
            presented_proxy_secret(Some("bearer  s3cret ")),
            Some("s3cret")
        );
        assert_eq!(presented_proxy_secret(Some("Basic abc")), None);
        assert_eq!(presented_proxy_secret(None), None);
    }

    #[test]
    fn error_bodies_carry_the_code_and_a_description_without_secrets() {
        let e = Error::Refused {
            status: 401,
            code: crate::base::error::ErrorCode::InvalidClient,
            description: Some("client authentication failed".into()),
        };
        let v: serde_json::Value = serde_json::from_str(&error_body(&e)).unwrap();
        assert_eq!(v["error"], "invalid_client");
        assert_eq!(
            v["error_description"],
            "token endpoint refused the request: invalid_client: client authentication failed"
        );
        let v: serde_json::Value =
            serde_json::from_str(&error_body(&Error::config("UPSTREAM_ORIGIN", "is not set")))
                .unwrap();
        assert_eq!(v["error"], "configuration_error");
        assert!(v["error_description"]
            .as_str()
            .unwrap()
            .contains("UPSTREAM_ORIGIN"));
    }
}
