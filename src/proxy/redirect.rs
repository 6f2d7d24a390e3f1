//! What becomes of an upstream's redirect on its way back to the caller.
//!
//! The proxy never follows a redirect itself, but the caller's `fetch` does (`redirect:
//! "follow"` is the default), and it follows through the same service binding, with the same
//! headers. Passed through untouched, billing's `302 Location: /crm/acct/9` came back into the
//! proxy as a request for the crm profile, signed with crm's token; and a cross-origin `307`
//! made a route caller resend its `Proxy-Authorization` to a host the upstream chose (security
//! review 2026-12-07, M3). So a `Location` (RFC 9110 §10.2.2) is rewritten before it leaves:
//!
//! - on the upstream's own origin (relative, or absolute on `UPSTREAM_ORIGIN`): a path on the
//!   proxy that routes back to the same profile (`/<profile>/...` when the profile came from
//!   the path; a pinned caller's binding puts its pin back by itself);
//! - anywhere else: no `Location` at all, so no client follows it; the upstream's value goes
//!   back as `X-Upstream-Location` for a caller that wants to see it.

use url::Url;

/// What to answer in place of the upstream's `Location`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Relocation {
    /// Send this `Location` instead: a path on the proxy (path-absolute, never `//`).
    Location(String),
    /// Send no `Location`; the upstream's value goes in `X-Upstream-Location`.
    Moved,
}

/// The [`Relocation`] of `location`, the upstream's answer to a request for `target`: resolved
/// against `target` as a client would (WHATWG URL), it stays a `Location` only on `target`'s
/// origin, with `profile_segment` (the path-routed profile, if any) put back in front.
pub(crate) fn relocate(location: &str, target: &str, profile_segment: Option<&str>) -> Relocation {
    let Ok(target) = Url::parse(target) else {
        return Relocation::Moved;
    };
    let Ok(resolved) = target.join(location.trim()) else {
        return Relocation::Moved;
    };
    if resolved.origin() != target.origin()
        || !resolved.username().is_empty()
        || resolved.password().is_some()
    {
        return Relocation::Moved;
    }
    let mut path = String::new();
    if let Some(profile) = profile_segment {
        path.push('/');
        path.push_str(profile);
    } else if resolved.path().starts_with("//") {
        // `//x` alone would be a network-path reference to the host `x`: `/.//x` is the same
        // path on this host.
        path.push_str("/.");
    }
    path.push_str(resolved.path());
    if let Some(query) = resolved.query() {
        path.push('?');
        path.push_str(query);
    }
    if let Some(fragment) = resolved.fragment() {
        path.push('#');
        path.push_str(fragment);
    }
    Relocation::Location(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGET: &str = "https://billing.example:8443/v1/go?x=1";

    fn on_proxy(relocation: Relocation) -> Url {
        let Relocation::Location(path) = relocation else {
            panic!("moved")
        };
        Url::parse("https://m2m/").unwrap().join(&path).unwrap()
    }

    #[test]
    fn a_location_on_the_upstream_stays_in_the_profile() {
        for (location, by_path, pinned) in [
            ("/crm/acct/9", "/billing/crm/acct/9", "/crm/acct/9"),
            (
                "acct/9?a=b#f",
                "/billing/v1/acct/9?a=b#f",
                "/v1/acct/9?a=b#f",
            ),
            ("https://billing.example:8443/x", "/billing/x", "/x"),
            ("../../../crm/x", "/billing/crm/x", "/crm/x"),
            (
                "/.//evil.example/x",
                "/billing//evil.example/x",
                "//evil.example/x",
            ),
        ] {
            let routed = on_proxy(relocate(location, TARGET, Some("billing")));
            assert_eq!(routed.host_str(), Some("m2m"), "{location}");
            let got = &routed[url::Position::BeforePath..];
            assert_eq!(got, by_path, "{location}");
            let pinned_url = on_proxy(relocate(location, TARGET, None));
            assert_eq!(pinned_url.host_str(), Some("m2m"), "{location}");
            assert_eq!(
                &pinned_url[url::Position::BeforePath..],
                pinned,
                "{location}"
            );
        }
    }

    #[test]
    fn a_location_anywhere_else_is_moved_out_of_reach() {
        for location in [
            "https://evil.example/x",
            "//evil.example/x",
            "http://billing.example:8443/x",
            "https://billing.example/x",
            "https://user:pw@billing.example:8443/x",
            "\\\\evil.example/x",
            "mailto:root@example.com",
            "javascript:alert(1)",
            "https://[::1",
        ] {
            for segment in [Some("billing"), None] {
                assert_eq!(
                    relocate(location, TARGET, segment),
                    Relocation::Moved,
                    "{location}"
                );
            }
        }
    }
}
