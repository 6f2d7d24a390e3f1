//! The fleet's coordinator as an isolate reaches it: `idFromName` of the configuration's
//! identity, then `stub.fetch` with an encoded ask (a Rust object cannot be an RPC server yet,
//! workers-rs #726), bounded so a coordinator that never answers leaves time for the fallback.

use std::rc::Rc;

use futures_util::future::{select, Either, LocalBoxFuture};
use js_sys::{Array, Promise};
use wasm_bindgen::prelude::*;
use worker::Env;

use crate::config::client::Config;
use crate::coordinator::wire::{decode_answer, encode_ask, encode_note, encode_status};
use crate::edge::platform::bindings::{bound, COORDINATOR_BINDING};
use crate::edge::platform::js::settle;
use crate::edge::platform::runtime::sleep;
use crate::edge::platform::seal::Sealer;
use crate::source::coordinator::{Answer, Ask, Coordinator};
use crate::source::token_source::COORDINATOR_SLACK_MS;

#[wasm_bindgen(inline_js = r#"
export function coordinator_ask(env, binding, name, body) {
  const ns = env[binding];
  const stub = ns.get(ns.idFromName(name));
  return stub.fetch('https://coordinator/token', { method: 'POST', body })
    .then(async (r) => [r.status, await r.text()]);
}
"#)]
extern "C" {
    /// Asks the coordinator named `name` (`idFromName`, then `stub.fetch`): `[status, text]`.
    /// Called directly, as KV is: the general wrappers cost more wasm than the whole call.
    #[wasm_bindgen(catch)]
    fn coordinator_ask(
        env: &JsValue,
        binding: &str,
        name: &str,
        body: &str,
    ) -> Result<Promise, JsValue>;
}

/// The coordinator as an isolate reaches it.
pub(crate) struct EdgeCoordinator {
    env: Env,
    sealer: Rc<Sealer>,
    /// The profile whose settings the object reads (`None`: the unprefixed ones).
    profile: Option<String>,
    /// Bound on one ask: the coordinator may make one token request (`OAUTH_TIMEOUT_MS`).
    bound_ms: u64,
    /// This isolate's `OAUTH_EXPIRY_MARGIN_SECS`, applied to the tokens it is given.
    margin: u64,
}

impl EdgeCoordinator {
    /// The coordinator bound on `env`, if there is a binding, for the configuration `sealer`
    /// names.
    pub(crate) fn from_env(env: &Env, sealer: Rc<Sealer>, config: &Config) -> Option<Self> {
        bound(env, COORDINATOR_BINDING).then(|| Self {
            env: env.clone(),
            sealer,
            profile: config.profile.as_ref().map(|p| p.name().to_owned()),
            bound_ms: config.timeout_ms + COORDINATOR_SLACK_MS,
            margin: config.expiry_margin_secs,
        })
    }
}

/// One exchange with the coordinator `name`, bounded by `bound_ms`: the text of its 200, or why
/// there is none.
async fn exchange(env: &Env, name: &str, body: &str, bound_ms: u64) -> Result<String, String> {
    let call = async {
        let reply = settle(coordinator_ask(env, COORDINATOR_BINDING, name, body))
            .await
            .map_err(|e| format!("coordinator: {e}"))?;
        let reply: Array = reply.unchecked_into();
        let status = reply.get(0).as_f64().unwrap_or_default();
        let text = reply.get(1).as_string().unwrap_or_default();
        if status != 200.0 {
            return Err(format!(
                "coordinator answered {status}: {}",
                text.chars().take(200).collect::<String>()
            ));
        }
        Ok(text)
    };
    match select(std::pin::pin!(call), sleep(bound_ms)).await {
        Either::Left((answer, _)) => answer,
        Either::Right(_) => Err(format!("coordinator did not answer in {bound_ms} ms")),
    }
}

impl Coordinator for EdgeCoordinator {
    fn ask(&self, ask: Ask) -> LocalBoxFuture<'static, Result<Answer, String>> {
        let (env, sealer, profile, bound_ms, margin) = (
            self.env.clone(),
            self.sealer.clone(),
            self.profile.clone(),
            self.bound_ms,
            self.margin,
        );
        Box::pin(async move {
            let name = sealer.identity().await?;
            let body = encode_ask(&name, profile.as_deref(), &ask);
            let text = exchange(&env, &name, &body, bound_ms).await?;
            let full = format!("{name}:{ANSWER_ENTRY}");
            let opened = sealer.open(&full, &text).await?;
            decode_answer(&opened, margin)
        })
    }

    fn status(&self) -> LocalBoxFuture<'static, Result<String, String>> {
        let (env, sealer, profile, bound_ms) = (
            self.env.clone(),
            self.sealer.clone(),
            self.profile.clone(),
            self.bound_ms,
        );
        Box::pin(async move {
            let name = sealer.identity().await?;
            let body = encode_status(&name, profile.as_deref());
            exchange(&env, &name, &body, bound_ms).await
        })
    }

    fn note(&self) -> LocalBoxFuture<'static, ()> {
        let (env, sealer, profile) = (self.env.clone(), self.sealer.clone(), self.profile.clone());
        Box::pin(async move {
            let Ok(name) = sealer.identity().await else {
                return;
            };
            let body = encode_note(&name, profile.as_deref());
            let call = settle(coordinator_ask(&env, COORDINATOR_BINDING, &name, &body));
            // Fire and forget, but bounded: a note is worth nothing late.
            let _ = select(std::pin::pin!(call), sleep(NOTE_BOUND_MS)).await;
        })
    }
}

/// The entry name an answer is sealed for (after the configuration's identity), so an answer
/// opens only for an isolate of the same configuration.
pub(crate) const ANSWER_ENTRY: &str = "answer";

/// Longest a note may keep the isolate's request alive (`ctx.waitUntil`).
const NOTE_BOUND_MS: u64 = 2_000;
