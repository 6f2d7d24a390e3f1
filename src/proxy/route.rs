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

/// What a caller asked for, as the JavaScript entry (`scripts/entry.mjs`) read it from the
/// request: the one parse of its URL (WHATWG, only `http:` and `https:` accepted) and the
/// profile its service binding pins. Rust never reads a profile or a path from URL text
/// again: two parsers that disagree about where a path starts are how a pin was talked around
/// (security review 2026-12-07, H1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(unreachable_pub)] // public for the fuzz targets (`crate::fuzzing`)
pub struct Asked<'a> {
    /// `url.pathname + url.search` of the request's http(s) URL: starts with `/`, no fragment.
    pub path_and_query: &'a str,
    /// `props.profile` of the caller's binding (or the profile `M2M.send` named, which must be
    /// that one): a pinned request's path is never read for a profile.
    pub pinned: Option<&'a str>,
}

/// Where an [`Asked`] request goes: the profile (with `M2M_PROFILES`) and the path and query
/// to send to that profile's upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(unreachable_pub)] // public for the fuzz targets (`crate::fuzzing`)
pub struct Routed<'a> {
    /// The profile: the pinned one, or (unpinned, with profiles) the first path segment.
    pub profile: Option<&'a str>,
    /// What goes after `UPSTREAM_ORIGIN`.
    pub path_and_query: &'a str,
    /// Whether the profile came from the path (so a redirect the upstream answers must name
    /// it again to come back to it, see [`crate::proxy::redirect`]).
    pub by_path: bool,
}

/// Routes `asked`: a pinned request goes to its pin with its whole path; an unpinned one, with
/// profiles (`profiled`), to the profile its first path segment names (see [`split_profile`]).
/// Whether that profile exists is the caller's check (it holds the configurations).
///
/// A path that an http(s) URL's `pathname` cannot be (not starting with `/`, a fragment, a
/// space, a control or non-ASCII character) is refused: it did not come from the entry's parse.
#[allow(unreachable_pub)] // public for the fuzz targets (`crate::fuzzing`)
pub fn route_asked(asked: Asked<'_>, profiled: bool) -> Result<Routed<'_>, Error> {
    let path = asked.path_and_query;
    if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == b'#' || b >= 0x7f) {
        return Err(Error::rejected(
            400,
            "invalid_request",
            "request URL must be an http: or https: URL",
        ));
    }
    Ok(match (asked.pinned, profiled) {
        (Some(profile), _) => Routed {
            profile: Some(profile),
            path_and_query: path,
            by_path: false,
        },
        (None, true) => {
            let (profile, rest) = split_profile(path);
            Routed {
                profile: Some(profile),
                path_and_query: rest,
                by_path: true,
            }
        }
        (None, false) => Routed {
            profile: None,
            path_and_query: path,
            by_path: false,
        },
    })
}

/// The path and query of `incoming` as the JavaScript entry reads them (`pathname + search`),
/// for the tests and the fuzz targets, which parse with the `url` crate (WHATWG, as workerd).
/// `None` for a URL the entry refuses (not http or https). A bare `?` is dropped, as `search`
/// drops it.
#[cfg(any(test, feature = "fuzzing"))]
#[allow(unreachable_pub)] // public for the fuzz targets (`crate::fuzzing`)
pub fn whatwg_path_and_query(incoming: &Url) -> Option<String> {
    if !matches!(incoming.scheme(), "http" | "https") {
        return None;
    }
    Some(match incoming.query() {
        Some(q) if !q.is_empty() => format!("{}?{q}", incoming.path()),
        _ => incoming.path().to_owned(),
    })
}

/// The upstream URL: the origin's serialisation (no trailing slash), then `path_and_query`,
/// with a `/` first when it does not start with one (`?q` of a profile's bare `/billing?q`).
///
/// Why this cannot leave the origin: the appended part always starts with `/`, and after
/// `scheme://host[:port]` a `/` ends the authority, so nothing after it (`//host`, `@`, `\`,
/// `%2F`) is read as a host. The tests and the `proxy_path` fuzz target check this against the
/// parsing `upstream_url`.
#[allow(unreachable_pub)] // public for the fuzz targets (`crate::fuzzing`)
pub fn join_upstream(origin: &str, path_and_query: &str) -> String {
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

    /// URLs a hostile caller sends: schemes, percent-encodings, dots, slashes, backslashes,
    /// userinfo, fragments, absolute URLs to other hosts.
    const HOSTILE: &[&str] = &[
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
        "https://proxy/billing/../crm/x",
        "https://proxy/billing/%2e%2e/crm/x",
        "https://proxy/billing/x://h/crm/v2/contacts",
        "http://proxy/crm/things",
        "HTTPS://PROXY/crm/things",
        "https:proxy/crm/things",
        "https://user:pw@proxy/crm/x",
        "https://evil.example/crm/x",
        "m2m:/x://h/crm/v2/contacts",
        "m2m:/billing/x://h/crm/v2/contacts",
        "m2m:x://h/crm/v2/contacts",
        "data:,x://h/crm/things",
        "urn:x://h/crm/things",
        "blob:https://h/crm/x",
        "file:///crm/x",
        "ws://proxy/crm/x",
        "javascript://proxy/%0acrm",
    ];

    /// Random URLs from the pieces hostile ones are made of (a fixed seed: the same run each
    /// time; `make fuzz` explores further with the `proxy_path` target).
    fn generated(count: usize) -> Vec<String> {
        const HEADS: &[&str] = &[
            "https://m2m",
            "http://m2m",
            "HTTPS://m2m",
            "https:m2m",
            "m2m:",
            "m2m:/",
            "data:,",
            "urn:",
            "blob:https://h",
            "ws://m2m",
            "https://u@m2m",
            "https://m2m:443",
        ];
        const PIECES: &[&str] = &[
            "/",
            "//",
            "..",
            ".",
            "%2e",
            "%2E%2e",
            "%2F",
            "%5C",
            "\\",
            "@",
            "#",
            "?",
            ":",
            "://",
            "crm",
            "billing",
            "x",
            "https://evil.example",
            "%",
            " ",
            "\t",
            "é",
            "&",
            "=",
            ";",
        ];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        (0..count)
            .map(|_| {
                let mut url = HEADS[next(HEADS.len())].to_owned();
                for _ in 0..next(9) {
                    url.push_str(PIECES[next(PIECES.len())]);
                }
                url
            })
            .collect()
    }

    #[test]
    fn routing_agrees_with_whatwg_on_hostile_and_generated_urls() {
        let origin = Url::parse("https://api.example:8443").unwrap();
        let inputs: Vec<String> = HOSTILE
            .iter()
            .map(|s| s.to_string())
            .chain(generated(20_000))
            .collect();
        let mut routed = 0;
        for incoming in &inputs {
            let Ok(url) = Url::parse(incoming) else {
                continue;
            };
            // The entry refuses what is not http(s); nothing of it reaches Rust.
            let Some(path) = whatwg_path_and_query(&url) else {
                assert!(!matches!(url.scheme(), "http" | "https"), "{incoming}");
                continue;
            };
            routed += 1;
            let first = url.path_segments().and_then(|mut s| s.next()).unwrap_or("");
            // Pinned: the pin, and the whole path, whatever the path says.
            let pinned = route_asked(
                Asked {
                    path_and_query: &path,
                    pinned: Some("billing"),
                },
                true,
            )
            .unwrap();
            assert_eq!(
                (pinned.profile, pinned.path_and_query),
                (Some("billing"), &*path)
            );
            // Unpinned with profiles: WHATWG's first segment, and the rest upstream.
            let unpinned = route_asked(
                Asked {
                    path_and_query: &path,
                    pinned: None,
                },
                true,
            )
            .unwrap();
            assert_eq!(unpinned.profile, Some(first), "{incoming}");
            assert!(unpinned.by_path && !pinned.by_path);
            // Wherever it goes, it stays on the origin, with WHATWG's path and query.
            for rest in [pinned.path_and_query, unpinned.path_and_query] {
                let target = Url::parse(&join_upstream(origin.as_str(), rest)).unwrap();
                assert_eq!(target.origin(), origin.origin(), "{incoming} -> {target}");
                assert_eq!((target.username(), target.password()), ("", None));
                assert_eq!(
                    target.query(),
                    url.query().filter(|q| !q.is_empty()),
                    "{incoming}"
                );
            }
            let whole = Url::parse(&join_upstream(origin.as_str(), &path)).unwrap();
            let mut expected = upstream_url(&origin, &url).unwrap();
            if expected.query() == Some("") {
                expected.set_query(None); // JS's `search` is "" for a bare `?`
            }
            assert_eq!(whole, expected, "{incoming}");
        }
        assert!(routed > 5_000, "{routed} of {} routed", inputs.len());
    }

    #[test]
    fn a_path_the_entry_cannot_have_parsed_is_refused() {
        for path in [
            "", "x", "crm/x", "/a#b", "/a b", "/\u{e9}", "/a\tb", "//\u{7f}",
        ] {
            let asked = Asked {
                path_and_query: path,
                pinned: None,
            };
            let err = route_asked(asked, true).unwrap_err();
            assert_eq!(
                (err.http_status(), err.code()),
                (400, "invalid_request"),
                "{path:?}"
            );
        }
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
            let path = whatwg_path_and_query(&Url::parse(incoming).unwrap()).unwrap();
            let (segment, rest) = split_profile(&path);
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
