//! Credentials kept in the Secrets Store. Any credential setting ([`CREDENTIAL_SETTINGS`], per
//! profile too) may hold `secrets-store:<BINDING>` instead of the value: the name of a Secrets
//! Store secret binding (`[[secrets_store_secrets]] binding = "<BINDING>"`), whose value is
//! read at run time (by the edge, kept per isolate for a bounded time) so a security team can
//! rotate it without a deployment.
//!
//! A client credential (`OAUTH_CLIENT_SECRET`, `OAUTH_PRIVATE_KEY`) read this way is known by its
//! binding, not its value: its tokens stay in the cache across a rotation (the cache needs
//! `TOKEN_CACHE_KEY` then, see [`crate::config::cache_key`]). The other credentials select
//! their tokens or callers by value, so rotating them means new tokens (a DPoP key, the cache
//! key) or new callers (the shared secret), as a redeploy would.

use std::borrow::Cow;

use crate::base::error::{Error, Result};
use crate::settings::lookup::Settings;

/// What a setting's value starts with when it names a Secrets Store binding.
pub(crate) const PREFIX: &str = "secrets-store:";

/// The settings that may name a Secrets Store binding.
#[cfg(any(target_arch = "wasm32", test))]
pub(crate) const CREDENTIAL_SETTINGS: &[&str] = &[
    "OAUTH_CLIENT_SECRET",
    "OAUTH_PRIVATE_KEY",
    "OAUTH_DPOP_KEY",
    "TOKEN_CACHE_KEY",
    "PROXY_SHARED_SECRET",
];

/// A credential setting as read.
#[derive(Debug)]
pub(crate) struct Credential {
    /// The name it was read under (`BILLING_OAUTH_CLIENT_SECRET`).
    pub(crate) name: Cow<'static, str>,
    /// The value: as set, or as the Secrets Store holds it. Never to be logged.
    pub(crate) value: String,
    /// The Secrets Store binding it was read from, if it was.
    pub(crate) binding: Option<String>,
}

/// What an isolate holds of one binding: its value, or why there is none, and when to read it
/// again (Unix seconds).
#[cfg(target_arch = "wasm32")]
#[derive(Clone)]
pub(crate) struct Stored {
    pub(crate) value: std::result::Result<crate::base::secret::SharedSecret, String>,
    pub(crate) next_read: u64,
}

/// The binding `raw` names, if it names one (`secrets-store:NAME`); a malformed name is an
/// error naming `setting`. Binding names are JavaScript identifiers.
pub(crate) fn binding_in(setting: &str, raw: &str) -> Result<Option<String>> {
    let Some(binding) = raw.trim().strip_prefix(PREFIX) else {
        return Ok(None);
    };
    let mut chars = binding.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    if !ok {
        return Err(Error::config(
            setting.to_owned(),
            format!("`{PREFIX}` must be followed by a binding name such as `{PREFIX}BILLING_CLIENT_SECRET`"),
        ));
    }
    Ok(Some(binding.to_owned()))
}

/// Whether the Worker setting `name` is a credential setting (of the Worker or a profile).
#[cfg(any(target_arch = "wasm32", test))]
pub(crate) fn is_credential_setting(name: &str) -> bool {
    CREDENTIAL_SETTINGS.iter().any(|s| name.ends_with(s))
}

impl Settings<'_> {
    /// A credential setting: its value as set or, when it names a Secrets Store binding, as
    /// read from there. A binding that is not bound or whose secret cannot be read is a
    /// configuration error naming the setting (and the binding, never a value).
    pub(crate) fn credential(&self, setting: &'static str) -> Result<Option<Credential>> {
        let Some((name, raw)) = self.get(setting)? else {
            return Ok(None);
        };
        let Some(binding) = binding_in(&name, &raw)? else {
            return Ok(Some(Credential {
                name,
                value: raw,
                binding: None,
            }));
        };
        let Some(read) = self.secrets else {
            return Err(Error::config(
                name,
                format!(
                    "names the Secrets Store binding {binding}, which only the Workers edge \
                     reads (TokenClient::load, or the proxy)"
                ),
            ));
        };
        match read(&binding) {
            Ok(value) => Ok(Some(Credential {
                name,
                value,
                binding: Some(binding),
            })),
            Err(why) => Err(Error::config(
                name,
                format!("names the Secrets Store binding {binding}, {why}"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::profile::Profile;
    use std::collections::HashMap;

    #[test]
    fn a_credential_names_a_binding_and_is_read_from_it() {
        let vars: HashMap<&str, &str> = [
            (
                "BILLING_OAUTH_CLIENT_SECRET",
                "secrets-store:BILLING_SECRET",
            ),
            ("PROXY_SHARED_SECRET", "plain-value"),
            ("TOKEN_CACHE_KEY", "secrets-store:MISSING"),
            ("OAUTH_DPOP_KEY", "secrets-store:not a name"),
        ]
        .into_iter()
        .collect();
        let lookup = |k: &str| vars.get(k).map(|v| v.to_string());
        let store = |b: &str| match b {
            "BILLING_SECRET" => Ok("rotated-value".to_owned()),
            _ => Err("which is not bound".to_owned()),
        };
        let billing = Profile::new("billing").unwrap();
        let s = Settings::with_secrets(&lookup, Some(&billing), &store);
        let c = s.credential("OAUTH_CLIENT_SECRET").unwrap().unwrap();
        assert_eq!(
            (c.name.as_ref(), c.value.as_str(), c.binding.as_deref()),
            (
                "BILLING_OAUTH_CLIENT_SECRET",
                "rotated-value",
                Some("BILLING_SECRET")
            )
        );
        // Shared, and held as a value: as before.
        let p = s.credential("PROXY_SHARED_SECRET").unwrap().unwrap();
        assert_eq!((p.value.as_str(), p.binding), ("plain-value", None));
        let err = s.credential("TOKEN_CACHE_KEY").unwrap_err().to_string();
        assert_eq!(
            err,
            "configuration error: TOKEN_CACHE_KEY: names the Secrets Store binding MISSING, which is not bound"
        );
        let plain = Settings::with_secrets(&lookup, None, &store);
        let err = plain.credential("OAUTH_DPOP_KEY").unwrap_err().to_string();
        assert!(
            err.contains("OAUTH_DPOP_KEY: `secrets-store:` must be followed"),
            "{err}"
        );
        // Without a reader (Config::from_lookup), a reference is refused by name.
        let none = Settings::new(&lookup, Some(&billing));
        let err = none
            .credential("OAUTH_CLIENT_SECRET")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "BILLING_OAUTH_CLIENT_SECRET: names the Secrets Store binding BILLING_SECRET"
            ),
            "{err}"
        );
        assert!(
            is_credential_setting("EU_CRM_OAUTH_PRIVATE_KEY")
                && !is_credential_setting("OAUTH_SCOPE")
        );
    }
}
