//! The Worker's configurations as read from `env`: its unprefixed settings, or each profile that
//! `M2M_PROFILES` lists (see [`crate::settings::lookup`]). Parsed once per `env` object and per profile,
//! so the hot path is a reference comparison and a map lookup. The first parse of an isolate
//! also names the settings none of them reads ([`crate::edge::assembly::unknown`]).

use std::cell::RefCell;
use std::rc::Rc;

use worker::Env;

use crate::base::error::Result;
use crate::edge::assembly::registry;
use crate::edge::assembly::settings::config_of;
#[cfg(feature = "proxy")]
use crate::edge::assembly::settings::settings_of;
use crate::edge::assembly::unknown::notice_unknown;
use crate::edge::isolate::{self, Configs, Registered};
use crate::edge::platform::bindings::KV_BINDING;
use crate::edge::platform::env::env_string;
use crate::edge::platform::kv::KvNamespace;
#[cfg(feature = "proxy")]
use crate::proxy::config::ProxyConfig;
use crate::settings::profile::{choose_profile, parse_profiles, Profile, PROFILES_SETTING};

/// Key of the unprefixed configuration in the maps below (a profile name is never empty).
const UNPREFIXED: &str = "";

fn find<T: Clone>(list: &RefCell<Vec<(String, T)>>, key: &str) -> Option<T> {
    list.borrow()
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}

/// The configurations of `env`.
pub(crate) fn configs(env: &Env) -> Result<Rc<Configs>> {
    isolate::with(|i| {
        i.envs.get_or_try(env, || {
            let profiles = parse_profiles(env_string(env, PROFILES_SETTING))?;
            notice_unknown(env, profiles.as_deref().unwrap_or_default());
            Ok(Rc::new(Configs {
                profiles,
                sources: RefCell::default(),
                #[cfg(feature = "proxy")]
                proxies: RefCell::default(),
            }))
        })
    })
}

impl Configs {
    /// Whether the Worker has profiles, and so whether the proxy routes by path.
    #[cfg(feature = "proxy")]
    pub(crate) fn profiled(&self) -> bool {
        self.profiles.is_some()
    }

    /// Whether `name` is one of the listed profiles.
    #[cfg(feature = "proxy")]
    pub(crate) fn has(&self, name: &str) -> bool {
        self.profiles
            .as_deref()
            .is_some_and(|list| list.iter().any(|p| p.name() == name))
    }

    fn profile(&self, wanted: Option<&str>) -> Result<Option<&Profile>> {
        choose_profile(self.profiles.as_deref(), wanted)
    }

    /// The token source of `profile` (`None`: the unprefixed settings), made on first use.
    /// A configuration error is not remembered: the next call reads the settings again.
    pub(crate) fn source(&self, env: &Env, profile: Option<&str>) -> Result<Registered> {
        let key = profile.unwrap_or(UNPREFIXED);
        if let Some(source) = find(&self.sources, key) {
            return Ok(source);
        }
        let config = config_of(env, self.profile(profile)?)?;
        let source = registry::source(config, KvNamespace::from_env(env, KV_BINDING), Some(env));
        self.sources
            .borrow_mut()
            .push((key.to_owned(), source.clone()));
        Ok(source)
    }

    /// The proxy settings of `profile` (`None`: the unprefixed ones), read on first use.
    #[cfg(feature = "proxy")]
    pub(crate) fn proxy(&self, env: &Env, profile: Option<&str>) -> Result<Rc<ProxyConfig>> {
        let key = profile.unwrap_or(UNPREFIXED);
        if let Some(proxy) = find(&self.proxies, key) {
            return Ok(proxy);
        }
        let lookup = |name: &str| env_string(env, name);
        let settings = settings_of(&lookup, self.profile(profile)?);
        let proxy = Rc::new(ProxyConfig::from_settings(&settings)?);
        self.proxies
            .borrow_mut()
            .push((key.to_owned(), proxy.clone()));
        Ok(proxy)
    }
}
