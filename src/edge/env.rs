//! Reading Worker vars and secrets by name.

use worker::Env;

/// The string value of a var or secret, `None` when unset or not a string.
pub fn env_string(env: &Env, name: &str) -> Option<String> {
    js_sys::Reflect::get(env, &name.into()).ok()?.as_string()
}
