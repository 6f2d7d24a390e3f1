//! A configuration as `env` holds it: its vars and secrets by name, and the Secrets Store
//! credentials they name as this isolate last read them ([`secrets::cached`]). Used by the
//! configurations of an `env`, the coordinator and the credentials port alike.

use worker::Env;

use crate::base::error::Result;
use crate::config::client::Config;
use crate::edge::platform::env::env_string;
use crate::edge::platform::secrets;
use crate::settings::lookup::Settings;
use crate::settings::profile::{choose_profile, parse_profiles, Profile, PROFILES_SETTING};

/// The token settings of `profile` (`None`: the unprefixed ones) as `env` has them now.
pub(crate) fn read_config(env: &Env, profile: Option<&str>) -> Result<Config> {
    let profiles = parse_profiles(env_string(env, PROFILES_SETTING))?;
    config_of(env, choose_profile(profiles.as_deref(), profile)?)
}

/// `env`'s token settings for `profile`: vars and secrets by name, Secrets Store credentials
/// as this isolate last read them ([`secrets::cached`]).
pub(crate) fn config_of(env: &Env, profile: Option<&Profile>) -> Result<Config> {
    let lookup = |name: &str| env_string(env, name);
    Config::from_settings(&settings_of(&lookup, profile))
}

/// Settings read through `lookup` for `profile`, with Secrets Store credentials as this isolate
/// last read them.
pub(crate) fn settings_of<'a>(
    lookup: &'a dyn Fn(&str) -> Option<String>,
    profile: Option<&'a Profile>,
) -> Settings<'a> {
    Settings::with_secrets(lookup, profile, &secrets::cached)
}
