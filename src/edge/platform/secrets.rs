//! Secrets Store secrets that credential settings name (`secrets-store:<BINDING>`, see
//! [`crate::settings::secrets`]): read at run time, kept per isolate for
//! [`SECRET_TTL_SECS`](crate::settings::secrets::SECRET_TTL_SECS), and read again at once when asked (the token endpoint refused the
//! credential). Settings then read the isolate's copy synchronously ([`cached`]): the proxy's
//! hot path never waits for the store; the full path, RPC and `TokenClient::load` wait for one
//! read (at most [`READ_TIMEOUT_MS`]) when the copy is due, once a minute per isolate.

use std::rc::Rc;

use wasm_bindgen::prelude::*;
use worker::Env;

use crate::base::log;
use crate::edge::isolate;
use crate::edge::platform::js::settle;
use crate::settings::secrets::{after_read, binding_in, is_credential_setting, Stored, Unread};

/// Bound on one read: a store that does not answer leaves the value this isolate has (for a
/// bounded grace, see [`crate::settings::secrets::after_read`]).
pub(crate) const READ_TIMEOUT_MS: u64 = 2_000;

#[wasm_bindgen(inline_js = r#"
export function binding_names(env) {
  const out = [];
  for (const key of Object.keys(env)) {
    const v = env[key];
    if (typeof v === 'string' && v.trim().startsWith('secrets-store:')) out.push(key, v);
  }
  return out;
}
export function secrets_read(env, names, timeoutMs) {
  return Promise.all(names.map((name) => {
    const b = env[name];
    if (b === undefined || b === null || typeof b.get !== 'function') return ['which is not bound', true];
    let timer;
    const late = new Promise((resolve) => {
      timer = setTimeout(() => resolve([`whose secret could not be read within ${timeoutMs} ms`, false]), timeoutMs);
    });
    // The store's "not found" (a deleted secret) is final; any other failure may pass.
    const got = Promise.resolve().then(() => b.get()).then(
      (v) => (typeof v === 'string' ? [null, v] : ['whose secret is not text', true]),
      (e) => {
        const message = String(e?.message ?? e);
        return [`whose secret could not be read: ${message}`, /not found|does not exist|no such/i.test(message)];
      });
    return Promise.race([got, late]).finally(() => clearTimeout(timer));
  }));
}
"#)]
extern "C" {
    /// `[setting, value, setting, value, ...]` for every var of `env` naming the store. Strings,
    /// not a JS array: wasm-bindgen 0.2.130 hands an import whose types all pass through
    /// untouched to the wasm as its module's namespace, one object key per such import, so two
    /// of them in one module write the same key twice (esbuild's "Duplicate key" warning).
    fn binding_names(env: &JsValue) -> Vec<String>;
    /// `env[name].get()` for each of `names`, together, each bounded by `timeout_ms`: for each,
    /// `[null, value]`, or `[why not, gone]` (said after the binding's name; `gone`: the store
    /// or the Worker says there is no such secret, a final answer).
    fn secrets_read(env: &JsValue, names: js_sys::Array, timeout_ms: f64) -> js_sys::Promise;
}

/// When to read a binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Read {
    /// Only if this isolate has no value, or its value is older than [`SECRET_TTL_SECS`](crate::settings::secrets::SECRET_TTL_SECS).
    IfStale,
    /// Now, whatever this isolate holds.
    Now,
}

/// The bindings the credential settings of `env` name (remembered per `env` object).
fn bindings(env: &Env) -> Rc<Vec<String>> {
    isolate::with(|i| {
        i.secret_bindings
            .get_or_try(env, || {
                let pairs = binding_names(env);
                let mut out: Vec<String> = Vec::new();
                for pair in pairs.chunks_exact(2) {
                    let (setting, raw) = (&pair[0], &pair[1]);
                    if !is_credential_setting(setting) {
                        continue;
                    }
                    // A malformed name is reported when the setting is parsed.
                    if let Ok(Some(binding)) = binding_in(setting, raw) {
                        if !out.contains(&binding) {
                            out.push(binding);
                        }
                    }
                }
                Ok::<_, ()>(Rc::new(out))
            })
            .unwrap_or_default()
    })
}

/// Reads the bindings of `env` that are due, now: what every entry point does before it reads
/// a setting (see [`refresh`]).
pub(crate) async fn refresh_due(env: &Env) {
    refresh(env, crate::edge::platform::js::now_secs(), Read::IfStale).await;
}

/// Reads the bindings of `env` that `when` calls for; whether any value this isolate held
/// changed or was lost (then every configuration is read again on its next use: a rotated
/// client credential is taken in place by its token source, see `TokenSource::rotate`). See
/// [`after_read`] for what a failed read keeps.
pub(crate) async fn refresh(env: &Env, now: u64, when: Read) -> bool {
    let due: Vec<String> = bindings(env)
        .iter()
        .filter(|b| {
            when == Read::Now
                || isolate::with(|i| {
                    i.secrets
                        .borrow()
                        .find(|k| k == *b)
                        .is_none_or(|s| now >= s.next_read)
                })
        })
        .cloned()
        .collect();
    if due.is_empty() {
        return false;
    }
    // One read at a time per binding: calls meanwhile use the value held (a read that started
    // before a rotation must not finish after a newer one and put the old value back).
    isolate::with(|i| {
        let mut secrets = i.secrets.borrow_mut();
        for binding in &due {
            if let Some(held) = secrets.find_mut(|k| k == binding) {
                held.next_read = now + READ_TIMEOUT_MS.div_ceil(1000) + 1;
            }
        }
    });
    let names: js_sys::Array = due.iter().map(|b| JsValue::from_str(b)).collect();
    let read = settle(Ok(secrets_read(env, names, READ_TIMEOUT_MS as f64))).await;
    let reads: Vec<Result<String, Unread>> = match read {
        Ok(all) => js_sys::Array::from(&all)
            .iter()
            .map(|one| {
                let one = js_sys::Array::from(&one);
                match one.get(0).as_string() {
                    Some(why) if one.get(1).is_truthy() => Err(Unread::Gone(why)),
                    Some(why) => Err(Unread::Failed(why)),
                    None => one
                        .get(1)
                        .as_string()
                        .ok_or_else(|| Unread::Gone("whose secret is not text".into())),
                }
            })
            .collect(),
        Err(e) => due
            .iter()
            .map(|_| Err(Unread::Failed(format!("which could not be read: {e}"))))
            .collect(),
    };
    let mut changed = false;
    isolate::with(|i| {
        let mut secrets = i.secrets.borrow_mut();
        for (binding, got) in due.into_iter().zip(reads) {
            let held = secrets.find(|k| *k == binding).cloned();
            let log_held = |why: &str| {
                crate::edge::platform::js::log_line(&log::cache_event(
                    "secret_read_error",
                    &format!("Secrets Store binding {binding} {why}; using the value read before"),
                ))
            };
            let stored = after_read(held.as_ref(), got, now, log_held);
            // Any change of what settings read, a value or its loss, reads every configuration
            // again: a secret that is gone must stop working now, not when a cache ages out.
            changed |= match (&held, &stored) {
                (Some(Stored { value: Ok(old), .. }), Stored { value: Ok(new), .. }) => {
                    old.expose() != new.expose()
                }
                (Some(Stored { value: Ok(_), .. }), Stored { value: Err(_), .. }) => true,
                _ => false,
            };
            match secrets.find_mut(|k| *k == binding) {
                Some(slot) => *slot = stored,
                None => secrets.insert(binding, stored),
            }
        }
    });
    if changed {
        isolate::with(|i| i.envs.clear());
    }
    changed
}

/// The value of `binding` as this isolate last read it, or why there is none: what settings
/// read (see [`crate::settings::lookup::SecretReader`]).
pub(crate) fn cached(binding: &str) -> Result<String, String> {
    isolate::with(|i| match i.secrets.borrow().find(|k| k == binding) {
        Some(Stored { value: Ok(v), .. }) => Ok(v.expose().to_owned()),
        Some(Stored { value: Err(e), .. }) => Err(e.clone()),
        None => Err("which this isolate has not read yet".into()),
    })
}
