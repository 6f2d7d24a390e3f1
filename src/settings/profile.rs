//! Named credential profiles (`M2M_PROFILES`): their names, the prefix each reads its settings
//! with, and choosing one. What a profile reads under that prefix is [`crate::settings::lookup`].

use crate::base::error::{Error, Result};

/// The setting that lists the profiles.
pub const PROFILES_SETTING: &str = "M2M_PROFILES";

/// Most profiles one Worker may list: each is a token source (and a coordinator object) of its
/// own, and the isolate keeps [`crate::TokenClient`]'s sources for all of them in memory.
#[cfg(any(target_arch = "wasm32", test))]
pub(crate) const MAX_PROFILES: usize = 32;

/// Longest profile name: it becomes a path segment and a prefix of setting names.
pub(crate) const MAX_PROFILE_NAME: usize = 40;

/// A named credential profile from `M2M_PROFILES`: lowercase letters, digits and `-`, starting
/// with a letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Profile {
    name: String,
    prefix: String,
}

impl Profile {
    /// The profile `name`, checked. The error names `M2M_PROFILES` and quotes the name (a name
    /// is not a secret).
    pub fn new(name: &str) -> Result<Self> {
        let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        let valid = name.len() <= MAX_PROFILE_NAME
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && !name.ends_with('-')
            && name.chars().all(ok_char);
        if !valid {
            return Err(Error::config(
                PROFILES_SETTING,
                format!(
                    "`{}` is not a profile name: lowercase letters, digits and `-`, starting \
                     with a letter, at most {MAX_PROFILE_NAME} characters",
                    name.escape_debug()
                ),
            ));
        }
        let prefix = format!("{}_", name.to_ascii_uppercase().replace('-', "_"));
        Ok(Self {
            name: name.to_owned(),
            prefix,
        })
    }

    /// The name, as in `M2M_PROFILES` and the proxy's first path segment.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The prefix of its settings: `BILLING_` for `billing`, `EU_CRM_` for `eu-crm`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

/// Parses `M2M_PROFILES`: comma-separated names (spaces around them allowed). `None` when unset.
#[cfg(any(target_arch = "wasm32", test))]
pub(crate) fn parse_profiles(raw: Option<String>) -> Result<Option<Vec<Profile>>> {
    let Some(raw) = raw.filter(|r| !r.trim().is_empty()) else {
        return Ok(None);
    };
    let mut out: Vec<Profile> = Vec::new();
    for name in raw.split(',').map(str::trim) {
        if name.is_empty() {
            return Err(Error::config(PROFILES_SETTING, "has an empty name"));
        }
        let profile = Profile::new(name)?;
        // `a-b` and `a_b` cannot both exist (`_` is refused), but two names with one prefix
        // would read each other's secrets: compare prefixes, not names.
        if out.iter().any(|p| p.prefix == profile.prefix) {
            return Err(Error::config(
                PROFILES_SETTING,
                format!("lists `{name}` twice"),
            ));
        }
        out.push(profile);
    }
    if out.len() > MAX_PROFILES {
        return Err(Error::config(
            PROFILES_SETTING,
            format!("lists more than {MAX_PROFILES} profiles"),
        ));
    }
    Ok(Some(out))
}

/// The profile named `wanted` among `profiles` (as [`parse_profiles`] read them), or `None` for
/// the unprefixed settings; an error names `M2M_PROFILES` when the two do not fit together.
#[cfg(any(target_arch = "wasm32", test))]
pub(crate) fn choose_profile<'a>(
    profiles: Option<&'a [Profile]>,
    wanted: Option<&str>,
) -> Result<Option<&'a Profile>> {
    match (profiles, wanted) {
        (None, None) => Ok(None),
        (Some(list), Some(name)) => {
            list.iter()
                .find(|p| p.name() == name)
                .map(Some)
                .ok_or_else(|| {
                    Error::config(
                        PROFILES_SETTING,
                        format!("does not list the profile `{}`", name.escape_debug()),
                    )
                })
        }
        (Some(_), None) => Err(Error::config(
            PROFILES_SETTING,
            "is set: every configuration is a profile, so choose one \
             (TokenClient::for_profile, or the proxy's first path segment)",
        )),
        (None, Some(name)) => Err(Error::config(
            PROFILES_SETTING,
            format!(
                "is not set, so there is no profile `{}`",
                name.escape_debug()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_names_and_prefixes() {
        let ps = parse_profiles(Some(" billing, eu-crm2 ,a".into()))
            .unwrap()
            .unwrap();
        let got: Vec<_> = ps.iter().map(|p| (p.name(), p.prefix())).collect();
        assert_eq!(
            got,
            [
                ("billing", "BILLING_"),
                ("eu-crm2", "EU_CRM2_"),
                ("a", "A_")
            ]
        );
        assert_eq!(parse_profiles(None).unwrap(), None);
        assert_eq!(parse_profiles(Some("  ".into())).unwrap(), None);
    }

    #[test]
    fn bad_profile_lists_name_the_setting() {
        let long = "a".repeat(MAX_PROFILE_NAME + 1);
        let many = (0..=MAX_PROFILES)
            .map(|i| format!("p{i}"))
            .collect::<Vec<_>>()
            .join(",");
        for (raw, want) in [
            ("Billing", "`Billing` is not a profile name"),
            ("billing_eu", "`billing_eu` is not a profile name"),
            ("1st", "`1st` is not a profile name"),
            ("crm-", "`crm-` is not a profile name"),
            ("a/b", "`a/b` is not a profile name"),
            ("billing,,crm", "has an empty name"),
            ("billing,crm,billing", "lists `billing` twice"),
            (long.as_str(), "is not a profile name"),
            (many.as_str(), "more than 32 profiles"),
        ] {
            let err = parse_profiles(Some(raw.into())).unwrap_err().to_string();
            assert!(
                err.starts_with("configuration error: M2M_PROFILES: ") && err.contains(want),
                "{raw}: {err}"
            );
        }
    }

    #[test]
    fn a_profile_is_chosen_explicitly() {
        let list = parse_profiles(Some("billing,crm".into())).unwrap().unwrap();
        assert_eq!(
            choose_profile(Some(&list), Some("crm"))
                .unwrap()
                .map(Profile::name),
            Some("crm")
        );
        assert_eq!(choose_profile(None, None).unwrap(), None);
        for (profiles, wanted, want) in [
            (
                Some(&list[..]),
                Some("hr"),
                "M2M_PROFILES: does not list the profile `hr`",
            ),
            (
                Some(&list[..]),
                None,
                "M2M_PROFILES: is set: every configuration is a profile",
            ),
            (
                None,
                Some("billing"),
                "M2M_PROFILES: is not set, so there is no profile `billing`",
            ),
        ] {
            let err = choose_profile(profiles, wanted).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
    }
}
