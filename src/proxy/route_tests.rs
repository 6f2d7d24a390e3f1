//! Routing held against WHATWG URL semantics (the `url` crate, as workerd parses): what the
//! entry hands Rust of a hostile or generated URL always routes to the pin, or to the first
//! path segment, and stays on the upstream's origin.

use url::Url;

use crate::proxy::route::*;

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
