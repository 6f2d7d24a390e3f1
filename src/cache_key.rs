//! What selects a token: the input of the KV cache key.
//!
//! Two configurations that could be issued different tokens must never share a cache entry, so
//! every field that shapes the token request goes in, including the credential itself (a rotated
//! secret must not receive the old secret's token). The edge hashes this with SHA-256 (WebCrypto),
//! so the key shows neither the client id nor the secret.

use crate::config::{Config, Dpop};

/// Version of the key and value layout; bump it to orphan every old entry at once.
pub const KEY_PREFIX: &str = "m2m:v1:";

/// The byte string hashed into the cache key. Each field is length-prefixed so that no two
/// different field lists serialise to the same bytes (`"ab","c"` vs `"a","bc"`).
/// It contains the client secret: hash it, never log or store it.
pub fn cache_key_material(config: &Config) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let mut field = |bytes: &[u8]| {
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(bytes);
    };
    field(KEY_PREFIX.as_bytes());
    match (&config.token_url, &config.issuer) {
        (Some(url), _) => field(url.as_str().as_bytes()),
        (None, Some(issuer)) => field(format!("issuer:{issuer}").as_bytes()),
        (None, None) => field(b"-"),
    }
    field(config.client_id.as_bytes());
    field(config.auth.method().as_bytes());
    field(config.auth.credential().as_bytes());
    for opt in [&config.scope, &config.audience, &config.resource] {
        match opt {
            Some(v) => field(format!("+{v}").as_bytes()),
            None => field(b"-"),
        }
    }
    for (k, v) in &config.extra_params {
        field(k.as_bytes());
        field(v.as_bytes());
    }
    // A DPoP token is bound to its key, so the key selects the entry. Only DPoP configurations
    // add this field, leaving other keys as they were; the pairs above make every other list
    // of fields even-sized, so this odd one out cannot be mistaken for a pair.
    match &config.dpop {
        Dpop::Off => {}
        Dpop::GeneratedKey => field(b"dpop:generated"),
        Dpop::Key(key) => field(format!("dpop:{}", key.private_jwk().expose()).as_bytes()),
    }
    out
}

/// The KV key for a digest of [`cache_key_material`]: `m2m:v1:` and the digest in base64url.
pub fn cache_key(digest: &[u8]) -> String {
    use base64::Engine as _;
    format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClientAuth;
    use crate::secret::ClientSecret;

    fn base() -> Config {
        Config {
            token_url: Some("https://idp.example/token".parse().unwrap()),
            issuer: None,
            client_id: "client-a".into(),
            auth: ClientAuth::Basic(ClientSecret::new("secret-1")),
            scope: Some("read".into()),
            audience: None,
            resource: None,
            extra_params: vec![],
            expiry_margin_secs: 60,
            timeout_ms: 1000,
            holddown_secs: 30,
            retry_statuses: vec![401],
            cache_key_secret: None,
            refresh_ahead: true,
            dpop: Default::default(),
        }
    }

    #[test]
    fn every_selecting_field_separates_keys() {
        type Edit = fn(&mut Config);
        let edits: &[(&str, Edit)] = &[
            ("token url", |c| {
                c.token_url = Some("https://idp.example/other".parse().unwrap())
            }),
            ("client id", |c| c.client_id = "client-b".into()),
            ("secret", |c| {
                c.auth = ClientAuth::Basic(ClientSecret::new("secret-2"))
            }),
            ("method", |c| {
                c.auth = ClientAuth::Post(ClientSecret::new("secret-1"))
            }),
            ("scope", |c| c.scope = Some("write".into())),
            ("no scope", |c| c.scope = None),
            ("empty scope", |c| c.scope = Some(String::new())),
            ("audience", |c| c.audience = Some("read".into())),
            ("resource", |c| c.resource = Some("https://api".into())),
            ("extra", |c| c.extra_params = vec![("a".into(), "b".into())]),
            ("issuer", |c| {
                c.token_url = None;
                c.issuer = Some("https://idp.example/token".parse().unwrap())
            }),
            ("dpop", |c| c.dpop = Dpop::GeneratedKey),
            ("dpop key", |c| {
                c.dpop = Dpop::Key(std::rc::Rc::new(
                    crate::dpop::DpopKey::from_jwk("OAUTH_DPOP_KEY", crate::dpop::TEST_JWK)
                        .unwrap(),
                ))
            }),
        ];
        let mut seen = vec![cache_key_material(&base())];
        for (name, edit) in edits {
            let mut c = base();
            edit(&mut c);
            let m = cache_key_material(&c);
            assert!(!seen.contains(&m), "{name} did not change the key material");
            seen.push(m);
        }
        // Margin and timeout do not select a token: same key.
        let mut c = base();
        c.expiry_margin_secs = 5;
        c.timeout_ms = 5;
        assert_eq!(cache_key_material(&c), seen[0]);
    }

    #[test]
    fn fields_cannot_run_together() {
        let mut a = base();
        a.client_id = "ab".into();
        a.auth = ClientAuth::Basic(ClientSecret::new("c"));
        let mut b = base();
        b.client_id = "a".into();
        b.auth = ClientAuth::Basic(ClientSecret::new("bc"));
        assert_ne!(cache_key_material(&a), cache_key_material(&b));
    }

    #[test]
    fn key_shape() {
        let k = cache_key(&[0xff; 32]);
        assert!(k.starts_with("m2m:v1:") && k.len() == 7 + 43, "{k}");
    }
}
