//! Finding the token endpoint from the issuer: RFC 8414 authorization server metadata, falling
//! back to OpenID Connect Discovery 1.0, with no I/O.

use serde_json::Value;
use url::Url;

use std::cell::RefCell;

use crate::base::error::{Error, Result};
use crate::base::log;
use crate::config::client::{Config, Endpoint};
use crate::oauth::transport::{HttpClient, HttpRequest, HttpResponse};
use crate::settings::values::parse_endpoint_url;
use crate::source::records::{decode_meta, encode_meta, META_ENTRY};
use crate::source::runtime::LogSink;
use crate::source::store::{TokenStore, Write};

/// How long discovered metadata is kept, in memory and KV.
pub(crate) const METADATA_TTL_SECS: u64 = 24 * 3600;

/// Where to look, in order: RFC 8414 §3.1 inserts the well-known segment before the issuer's
/// path; OIDC Discovery §4 appends it.
pub(crate) fn metadata_urls(issuer: &Url) -> [String; 2] {
    let origin = issuer.origin().ascii_serialization();
    let path = issuer.path().trim_end_matches('/');
    [
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
        format!("{origin}{path}/.well-known/openid-configuration"),
    ]
}

/// The token endpoint from a metadata response. The document's `issuer` must equal the
/// configured one exactly (RFC 8414 §3.3), or an impostor's document could redirect our
/// credentials; the endpoint must be https (http only on loopback).
pub(crate) fn parse_metadata(resp: &HttpResponse, issuer: &Url) -> Result<Url> {
    let invalid = |reason: String| Error::InvalidResponse {
        status: resp.status,
        reason: format!("discovery: {reason}"),
    };
    if resp.status == 429 || resp.status >= 500 {
        return Err(Error::Unavailable {
            reason: format!("discovery: HTTP {}", resp.status),
            retry_after: resp
                .header("retry-after")
                .and_then(crate::oauth::token_response::parse_retry_after),
        });
    }
    if resp.status != 200 {
        return Err(invalid(format!("HTTP {}", resp.status)));
    }
    let doc: Value =
        serde_json::from_slice(&resp.body).map_err(|_| invalid("metadata is not JSON".into()))?;
    let found = doc
        .get("issuer")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let configured = issuer.as_str();
    // Url adds a trailing slash to a bare origin; issuers are compared as the server writes them.
    if found != configured && found != configured.trim_end_matches('/') {
        return Err(invalid(
            "the document's `issuer` does not equal OAUTH_ISSUER".into(),
        ));
    }
    let endpoint = doc
        .get("token_endpoint")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("metadata has no `token_endpoint`".into()))?;
    let endpoint = parse_endpoint_url(endpoint)
        .map_err(|_| invalid("`token_endpoint` is not an https URL".into()))?;
    // Plain http is for local testing only: never from an https issuer's document.
    if endpoint.scheme() != "https" && issuer.scheme() == "https" {
        return Err(invalid("`token_endpoint` is not an https URL".into()));
    }
    Ok(endpoint)
}

/// Whether `endpoint` is on a host `OAUTH_TOKEN_ENDPOINT_HOSTS` allows (any, when unset).
fn pinned(config: &Config, endpoint: &str) -> Result<()> {
    if config.token_endpoint_hosts.is_empty() {
        return Ok(());
    }
    let url = Url::parse(endpoint).map_err(|_| Error::Other("discovery: bad endpoint".into()))?;
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let with_port = url.port().map(|p| format!("{host}:{p}"));
    // `host:443` names the default port explicitly: it matches an https endpoint without one.
    let explicit = url.port_or_known_default().map(|p| format!("{host}:{p}"));
    let allowed =
        |h: &String| *h == host || with_port.as_ref() == Some(h) || explicit.as_ref() == Some(h);
    if config.token_endpoint_hosts.iter().any(allowed) {
        return Ok(());
    }
    let shown = with_port.unwrap_or(host);
    Err(Error::config(
        config.setting("OAUTH_TOKEN_ENDPOINT_HOSTS"),
        format!("does not list {shown}, the token endpoint's host in the issuer's metadata"),
    ))
}

/// The discovered token endpoint of one source, kept in memory and in the store for a day.
#[derive(Default)]
pub(crate) struct Discovery {
    /// The endpoint and until when (Unix seconds) it is trusted.
    endpoint: RefCell<Option<(String, u64)>>,
}

/// What discovery reads and asks through.
pub(super) struct Io<'a, H, S> {
    pub(super) http: &'a H,
    pub(super) store: &'a S,
    pub(super) log: &'a LogSink,
}

/// What finding the token endpoint came to.
pub(super) struct Found {
    pub(super) url: Result<String>,
    /// Milliseconds spent on the network.
    pub(super) spent_ms: u64,
    /// The discovered endpoint, to store once the flight's waiters have their answer.
    pub(super) write: Option<Write>,
}

impl Discovery {
    /// Forgets a discovered endpoint that cannot be reached or is gone, in memory and (by the
    /// write returned) in KV, so the next attempt discovers it again instead of trusting it for
    /// a day. A configured endpoint is never forgotten.
    pub(super) fn forget(&self, config: &Config) -> Option<Write> {
        let discovered = matches!(config.endpoint, Endpoint::Issuer(_));
        (discovered && self.endpoint.borrow_mut().take().is_some())
            .then_some(Write::Delete(META_ENTRY))
    }

    /// The token endpoint: as configured, or discovered from `OAUTH_ISSUER` (RFC 8414, then OIDC
    /// Discovery), kept in memory and KV for a day.
    pub(super) async fn endpoint<H: HttpClient, S: TokenStore>(
        &self,
        config: &Config,
        io: Io<'_, H, S>,
        now: u64,
    ) -> Found {
        let mut spent_ms = 0;
        let mut write = None;
        let url = self
            .find(config, io, now, (&mut spent_ms, &mut write))
            .await;
        Found {
            url,
            spent_ms,
            write,
        }
    }

    /// The endpoint; what finding it spent on the network and would store go to `out`.
    async fn find<H: HttpClient, S: TokenStore>(
        &self,
        config: &Config,
        Io { http, store, log }: Io<'_, H, S>,
        now: u64,
        (spent_ms, write): (&mut u64, &mut Option<Write>),
    ) -> Result<String> {
        let issuer = match &config.endpoint {
            Endpoint::TokenUrl(url) => return Ok(url.to_string()),
            Endpoint::Issuer(issuer) => issuer,
        };
        if let Some((url, _)) = self
            .endpoint
            .borrow()
            .as_ref()
            .filter(|(_, until)| now < *until)
        {
            return Ok(url.clone());
        }
        if let Ok(Some(raw)) = store.get(META_ENTRY).await {
            // A stored endpoint is held to the pin as it is now (it may have changed since).
            let stored = decode_meta(&raw, now).filter(|(e, _)| pinned(config, e).is_ok());
            if let Some((endpoint, until)) = stored {
                *self.endpoint.borrow_mut() = Some((endpoint.clone(), until));
                return Ok(endpoint);
            }
        }
        let mut last = None;
        for url in metadata_urls(issuer) {
            let request = HttpRequest {
                method: "GET",
                url,
                headers: vec![("accept".into(), "application/json".into())],
                body: Vec::new(),
                // Discovery spends the same budget as the token request it serves.
                timeout_ms: config.timeout_ms.saturating_sub(*spent_ms).max(1),
            };
            let resp = match http.execute(request).await {
                Ok(resp) => {
                    *spent_ms += resp.elapsed_ms;
                    resp
                }
                Err(e) => {
                    *spent_ms += e.elapsed_ms;
                    last = Some(Error::Unavailable {
                        reason: format!("discovery: network error: {}", e.reason),
                        retry_after: None,
                    });
                    continue;
                }
            };
            match parse_metadata(&resp, issuer) {
                Ok(endpoint) => {
                    let endpoint = endpoint.to_string();
                    // Outside the pin: refused, naming the setting, and not looked for elsewhere.
                    pinned(config, &endpoint)?;
                    let until = now + METADATA_TTL_SECS;
                    (log)(&log::cache_event(
                        "discovered",
                        &format!("token endpoint {endpoint}"),
                    ));
                    *self.endpoint.borrow_mut() = Some((endpoint.clone(), until));
                    *write = Some(Write::Put(
                        META_ENTRY,
                        encode_meta(&endpoint, until),
                        METADATA_TTL_SECS,
                    ));
                    return Ok(endpoint);
                }
                // Not found, unusable or failing here: try the next location.
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::Other("discovery found nothing".into())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![],
            body: body.as_bytes().to_vec(),
            elapsed_ms: 0,
        }
    }

    #[test]
    fn a_pin_matches_the_host_with_or_without_its_port() {
        use crate::base::secret::ClientSecret;
        use crate::config::client::ClientAuth;
        let mut config =
            Config::for_tests("client", ClientAuth::Basic(ClientSecret::new("secret-1")));
        for (pin, endpoint, ok) in [
            ("idp.example", "https://idp.example/token", true),
            ("idp.example:443", "https://idp.example/token", true),
            ("idp.example:443", "https://idp.example:443/token", true),
            ("idp.example:8443", "https://idp.example:8443/token", true),
            ("idp.example", "https://idp.example:8443/token", true),
            ("idp.example:8443", "https://idp.example/token", false),
            ("idp.example:443", "http://idp.example/token", false),
            ("other.example", "https://idp.example/token", false),
        ] {
            config.token_endpoint_hosts = vec![pin.to_owned()];
            assert_eq!(pinned(&config, endpoint).is_ok(), ok, "{pin} {endpoint}");
        }
    }

    #[test]
    fn metadata_is_looked_for_at_rfc8414_then_oidc_locations() {
        let with_path: Url = "https://idp.example/oauth2/default".parse().unwrap();
        assert_eq!(
            metadata_urls(&with_path),
            [
                "https://idp.example/.well-known/oauth-authorization-server/oauth2/default"
                    .to_owned(),
                "https://idp.example/oauth2/default/.well-known/openid-configuration".to_owned(),
            ]
        );
        let bare: Url = "https://idp.example".parse().unwrap();
        assert_eq!(
            metadata_urls(&bare),
            [
                "https://idp.example/.well-known/oauth-authorization-server".to_owned(),
                "https://idp.example/.well-known/openid-configuration".to_owned(),
            ]
        );
    }

    #[test]
    fn metadata_is_used_only_for_its_own_issuer_and_an_https_endpoint() {
        let issuer: Url = "https://idp.example/oauth2/default".parse().unwrap();
        let ok = r#"{"issuer":"https://idp.example/oauth2/default","token_endpoint":"https://idp.example/oauth2/default/v1/token"}"#;
        assert_eq!(
            parse_metadata(&resp(200, ok), &issuer).unwrap().as_str(),
            "https://idp.example/oauth2/default/v1/token"
        );
        let bare: Url = "https://idp.example".parse().unwrap();
        let ok_bare =
            r#"{"issuer":"https://idp.example","token_endpoint":"https://idp.example/token"}"#;
        assert!(parse_metadata(&resp(200, ok_bare), &bare).is_ok());
        for (status, body, want) in [
            (
                200,
                r#"{"issuer":"https://evil.example/oauth2/default","token_endpoint":"https://evil.example/t"}"#,
                "does not equal",
            ),
            (
                200,
                r#"{"issuer":"https://idp.example/oauth2/default"}"#,
                "no `token_endpoint`",
            ),
            (
                200,
                r#"{"issuer":"https://idp.example/oauth2/default","token_endpoint":"http://idp.example/t"}"#,
                "not an https URL",
            ),
            (200, "<html>", "not JSON"),
            (404, "", "HTTP 404"),
            (503, "", "HTTP 503"),
        ] {
            let err = parse_metadata(&resp(status, body), &issuer)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{body}: {err}");
        }
    }
}
