//! The vars and secrets under the crate's prefixes that it does not read, named in the log
//! once per isolate (see [`crate::settings::unknown`]): a mistyped `OAUTH_SCOPES` is noticed,
//! not run as if it were absent. Never an error, never a value.

use worker::Env;

use crate::base::log;
use crate::edge::isolate;
use crate::edge::platform::bindings::{COORDINATOR_BINDING, KV_BINDING, METRICS_BINDING};
use crate::edge::platform::env::var_names;
use crate::edge::platform::js::log_line;
use crate::settings::profile::Profile;
use crate::settings::unknown::unknown_settings;

/// Logs each setting of `env` that neither the Worker's nor a listed profile's configuration
/// (`profiles`, as `M2M_PROFILES` lists them) reads, on the isolate's first read of them; every
/// later call costs one flag. Called where the configurations of an `env` are first parsed,
/// which every entry (the proxy's fetch and RPC, `TokenClient`) passes.
pub(crate) fn notice_unknown(env: &Env, profiles: &[Profile]) {
    if isolate::with(|i| i.said_unknown_settings.replace(true)) {
        return;
    }
    let names = var_names(env);
    // Bindings (the Secrets Store's that settings name too) are objects, never in `names`; a
    // var a local setup stands in for one of the crate's own bindings is no setting either.
    let skip = [KV_BINDING, COORDINATOR_BINDING, METRICS_BINDING];
    for unknown in unknown_settings(names.iter().map(String::as_str), profiles, &skip) {
        log_line(&log::unknown_setting(
            unknown.setting,
            unknown.nearest.as_deref(),
        ));
    }
}
