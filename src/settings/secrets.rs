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

/// How long an isolate uses a value it read from the Secrets Store before reading it again. A
/// rotation reaches every isolate within this.
#[cfg(any(target_arch = "wasm32", test))]
pub(crate) const SECRET_TTL_SECS: u64 = 60;

/// How soon a binding that could not be read (and has no value held) is tried again.
#[cfg(any(target_arch = "wasm32", test))]
pub(crate) const RETRY_SECS: u64 = 5;

/// How long a value read before stays in use while the store fails for a moment (a timeout, a
/// read error): long enough to ride out a blip, short enough that a secret deleted behind a
/// store that also fails stops working within it. Past it, the setting fails closed.
#[cfg(any(target_arch = "wasm32", test))]
pub(crate) const GRACE_SECS: u64 = 600;

/// What an isolate holds of one binding: its value, or why there is none, when to read it
/// again and when it was last read successfully (Unix seconds).
#[cfg(any(target_arch = "wasm32", test))]
#[derive(Clone)]
pub(crate) struct Stored {
    pub(crate) value: std::result::Result<crate::base::secret::SharedSecret, String>,
    pub(crate) next_read: u64,
    pub(crate) read_at: u64,
}

/// Why a read of a binding gave no value.
#[cfg(any(target_arch = "wasm32", test))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unread {
    /// The store says there is no such secret, or the Worker has no such binding: the value is
    /// gone, whatever was read before (a deleted secret must stop working at once).
    Gone(String),
    /// The store failed for now (a timeout, an error): the value read before may serve on for
    /// [`GRACE_SECS`].
    Failed(String),
}

/// What an isolate holds after reading a binding at `now`: the value read; or, when the read
/// failed for now, the value `held` from before while it is within [`GRACE_SECS`] of its
/// read; or why there is none. `held_log` is told when a value read before stays in use.
#[cfg(any(target_arch = "wasm32", test))]
pub(crate) fn after_read(
    held: Option<&Stored>,
    got: std::result::Result<String, Unread>,
    now: u64,
    held_log: impl FnOnce(&str),
) -> Stored {
    use crate::base::secret::SharedSecret;
    match got {
        Ok(v) => Stored {
            value: Ok(SharedSecret::new(v)),
            next_read: now + SECRET_TTL_SECS,
            read_at: now,
        },
        Err(Unread::Failed(why)) => match held {
            Some(Stored {
                value: Ok(old),
                read_at,
                ..
            }) if now < read_at.saturating_add(GRACE_SECS) => {
                held_log(&why);
                Stored {
                    value: Ok(old.clone()),
                    next_read: now + SECRET_TTL_SECS,
                    read_at: *read_at,
                }
            }
            _ => Stored {
                value: Err(why),
                next_read: now + RETRY_SECS,
                read_at: held.map_or(0, |h| h.read_at),
            },
        },
        Err(Unread::Gone(why)) => Stored {
            value: Err(why),
            next_read: now + RETRY_SECS,
            read_at: held.map_or(0, |h| h.read_at),
        },
    }
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

impl Settings<'_> {
    /// A secret that keys or guards something (`TOKEN_CACHE_KEY`, `PROXY_SHARED_SECRET`), read
    /// as a [credential](Self::credential), failing closed: set but blank (even where blank
    /// would otherwise read as unset), with stray whitespace, or shorter than `min_chars` (a
    /// Worker secret and a Secrets Store value alike) is a configuration error naming it. Unset
    /// is `None`.
    pub(crate) fn key_secret(
        &self,
        setting: &'static str,
        min_chars: usize,
    ) -> Result<Option<crate::base::secret::SharedSecret>> {
        self.refuse_blank(setting)?;
        let Some(Credential { name, value, .. }) = self.credential(setting)? else {
            return Ok(None);
        };
        crate::settings::values::exact_secret(&name, &value)?;
        if value.chars().count() < min_chars {
            return Err(Error::config(
                name,
                format!(
                    "must be at least {min_chars} characters of random text (for example \
                     `openssl rand -base64 32`)"
                ),
            ));
        }
        Ok(Some(crate::base::secret::SharedSecret::new(value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::profile::Profile;
    use std::collections::HashMap;

    #[test]
    fn a_key_secret_fails_closed_blank_short_or_untrimmed() {
        let vars: HashMap<&str, &str> = [
            ("TOKEN_CACHE_KEY", "\n"),
            ("BILLING_TOKEN_CACHE_KEY", "short"),
            ("CRM_TOKEN_CACHE_KEY", " k0123456789abcdef"),
            ("HR_TOKEN_CACHE_KEY", "k0123456789abcdef"),
        ]
        .into_iter()
        .collect();
        let lookup = |k: &str| vars.get(k).map(|v| v.to_string());
        let read = |profile: Option<&str>| {
            let p = profile.map(|p| Profile::new(p).unwrap());
            Settings::new(&lookup, p.as_ref())
                .key_secret("TOKEN_CACHE_KEY", 16)
                .map(|k| k.map(|k| k.expose().to_owned()))
                .map_err(|e| e.to_string())
        };
        assert!(read(None)
            .unwrap_err()
            .contains("TOKEN_CACHE_KEY: is set but blank"));
        assert!(read(Some("billing"))
            .unwrap_err()
            .contains("BILLING_TOKEN_CACHE_KEY: must be at least 16 characters"));
        assert!(read(Some("crm"))
            .unwrap_err()
            .contains("CRM_TOKEN_CACHE_KEY: has leading or trailing whitespace"));
        assert_eq!(
            read(Some("hr")).unwrap().as_deref(),
            Some("k0123456789abcdef")
        );
    }

    #[test]
    fn a_value_survives_a_failing_store_for_a_bounded_grace_and_a_deletion_not_at_all() {
        let value = |s: &Stored| s.value.as_ref().map(|v| v.expose().to_owned()).ok();
        let read = after_read(None, Ok("s3cret".into()), 1000, |_| {});
        assert_eq!(
            (value(&read), read.next_read),
            (Some("s3cret".into()), 1060)
        );
        // A blip: the value read before serves on, and is read again soon.
        let mut logged = Vec::new();
        let blip = after_read(
            Some(&read),
            Err(Unread::Failed("timed out".into())),
            1100,
            |w| logged.push(w.to_owned()),
        );
        assert_eq!(value(&blip), Some("s3cret".into()));
        assert_eq!((blip.read_at, logged.len()), (1000, 1));
        assert!(blip.next_read > 1100 && blip.next_read <= 1160);
        // Still failing past the grace: closed.
        let late = after_read(
            Some(&blip),
            Err(Unread::Failed("timed out".into())),
            1000 + GRACE_SECS,
            |_| panic!("no value is kept"),
        );
        assert_eq!(
            late.value.as_ref().err().map(String::as_str),
            Some("timed out")
        );
        // Deleted (or unbound): gone at once, whatever was read before.
        let gone = after_read(
            Some(&read),
            Err(Unread::Gone("not found".into())),
            1001,
            |_| panic!("no value is kept"),
        );
        assert!(gone.value.is_err());
        // Read again after a deletion: back.
        let back = after_read(Some(&gone), Ok("new".into()), 1010, |_| {});
        assert_eq!(value(&back), Some("new".into()));
    }

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
