//! Reading Worker vars and secrets by name, and listing their names.

use std::cell::RefCell;

use wasm_bindgen::{JsCast, JsValue};
use worker::Env;

/// A value derived from `env` and remembered for the last `env` object seen. workerd hands every
/// request of an isolate the same `env` object, so the hot path compares one reference instead of
/// re-reading and re-parsing every setting; a different `env` is parsed afresh.
pub(crate) struct PerEnv<T>(RefCell<Option<(JsValue, T)>>);

impl<T: Clone> Default for PerEnv<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone> PerEnv<T> {
    /// Nothing remembered yet.
    pub(crate) const fn new() -> Self {
        Self(RefCell::new(None))
    }

    /// Forgets what was remembered: the next [`Self::get_or_try`] makes it afresh.
    pub(crate) fn clear(&self) {
        self.0.borrow_mut().take();
    }

    /// The value for `env`: remembered, or made by `make` (and remembered when it succeeds).
    pub(crate) fn get_or_try<E>(
        &self,
        env: &Env,
        make: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        let env_js: &JsValue = env;
        let cached = self
            .0
            .borrow()
            .as_ref()
            .filter(|(seen, _)| js_sys::Object::is(seen, env_js))
            .map(|(_, value)| value.clone());
        if let Some(value) = cached {
            return Ok(value);
        }
        let value = make()?;
        *self.0.borrow_mut() = Some((env_js.clone(), value.clone()));
        Ok(value)
    }
}

/// The value of a var or secret as text, `None` when unset.
///
/// Wrangler passes `[vars]` written as TOML numbers or booleans (`OAUTH_TIMEOUT_MS = 3000`) as
/// JS numbers and booleans: they are read as their text, not ignored. Any other non-string value
/// becomes text that fails the setting's own parsing, so the error names the setting.
pub(crate) fn env_string(env: &Env, name: &str) -> Option<String> {
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

/// The names of `env`'s vars and secrets: its entries that are not objects (text, or the
/// numbers and booleans of TOML `[vars]`, which [`env_string`] reads as settings too). Bindings
/// (KV, Durable Objects, Analytics Engine, Secrets Store, services) are objects and are left
/// out. Values are looked at for their type only: nothing but names leaves here.
pub(crate) fn var_names(env: &Env) -> Vec<String> {
    let env: &JsValue = env;
    let keys = js_sys::Object::keys(env.unchecked_ref::<js_sys::Object>());
    let mut out = Vec::new();
    for i in 0..keys.length() {
        let key = keys.get(i);
        let var =
            js_sys::Reflect::get(env, &key).is_ok_and(|v| !(v.is_object() || v.is_function()));
        if let (true, Some(name)) = (var, key.as_string()) {
            out.push(name);
        }
    }
    out
}
