//! Where a proxied request goes, with no I/O: the profile (pinned, or the first path segment)
//! and the upstream URL, from what the JavaScript entry parsed. Whether it may go is
//! [`crate::proxy::admission`]; which of the caller's headers go with it is
//! [`crate::proxy::headers`]; its tests against WHATWG URL semantics are in `route_tests.rs`.

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
