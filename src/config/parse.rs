//! Reading a [`Config`] from settings: each setting's rules (the endpoint, the hosts it may be
//! on, client authentication, DPoP, the cache key, extra parameters, retry statuses) and the
//! errors that name the setting, never its value.

use std::borrow::Cow;
use std::rc::Rc;

use url::Url;

use crate::base::error::{Error, Result};
use crate::base::secret::{ClientSecret, SharedSecret};
use crate::config::client::{
    ClientAuth, Config, Dpop, Endpoint, DEFAULT_EXPIRY_MARGIN_SECS, DEFAULT_HOLDDOWN_SECS,
    DEFAULT_METRICS_INTERVAL_SECS, DEFAULT_TIMEOUT_MS,
};
use crate::keys::dpop_key::DpopKey;
use crate::keys::private_key::parse_key;
use crate::settings::lookup::Settings;
use crate::settings::profile::Profile;
use crate::settings::values::{exact_secret, parse_endpoint};

/// Parameters the crate sets itself; `OAUTH_EXTRA_PARAMS` may not override them.
const RESERVED_PARAMS: &[&str] = &[
    "grant_type",
    "scope",
    "audience",
    "resource",
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
];

fn parse_dpop(s: &Settings) -> Result<Dpop> {
    let on = s.flag("OAUTH_DPOP", false)?;
    match (on, s.credential("OAUTH_DPOP_KEY")?) {
        (false, None) => Ok(Dpop::Off),
        (false, Some(c)) => Err(Error::config(
            c.name,
            format!("is set but {} is not true", s.name("OAUTH_DPOP")),
        )),
        (true, None) => Ok(Dpop::GeneratedKey),
        (true, Some(c)) => Ok(Dpop::Key(Rc::new(DpopKey::from_jwk(&c.name, &c.value)?))),
    }
}

fn parse_retry_statuses(raw: Option<(Cow<'static, str>, String)>) -> Result<Vec<u16>> {
    let Some((name, raw)) = raw else {
        return Ok(vec![401]);
    };
    if raw.eq_ignore_ascii_case("off") || raw.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    raw.split([',', ' '])
        .filter(|s| !s.is_empty())
        .map(|s| match s.parse::<u16>() {
            Ok(n) if (400..500).contains(&n) => Ok(n),
            _ => Err(Error::config(
                name.clone(),
                "must be a list of 4xx statuses such as `401, 403`, or `off`",
            )),
        })
        .collect()
}

/// Shortest `TOKEN_CACHE_KEY`: it keys the KV names and seals the values, so it must not be
/// guessable (32 characters of base64 carry 192 bits).
pub(crate) const MIN_CACHE_KEY_CHARS: usize = 32;

fn parse_extra_params(name: Cow<'static, str>, raw: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
        if k.is_empty() {
            return Err(Error::config(name, "has a pair with an empty name"));
        }
        if RESERVED_PARAMS.contains(&k.as_ref()) {
            return Err(Error::config(
                name,
                format!("may not set `{k}` (it has its own setting)"),
            ));
        }
        out.push((k.into_owned(), v.into_owned()));
    }
    Ok(out)
}

impl Config {
    /// Builds the configuration from a lookup of Worker vars and secrets by name, reading the
    /// unprefixed settings of the contract.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        Self::from_settings(&Settings::new(&lookup, None))
    }

    /// Builds the configuration of `profile`: its prefixed settings, and the shared tuning
    /// where it sets none (see [`Profile`] and docs/configuration.md's "Several APIs").
    pub fn for_profile(lookup: impl Fn(&str) -> Option<String>, profile: &Profile) -> Result<Self> {
        Self::from_settings(&Settings::new(&lookup, Some(profile)))
    }

    pub(crate) fn from_settings(s: &Settings) -> Result<Self> {
        let endpoint = parse_endpoint_settings(s)?;
        let token_endpoint_hosts = parse_hosts(s)?;
        let dpop = parse_dpop(s)?;
        let (id_name, client_id) = s.require("OAUTH_CLIENT_ID")?;
        if client_id.chars().any(char::is_control) {
            return Err(Error::config(id_name, "contains control characters"));
        }
        let (auth, credential_from_store) = parse_auth(s)?;
        let extra_params = match s.var("OAUTH_EXTRA_PARAMS")? {
            Some((name, raw)) => parse_extra_params(name, &raw)?,
            None => Vec::new(),
        };
        let cache_key_secret = parse_cache_key(s)?;
        if let (Some(binding), None) = (&credential_from_store, &cache_key_secret) {
            return Err(Error::config(
                s.name("TOKEN_CACHE_KEY"),
                format!(
                    "must be set when the client credential is read from the Secrets Store \
                     ({binding}): cached tokens are sealed under it, so they outlive a rotation"
                ),
            ));
        }
        Ok(Self {
            credential_from_store,
            profile: s.profile().cloned(),
            endpoint,
            token_endpoint_hosts,
            client_id,
            auth,
            scope: s
                .var("OAUTH_SCOPE")?
                .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" ")),
            audience: s.var("OAUTH_AUDIENCE")?.map(|(_, v)| v),
            resource: s.var("OAUTH_RESOURCE")?.map(|(_, v)| v),
            extra_params,
            expiry_margin_secs: s.number(
                "OAUTH_EXPIRY_MARGIN_SECS",
                DEFAULT_EXPIRY_MARGIN_SECS,
                86_400,
            )?,
            timeout_ms: s
                .number("OAUTH_TIMEOUT_MS", DEFAULT_TIMEOUT_MS, 300_000)?
                .max(1),
            holddown_secs: s.number("OAUTH_HOLDDOWN_SECS", DEFAULT_HOLDDOWN_SECS, 3_600)?,
            retry_statuses: parse_retry_statuses(s.var("OAUTH_RETRY_STATUSES")?)?,
            cache_key_secret,
            refresh_ahead: s.flag("OAUTH_REFRESH_AHEAD", true)?,
            refresh_lead_secs: match s.var("OAUTH_REFRESH_LEAD_SECS")? {
                Some(_) => Some(s.number("OAUTH_REFRESH_LEAD_SECS", 0, 86_400)?),
                None => None,
            },
            dpop,
            metrics_interval_secs: s.number(
                "M2M_METRICS_INTERVAL_SECS",
                DEFAULT_METRICS_INTERVAL_SECS,
                3_600,
            )?,
        })
    }
}

/// `OAUTH_TOKEN_URL` or `OAUTH_ISSUER`: exactly one.
fn parse_endpoint_settings(s: &Settings) -> Result<Endpoint> {
    let endpoint = match (s.var("OAUTH_TOKEN_URL")?, s.var("OAUTH_ISSUER")?) {
        (Some((url, _)), Some((issuer, _))) => {
            return Err(Error::config(
                issuer.clone(),
                format!("set {url} or {issuer}, not both"),
            ))
        }
        (Some((name, url)), None) => Endpoint::TokenUrl(parse_endpoint(&name, &url)?),
        (None, Some((name, issuer))) => Endpoint::Issuer(parse_issuer(&name, &issuer)?),
        (None, None) => {
            return Err(Error::config(
                s.name("OAUTH_TOKEN_URL"),
                format!("is not set (nor {})", s.name("OAUTH_ISSUER")),
            ))
        }
    };
    Ok(endpoint)
}

/// `OAUTH_TOKEN_ENDPOINT_HOSTS`: comma-separated host names (with a port where it is not the
/// scheme's), each without scheme, path or credentials.
fn parse_hosts(s: &Settings) -> Result<Vec<String>> {
    let Some((name, raw)) = s.var("OAUTH_TOKEN_ENDPOINT_HOSTS")? else {
        return Ok(Vec::new());
    };
    let mut hosts = Vec::new();
    for host in raw.split(',').map(str::trim).filter(|h| !h.is_empty()) {
        let ok = host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
        if !ok {
            return Err(Error::config(
                name,
                "must list host names (`idp.example.com`, `idp.example.com:8443`), comma-separated",
            ));
        }
        hosts.push(host.to_ascii_lowercase());
    }
    if hosts.is_empty() {
        return Err(Error::config(name, "is set but lists no host"));
    }
    Ok(hosts)
}

/// `OAUTH_AUTH_METHOD` and the credential it needs (RFC 6749 §2.3, RFC 7523 §2.2), with the
/// Secrets Store binding the credential was read from, if it was.
fn parse_auth(s: &Settings) -> Result<(ClientAuth, Option<String>)> {
    let (method_name, method) = s
        .var("OAUTH_AUTH_METHOD")?
        .unwrap_or_else(|| (s.name("OAUTH_AUTH_METHOD"), "client_secret_basic".into()));
    let secret = || {
        let c = s.credential("OAUTH_CLIENT_SECRET")?.ok_or_else(|| {
            Error::config(
                s.name("OAUTH_CLIENT_SECRET"),
                format!("is not set (required by {method})"),
            )
        })?;
        exact_secret(&c.name, &c.value)?;
        Ok::<_, Error>((ClientSecret::new(c.value), c.binding))
    };
    let auth = match method.as_str() {
        "client_secret_basic" => secret().map(|(s, b)| (ClientAuth::Basic(s), b))?,
        "client_secret_post" => secret().map(|(s, b)| (ClientAuth::Post(s), b))?,
        "private_key_jwt" => {
            let c = s.credential("OAUTH_PRIVATE_KEY")?.ok_or_else(|| {
                Error::config(
                    s.name("OAUTH_PRIVATE_KEY"),
                    "is not set (required by private_key_jwt)",
                )
            })?;
            let key_id = s.var("OAUTH_PRIVATE_KEY_ID")?.map(|(_, id)| id);
            let key = parse_key(&c.name, &c.value, key_id)?;
            (ClientAuth::PrivateKeyJwt(key), c.binding)
        }
        _ => {
            return Err(Error::config(
                method_name,
                "must be client_secret_basic, client_secret_post or private_key_jwt",
            ))
        }
    };
    Ok(auth)
}

/// `TOKEN_CACHE_KEY`: a long random secret, when set (see [`Settings::key_secret`]).
fn parse_cache_key(s: &Settings) -> Result<Option<SharedSecret>> {
    s.key_secret("TOKEN_CACHE_KEY", MIN_CACHE_KEY_CHARS)
}

/// `OAUTH_ISSUER`: an https URL with no query or fragment (RFC 8414 §2).
fn parse_issuer(name: &str, raw: &str) -> Result<Url> {
    let url = parse_endpoint(name, raw)?;
    if url.query().is_some() {
        return Err(Error::config(name.to_owned(), "must not have a query"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer_of(c: &Config) -> &str {
        match &c.endpoint {
            Endpoint::Issuer(issuer) => issuer.as_str(),
            other => panic!("not an issuer: {other:?}"),
        }
    }
    use std::collections::HashMap;

    fn lookup<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        let map: HashMap<_, _> = pairs.iter().copied().collect();
        move |k| map.get(k).map(|v| v.to_string())
    }

    const BASE: &[(&str, &str)] = &[
        (
            "OAUTH_TOKEN_URL",
            "https://idp.example/oauth2/default/v1/token",
        ),
        ("OAUTH_CLIENT_ID", "0oa1"),
        ("OAUTH_CLIENT_SECRET", "s3cr%t+:/=&"),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> Result<Config> {
        let mut pairs = BASE.to_vec();
        for (k, v) in extra {
            pairs.retain(|(n, _)| n != k);
            pairs.push((k, v));
        }
        Config::from_lookup(lookup(&pairs))
    }

    #[test]
    fn oauth_dpop_and_oauth_dpop_key_select_the_dpop_mode() {
        assert_eq!(with(&[]).unwrap().dpop, Dpop::Off);
        assert_eq!(with(&[("OAUTH_DPOP", "false")]).unwrap().dpop, Dpop::Off);
        assert_eq!(
            with(&[("OAUTH_DPOP", "TRUE")]).unwrap().dpop,
            Dpop::GeneratedKey
        );
        let keyed = with(&[
            ("OAUTH_DPOP", "true"),
            ("OAUTH_DPOP_KEY", crate::keys::dpop_key::TEST_JWK),
        ])
        .unwrap();
        assert!(matches!(keyed.dpop, Dpop::Key(_)) && keyed.dpop.is_on());
        for (pairs, want) in [
            (
                &[("OAUTH_DPOP", "yes")][..],
                "OAUTH_DPOP: must be true or false",
            ),
            (
                &[("OAUTH_DPOP_KEY", crate::keys::dpop_key::TEST_JWK)][..],
                "OAUTH_DPOP_KEY: is set but OAUTH_DPOP is not true",
            ),
            (
                &[("OAUTH_DPOP", "true"), ("OAUTH_DPOP_KEY", "{bad")][..],
                "OAUTH_DPOP_KEY: is not valid JSON",
            ),
        ] {
            let err = with(pairs).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
            assert!(!err.contains("jpsQnn"), "{err}");
        }
    }

    #[test]
    fn token_endpoint_hosts_are_read_lower_case_and_nonsense_is_refused() {
        assert!(with(&[]).unwrap().token_endpoint_hosts.is_empty());
        let c = with(&[(
            "OAUTH_TOKEN_ENDPOINT_HOSTS",
            " Login.Example , idp.example:8443",
        )]);
        assert_eq!(
            c.unwrap().token_endpoint_hosts,
            ["login.example", "idp.example:8443"]
        );
        for bad in ["https://login.example", "login.example/path", " , "] {
            let err = with(&[("OAUTH_TOKEN_ENDPOINT_HOSTS", bad)])
                .unwrap_err()
                .to_string();
            assert!(err.contains("OAUTH_TOKEN_ENDPOINT_HOSTS"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_refresh_lead_is_read_in_seconds_and_unset_means_the_default_rule() {
        assert_eq!(with(&[]).unwrap().refresh_lead_secs, None);
        let c = with(&[("OAUTH_REFRESH_LEAD_SECS", "2100")]).unwrap();
        assert_eq!(c.refresh_lead_secs, Some(2100));
        for bad in ["soon", "-5", "86401"] {
            let err = with(&[("OAUTH_REFRESH_LEAD_SECS", bad)])
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("OAUTH_REFRESH_LEAD_SECS") && !err.contains(bad),
                "{err}"
            );
        }
    }

    #[test]
    fn unset_settings_take_the_documented_defaults() {
        let c = with(&[]).unwrap();
        assert_eq!(c.auth.method(), "client_secret_basic");
        assert_eq!(c.auth.credential(), "s3cr%t+:/=&");
        assert_eq!((c.expiry_margin_secs, c.timeout_ms), (60, 10_000));
        assert_eq!(
            (c.holddown_secs, c.retry_statuses.as_slice()),
            (30, &[401][..])
        );
        assert_eq!(
            crate::config::cache_key::CacheRoot::of(&c).secret,
            "s3cr%t+:/=&"
        );
        assert!(c.refresh_ahead);
        assert!(
            !with(&[("OAUTH_REFRESH_AHEAD", "FALSE")])
                .unwrap()
                .refresh_ahead
        );
        assert_eq!(c.scope, None);
    }

    #[test]
    fn optional_settings_are_read_and_normalised() {
        let c = with(&[
            ("OAUTH_AUTH_METHOD", "client_secret_post"),
            ("OAUTH_SCOPE", "  read   write "),
            ("OAUTH_AUDIENCE", "https://api.example"),
            ("OAUTH_RESOURCE", "https://api.example/"),
            (
                "OAUTH_EXTRA_PARAMS",
                "redirect_uri=http%3A%2F%2Flocalhost&x=1",
            ),
            ("OAUTH_EXPIRY_MARGIN_SECS", "30"),
            ("OAUTH_TIMEOUT_MS", "1500"),
            ("OAUTH_HOLDDOWN_SECS", "5"),
            ("OAUTH_RETRY_STATUSES", "401, 403"),
            ("TOKEN_CACHE_KEY", "k0123456789abcdef0123456789abcdef"),
        ])
        .unwrap();
        assert_eq!(
            (c.holddown_secs, c.retry_statuses.as_slice()),
            (5, &[401, 403][..])
        );
        assert_eq!(
            crate::config::cache_key::CacheRoot::of(&c),
            crate::config::cache_key::CacheRoot {
                secret: "k0123456789abcdef0123456789abcdef",
                stretch: false
            }
        );
        assert!(with(&[("OAUTH_RETRY_STATUSES", "off")])
            .unwrap()
            .retry_statuses
            .is_empty());
        assert_eq!(c.auth.method(), "client_secret_post");
        assert_eq!(c.scope.as_deref(), Some("read write"));
        assert_eq!(
            c.extra_params,
            vec![
                ("redirect_uri".into(), "http://localhost".into()),
                ("x".into(), "1".into())
            ]
        );
        assert_eq!((c.expiry_margin_secs, c.timeout_ms), (30, 1500));
    }

    #[test]
    fn errors_name_the_setting_and_hide_the_value() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("OAUTH_TOKEN_URL", "")], "OAUTH_TOKEN_URL: is not set"),
            (
                &[("OAUTH_ISSUER", "https://idp.example")],
                "set OAUTH_TOKEN_URL or OAUTH_ISSUER, not both",
            ),
            (
                &[("OAUTH_TOKEN_URL", "http://idp.example/token")],
                "OAUTH_TOKEN_URL: must use https",
            ),
            (
                &[("OAUTH_TOKEN_URL", "ftp://idp.example/token")],
                "OAUTH_TOKEN_URL: must be an https URL",
            ),
            (
                &[("OAUTH_TOKEN_URL", "not a url")],
                "OAUTH_TOKEN_URL: is not a valid URL",
            ),
            (
                &[("OAUTH_TOKEN_URL", "https://u:pw@idp.example/t")],
                "OAUTH_TOKEN_URL: must not contain credentials",
            ),
            (&[("OAUTH_CLIENT_ID", " ")], "OAUTH_CLIENT_ID: is not set"),
            (
                &[("OAUTH_CLIENT_SECRET", "")],
                "OAUTH_CLIENT_SECRET: is not set",
            ),
            (
                &[("OAUTH_AUTH_METHOD", "magic")],
                "OAUTH_AUTH_METHOD: must be",
            ),
            (
                &[("OAUTH_EXPIRY_MARGIN_SECS", "-1")],
                "OAUTH_EXPIRY_MARGIN_SECS: must be a whole number",
            ),
            (
                &[("OAUTH_TIMEOUT_MS", "soon")],
                "OAUTH_TIMEOUT_MS: must be a whole number",
            ),
            (
                &[("OAUTH_EXTRA_PARAMS", "grant_type=password")],
                "OAUTH_EXTRA_PARAMS: may not set `grant_type`",
            ),
        ];
        for (extra, want) in cases {
            let err = with(extra).unwrap_err().to_string();
            assert!(err.contains(want), "{extra:?}: got {err:?}, want {want:?}");
            assert!(!err.contains("s3cr%t"), "{err}");
        }
    }

    #[test]
    fn issuer_instead_of_token_url() {
        let pairs = [
            ("OAUTH_ISSUER", "https://idp.example/oauth2/default"),
            ("OAUTH_CLIENT_ID", "0oa1"),
            ("OAUTH_CLIENT_SECRET", "x"),
        ];
        let c = Config::from_lookup(lookup(&pairs)).unwrap();
        assert!(!matches!(c.endpoint, Endpoint::TokenUrl(_)));
        assert_eq!(issuer_of(&c), "https://idp.example/oauth2/default");
        let bad = [
            ("OAUTH_ISSUER", "http://idp.example"),
            ("OAUTH_CLIENT_ID", "0oa1"),
            ("OAUTH_CLIENT_SECRET", "x"),
        ];
        assert!(Config::from_lookup(lookup(&bad))
            .unwrap_err()
            .to_string()
            .contains("OAUTH_ISSUER"));
    }

    #[test]
    fn private_key_jwt_settings() {
        let jwk = r#"{"kty":"EC","crv":"P-256","x":"a","y":"b","d":"secret-d","kid":"k1"}"#;
        let c = with(&[
            ("OAUTH_AUTH_METHOD", "private_key_jwt"),
            ("OAUTH_PRIVATE_KEY", jwk),
        ])
        .unwrap();
        assert_eq!(c.auth.method(), "private_key_jwt");
        assert_eq!(c.auth.credential(), jwk);
        let err = with(&[("OAUTH_AUTH_METHOD", "private_key_jwt")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("OAUTH_PRIVATE_KEY: is not set"), "{err}");
        let err = with(&[
            ("OAUTH_AUTH_METHOD", "private_key_jwt"),
            ("OAUTH_PRIVATE_KEY", "{}"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("OAUTH_PRIVATE_KEY"), "{err}");
    }

    #[test]
    fn http_only_on_loopback() {
        for ok in [
            "http://127.0.0.1:9000/token",
            "http://localhost/token",
            "http://[::1]:8/token",
        ] {
            assert!(with(&[("OAUTH_TOKEN_URL", ok)]).is_ok(), "{ok}");
        }
        assert!(with(&[("OAUTH_TOKEN_URL", "http://127.0.0.1.evil.example/token")]).is_err());
    }

    #[test]
    fn secrets_are_used_exactly_as_stored_or_refused() {
        for (name, bad) in [
            ("OAUTH_CLIENT_SECRET", "s3cr3t\n"),
            ("OAUTH_CLIENT_SECRET", " s3cr3t"),
            ("OAUTH_CLIENT_SECRET", "s3c\tr3t"),
            ("TOKEN_CACHE_KEY", "k0123456789abcdef0123456789abcdef\n"),
            ("TOKEN_CACHE_KEY", "too-short"),
        ] {
            let err = with(&[(name, bad)]).unwrap_err().to_string();
            assert!(
                err.contains(name) && !err.contains(bad.trim()),
                "{name}: {err}"
            );
        }
        // Whitespace inside a secret is part of it.
        assert_eq!(
            with(&[("OAUTH_CLIENT_SECRET", "a b")])
                .unwrap()
                .auth
                .credential(),
            "a b"
        );
    }

    #[test]
    fn profiles_read_their_own_settings_and_errors_name_them() {
        use crate::settings::profile::Profile;
        let pairs = [
            ("M2M_PROFILES", "billing,crm"),
            ("BILLING_OAUTH_TOKEN_URL", "https://idp.example/token"),
            ("BILLING_OAUTH_CLIENT_ID", "billing"),
            ("BILLING_OAUTH_CLIENT_SECRET", "billing-s3cret"),
            ("BILLING_OAUTH_SCOPE", "invoices:read"),
            ("CRM_OAUTH_ISSUER", "https://other-idp.example"),
            ("CRM_OAUTH_CLIENT_ID", "crm"),
            ("CRM_OAUTH_AUTH_METHOD", "client_secret_post"),
            ("CRM_OAUTH_CLIENT_SECRET", "crm-s3cret"),
            ("CRM_OAUTH_TIMEOUT_MS", "2500"),
            ("OAUTH_TIMEOUT_MS", "4000"),
        ];
        let (billing, crm) = (
            Profile::new("billing").unwrap(),
            Profile::new("crm").unwrap(),
        );
        let b = Config::for_profile(lookup(&pairs), &billing).unwrap();
        let c = Config::for_profile(lookup(&pairs), &crm).unwrap();
        assert_eq!(
            (b.client_id.as_str(), b.auth.method()),
            ("billing", "client_secret_basic")
        );
        assert_eq!(
            (c.client_id.as_str(), c.auth.method()),
            ("crm", "client_secret_post")
        );
        assert_eq!(
            (b.auth.credential(), c.auth.credential()),
            ("billing-s3cret", "crm-s3cret")
        );
        assert_eq!(
            (b.scope.as_deref(), c.scope.as_deref()),
            (Some("invoices:read"), None)
        );
        assert_eq!((b.timeout_ms, c.timeout_ms), (4000, 2500));
        assert_eq!(issuer_of(&c), "https://other-idp.example/");
        assert_eq!(b.profile.as_ref().map(Profile::name), Some("billing"));
        assert_eq!(b.setting("OAUTH_PRIVATE_KEY"), "BILLING_OAUTH_PRIVATE_KEY");

        let broken = |extra: &[(&'static str, &'static str)]| {
            let mut p = pairs.to_vec();
            for (k, v) in extra {
                p.retain(|(n, _)| n != k);
                p.push((k, v));
            }
            Config::for_profile(lookup(&p), &billing)
                .unwrap_err()
                .to_string()
        };
        for (extra, want) in [
            (
                &[("BILLING_OAUTH_CLIENT_SECRET", "")][..],
                "BILLING_OAUTH_CLIENT_SECRET: is not set (required by client_secret_basic)",
            ),
            (
                &[("BILLING_OAUTH_CLIENT_SECRET", "billing-s3cret\n")][..],
                "BILLING_OAUTH_CLIENT_SECRET: has leading or trailing whitespace",
            ),
            (
                &[("BILLING_OAUTH_TOKEN_URL", "http://idp.example/t")][..],
                "BILLING_OAUTH_TOKEN_URL: must use https",
            ),
            (
                &[("BILLING_OAUTH_ISSUER", "https://idp.example")][..],
                "set BILLING_OAUTH_TOKEN_URL or BILLING_OAUTH_ISSUER, not both",
            ),
            (
                &[("BILLING_OAUTH_AUTH_METHOD", "private_key_jwt")][..],
                "BILLING_OAUTH_PRIVATE_KEY: is not set",
            ),
            (
                &[("BILLING_OAUTH_DPOP_KEY", crate::keys::dpop_key::TEST_JWK)][..],
                "BILLING_OAUTH_DPOP_KEY: is set but BILLING_OAUTH_DPOP is not true",
            ),
            (
                &[("OAUTH_HOLDDOWN_SECS", "soon")][..],
                "OAUTH_HOLDDOWN_SECS: must be a whole number",
            ),
            (
                &[("BILLING_OAUTH_HOLDDOWN_SECS", "soon")][..],
                "BILLING_OAUTH_HOLDDOWN_SECS: must be a whole number",
            ),
            (
                &[("BILLING_TOKEN_CACHE_KEY", "short")][..],
                "BILLING_TOKEN_CACHE_KEY: must be at least 32",
            ),
            // Never another's credential: an unprefixed secret is refused, not borrowed.
            (
                &[
                    ("BILLING_OAUTH_CLIENT_SECRET", ""),
                    ("OAUTH_CLIENT_SECRET", "plain-s3cret"),
                ][..],
                "OAUTH_CLIENT_SECRET: is set, but with M2M_PROFILES each profile sets its own \
                 (here BILLING_OAUTH_CLIENT_SECRET",
            ),
        ] {
            let err = broken(extra);
            assert!(err.contains(want), "{extra:?}: {err}");
            assert!(!err.contains("s3cret"), "{err}");
        }
        // A profile that sets its own ignores an unprefixed one; another profile is unaffected.
        let mut p = pairs.to_vec();
        p.push(("OAUTH_CLIENT_SECRET", "plain-s3cret"));
        assert!(Config::for_profile(lookup(&p), &billing).is_ok());
    }

    #[test]
    fn profiles_of_one_client_with_another_scope_audience_or_resource_never_share_a_token() {
        use crate::config::cache_key::cache_key_material;
        let base = with(&[]).unwrap();
        let material = cache_key_material(&base);
        for (setting, value) in [
            ("OAUTH_SCOPE", "other"),
            ("OAUTH_AUDIENCE", "https://other.example"),
            ("OAUTH_RESOURCE", "https://other.example/"),
            ("OAUTH_EXTRA_PARAMS", "tenant=2"),
            ("OAUTH_DPOP", "true"),
        ] {
            let other = with(&[(setting, value)]).unwrap();
            assert_ne!(cache_key_material(&other), material, "{setting}");
        }
    }
}
