//! Reading Worker vars and secrets by name.

use worker::Env;

/// The value of a var or secret as text, `None` when unset.
///
/// Wrangler passes `[vars]` written as TOML numbers or booleans (`OAUTH_TIMEOUT_MS = 3000`) as
/// JS numbers and booleans: they are read as their text, not ignored. Any other non-string value
/// becomes text that fails the setting's own parsing, so the error names the setting.
pub fn env_string(env: &Env, name: &str) -> Option<String> {
    let value = js_sys::Reflect::get(env, &name.into()).ok()?;
    if value.is_undefined() || value.is_null() {
        return None;
    }
    if let Some(s) = value.as_string() {
        return Some(s);
    }
    if let Some(n) = value.as_f64() {
        return Some(if n.fract() == 0.0 && n.abs() < 1e15 {
            format!("{}", n as i64)
        } else {
            n.to_string()
        });
    }
    if let Some(b) = value.as_bool() {
        return Some(b.to_string());
    }
    Some("[a non-string value]".into())
}
