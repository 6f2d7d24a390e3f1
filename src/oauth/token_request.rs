//! Building the client credentials token request (RFC 6749 §4.4.2), with no I/O.

use base64::Engine as _;
use url::form_urlencoded::{byte_serialize, Serializer};

use crate::base::redact::Redactor;
use crate::config::client::{ClientAuth, Config};
use crate::oauth::transport::HttpRequest;

/// The `client_assertion_type` for a JWT (RFC 7523 §2.2).
pub(crate) const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// RFC 6749 §2.3.1: the id and secret are each form-urlencoded (Appendix B) before being joined
/// with `:` and base64-encoded. Strict servers reject a secret with `%`, `+`, `:` or `&` sent raw.
pub(crate) fn basic_credentials(client_id: &str, secret: &str) -> String {
    let id: String = byte_serialize(client_id.as_bytes()).collect();
    let secret: String = byte_serialize(secret.as_bytes()).collect();
    let joined = format!("{id}:{secret}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(joined)
    )
}

/// The token request for `config`: a form `POST` with `grant_type=client_credentials` and
/// `Accept: application/json` (RFC 6749 §4.4.2, §3.2). `assertion` is the signed client
/// assertion for `private_key_jwt` (RFC 7523 §2.2), ignored by the other methods. `token_url` is
/// the configured or discovered token endpoint.
pub(crate) fn build_token_request(
    config: &Config,
    token_url: &str,
    assertion: Option<&str>,
) -> HttpRequest {
    let mut form = Serializer::new(String::new());
    form.append_pair("grant_type", "client_credentials");
    if let Some(scope) = &config.scope {
        form.append_pair("scope", scope);
    }
    if let Some(audience) = &config.audience {
        form.append_pair("audience", audience);
    }
    if let Some(resource) = &config.resource {
        form.append_pair("resource", resource);
    }
    for (k, v) in &config.extra_params {
        form.append_pair(k, v);
    }
    let mut headers = vec![
        ("accept".to_owned(), "application/json".to_owned()),
        (
            "content-type".to_owned(),
            "application/x-www-form-urlencoded".to_owned(),
        ),
    ];
    match &config.auth {
        ClientAuth::Basic(secret) => {
            headers.push((
                "authorization".to_owned(),
                basic_credentials(&config.client_id, secret.expose()),
            ));
        }
        ClientAuth::Post(secret) => {
            form.append_pair("client_id", &config.client_id);
            form.append_pair("client_secret", secret.expose());
        }
        ClientAuth::PrivateKeyJwt(_) => {
            // client_id is optional with an assertion (RFC 7521 §4.2); sending it helps servers
            // that look the client up before verifying.
            form.append_pair("client_id", &config.client_id);
            form.append_pair("client_assertion_type", ASSERTION_TYPE);
            form.append_pair("client_assertion", assertion.unwrap_or_default());
        }
    }
    HttpRequest {
        method: "POST",
        url: token_url.to_owned(),
        headers,
        body: form.finish().into_bytes(),
        timeout_ms: config.timeout_ms,
    }
}

/// What a token request for `config` sends that must never come back out of server text
/// (RFC 6749 §10.3): the client secret in every form, and the Basic credentials, for the
/// `client_secret_*` methods; for `private_key_jwt`, the key text (never sent, never to be
/// shown either). Signed values are added as they are made ([`Redactor::add_signed`]).
pub(crate) fn redactor_for(config: &Config) -> Redactor {
    let mut r = Redactor::default();
    redact_credential(&mut r, config);
    r
}

/// Adds every form of `config`'s client credential to `r` (for a credential rotated while an
/// acquisition is under way: both forms were sent).
pub(crate) fn redact_credential(r: &mut Redactor, config: &Config) {
    let secret = config.auth.credential();
    match config.auth {
        ClientAuth::Basic(_) | ClientAuth::Post(_) => {
            r.add_secret(secret);
            let basic = basic_credentials(&config.client_id, secret);
            r.add_exact(&basic);
            let b64 = basic.trim_start_matches("Basic ");
            if let Ok(joined) = base64::engine::general_purpose::STANDARD.decode(b64) {
                r.add_base64(&joined);
            }
            // Clients that skip the §2.3.1 encoding send `id:secret` raw; a server may echo that.
            r.add_base64(format!("{}:{secret}", config.client_id).as_bytes());
        }
        ClientAuth::PrivateKeyJwt(_) => r.add_exact(secret),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::secret::ClientSecret;

    fn config(auth: ClientAuth) -> Config {
        Config {
            profile: None,
            endpoint: crate::config::client::Endpoint::TokenUrl(OKTA.parse().unwrap()),
            scope: Some("customScope other".into()),
            extra_params: vec![("redirect_uri".into(), "http://localhost".into())],
            ..Config::for_tests("0oa:client id", auth)
        }
    }

    const OKTA: &str = "https://dev-686102.oktapreview.com/oauth2/default/v1/token";

    fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
        req.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn basic_encodes_before_joining() {
        // base64("0oa%3Aclient+id:s3%25cr%2Bt%3A%2F%3D%26") per RFC 6749 §2.3.1.
        let got = basic_credentials("0oa:client id", "s3%cr+t:/=&");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(&got["Basic ".len()..])
            .unwrap();
        assert_eq!(
            String::from_utf8(decoded).unwrap(),
            "0oa%3Aclient+id:s3%25cr%2Bt%3A%2F%3D%26"
        );
        assert_eq!(
            got,
            "Basic MG9hJTNBY2xpZW50K2lkOnMzJTI1Y3IlMkJ0JTNBJTJGJTNEJTI2"
        );
    }

    #[test]
    fn client_secret_basic_request_is_byte_exact() {
        let req = build_token_request(
            &config(ClientAuth::Basic(ClientSecret::new("s3%cr+t:/=&"))),
            OKTA,
            None,
        );
        assert_eq!(req.method, "POST");
        assert_eq!(
            req.url,
            "https://dev-686102.oktapreview.com/oauth2/default/v1/token"
        );
        assert_eq!(
            String::from_utf8(req.body.clone()).unwrap(),
            "grant_type=client_credentials&scope=customScope+other&redirect_uri=http%3A%2F%2Flocalhost"
        );
        assert_eq!(header(&req, "accept"), Some("application/json"));
        assert_eq!(
            header(&req, "content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(
            header(&req, "authorization"),
            Some("Basic MG9hJTNBY2xpZW50K2lkOnMzJTI1Y3IlMkJ0JTNBJTJGJTNEJTI2")
        );
    }

    #[test]
    fn client_secret_post_puts_credentials_in_the_body() {
        let mut c = config(ClientAuth::Post(ClientSecret::new("s3%cr+t:/=&")));
        c.audience = Some("https://api.example".into());
        c.resource = Some("https://api.example/v1".into());
        c.extra_params.clear();
        let req = build_token_request(&c, OKTA, None);
        assert_eq!(header(&req, "authorization"), None);
        assert_eq!(
            String::from_utf8(req.body).unwrap(),
            "grant_type=client_credentials&scope=customScope+other&audience=https%3A%2F%2Fapi.example\
             &resource=https%3A%2F%2Fapi.example%2Fv1&client_id=0oa%3Aclient+id&client_secret=s3%25cr%2Bt%3A%2F%3D%26"
        );
    }

    #[test]
    fn private_key_jwt_sends_the_assertion() {
        let key = crate::keys::private_key::parse_private_key(
            r#"{"kty":"EC","crv":"P-256","x":"a","y":"b","d":"c","kid":"k"}"#,
            None,
        )
        .unwrap();
        let mut c = config(ClientAuth::PrivateKeyJwt(key));
        c.scope = None;
        c.extra_params.clear();
        let req = build_token_request(&c, OKTA, Some("h.c.s"));
        assert_eq!(header(&req, "authorization"), None);
        assert_eq!(
            String::from_utf8(req.body).unwrap(),
            "grant_type=client_credentials&client_id=0oa%3Aclient+id\
             &client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer\
             &client_assertion=h.c.s"
        );
    }

    #[test]
    fn debug_output_hides_credentials() {
        let req = build_token_request(
            &config(ClientAuth::Post(ClientSecret::new("s3%cr+t:/=&"))),
            OKTA,
            None,
        );
        let shown = format!("{req:?}");
        assert!(
            !shown.contains("s3%25cr") && !shown.contains("Basic"),
            "{shown}"
        );
    }
}
