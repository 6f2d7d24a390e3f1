//! Secrets Store secrets that credential settings name (`secrets-store:<BINDING>`, see
//! [`crate::settings::secrets`]): read at run time, kept per isolate for
//! [`SECRET_TTL_SECS`], and read again at once when asked (the token endpoint refused the
//! credential). Settings then read the isolate's copy synchronously ([`cached`]), so the hot
//! path never waits for the store.

use std::rc::Rc;

use futures_util::future::{join_all, select, Either};
use wasm_bindgen::prelude::*;
use worker::Env;

use crate::base::log;
use crate::base::secret::SharedSecret;
use crate::edge::isolate;
use crate::edge::platform::js::settle;
use crate::edge::platform::runtime::sleep;
use crate::settings::secrets::{binding_in, is_credential_setting};

/// How long an isolate uses a value it read from the Secrets Store before reading it again. A
/// rotation reaches every isolate within this, and at once where the token endpoint refuses
/// the old value.
pub(crate) const SECRET_TTL_SECS: u64 = 60;

/// Bound on one read: a store that does not answer leaves the value this isolate has.
const READ_TIMEOUT_MS: u64 = 2_000;

#[wasm_bindgen(inline_js = r#"
export function binding_names(env) {
  const out = [];
  for (const key of Object.keys(env)) {
    const v = env[key];
    if (typeof v === 'string' && v.trim().startsWith('secrets-store:')) out.push(key, v);
  }
  return out;
}
export function secret_get(env, binding) {
  const b = env[binding];
  if (b === undefined || b === null || typeof b.get !== 'function') return null;
  return Promise.resolve().then(() => b.get());
}
"#)]
extern "C" {
    /// `[setting, value, setting, value, ...]` for every var of `env` naming the store.
    fn binding_names(env: &JsValue) -> js_sys::Array;
    /// `env[binding].get()`, or `null` when no such binding is there.
    #[wasm_bindgen(catch)]
    fn secret_get(env: &JsValue, binding: &str) -> Result<JsValue, JsValue>;
}

/// What the isolate holds of one binding: its value, or why there is none, and when it was read.
#[derive(Clone)]
pub(crate) struct Stored {
    value: Result<SharedSecret, String>,
    /// Unix seconds.
    read_at: u64,
}

/// When to read a binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Read {
    /// Only if this isolate has no value, or its value is older than [`SECRET_TTL_SECS`].
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
                for pair in pairs.to_vec().chunks(2) {
                    let (Some(setting), Some(raw)) = (pair[0].as_string(), pair[1].as_string())
                    else {
                        continue;
                    };
                    if !is_credential_setting(&setting) {
                        continue;
                    }
                    // A malformed name is reported when the setting is parsed.
                    if let Ok(Some(binding)) = binding_in(&setting, &raw) {
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

/// One read of `binding`: its value, or why not.
async fn read(env: &Env, binding: &str) -> Result<String, String> {
    let promise = match secret_get(env, binding) {
        Ok(p) if p.is_null() => return Err("which is not bound".into()),
        Ok(p) => p.unchecked_into::<js_sys::Promise>(),
        Err(e) => {
            return Err(format!(
                "which could not be read: {}",
                crate::edge::platform::js::js_error_text(&e)
            ))
        }
    };
    let got = settle(Ok(promise));
    match select(std::pin::pin!(got), sleep(READ_TIMEOUT_MS)).await {
        Either::Left((Ok(v), _)) => v
            .as_string()
            .ok_or_else(|| "whose secret is not text".to_owned()),
        Either::Left((Err(e), _)) => Err(format!("whose secret could not be read: {e}")),
        Either::Right(_) => Err(format!(
            "whose secret could not be read within {READ_TIMEOUT_MS} ms"
        )),
    }
}

/// Reads the bindings of `env` that `when` calls for; whether any value this isolate held
/// changed (then every configuration is read again on its next use: a rotated client
/// credential is taken in place by its token source, see `TokenSource::rotate`). A failed
/// read keeps the value held, if any, until the next interval.
pub(crate) async fn refresh(env: &Env, now: u64, when: Read) -> bool {
    let due: Vec<String> = bindings(env)
        .iter()
        .filter(|b| {
            when == Read::Now
                || isolate::with(|i| {
                    i.secrets
                        .borrow()
                        .find(|k| k == *b)
                        .is_none_or(|s| now >= s.read_at + SECRET_TTL_SECS)
                })
        })
        .cloned()
        .collect();
    if due.is_empty() {
        return false;
    }
    let reads = join_all(due.iter().map(|b| read(env, b))).await;
    let mut changed = false;
    isolate::with(|i| {
        let mut secrets = i.secrets.borrow_mut();
        for (binding, got) in due.into_iter().zip(reads) {
            let held = secrets.find(|k| *k == binding).map(|s| s.value.clone());
            let value = match (got, held) {
                (Ok(v), Some(Ok(old))) => {
                    changed |= old.expose() != v;
                    Ok(SharedSecret::new(v))
                }
                (Ok(v), _) => Ok(SharedSecret::new(v)),
                // Keep the last good value: a store that fails for a moment must not stop
                // token requests that would succeed with it.
                (Err(e), Some(Ok(old))) => {
                    crate::edge::platform::js::log_line(&log::cache_event(
                        "secret_read_error",
                        &format!(
                            "Secrets Store binding {binding} {e}; using the value read before"
                        ),
                    ));
                    Ok(old)
                }
                (Err(e), _) => Err(e),
            };
            let stored = Stored {
                value,
                read_at: now,
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
/// read (see [`crate::settings::secrets::SecretReader`]).
pub(crate) fn cached(binding: &str) -> Result<String, String> {
    isolate::with(|i| match i.secrets.borrow().find(|k| k == binding) {
        Some(Stored { value: Ok(v), .. }) => Ok(v.expose().to_owned()),
        Some(Stored { value: Err(e), .. }) => Err(e.clone()),
        None => Err("which this isolate has not read yet".into()),
    })
}
