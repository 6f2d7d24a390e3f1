//! The names of the bindings a Worker may give us, and whether one is there.

use worker::Env;

/// Name of the KV binding used as the shared token cache.
pub const KV_BINDING: &str = "TOKEN_CACHE";

/// Name of the Durable Object binding of the fleet's coordinator.
pub const COORDINATOR_BINDING: &str = "TOKEN_COORDINATOR";

/// Whether `env` has a binding (an object) called `name`.
pub(crate) fn bound(env: &Env, name: &str) -> bool {
    js_sys::Reflect::get(env, &name.into()).is_ok_and(|b| b.is_object())
}

/// Name of the optional Workers Analytics Engine dataset binding that metrics are written to.
pub const METRICS_BINDING: &str = "M2M_METRICS";
