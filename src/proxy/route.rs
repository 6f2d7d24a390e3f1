//! The egress proxy's decisions, with no I/O: where a request goes, whether it is accepted,
//! and what an error looks like to the caller. When an upstream's answer calls for a new token
//! is [`crate::oauth::challenge`].
//! Which of the caller's headers go with it is [`crate::proxy::headers`].

#[cfg(any(test, feature = "fuzzing"))]
use url::Url;

use crate::base::error::Error;

/// The upstream URL for an incoming request: the incoming path and query on `origin`.
///
/// Only the path and query of the incoming URL are read, and they are set on a copy of the
/// origin, so nothing in them (`//host`, an absolute URL, percent-encoded slashes, `@`) can
/// change the scheme, host or port. The final check guards that reasoning.
#[cfg(any(test, feature = "fuzzing"))]
#[allow(unreachable_pub)] // public for the fuzz targets (`crate::fuzzing`)
pub fn upstream_url(origin: &Url, incoming: &Url) -> Result<Url, Error> {
    let mut url = origin.clone();
    url.set_path(incoming.path());
    url.set_query(incoming.query());
    if url.origin() != origin.origin() {
        return Err(Error::rejected(
            400,
            "invalid_request",
            "request path would leave UPSTREAM_ORIGIN",
        ));
    }
    Ok(url)
}

/// [`upstream_url`] for the incoming URL as workerd serialises it, without parsing either URL
/// again on the hot path: [`join_upstream`] of the origin and [`path_and_query`].
#[cfg(any(test, feature = "fuzzing"))]
#[allow(unreachable_pub)] // public for the fuzz targets (`crate::fuzzing`)
pub fn upstream_url_from_raw(origin: &str, incoming: &str) -> Result<String, Error> {
    Ok(join_upstream(origin, path_and_query(incoming)?))
}

/// The path and query of an absolute URL as workerd serialises it (the fragment never reaches
/// a server): `/v1/x?q` of `https://proxy/v1/x?q#f`, `/` when there is no path.
pub(crate) fn path_and_query(incoming: &str) -> Result<&str, Error> {
    let bad = || Error::rejected(400, "invalid_request", "request URL is not absolute");
    let after_scheme = incoming.split_once("://").ok_or_else(bad)?.1;
    let path_and_query = after_scheme.find('/').map_or("/", |i| &after_scheme[i..]);
    Ok(path_and_query.split('#').next().unwrap_or("/"))
}

/// The upstream URL: the origin's serialisation (no trailing slash), then `path_and_query`,
/// with a `/` first when it does not start with one (`?q` of a profile's bare `/billing?q`).
///
/// Why this cannot leave the origin: the appended part always starts with `/`, and after
/// `scheme://host[:port]` a `/` ends the authority, so nothing after it (`//host`, `@`, `\`,
/// `%2F`) is read as a host. The tests and the `proxy_path` fuzz target check this against the
/// parsing `upstream_url`.
pub(crate) fn join_upstream(origin: &str, path_and_query: &str) -> String {
    let origin = origin.trim_end_matches('/');
    let mut target = String::with_capacity(origin.len() + path_and_query.len() + 1);
    target.push_str(origin);
    if !path_and_query.starts_with('/') {
        target.push('/');
    }
    target.push_str(path_and_query);
    target
}

/// With profiles (`M2M_PROFILES`), the first path segment names the profile and the rest goes
/// upstream: `/billing/v1/x?q` is `billing` and `/v1/x?q`; `/billing?q` is `billing` and `?q`
/// (sent as `/?q`, see [`join_upstream`]). The segment is compared as sent: a percent-encoded
/// or differently cased name is no profile.
pub(crate) fn split_profile(path_and_query: &str) -> (&str, &str) {
    let rest = path_and_query.strip_prefix('/').unwrap_or(path_and_query);
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    rest.split_at(end)
}

/// The 404 for a path whose first segment names no profile. It does not echo the segment nor
/// list the profiles: a caller learns nothing about the Worker's configuration from it.
pub(crate) fn unknown_profile() -> Error {
    Error::rejected(
        404,
        "unknown_profile",
        "no such profile: with M2M_PROFILES, the first path segment names a profile \
         (/<profile>/<path>)",
    )
}

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

    fn target(incoming: &str) -> String {
        let origin = Url::parse("https://api.example:8443").unwrap();
        upstream_url(&origin, &Url::parse(incoming).unwrap())
            .unwrap()
            .to_string()
    }

    #[test]
    fn path_and_query_move_to_the_origin() {
        assert_eq!(
            target("https://proxy/v1/things?a=1&b=%20"),
            "https://api.example:8443/v1/things?a=1&b=%20"
        );
        assert_eq!(target("https://proxy/"), "https://api.example:8443/");
        assert_eq!(target("https://proxy/x#frag"), "https://api.example:8443/x");
    }

    #[test]
    fn nothing_in_the_path_leaves_the_origin() {
        for incoming in [
            "https://proxy//evil.example/x",
            "https://proxy/https://evil.example/x",
            "https://proxy/%2F%2Fevil.example",
            "https://proxy/\\\\evil.example",
            "https://proxy/@evil.example",
            "https://proxy/..%2F..%2Fevil",
            "https://proxy/a/../../../evil",
            "https://proxy/?next=https://evil.example",
            "https://user:pw@proxy/x",
        ] {
            let t = Url::parse(&target(incoming)).unwrap();
            assert_eq!(t.host_str(), Some("api.example"), "{incoming}");
            assert_eq!((t.scheme(), t.port()), ("https", Some(8443)), "{incoming}");
            assert_eq!((t.username(), t.password()), ("", None), "{incoming}");
        }
    }

    #[test]
    fn raw_urls_agree_with_parsed_ones() {
        let origin = Url::parse("https://api.example:8443").unwrap();
        for incoming in [
            "https://proxy/v1/things?a=1&b=%20",
            "https://proxy/",
            "https://proxy",
            "https://proxy/x#frag",
            "https://proxy//evil.example/x",
            "https://proxy/%2F%2Fevil.example?next=https://evil",
            "https://proxy/@evil.example",
            "https://proxy/a?b#c?d",
            "https://proxy/\\\\evil.example/x",
            "https://proxy/..%2F..%2Fevil",
        ] {
            let via_raw =
                Url::parse(&upstream_url_from_raw(origin.as_str(), incoming).unwrap()).unwrap();
            let via_parsed = upstream_url(&origin, &Url::parse(incoming).unwrap()).unwrap();
            assert_eq!(via_raw, via_parsed, "{incoming}");
        }
        assert!(upstream_url_from_raw(origin.as_str(), "no scheme").is_err());
    }

    #[test]
    fn a_profile_is_the_first_segment_and_is_never_forwarded() {
        let origin = "https://billing.example:8443";
        for (incoming, profile, upstream) in [
            (
                "https://proxy/billing/v1/x?a=1",
                "billing",
                "https://billing.example:8443/v1/x?a=1",
            ),
            (
                "https://proxy/billing",
                "billing",
                "https://billing.example:8443/",
            ),
            (
                "https://proxy/billing/",
                "billing",
                "https://billing.example:8443/",
            ),
            (
                "https://proxy/billing?a=/b",
                "billing",
                "https://billing.example:8443/?a=/b",
            ),
            ("https://proxy/", "", "https://billing.example:8443/"),
            (
                "https://proxy/bill%69ng/x",
                "bill%69ng",
                "https://billing.example:8443/x",
            ),
            (
                "https://proxy/billing//evil.example/x",
                "billing",
                "https://billing.example:8443//evil.example/x",
            ),
            (
                "https://proxy/billing/..%2F..%2Fevil?x#f",
                "billing",
                "https://billing.example:8443/..%2F..%2Fevil?x",
            ),
        ] {
            let (segment, rest) = split_profile(path_and_query(incoming).unwrap());
            assert_eq!(segment, profile, "{incoming}");
            let joined = join_upstream(origin, rest);
            assert_eq!(joined, upstream, "{incoming}");
            let parsed = Url::parse(&joined).unwrap();
            assert_eq!(
                (parsed.host_str(), parsed.port()),
                (Some("billing.example"), Some(8443)),
                "{incoming}"
            );
        }
        let err = unknown_profile();
        assert_eq!((err.http_status(), err.code()), (404, "unknown_profile"));
    }

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
