//! Any request target and headers: what the entry hands Rust (the WHATWG path and query of an
//! http(s) URL, pinned or not) always goes to UPSTREAM_ORIGIN, a pinned request always to its
//! pin, and the request checks never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use url::Url;
use worker_m2m::fuzzing::{
    check_request, join_upstream, route_asked, upstream_url, whatwg_path_and_query, Asked,
};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let origin = Url::parse("https://api.example:8443").unwrap();
    for incoming in [format!("https://proxy.internal/{text}"), text.to_string()] {
        let Ok(incoming) = Url::parse(&incoming) else {
            continue;
        };
        let Some(path) = whatwg_path_and_query(&incoming) else {
            continue;
        };
        for pinned in [None, Some("billing")] {
            let asked = Asked { path_and_query: &path, pinned };
            let Ok(routed) = route_asked(asked, true) else {
                continue;
            };
            if pinned.is_some() {
                assert_eq!(routed.profile, pinned);
            }
            let target = join_upstream(origin.as_str(), routed.path_and_query);
            let parsed = Url::parse(&target).unwrap();
            assert_eq!(parsed.origin(), origin.origin(), "{incoming} -> {target}");
            assert_eq!((parsed.username(), parsed.password()), ("", None));
        }
        if let Ok(target) = upstream_url(&origin, &incoming) {
            assert_eq!(target.origin(), origin.origin(), "{incoming} -> {target}");
        }
    }
    let (name, value) = text.split_once(':').unwrap_or((&text, ""));
    let _ = check_request("POST", [(name, value)], 1024);
});
