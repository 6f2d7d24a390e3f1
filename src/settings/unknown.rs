//! Settings the Worker has that the crate never reads: a mistyped name (`OAUTH_SCOPES` for
//! `OAUTH_SCOPE`) or one from a newer version would otherwise run as if it were absent. Each
//! is named once in the log with the nearest setting the crate does read; never an error, and
//! never with its value (only names come in here).
//!
//! A name counts when it starts with one of the crate's prefixes: the first word of every known
//! setting (`OAUTH_`, `PROXY_`, `M2M_`, `TOKEN_`, `UPSTREAM_`), or a listed profile's
//! (`BILLING_`). Under a profile's prefix it counts when the rest starts with one of the
//! crate's (`BILLING_OAUTH_SCOPES`) or comes close to a profile setting
//! (`BILLING_OUATH_SCOPE`): a Worker's own `BILLING_API` is its business. Names are compared
//! as written (settings are case-sensitive).
//!
//! The known names are the tables of [`crate::settings::lookup`], the one list of what is read.
//! An unprefixed profile setting next to `M2M_PROFILES` is known here: where it is refused,
//! reading the profile says so.

use crate::settings::lookup::{OWN, SHARED, WORKER};
use crate::settings::profile::Profile;

/// A setting under the crate's prefixes that it does not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unknown<'a> {
    /// The name as the Worker has it.
    pub(crate) setting: &'a str,
    /// The known setting it is closest to, when one is close enough to be the likely intent.
    pub(crate) nearest: Option<String>,
}

/// Every setting a profile reads under its prefix.
const PROFILE_TABLES: &[&[&str]] = &[OWN, SHARED];

/// Every setting read under its own name: the Worker's, and (without profiles, or as what
/// profiles share) the profile settings.
const UNPREFIXED_TABLES: &[&[&str]] = &[WORKER, OWN, SHARED];

fn known_in(tables: &[&[&str]], name: &str) -> bool {
    tables.iter().any(|t| t.contains(&name))
}

/// The length of the crate's prefix that `name` starts with (6 for `OAUTH_`), 0 for none. The
/// prefixes are the first words of the known settings, each with its `_`.
fn prefix_len(name: &str) -> usize {
    for table in UNPREFIXED_TABLES {
        for setting in table.iter() {
            let setting = setting.as_bytes();
            if let Some(i) = setting.iter().position(|&b| b == b'_') {
                if name.as_bytes().starts_with(&setting[..=i]) {
                    return i + 1;
                }
            }
        }
    }
    0
}

/// The settings of `env` (by `names`, its vars and secrets) that the crate does not read,
/// given the profiles `M2M_PROFILES` lists, in the order of `names`. `skip`: names that are
/// never reported (bindings a var may stand in for).
pub(crate) fn unknown_settings<'a>(
    names: impl IntoIterator<Item = &'a str>,
    profiles: &[Profile],
    skip: &[&str],
) -> Vec<Unknown<'a>> {
    let mut out = Vec::new();
    'names: for name in names {
        if skip.contains(&name) || known_in(UNPREFIXED_TABLES, name) {
            continue;
        }
        let mut ours = prefix_len(name) > 0;
        // The closest reading of the name: (distance, profile prefix or "", setting).
        let mut best: Option<(usize, &'a str, &'static str)> = None;
        if ours {
            best = nearest(name, UNPREFIXED_TABLES).map(|(d, setting)| (d, "", setting));
        }
        for profile in profiles {
            let Some(rest) = name.strip_prefix(profile.prefix()) else {
                continue;
            };
            if known_in(PROFILE_TABLES, rest) {
                continue 'names;
            }
            ours |= prefix_len(rest) > 0;
            if let Some((d, setting)) = nearest(rest, PROFILE_TABLES) {
                ours = true;
                if best.is_none_or(|(b, _, _)| d < b) {
                    best = Some((d, &name[..profile.prefix().len()], setting));
                }
            }
        }
        if ours {
            out.push(Unknown {
                setting: name,
                nearest: best.map(|(_, prefix, setting)| [prefix, setting].concat()),
            });
        }
    }
    out
}

/// The setting of `tables` closest to `rest` (and how far) if it is close enough: at most a
/// third of what follows the crate's prefix in `rest` (at least one edit), so `OAUTH_SCOPES`
/// finds `OAUTH_SCOPE` but `OAUTH_FOO` is no misspelt `OAUTH_DPOP`. The first of equals (in
/// the tables' order) wins.
fn nearest(rest: &str, tables: &[&[&'static str]]) -> Option<(usize, &'static str)> {
    let stem = rest.len() - prefix_len(rest);
    let limit = (stem / 3).max(1);
    let mut best: Option<(usize, &'static str)> = None;
    for table in tables {
        for &candidate in table.iter() {
            // Never closer than the difference in length: skips long names without work.
            if rest.len().abs_diff(candidate.len()) > limit {
                continue;
            }
            let d = distance(rest.as_bytes(), candidate.as_bytes());
            if d <= limit && best.is_none_or(|(b, _)| d < b) {
                best = Some((d, candidate));
            }
        }
    }
    best
}

/// Levenshtein distance (insertions, deletions, substitutions), by bytes: names are ASCII.
fn distance(a: &[u8], b: &[u8]) -> usize {
    // One row of the table at a time: `row[j]` is the distance from what `a` has been read
    // so far to `b[..=j]`; the column for an empty `b` is implicit (`i`, then `i + 1`).
    let mut row: Vec<usize> = (1..b.len() + 1).collect();
    for (i, &ca) in a.iter().enumerate() {
        let (mut diagonal, mut left) = (i, i + 1);
        for (cell, &cb) in row.iter_mut().zip(b) {
            let above = *cell;
            left = (diagonal + usize::from(ca != cb))
                .min(above + 1)
                .min(left + 1);
            *cell = left;
            diagonal = above;
        }
    }
    row.last().copied().unwrap_or(a.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profiles(names: &[&str]) -> Vec<Profile> {
        names.iter().map(|n| Profile::new(n).unwrap()).collect()
    }

    /// `(setting, nearest)` of each unknown name among `names`.
    fn noticed<'a>(names: &[&'a str], listed: &[&str]) -> Vec<(&'a str, Option<String>)> {
        unknown_settings(names.iter().copied(), &profiles(listed), &[])
            .into_iter()
            .map(|u| (u.setting, u.nearest))
            .collect()
    }

    fn one(name: &str, listed: &[&str]) -> Option<Option<String>> {
        let found = noticed(&[name], listed);
        assert!(found.len() <= 1);
        found.into_iter().next().map(|(_, n)| n)
    }

    #[test]
    fn the_prefixes_are_the_first_words_of_the_known_settings() {
        let mut found: Vec<&str> = UNPREFIXED_TABLES
            .iter()
            .flat_map(|t| t.iter())
            .map(|s| &s[..prefix_len(s)])
            .collect();
        found.sort_unstable();
        found.dedup();
        assert_eq!(found, ["M2M_", "OAUTH_", "PROXY_", "TOKEN_", "UPSTREAM_"]);
        for (name, len) in [
            ("OAUTH_X", 6),
            ("UPSTREAM_", 9),
            ("OAUTH", 0),
            ("API_KEY", 0),
        ] {
            assert_eq!(prefix_len(name), len, "{name}");
        }
    }

    #[test]
    fn a_typo_under_each_prefix_is_named_with_the_nearest_setting() {
        for (typo, want) in [
            ("OAUTH_SCOPES", "OAUTH_SCOPE"),
            ("OAUTH_CLIENTID", "OAUTH_CLIENT_ID"),
            ("OAUTH_CLEINT_SECRET", "OAUTH_CLIENT_SECRET"),
            ("OAUTH_TOKENURL", "OAUTH_TOKEN_URL"),
            ("PROXY_SHARED_SECERT", "PROXY_SHARED_SECRET"),
            ("PROXY_FORWARD_HEADER", "PROXY_FORWARD_HEADERS"),
            ("PROXY_PROFILES_FROM_PATH", "PROXY_PROFILE_FROM_PATH"),
            ("M2M_PROFILE", "M2M_PROFILES"),
            ("M2M_METRICS_INTERVAL", "M2M_METRICS_INTERVAL_SECS"),
            ("TOKEN_CACHE_KY", "TOKEN_CACHE_KEY"),
            ("UPSTREAM_ORIGN", "UPSTREAM_ORIGIN"),
            ("UPSTREAM_ORIGINS", "UPSTREAM_ORIGIN"),
        ] {
            assert_eq!(one(typo, &[]), Some(Some(want.to_owned())), "{typo}");
        }
    }

    #[test]
    fn a_profile_prefixed_typo_is_named_with_the_profile_setting() {
        let listed = ["billing", "eu-crm"];
        for (typo, want) in [
            ("BILLING_OAUTH_SCOPES", "BILLING_OAUTH_SCOPE"),
            ("BILLING_OUATH_SCOPE", "BILLING_OAUTH_SCOPE"),
            ("EU_CRM_UPSTREAM_ORIGN", "EU_CRM_UPSTREAM_ORIGIN"),
            ("EU_CRM_OAUTH_TIMEOUT_SM", "EU_CRM_OAUTH_TIMEOUT_MS"),
        ] {
            assert_eq!(one(typo, &listed), Some(Some(want.to_owned())), "{typo}");
        }
        // A Worker setting is not a profile's: named, with no profile setting near it.
        assert_eq!(one("BILLING_M2M_PROFILES", &listed), Some(None));
        // Under no listed profile's prefix (here a misspelt profile): not the crate's.
        assert_eq!(one("BILING_OAUTH_SCOPE", &listed), None);
        // Without M2M_PROFILES, BILLING_ is nobody's prefix.
        assert_eq!(one("BILLING_OAUTH_SCOPES", &[]), None);
    }

    #[test]
    fn known_names_bindings_and_a_workers_own_settings_are_not_reported() {
        let listed = ["billing"];
        let mut names: Vec<String> = UNPREFIXED_TABLES
            .iter()
            .flat_map(|t| t.iter())
            .map(|s| s.to_string())
            .collect();
        for table in PROFILE_TABLES {
            names.extend(table.iter().map(|s| format!("BILLING_{s}")));
        }
        // The Worker's own settings under a profile's prefix, or under none of the crate's.
        names.extend(
            [
                "BILLING_API",
                "BILLING_URL",
                "API_KEY",
                "LOG_LEVEL",
                "oauth_scope",
            ]
            .map(String::from),
        );
        let found = unknown_settings(names.iter().map(String::as_str), &profiles(&listed), &[]);
        assert!(found.is_empty(), "{found:?}");
        // Bindings a var may shadow are the caller's to skip.
        let skip = ["M2M_CLIENT_SECRET", "TOKEN_CACHE"];
        let found = unknown_settings(["M2M_CLIENT_SECRET", "TOKEN_CACHE"], &[], &skip);
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn an_unprefixed_profile_setting_next_to_profiles_is_known_here() {
        // Set next to M2M_PROFILES it is a configuration error of its own: not noticed twice.
        assert_eq!(one("OAUTH_CLIENT_SECRET", &["billing"]), None);
    }

    #[test]
    fn a_profile_prefix_that_is_also_the_crates_is_read_both_ways() {
        let listed = ["token", "oauth"];
        for known in [
            "TOKEN_CACHE_KEY",
            "TOKEN_OAUTH_SCOPE",
            "OAUTH_OAUTH_SCOPE",
            "OAUTH_SCOPE",
        ] {
            assert_eq!(one(known, &listed), None, "{known}");
        }
        assert_eq!(
            one("TOKEN_OAUTH_SCOPES", &listed),
            Some(Some("TOKEN_OAUTH_SCOPE".into()))
        );
        assert_eq!(
            one("TOKEN_CACHE_KEYS", &listed),
            Some(Some("TOKEN_CACHE_KEY".into()))
        );
        assert_eq!(
            one("OAUTH_UPSTREAM_ORIGN", &listed),
            Some(Some("OAUTH_UPSTREAM_ORIGIN".into()))
        );
    }

    #[test]
    fn nothing_close_is_named_without_a_nearest() {
        for far in [
            "OAUTH_FOO",
            "OAUTH_X",
            "PROXY_MODE",
            "M2M_",
            "TOKEN_",
            "UPSTREAM_HOST",
        ] {
            assert_eq!(one(far, &[]), Some(None), "{far}");
        }
        assert_eq!(one("BILLING_OAUTH_FOO", &["billing"]), Some(None));
    }

    #[test]
    fn the_nearest_is_the_closest() {
        // One edit from OAUTH_DPOP, two from OAUTH_DPOP_KEY.
        assert_eq!(one("OAUTH_DPOPS", &[]), Some(Some("OAUTH_DPOP".into())));
        assert_eq!(
            one("OAUTH_DPOP_KY", &[]),
            Some(Some("OAUTH_DPOP_KEY".into()))
        );
        assert_eq!(distance(b"OAUTH_SCOPES", b"OAUTH_SCOPE"), 1);
        assert_eq!(distance(b"kitten", b"sitting"), 3);
        assert_eq!(distance(b"", b"abc"), 3);
        assert_eq!(distance(b"abc", b"abc"), 0);
        assert_eq!(distance(b"abc", b""), 3);
        assert_eq!(distance(b"flaw", b"lawn"), 2);
    }

    #[test]
    fn names_come_out_in_order_and_only_names() {
        let found = noticed(
            &[
                "OAUTH_SCOPES",
                "OAUTH_CLIENT_ID",
                "PROXY_X",
                "BILLING_OAUTH_SCOPES",
            ],
            &["billing"],
        );
        assert_eq!(
            found,
            [
                ("OAUTH_SCOPES", Some("OAUTH_SCOPE".into())),
                ("PROXY_X", None),
                ("BILLING_OAUTH_SCOPES", Some("BILLING_OAUTH_SCOPE".into())),
            ]
        );
    }

    #[test]
    fn a_long_name_costs_no_table_walk() {
        let long = format!("OAUTH_{}", "X".repeat(10_000));
        assert_eq!(one(&long, &[]), Some(None));
    }
}
