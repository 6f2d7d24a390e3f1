//! Any settings: never a panic, and an error never repeats the client secret.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use worker_m2m::fuzzing::ProxyConfig;
use worker_m2m::Config;

const SECRET: &str = "fuzz-Secret-Value-1234";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Lines of NAME=VALUE; the secret is always the same known value so leaks can be detected.
    let mut vars: HashMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    vars.insert("OAUTH_CLIENT_SECRET".into(), SECRET.into());
    let lookup = |k: &str| vars.get(k).cloned();
    match Config::from_lookup(lookup) {
        Ok(c) => assert!(c.timeout_ms >= 1),
        Err(e) => assert!(!e.to_string().contains(SECRET), "{e}"),
    }
    let _ = ProxyConfig::from_lookup(lookup);
});
