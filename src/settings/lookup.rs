//! Where a configuration's settings are read: the Worker's own names, or a named profile's
//! ([`crate::settings::profile`]).
//!
//! Without `M2M_PROFILES` every setting is read under its own name (`OAUTH_CLIENT_ID`). With
//! `M2M_PROFILES = "billing,crm"`, the profile `billing` reads `BILLING_OAUTH_CLIENT_ID` and so
//! on (a `-` in the name becomes `_`), so each profile's secrets stay separate Worker secrets.
//!
//! What a profile may take from the unprefixed settings is fixed here, not left to chance:
//!
//! - **Its identity is its own** ([`OWN`]): where it gets tokens, as whom, with which
//!   credential, for what, and where it sends them. A profile never inherits these; an
//!   unprefixed one set next to `M2M_PROFILES` is a configuration error naming it (a profile
//!   that silently took `OAUTH_CLIENT_SECRET` would authenticate as another client), unless
//!   the profile sets its own.
//! - **Tuning is shared** ([`SHARED`]): timeouts, margins, hold-down, retry statuses, refresh
//!   ahead, the proxy's body limit and header allow-list, and the Worker's `TOKEN_CACHE_KEY` and
//!   `PROXY_SHARED_SECRET`. A profile's own value wins; the unprefixed one is the default.
//!
//! - **The Worker's own** ([`WORKER`]): which profiles there are, and how a caller picks one.
//!   Never read with a profile's prefix.
//!
//! These three tables are every setting the crate reads, and the one list of them: a name under
//! the crate's prefixes that is in none is noticed as unknown ([`crate::settings::unknown`]).
//!
//! Errors name the setting as the Worker reads it (`BILLING_OAUTH_CLIENT_SECRET`), never a value.

use std::borrow::Cow;

use crate::base::error::{Error, Result};
use crate::settings::profile::{Profile, PROFILES_SETTING};

/// Settings a profile never inherits from the unprefixed ones: its identity.
pub(crate) const OWN: &[&str] = &[
    "OAUTH_TOKEN_URL",
    "OAUTH_ISSUER",
    "OAUTH_TOKEN_ENDPOINT_HOSTS",
    "OAUTH_CLIENT_ID",
    "OAUTH_AUTH_METHOD",
    "OAUTH_CLIENT_SECRET",
    "OAUTH_PRIVATE_KEY",
    "OAUTH_PRIVATE_KEY_ID",
    "OAUTH_SCOPE",
    "OAUTH_AUDIENCE",
    "OAUTH_RESOURCE",
    "OAUTH_EXTRA_PARAMS",
    "OAUTH_DPOP",
    "OAUTH_DPOP_KEY",
    "PROXY_EXPOSE_AUTHORIZATION",
    "UPSTREAM_ORIGIN",
];

/// [`OWN`] flags whose unprefixed `false` is harmless next to `M2M_PROFILES`: it asks for what
/// every profile has unless it sets its own, so a cautious operator's explicit "off" is no
/// configuration error.
const OFF_IS_HARMLESS: &[&str] = &["PROXY_EXPOSE_AUTHORIZATION"];

/// Settings a profile takes from the unprefixed ones when it does not set its own.
pub(crate) const SHARED: &[&str] = &[
    "OAUTH_EXPIRY_MARGIN_SECS",
    "OAUTH_TIMEOUT_MS",
    "OAUTH_HOLDDOWN_SECS",
    "OAUTH_RETRY_STATUSES",
    "OAUTH_REFRESH_AHEAD",
    "OAUTH_REFRESH_LEAD_SECS",
    "TOKEN_CACHE_KEY",
    "PROXY_SHARED_SECRET",
    "PROXY_MAX_BODY_BYTES",
    "PROXY_FORWARD_HEADERS",
    "M2M_METRICS_INTERVAL_SECS",
];

/// Settings of the Worker as a whole, read only under their own names: the profile list, and
/// whether a request's path may choose the profile (read by the JavaScript entry,
/// `scripts/intake.mjs`, before any Rust runs).
#[cfg(any(target_arch = "wasm32", test))]
pub(crate) const WORKER: &[&str] = &[PROFILES_SETTING, "PROXY_PROFILE_FROM_PATH"];

/// Reads a Secrets Store secret by its binding's name: its value, or why there is none (see
/// [`crate::settings::secrets`]).
pub(crate) type SecretReader<'a> = &'a dyn Fn(&str) -> std::result::Result<String, String>;

/// Reads settings for one configuration: the Worker's own names, or one profile's.
pub(crate) struct Settings<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    profile: Option<&'a Profile>,
    /// Reads the Secrets Store secrets credential settings name (see
    /// [`crate::settings::secrets`]); none: such a setting is a configuration error.
    pub(super) secrets: Option<SecretReader<'a>>,
}

impl<'a> Settings<'a> {
    pub(crate) fn new(
        lookup: &'a dyn Fn(&str) -> Option<String>,
        profile: Option<&'a Profile>,
    ) -> Self {
        Self {
            lookup,
            profile,
            secrets: None,
        }
    }

    /// Like [`Self::new`], reading the Secrets Store secrets credential settings name with
    /// `secrets`.
    #[cfg(any(target_arch = "wasm32", test))]
    pub(crate) fn with_secrets(
        lookup: &'a dyn Fn(&str) -> Option<String>,
        profile: Option<&'a Profile>,
        secrets: SecretReader<'a>,
    ) -> Self {
        Self {
            lookup,
            profile,
            secrets: Some(secrets),
        }
    }

    /// The profile read for, if any.
    pub(crate) fn profile(&self) -> Option<&'a Profile> {
        self.profile
    }

    /// The name the Worker reads `setting` under for this profile (`BILLING_OAUTH_SCOPE`).
    pub(crate) fn name(&self, setting: &'static str) -> Cow<'static, str> {
        match self.profile {
            Some(p) => Cow::Owned(format!("{}{setting}", p.prefix())),
            None => Cow::Borrowed(setting),
        }
    }

    fn read(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.trim().is_empty())
    }

    /// The raw value of `setting` (empty counts as unset), with the name it was read under:
    /// the profile's own, else (for [`SHARED`] settings) the unprefixed one. An unprefixed
    /// [`OWN`] setting that the profile would otherwise lack is an error, never borrowed.
    pub(crate) fn get(&self, setting: &'static str) -> Result<Option<(Cow<'static, str>, String)>> {
        // Every read passes here: a setting missing from the tables would be reported as
        // unknown by the Workers that use it.
        debug_assert!(
            OWN.contains(&setting) || SHARED.contains(&setting),
            "{setting} is in neither table"
        );
        let Some(profile) = self.profile else {
            return Ok(self.read(setting).map(|v| (Cow::Borrowed(setting), v)));
        };
        let own = self.name(setting);
        if let Some(value) = self.read(&own) {
            return Ok(Some((own, value)));
        }
        if SHARED.contains(&setting) {
            return Ok(self.read(setting).map(|v| (Cow::Borrowed(setting), v)));
        }
        let harmless = |v: &String| {
            OFF_IS_HARMLESS.contains(&setting) && v.trim().eq_ignore_ascii_case("false")
        };
        if self.read(setting).is_some_and(|v| !harmless(&v)) {
            return Err(Error::config(
                setting,
                format!(
                    "is set, but with {PROFILES_SETTING} each profile sets its own (here \
                     {own}, for the profile `{}`): a profile never takes its token endpoint, \
                     client, credential, scope or upstream from the unprefixed settings",
                    profile.name()
                ),
            ));
        }
        Ok(None)
    }

    /// Refuses `setting` when it is set but blank (empty, or only whitespace such as the newline
    /// of `echo "$EMPTY" | wrangler secret put`), under the profile's own name or, where the
    /// profile would take it, the unprefixed one. For settings whose absence turns a check off
    /// (`PROXY_SHARED_SECRET`): a blank one must fail closed, never read as "not set".
    pub(crate) fn refuse_blank(&self, setting: &'static str) -> Result<()> {
        let own = self.name(setting);
        let inherited = self.profile.is_none() || SHARED.contains(&setting);
        let name = match (self.lookup)(&own) {
            Some(v) if v.trim().is_empty() => own,
            // The profile's own value is what counts, whatever the unprefixed one holds.
            Some(_) => return Ok(()),
            None if inherited && (self.lookup)(setting).is_some_and(|v| v.trim().is_empty()) => {
                Cow::Borrowed(setting)
            }
            None => return Ok(()),
        };
        Err(Error::config(
            name,
            "is set but blank (a newline from `echo \"$EMPTY\" | wrangler secret put`?): \
             give it a value, or delete the setting",
        ))
    }

    /// Like [`Self::get`], trimmed: for plain vars.
    pub(crate) fn var(&self, setting: &'static str) -> Result<Option<(Cow<'static, str>, String)>> {
        Ok(self.get(setting)?.map(|(n, v)| (n, v.trim().to_owned())))
    }

    /// A trimmed var that must be set; the error names the profile's own setting.
    pub(crate) fn require(&self, setting: &'static str) -> Result<(Cow<'static, str>, String)> {
        self.var(setting)?
            .ok_or_else(|| Error::config(self.name(setting), "is not set"))
    }

    /// A whole number from 0 to `max`, `default` when unset.
    pub(crate) fn number(&self, setting: &'static str, default: u64, max: u64) -> Result<u64> {
        match self.var(setting)? {
            None => Ok(default),
            Some((name, v)) => match v.parse::<u64>() {
                Ok(n) if n <= max => Ok(n),
                _ => Err(Error::config(
                    name,
                    format!("must be a whole number from 0 to {max}"),
                )),
            },
        }
    }

    /// `true` or `false` (any case), `default` when unset.
    pub(crate) fn flag(&self, setting: &'static str, default: bool) -> Result<bool> {
        match self.var(setting)? {
            None => Ok(default),
            Some((name, v)) => match v.to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(Error::config(name, "must be true or false")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn a_profile_reads_its_own_names_and_shares_only_tuning() {
        let l = lookup(&[
            ("BILLING_OAUTH_CLIENT_ID", "billing-client"),
            ("OAUTH_TIMEOUT_MS", "1500"),
            ("CRM_OAUTH_TIMEOUT_MS", "900"),
            ("OAUTH_SCOPE", "everything"),
        ]);
        let billing = Profile::new("billing").unwrap();
        let crm = Profile::new("crm").unwrap();
        let b = Settings::new(&l, Some(&billing));
        let c = Settings::new(&l, Some(&crm));
        assert_eq!(
            b.get("OAUTH_CLIENT_ID").unwrap(),
            Some(("BILLING_OAUTH_CLIENT_ID".into(), "billing-client".into()))
        );
        assert_eq!(b.number("OAUTH_TIMEOUT_MS", 10, 99_999).unwrap(), 1500);
        assert_eq!(c.number("OAUTH_TIMEOUT_MS", 10, 99_999).unwrap(), 900);
        // Never another's identity: unset, or refused when an unprefixed one lies around.
        assert_eq!(c.get("OAUTH_CLIENT_ID").unwrap(), None);
        let err = b.get("OAUTH_SCOPE").unwrap_err().to_string();
        assert!(
            err.contains("OAUTH_SCOPE: is set, but with M2M_PROFILES")
                && err.contains("BILLING_OAUTH_SCOPE")
                && !err.contains("everything"),
            "{err}"
        );
        let err = c.require("OAUTH_CLIENT_ID").unwrap_err().to_string();
        assert!(err.contains("CRM_OAUTH_CLIENT_ID: is not set"), "{err}");
        // Without profiles, the plain names.
        let plain = Settings::new(&l, None);
        assert_eq!(plain.var("OAUTH_SCOPE").unwrap().unwrap().1, "everything");
    }

    #[test]
    fn an_unprefixed_false_for_an_off_by_default_flag_is_no_error() {
        let l = lookup(&[("PROXY_EXPOSE_AUTHORIZATION", "False")]);
        let billing = Profile::new("billing").unwrap();
        let b = Settings::new(&l, Some(&billing));
        assert!(!b.flag("PROXY_EXPOSE_AUTHORIZATION", false).unwrap());
        let l = lookup(&[("PROXY_EXPOSE_AUTHORIZATION", "true")]);
        let b = Settings::new(&l, Some(&billing));
        assert!(b.flag("PROXY_EXPOSE_AUTHORIZATION", false).is_err());
    }

    #[test]
    fn a_blank_setting_is_refused_by_the_name_it_is_read_under() {
        let billing = Profile::new("billing").unwrap();
        for (pairs, profile, named) in [
            (
                &[("PROXY_SHARED_SECRET", "\n")][..],
                None,
                Some("PROXY_SHARED_SECRET"),
            ),
            (
                &[("PROXY_SHARED_SECRET", "")][..],
                None,
                Some("PROXY_SHARED_SECRET"),
            ),
            (
                &[("BILLING_PROXY_SHARED_SECRET", "   ")][..],
                Some(&billing),
                Some("BILLING_PROXY_SHARED_SECRET"),
            ),
            (
                &[("PROXY_SHARED_SECRET", " \n")][..],
                Some(&billing),
                Some("PROXY_SHARED_SECRET"),
            ),
            (&[("PROXY_SHARED_SECRET", "set")][..], None, None),
            (&[][..], Some(&billing), None),
        ] {
            let l = lookup(pairs);
            let r = Settings::new(&l, profile).refuse_blank("PROXY_SHARED_SECRET");
            match named {
                None => assert!(r.is_ok(), "{pairs:?}"),
                Some(name) => {
                    let err = r.unwrap_err().to_string();
                    assert!(err.contains(&format!("{name}: is set but blank")), "{err}");
                }
            }
        }
    }

    #[test]
    fn every_setting_is_in_exactly_one_table() {
        for s in OWN {
            assert!(!SHARED.contains(s), "{s}");
        }
        for s in WORKER {
            assert!(!OWN.contains(s) && !SHARED.contains(s), "{s}");
        }
    }
}
