//! What selects a token, and how its KV entries are named and sealed.
//!
//! Two configurations that could be issued different tokens must never share a cache entry, so
//! every field that shapes the token request goes in, including the credential itself (a rotated
//! secret must not receive the old secret's token).
//!
//! Anyone who can list the namespace sees the names, and anyone who can read it sees the sealed
//! values; most of the other fields are public (`wrangler.toml`). So neither may be a plain
//! function of the secret, or each would let a reader test guesses of a weak client secret at
//! the cost of one hash. Both come from a *root key* (the edge does this with WebCrypto):
//!
//! - with `TOKEN_CACHE_KEY` (at least 32 random characters), the root is that key (HKDF,
//!   RFC 5869): names and values reveal nothing about the client secret, and nobody without
//!   the key can test a guess;
//! - without it, the root is the credential stretched with PBKDF2-HMAC-SHA-256 (RFC 8018
//!   §5.2, [`STRETCH_ITERATIONS`], the most workerd allows): a guess costs that many hashes,
//!   once per isolate for us. A `private_key_jwt` key is not guessable and is not stretched.
//!
//! The name is `m2m:v2:` and base64url HMAC-SHA-256 (RFC 2104) of [`cache_key_material`]
//! under a key derived from the root; values are sealed with AES-256-GCM under another key
//! derived from the root, with the entry's name as additional data. Entries named the old way
//! (`m2m:v1:`) are simply never found again and expire on their own.

use crate::config::client::{ClientAuth, Config, Dpop, Endpoint};

/// Version of the key and value layout; bump it to orphan every old entry at once.
pub(crate) const KEY_PREFIX: &str = "m2m:v2:";

/// PBKDF2 iterations for stretching a client secret into the root key: 100 000 is the most
/// workerd's WebCrypto accepts (about 20 ms, once per isolate and configuration).
#[cfg(target_arch = "wasm32")]
pub(crate) const STRETCH_ITERATIONS: u32 = 100_000;

/// PBKDF2 salt, and the HKDF salt of every key derived from the root: fixed, public labels that
/// separate this use of the secret from any other.
#[cfg(target_arch = "wasm32")]
pub(crate) const ROOT_SALT: &[u8] = b"worker-m2m/cache-root/v2";

/// HKDF `info` of the HMAC key that names entries.
#[cfg(target_arch = "wasm32")]
pub(crate) const NAME_KEY_INFO: &[u8] = b"worker-m2m/kv-name/v2";

/// The secret the cache's keys derive from, and whether it must be stretched first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CacheRoot<'a> {
    /// `TOKEN_CACHE_KEY`, else the credential. Never to be logged.
    pub secret: &'a str,
    /// True for a client secret, which may be weak; false for `TOKEN_CACHE_KEY` and private keys.
    pub stretch: bool,
}

impl<'a> CacheRoot<'a> {
    /// The root for `config` (see the module docs).
    pub(crate) fn of(config: &'a Config) -> Self {
        match &config.cache_key_secret {
            Some(key) => Self {
                secret: key.expose(),
                stretch: false,
            },
            None => Self {
                secret: config.auth.credential(),
                stretch: !matches!(config.auth, ClientAuth::PrivateKeyJwt(_)),
            },
        }
    }
}

/// The byte string the entry name is an HMAC of. Each field is length-prefixed so that no two
/// different field lists serialise to the same bytes (`"ab","c"` vs `"a","bc"`).
/// It contains the client secret: only ever HMAC it under the root's name key, never log,
/// store or plainly hash it.
pub(crate) fn cache_key_material(config: &Config) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let mut field = |bytes: &[u8]| {
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(bytes);
    };
    field(KEY_PREFIX.as_bytes());
    match &config.endpoint {
        Endpoint::TokenUrl(url) => field(url.as_str().as_bytes()),
        Endpoint::Issuer(issuer) => field(format!("issuer:{issuer}").as_bytes()),
    }
    field(config.client_id.as_bytes());
    field(config.auth.method().as_bytes());
    // A credential read from the Secrets Store is known by its binding: its tokens stay found
    // across a rotation (the root is then `TOKEN_CACHE_KEY`, which the settings require).
    match &config.credential_from_store {
        Some(binding) => field(format!("secrets-store:{binding}").as_bytes()),
        None => field(config.auth.credential().as_bytes()),
    }
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

/// The KV key for the HMAC of [`cache_key_material`]: `m2m:v2:` and the MAC in base64url.
pub(crate) fn cache_key(digest: &[u8]) -> String {
    use base64::Engine as _;
    format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::secret::ClientSecret;
    use crate::config::client::ClientAuth;

    fn base() -> Config {
        Config {
            scope: Some("read".into()),
            ..Config::for_tests("client-a", ClientAuth::Basic(ClientSecret::new("secret-1")))
        }
    }

    #[test]
    fn every_selecting_field_separates_keys() {
        type Edit = fn(&mut Config);
        let edits: &[(&str, Edit)] = &[
            ("token url", |c| {
                c.endpoint = Endpoint::TokenUrl("https://idp.example/other".parse().unwrap())
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
                c.endpoint = Endpoint::Issuer("https://idp.example/token".parse().unwrap())
            }),
            ("dpop", |c| c.dpop = Dpop::GeneratedKey),
            ("dpop key", |c| {
                c.dpop = Dpop::Key(std::rc::Rc::new(
                    crate::keys::dpop_key::DpopKey::from_jwk(
                        "OAUTH_DPOP_KEY",
                        crate::keys::dpop_key::TEST_JWK,
                    )
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
    fn a_cache_key_is_the_versioned_prefix_and_a_base64url_digest() {
        let k = cache_key(&[0xff; 32]);
        assert!(k.starts_with("m2m:v2:") && k.len() == 7 + 43, "{k}");
    }

    #[test]
    fn root_is_the_cache_key_or_the_stretched_secret() {
        let mut c = base();
        assert_eq!(
            CacheRoot::of(&c),
            CacheRoot {
                secret: "secret-1",
                stretch: true
            }
        );
        c.cache_key_secret = Some(crate::base::secret::SharedSecret::new("k".repeat(32)));
        assert!(!CacheRoot::of(&c).stretch);
        assert_eq!(CacheRoot::of(&c).secret, "k".repeat(32));
    }
}
