//! The settings the crate reads have one list, the tables of `settings::lookup`: every name the
//! parsers ask for, with or without a profile, is known to `settings::unknown` (so no setting
//! in use is ever reported as unknown); every profile setting in the tables is asked for by
//! some configuration (so the list holds nothing the code stopped reading); and the JavaScript
//! entry reads exactly the Worker-wide ones.

use std::cell::RefCell;
use std::collections::BTreeSet;

use crate::config::client::Config;
use crate::settings::lookup::{Settings, OWN, SHARED, WORKER};
use crate::settings::profile::Profile;
use crate::settings::unknown::unknown_settings;

/// A configuration that sets every token setting (client secrets, DPoP with a key, every
/// tuning knob) and every proxy setting.
const SECRET_AND_TUNING: &[(&str, &str)] = &[
    ("OAUTH_TOKEN_URL", "https://idp.example/token"),
    ("OAUTH_TOKEN_ENDPOINT_HOSTS", "idp.example"),
    ("OAUTH_CLIENT_ID", "client"),
    ("OAUTH_AUTH_METHOD", "client_secret_post"),
    ("OAUTH_CLIENT_SECRET", "s3cret"),
    ("OAUTH_SCOPE", "read"),
    ("OAUTH_AUDIENCE", "https://api.example"),
    ("OAUTH_RESOURCE", "https://api.example"),
    ("OAUTH_EXTRA_PARAMS", "a=b"),
    ("OAUTH_DPOP", "true"),
    ("OAUTH_DPOP_KEY", crate::keys::dpop_key::TEST_JWK),
    ("OAUTH_EXPIRY_MARGIN_SECS", "30"),
    ("OAUTH_TIMEOUT_MS", "1000"),
    ("OAUTH_HOLDDOWN_SECS", "5"),
    ("OAUTH_RETRY_STATUSES", "401, 403"),
    ("OAUTH_REFRESH_AHEAD", "true"),
    ("OAUTH_REFRESH_LEAD_SECS", "10"),
    ("TOKEN_CACHE_KEY", "k0123456789abcdef0123456789abcdef"),
    ("M2M_METRICS_INTERVAL_SECS", "60"),
    ("UPSTREAM_ORIGIN", "https://api.example"),
    ("PROXY_SHARED_SECRET", "0123456789abcdef-shared"),
    ("PROXY_FORWARD_HEADERS", "x-request-id"),
    ("PROXY_MAX_BODY_BYTES", "1024"),
    ("PROXY_EXPOSE_AUTHORIZATION", "true"),
];

/// A configuration that discovers its endpoint and signs client assertions.
const ISSUER_AND_KEY: &[(&str, &str)] = &[
    ("OAUTH_ISSUER", "https://idp.example"),
    ("OAUTH_CLIENT_ID", "client"),
    ("OAUTH_AUTH_METHOD", "private_key_jwt"),
    ("OAUTH_PRIVATE_KEY", crate::keys::dpop_key::TEST_JWK),
    ("OAUTH_PRIVATE_KEY_ID", "key-1"),
    ("UPSTREAM_ORIGIN", "https://api.example"),
];

/// Every name the parsers ask for while reading `pairs` (under `profile`'s prefix, if any),
/// whether or not it is set. Both must parse: a parser that stops early asks for less.
fn asked(pairs: &[(&str, &str)], profile: Option<&Profile>) -> BTreeSet<String> {
    let prefix = profile.map_or("", Profile::prefix);
    let names = RefCell::new(BTreeSet::new());
    let lookup = |name: &str| {
        names.borrow_mut().insert(name.to_owned());
        let setting = name.strip_prefix(prefix)?;
        pairs
            .iter()
            .find(|(k, _)| *k == setting)
            .map(|(_, v)| v.to_string())
    };
    let settings = Settings::new(&lookup, profile);
    if let Err(e) = Config::from_settings(&settings) {
        panic!("{pairs:?}: {e}");
    }
    #[cfg(feature = "proxy")]
    if let Err(e) = crate::proxy::config::ProxyConfig::from_settings(&settings) {
        panic!("{pairs:?}: {e}");
    }
    names.into_inner()
}

#[test]
fn every_name_the_parsers_ask_for_is_known_and_every_profile_setting_is_asked_for() {
    let billing = Profile::new("billing").unwrap();
    for profile in [None, Some(&billing)] {
        let mut all = BTreeSet::new();
        for pairs in [SECRET_AND_TUNING, ISSUER_AND_KEY] {
            all.extend(asked(pairs, profile));
        }
        let listed: Vec<Profile> = profile.into_iter().cloned().collect();
        let unknown = unknown_settings(all.iter().map(String::as_str), &listed, &[]);
        assert!(unknown.is_empty(), "asked for but unknown: {unknown:?}");
        // What a profile reads under its prefix is all of its tables (the proxy's settings
        // are read by the proxy only).
        let prefix = profile.map_or("", Profile::prefix);
        let read: BTreeSet<&str> = all.iter().filter_map(|n| n.strip_prefix(prefix)).collect();
        let tables: BTreeSet<&str> = OWN.iter().chain(SHARED).copied().collect();
        let missing: Vec<_> = tables.difference(&read).collect();
        #[cfg(feature = "proxy")]
        assert!(missing.is_empty(), "in the tables, never read: {missing:?}");
        #[cfg(not(feature = "proxy"))]
        assert!(
            missing
                .iter()
                .all(|s| s.starts_with("PROXY_") || s.starts_with("UPSTREAM_")),
            "in the tables, never read: {missing:?}"
        );
        let stray: Vec<_> = read.difference(&tables).collect();
        assert!(stray.is_empty(), "read, not in the tables: {stray:?}");
    }
}

/// The names `source` reads as `env.NAME` or `env['NAME']`.
fn env_reads(source: &str) -> BTreeSet<&str> {
    let mut out = BTreeSet::new();
    for (at, _) in source.match_indices("env") {
        if source[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let after = &source[at + 3..];
        let rest = after
            .strip_prefix('.')
            .or_else(|| after.strip_prefix("['"))
            .or_else(|| after.strip_prefix("[\""));
        let Some(rest) = rest else { continue };
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let name = &rest[..end];
        if name.starts_with(|c: char| c.is_ascii_uppercase()) {
            out.insert(name);
        }
    }
    out
}

#[test]
fn the_javascript_entry_reads_exactly_the_worker_wide_settings() {
    let mut read = env_reads(include_str!("../../scripts/intake.mjs"));
    read.extend(env_reads(include_str!("../../scripts/entry.mjs")));
    assert_eq!(read, WORKER.iter().copied().collect::<BTreeSet<_>>());
    assert_eq!(
        env_reads("const a = env.M2M_PROFILES; b(env['X_Y']); myenv.NOT; env.lower"),
        BTreeSet::from(["M2M_PROFILES", "X_Y"])
    );
}
