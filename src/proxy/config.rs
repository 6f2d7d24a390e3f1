//! The egress proxy's own settings: its one upstream, the shared secret callers present, the
//! body limit and the headers an operator lets through. Read like the token settings
//! ([`crate::config::client`]): a pure function over a lookup, errors that name the setting.

use url::Url;

use std::borrow::Cow;

use crate::base::error::{Error, Result};
use crate::base::secret::SharedSecret;
use crate::settings::lookup::Settings;
use crate::settings::values::parse_endpoint;

/// Default `PROXY_MAX_BODY_BYTES`: 10 MiB.
pub(crate) const DEFAULT_MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;

/// The egress proxy's own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(unreachable_pub)] // public for the fuzz targets (`crate::fuzzing`)
pub struct ProxyConfig {
    /// The one allowed upstream (`UPSTREAM_ORIGIN`).
    pub upstream: Url,
    /// When set (`PROXY_SHARED_SECRET`), callers must send `Proxy-Authorization: Bearer <it>`.
    pub shared_secret: Option<SharedSecret>,
    /// Largest request body forwarded (`PROXY_MAX_BODY_BYTES`); larger ones get 413.
    pub max_body_bytes: u64,
    /// Header names the operator lets through although a class of the header policy drops
    /// them (`PROXY_FORWARD_HEADERS`, lower case; see [`crate::proxy::headers`]).
    pub forward_headers: Vec<String>,
    /// Whether RPC callers may have the `Authorization` value itself
    /// (`PROXY_EXPOSE_AUTHORIZATION`, for an SDK or a WebSocket that must carry it; off by
    /// default, and never inherited by a profile).
    pub expose_authorization: bool,
}

/// `PROXY_FORWARD_HEADERS`: comma-separated header names (RFC 9110 §5.1 tokens) to forward on
/// purpose. Headers the proxy itself owns (hop-by-hop, `Host`, `Authorization`, `DPoP`,
/// `Proxy-Authorization`) cannot be allowed.
fn parse_forward_headers(raw: Option<(Cow<'static, str>, String)>) -> Result<Vec<String>> {
    let Some((name_of_setting, raw)) = raw else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for name in raw.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if !name.bytes().all(token) {
            return Err(Error::config(
                name_of_setting,
                "must be a comma-separated list of header names",
            ));
        }
        let name = name.to_ascii_lowercase();
        if crate::proxy::headers::NEVER_FORWARDED.contains(&name.as_str()) {
            return Err(Error::config(
                name_of_setting,
                format!("may not allow `{name}`: the proxy sets or strips it itself"),
            ));
        }
        out.push(name);
    }
    Ok(out)
}

/// Fewest characters a `PROXY_SHARED_SECRET` may have: it is all that stands between the
/// internet and an exposed route's tokens, so one short enough to guess is a configuration
/// error, like a blank one.
pub(crate) const MIN_SHARED_SECRET_CHARS: usize = 16;

impl ProxyConfig {
    /// Reads the proxy settings from a lookup of Worker vars and secrets (the edge reads them
    /// with their Secrets Store credentials through [`Self::from_settings`]).
    #[allow(unreachable_pub)] // public for the fuzz targets (`crate::fuzzing`)
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        Self::from_settings(&Settings::new(&lookup, None))
    }

    /// Reads the proxy settings: a profile's own `UPSTREAM_ORIGIN`, and the shared ones where
    /// it sets none (see [`crate::settings::lookup`]).
    pub(crate) fn from_settings(s: &Settings) -> Result<Self> {
        let upstream = match s.var("UPSTREAM_ORIGIN")? {
            Some((name, raw)) => parse_origin(&name, &raw)?,
            None => return Err(Error::config(s.name("UPSTREAM_ORIGIN"), "is not set")),
        };
        Ok(Self {
            upstream,
            // The profile's own, else the Worker's; never "no secret" when it is blank or
            // short, which would turn the check off.
            shared_secret: s.key_secret("PROXY_SHARED_SECRET", MIN_SHARED_SECRET_CHARS)?,
            forward_headers: parse_forward_headers(s.var("PROXY_FORWARD_HEADERS")?)?,
            max_body_bytes: s.number(
                "PROXY_MAX_BODY_BYTES",
                DEFAULT_MAX_BODY_BYTES,
                u32::MAX as u64,
            )?,
            expose_authorization: s.flag("PROXY_EXPOSE_AUTHORIZATION", false)?,
        })
    }
}

/// The proxy's one allowed upstream (`UPSTREAM_ORIGIN`), `scheme://host[:port]`.
#[cfg(test)]
pub(crate) fn parse_upstream_origin(raw: Option<String>) -> Result<Url> {
    const NAME: &str = "UPSTREAM_ORIGIN";
    let raw = raw
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| Error::config(NAME, "is not set"))?;
    parse_origin(NAME, raw.trim())
}

fn parse_origin(name: &str, raw: &str) -> Result<Url> {
    let url = parse_endpoint(name, raw)?;
    if url.path() != "/" || url.query().is_some() {
        return Err(Error::config(
            name.to_owned(),
            "must be an origin only: scheme://host[:port], without path or query",
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        let map: HashMap<_, _> = pairs.iter().copied().collect();
        move |k| map.get(k).map(|v| v.to_string())
    }

    #[test]
    fn a_shared_secret_is_used_exactly_as_stored_or_refused() {
        let err = ProxyConfig::from_lookup(lookup(&[
            ("UPSTREAM_ORIGIN", "https://api.example"),
            ("PROXY_SHARED_SECRET", "shh-its-a-secret\n"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("PROXY_SHARED_SECRET") && !err.contains("shh"),
            "{err}"
        );
    }

    #[test]
    fn a_blank_or_short_shared_secret_fails_closed() {
        for (value, why) in [
            ("\n", "is set but blank"),
            ("   ", "is set but blank"),
            ("", "is set but blank"),
            ("short-secret", "at least 16 characters"),
        ] {
            let err = ProxyConfig::from_lookup(lookup(&[
                ("UPSTREAM_ORIGIN", "https://api.example"),
                ("PROXY_SHARED_SECRET", value),
            ]))
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("PROXY_SHARED_SECRET") && err.contains(why),
                "{err}"
            );
        }
        // An empty value from the Secrets Store is refused the same way.
        let vars = |k: &str| match k {
            "UPSTREAM_ORIGIN" => Some("https://api.example".to_owned()),
            "PROXY_SHARED_SECRET" => Some("secrets-store:SHARED".to_owned()),
            _ => None,
        };
        let store = |_: &str| Ok(String::new());
        let err = ProxyConfig::from_settings(&Settings::with_secrets(&vars, None, &store))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("PROXY_SHARED_SECRET: must be at least"),
            "{err}"
        );
    }

    #[test]
    fn forward_headers_allow_names_but_never_the_proxys_own() {
        let p = ProxyConfig::from_lookup(lookup(&[
            ("UPSTREAM_ORIGIN", "https://api.example"),
            ("PROXY_FORWARD_HEADERS", " X-Forwarded-User, cookie ,"),
        ]))
        .unwrap();
        assert_eq!(p.forward_headers, ["x-forwarded-user", "cookie"]);
        for bad in [
            "authorization",
            "Host",
            "transfer-encoding",
            "dpop",
            "x a",
            "x:y",
        ] {
            let err = ProxyConfig::from_lookup(lookup(&[
                ("UPSTREAM_ORIGIN", "https://api.example"),
                ("PROXY_FORWARD_HEADERS", bad),
            ]))
            .unwrap_err()
            .to_string();
            assert!(err.contains("PROXY_FORWARD_HEADERS"), "{bad}: {err}");
        }
    }

    #[test]
    fn proxy_settings_have_defaults_and_bounds() {
        let p = ProxyConfig::from_lookup(lookup(&[("UPSTREAM_ORIGIN", "https://api.example")]))
            .unwrap();
        assert_eq!(
            (p.shared_secret, p.max_body_bytes),
            (None, DEFAULT_MAX_BODY_BYTES)
        );
        let p = ProxyConfig::from_lookup(lookup(&[
            ("UPSTREAM_ORIGIN", "https://api.example"),
            ("PROXY_SHARED_SECRET", "shh-0123456789abcdef"),
            ("PROXY_MAX_BODY_BYTES", "1024"),
        ]))
        .unwrap();
        assert_eq!(
            (p.shared_secret.unwrap().expose(), p.max_body_bytes),
            ("shh-0123456789abcdef", 1024)
        );
        let err = ProxyConfig::from_lookup(lookup(&[
            ("UPSTREAM_ORIGIN", "https://api.example"),
            ("PROXY_MAX_BODY_BYTES", "big"),
        ]));
        assert!(err
            .unwrap_err()
            .to_string()
            .contains("PROXY_MAX_BODY_BYTES"));
    }

    #[test]
    fn upstream_origin_is_an_origin() {
        assert_eq!(
            parse_upstream_origin(Some("https://api.example:8443".into()))
                .unwrap()
                .as_str(),
            "https://api.example:8443/"
        );
        for bad in [
            "https://api.example/v1",
            "https://api.example/?a=1",
            "http://api.example",
            "",
        ] {
            let err = parse_upstream_origin(Some(bad.into()))
                .unwrap_err()
                .to_string();
            assert!(err.contains("UPSTREAM_ORIGIN"), "{bad}: {err}");
        }
    }
}
