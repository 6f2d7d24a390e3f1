//! Any request target and headers: the upstream URL always stays on UPSTREAM_ORIGIN, and the
//! request checks never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use url::Url;
use worker_m2m::fuzzing::{check_request, upstream_url, upstream_url_from_raw};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let origin = Url::parse("https://api.example:8443").unwrap();
    // As workerd would hand it over: an absolute URL built from the request line, always ASCII
    // (workerd serialises URLs with punycode hosts and percent-encoded paths).
    let ascii: String = text.chars().filter(|c| c.is_ascii() && *c != '%').collect();
    for incoming in [format!("https://proxy.internal/{text}"), format!("https://proxy.internal{ascii}"), ascii.clone()] {
        if let Ok(incoming) = Url::parse(&incoming) {
            // What the edge sends: the raw concatenation, parsed as fetch() would parse it.
            if let Ok(target) = upstream_url_from_raw(origin.as_str(), incoming.as_str()) {
                let parsed = Url::parse(&target).unwrap();
                assert_eq!(parsed.origin(), origin.origin(), "{incoming} -> {target}");
                assert_eq!((parsed.username(), parsed.password()), ("", None));
            }
            if let Ok(target) = upstream_url(&origin, &incoming) {
                assert_eq!(target.origin(), origin.origin(), "{incoming} -> {target}");
                assert_eq!((target.username(), target.password()), ("", None));
            }
        }
    }
    let (name, value) = text.split_once(':').unwrap_or((&text, ""));
    let _ = check_request("POST", [(name, value)], 1024);
});
