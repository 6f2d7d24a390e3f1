//! The egress proxy's decisions, with no I/O: where a request goes, which headers go with it,
//! and what an error looks like to the caller.

use url::Url;

use crate::error::Error;

/// Headers that never travel from the caller to the upstream.
///
/// Hop-by-hop headers (RFC 9110 §7.6.1) belong to one connection. `authorization` is replaced by
/// ours, so a caller's own credentials never reach the upstream. `host` and the forwarding
/// headers could make the upstream believe the request was meant for another site.
const DROPPED_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "authorization",
    "host",
    "x-forwarded-host",
    "forwarded",
];

/// The upstream URL for an incoming request: the incoming path and query on `origin`.
///
/// Only the path and query of the incoming URL are read, and they are set on a copy of the
/// origin, so nothing in them (`//host`, an absolute URL, percent-encoded slashes, `@`) can
/// change the scheme, host or port. The final check guards that reasoning.
pub fn upstream_url(origin: &Url, incoming: &Url) -> Result<Url, Error> {
    let mut url = origin.clone();
    url.set_path(incoming.path());
    url.set_query(incoming.query());
    if url.origin() != origin.origin() {
        return Err(Error::BadRequest(
            "request path would leave UPSTREAM_ORIGIN".into(),
        ));
    }
    Ok(url)
}

/// True when the caller's header `name` (lower case) is forwarded upstream. `connection` is the
/// caller's `Connection` header, whose listed names are hop-by-hop as well (RFC 9110 §7.6.1).
pub fn forwards_header(name: &str, connection: Option<&str>) -> bool {
    if DROPPED_HEADERS.contains(&name) {
        return false;
    }
    !connection.is_some_and(|c| c.split(',').any(|t| t.trim().eq_ignore_ascii_case(name)))
}

/// The proxy's JSON error body, `{"error": ..., "error_description": ...}` (the RFC 6749 §5.2
/// shape, so callers parse one format whether we or the identity provider said no).
pub fn error_body(err: &Error) -> String {
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
    fn header_filter() {
        for dropped in [
            "authorization",
            "host",
            "connection",
            "transfer-encoding",
            "x-forwarded-host",
            "proxy-authorization",
        ] {
            assert!(!forwards_header(dropped, None), "{dropped}");
        }
        for kept in ["content-type", "accept", "x-request-id", "content-length"] {
            assert!(forwards_header(kept, None), "{kept}");
        }
        assert!(!forwards_header(
            "x-secret-hop",
            Some("keep-alive, X-Secret-Hop")
        ));
    }

    #[test]
    fn error_bodies() {
        let e = Error::Refused {
            status: 401,
            code: crate::error::ErrorCode::InvalidClient,
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
