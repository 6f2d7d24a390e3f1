//! How one setting's text becomes a value, whatever setting it is: URLs (https, or http for
//! loopback hosts only; no credentials, fragment or percent-encoded host) and secrets (used
//! exactly as stored). Errors name the setting and never its value.

use url::{Host, Url};

use crate::base::error::{Error, Result};

/// A secret is used exactly as stored, so one that starts or ends with whitespace or holds a
/// control character is refused, naming the setting: `echo ... | wrangler secret put` stores a
/// trailing newline that would make every token request fail (or every caller be refused),
/// and silently trimming it would send something other than what the operator stored.
pub(crate) fn exact_secret(name: &str, raw: &str) -> Result<()> {
    if raw.chars().any(char::is_control) || raw.trim() != raw {
        return Err(Error::config(
            name.to_owned(),
            "has leading or trailing whitespace or a control character (a newline from \
             `echo ... | wrangler secret put`?): store it exactly, e.g. with \
             `printf '%s' \"$SECRET\" | wrangler secret put`",
        ));
    }
    Ok(())
}

/// True for `localhost`, 127.0.0.0/8 and `::1`: the only hosts allowed over plain http.
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost") || d.to_ascii_lowercase().ends_with(".localhost")
        }
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Parses a URL setting that must be https (http only for loopback), with no credentials or fragment.
pub(crate) fn parse_endpoint(setting: &str, raw: &str) -> Result<Url> {
    // The build carries no Unicode IDNA tables (see Cargo.toml); refuse non-ASCII up front with
    // a clear message instead of leaving it to the URL parser (found by `make fuzz`).
    if !raw.is_ascii() {
        return Err(Error::config(
            setting.to_owned(),
            "must be ASCII (write international host names in punycode)",
        ));
    }
    // Likewise a percent-encoded host, which would decode to non-ASCII inside the URL parser.
    if raw.chars().any(|c| c.is_ascii_control()) {
        return Err(Error::config(
            setting.to_owned(),
            "must not contain control characters",
        ));
    }
    let after_scheme = raw.split_once(':').map_or(raw, |(_, rest)| rest);
    let authority = after_scheme.trim_start_matches(['/', '\\']);
    let authority = authority.split(['/', '\\', '?', '#']).next().unwrap_or("");
    if authority.contains('%') {
        return Err(Error::config(
            setting.to_owned(),
            "must not percent-encode the host",
        ));
    }
    let url = Url::parse(raw)
        .map_err(|e| Error::config(setting.to_owned(), format!("is not a valid URL ({e})")))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(Error::config(
                setting.to_owned(),
                "must use https (http is allowed only for loopback hosts)",
            ))
        }
        _ => return Err(Error::config(setting.to_owned(), "must be an https URL")),
    }
    if url.host().is_none() {
        return Err(Error::config(setting.to_owned(), "has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::config(
            setting.to_owned(),
            "must not contain credentials",
        ));
    }
    if url.fragment().is_some() {
        return Err(Error::config(
            setting.to_owned(),
            "must not contain a fragment",
        ));
    }
    Ok(url)
}

/// An endpoint URL from a document (discovery): the same rules as a URL setting.
pub(crate) fn parse_endpoint_url(raw: &str) -> Result<Url> {
    parse_endpoint("token_endpoint", raw)
}
