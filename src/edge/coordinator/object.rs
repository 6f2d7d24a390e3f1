//! The fleet's coordinator on Workers: a Durable Object (`TokenCoordinator`, bound as
//! `TOKEN_COORDINATOR`), one per configuration, named by the configuration's cache identity.
//!
//! Isolates ask it (see [`crate::edge::coordinator::stub`]) after a KV miss and when their
//! token enters its refresh window. The object runs the same token source as an isolate
//! ([`crate::edge::assembly::build`]), over its own storage (sealed like KV, and mirrored to
//! KV: the one writer of the configuration's KV entries), and answers with [`serve`].

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::Promise;
use wasm_bindgen::prelude::*;
use worker::Env;

use crate::base::log;
use crate::coordinator::serve::serve;
use crate::coordinator::warm::{alarm_after, keep_warm, Alarm, Fleet};
use crate::coordinator::wire::{decode_ask, encode_answer, Addressed, Message};
use crate::edge::assembly::build::{sealer_for, token_source};
use crate::edge::assembly::credentials::{reread_from, rotation};
use crate::edge::assembly::settings::read_config;
use crate::edge::coordinator::stub::ANSWER_ENTRY;
use crate::edge::platform::analytics;
use crate::edge::platform::bindings::{COORDINATOR_BINDING, KV_BINDING};
use crate::edge::platform::fetch::PlatformHttp;
use crate::edge::platform::js::settle;
use crate::edge::platform::kv::{bounded, EdgeStore, KvNamespace};
use crate::edge::platform::runtime::{sleep, EdgeRuntime};
use crate::edge::platform::seal::Sealer;
use crate::edge::platform::secrets::{self, Read};
use crate::source::coordinator::Answer;
use crate::source::metric::Place;
use crate::source::records::{HOLD_ENTRY, TOKEN_ENTRY};
use crate::source::status::with_fields;
use crate::source::store::TokenStore;
use crate::source::token_source::TokenSource;

/// Workers KV takes at most one write per second to one key.
const KV_WRITE_INTERVAL_MS: u64 = 1_100;

#[wasm_bindgen(inline_js = r#"
export function named_id(env, binding, name) {
  return env[binding].idFromName(name).toString();
}
export function object_id(state) {
  return state.id.toString();
}
export function respond(status, body) {
  return new Response(body, { status, headers: { 'content-type': 'application/json' } });
}
"#)]
extern "C" {
    fn respond(status: u16, body: &str) -> web_sys::Response;
    /// `env[binding].idFromName(name)`, as text.
    #[wasm_bindgen(catch)]
    fn named_id(env: &JsValue, binding: &str, name: &str) -> Result<String, JsValue>;
    /// The object's own id (`state.id`), as text.
    #[wasm_bindgen(catch)]
    fn object_id(state: &JsValue) -> Result<String, JsValue>;

    /// A Durable Object's storage (`state.storage`), called directly.
    #[derive(Clone)]
    type ObjectStorage;
    #[wasm_bindgen(method, catch)]
    fn get(this: &ObjectStorage, key: &str) -> Result<Promise, JsValue>;
    #[wasm_bindgen(method, catch)]
    fn put(this: &ObjectStorage, key: &str, value: &str) -> Result<Promise, JsValue>;
    #[wasm_bindgen(method, catch, js_name = delete)]
    fn remove(this: &ObjectStorage, key: &str) -> Result<Promise, JsValue>;
    #[wasm_bindgen(method, catch, js_name = setAlarm)]
    fn set_alarm(this: &ObjectStorage, scheduled_ms: f64) -> Result<Promise, JsValue>;
}

/// The object's unsealed storage key for the profile its alarm refreshes (a profile name is no
/// secret, and an object woken by its alarm must know it before it can unseal anything).
const ALARM_PROFILE: &str = "m2m:alarm-profile";

/// The coordinator's storage as the core's store: sealed like KV, and the token and hold-down
/// entries mirrored to KV, where isolates read them.
pub(crate) struct ObjectStore {
    storage: ObjectStorage,
    sealer: Rc<Sealer>,
    kv: EdgeStore,
}

impl TokenStore for ObjectStore {
    async fn get(&self, name: &str) -> Result<Option<String>, String> {
        bounded("storage get", async {
            let full = self.sealer.name(name).await?;
            let stored = settle(self.storage.get(&full)).await?.as_string();
            // `<expiry, Unix seconds>|<sealed>`: an entry past its time is gone, as in KV.
            let Some((expires, sealed)) = stored.as_deref().and_then(|s| s.split_once('|')) else {
                return Ok(None);
            };
            if expires
                .parse::<u64>()
                .map_or(true, |at| crate::edge::platform::js::now_secs() >= at)
            {
                let _ = settle(self.storage.remove(&full)).await;
                return Ok(None);
            }
            self.sealer.open(&full, sealed).await.map(Some)
        })
        .await
    }

    async fn put(&self, name: &str, value: String, ttl_secs: u64) -> Result<(), String> {
        bounded("storage put", async {
            let (full, sealed) = self.sealer.seal(name, &value).await?;
            let expires = crate::edge::platform::js::now_secs() + ttl_secs.max(1);
            settle(self.storage.put(&full, &format!("{expires}|{sealed}")))
                .await
                .map(drop)
        })
        .await?;
        // KV takes one write per second per key, and an eviction's delete and the new token's
        // write fall in the same second: a refused mirror write is tried once more after it.
        let mirrored = name == TOKEN_ENTRY || name == HOLD_ENTRY;
        if mirrored && self.kv.put(name, value.clone(), ttl_secs).await.is_err() {
            let _ = sleep(KV_WRITE_INTERVAL_MS).await;
            self.kv.put(name, value, ttl_secs).await?;
        }
        Ok(())
    }

    async fn delete(&self, name: &str) -> Result<(), String> {
        bounded("storage delete", async {
            let full = self.sealer.name(name).await?;
            settle(self.storage.remove(&full)).await.map(drop)
        })
        .await?;
        if name == TOKEN_ENTRY || name == HOLD_ENTRY {
            self.kv.delete(name).await?;
        }
        Ok(())
    }
}

type ObjectSource = TokenSource<PlatformHttp, ObjectStore, EdgeRuntime>;

/// A configuration's sealer (its identity) and token source, in the object.
type Ready = (Rc<Sealer>, ObjectSource);

/// The Durable Object: one per configuration (so one per profile), the only caller of its
/// token endpoint while isolates can reach it.
///
/// Written as a wasm-bindgen class rather than with workers-rs's `#[durable_object]`: that
/// macro goes through `worker::Request` and `worker::Response`, whose conversions cost more wasm
/// than this whole object. workerd needs a class with a `(state, env)` constructor and `fetch`.
#[wasm_bindgen]
pub struct TokenCoordinator {
    inner: Rc<Object>,
}

struct Object {
    storage: ObjectStorage,
    /// The object's own id: an ask must name the configuration whose `idFromName` it is.
    id: String,
    env: Env,
    /// The configuration's sealer (its identity) and token source, from the object's own vars
    /// and secrets, by the profile asks name (an object is named by its configuration, so all
    /// its asks name one profile, or profiles with identical settings); made on the first ask,
    /// synchronously, so asks that arrive together share one source and its single flight.
    sources: RefCell<Vec<(Option<String>, Ready)>>,
    /// When the fleet was last seen (asks and notes), for the alarm.
    fleet: Fleet,
    /// The alarm this object set last (Unix seconds), so an ask does not set it again.
    alarm_at: Cell<Option<u64>>,
}

impl Object {
    fn source(&self, profile: Option<String>) -> Result<Ready, String> {
        if let Some((_, ready)) = self.sources.borrow().iter().find(|(p, _)| *p == profile) {
            return Ok(ready.clone());
        }
        let config = read_config(&self.env, profile.as_deref()).map_err(|e| e.to_string())?;
        let sealer = sealer_for(&config);
        let kv = EdgeStore::new(KvNamespace::from_env(&self.env, KV_BINDING), sealer.clone());
        let store = ObjectStore {
            storage: self.storage.clone(),
            sealer: sealer.clone(),
            kv,
        };
        let metrics = analytics::sink(&self.env, profile.as_deref(), Place::Coordinator);
        let source = token_source(&config, store, metrics);
        reread_from(&source, &self.env, &config);
        self.sources
            .borrow_mut()
            .push((profile, (sealer.clone(), source.clone())));
        Ok((sealer, source))
    }

    /// `answer` sealed for the entry `<name>:answer` with the configuration's sealer.
    async fn seal_answer(
        &self,
        name: &str,
        answer: &str,
        profile: Option<&str>,
    ) -> Result<String, String> {
        let (sealer, _) = self.source(profile.map(str::to_owned))?;
        let (full, sealed) = sealer.seal(ANSWER_ENTRY, answer).await?;
        debug_assert_eq!(full, format!("{name}:{ANSWER_ENTRY}"));
        Ok(sealed)
    }

    /// The object's storage, sealed, for its own entries (not mirrored to KV).
    fn own_store(&self, sealer: &Rc<Sealer>) -> ObjectStore {
        ObjectStore {
            storage: self.storage.clone(),
            sealer: sealer.clone(),
            kv: EdgeStore::new(None, sealer.clone()),
        }
    }

    /// Sets the alarm to `alarm` (for `profile`'s source), unless it is already set there.
    async fn schedule(&self, alarm: Alarm, profile: Option<&str>) {
        let Alarm::At(at) = alarm else {
            self.alarm_at.set(None);
            return;
        };
        if self.alarm_at.get() == Some(at) {
            return;
        }
        self.alarm_at.set(Some(at));
        let _ = settle(self.storage.put(ALARM_PROFILE, profile.unwrap_or(""))).await;
        let _ = settle(self.storage.set_alarm(at as f64 * 1000.0)).await;
    }

    /// Reads the Secrets Store values the settings name when they are due. The sources made so
    /// far take a rotated client credential in place; one whose configuration is now another
    /// (a rotated cache or DPoP key: another identity, another object) is dropped once idle.
    async fn follow_secrets(&self, now: u64) {
        if !secrets::refresh(&self.env, now, Read::IfStale).await {
            return;
        }
        self.sources.borrow_mut().retain(|(profile, (_, source))| {
            match read_config(&self.env, profile.as_deref()) {
                Ok(config) if source.config().same_source(&config) => {
                    source.rotate(rotation(config));
                    true
                }
                _ => source.in_flight(),
            }
        });
    }

    /// The alarm fired: keep the fleet's token fresh in KV while the fleet is active.
    async fn alarm(&self) {
        self.alarm_at.set(None);
        self.follow_secrets(crate::edge::platform::js::now_secs())
            .await;
        let stored = settle(self.storage.get(ALARM_PROFILE)).await.ok();
        let profile = stored.and_then(|v| v.as_string()).filter(|p| !p.is_empty());
        let Ok((sealer, source)) = self.source(profile.clone()) else {
            return;
        };
        let now = crate::edge::platform::js::now_secs();
        let next = keep_warm(&source, &self.fleet, &self.own_store(&sealer), now).await;
        self.schedule(next, profile.as_deref()).await;
    }

    /// The fleet's view for the status view: the object's source (its last token request, the
    /// outage schedule and hold-down, its counts), when it last saw the fleet and its alarm.
    /// Not sealed: it holds no token and no credential.
    fn status(&self, source: &ObjectSource, now: u64) -> String {
        let mark = |at: Option<u64>| at.map_or_else(|| "null".to_owned(), |at| at.to_string());
        let fields = format!(
            r#""fleet_seen_at":{},"alarm_at":{}"#,
            mark(self.fleet.seen_at()),
            mark(self.alarm_at.get())
        );
        with_fields(&fields, &source.status(now))
    }

    async fn fetch(&self, req: web_sys::Request) -> web_sys::Response {
        let body = settle(req.text()).await.ok().and_then(|b| b.as_string());
        let Some(Ok(Addressed {
            name,
            profile,
            message,
            ask,
        })) = body.as_deref().map(decode_ask)
        else {
            return respond(400, "not an ask");
        };
        // Anything that binds the class can reach any object: only the object the ask's name
        // makes (`idFromName`) answers it, so no other object can be made to serve this
        // configuration's token.
        let named = named_id(&self.env, COORDINATOR_BINDING, &name).ok();
        if self.id.is_empty() || named.as_deref() != Some(self.id.as_str()) {
            return respond(403, "not this object's name");
        }
        self.follow_secrets(crate::edge::platform::js::now_secs())
            .await;
        let ready = match self.source(profile.clone()) {
            Ok((sealer, source)) => sealer.identity().await.map(|id| (id, source)),
            Err(e) => Err(e),
        };
        let (identity, source) = match ready {
            Ok(ready) => ready,
            Err(e) => {
                crate::edge::platform::js::log_line(&log::cache_event(
                    "coordinator_unavailable",
                    &e,
                ));
                return respond(503, "coordinator configuration unusable");
            }
        };
        // Another configuration (a deploy changed a secret, a stale isolate): let it fend for
        // itself rather than hand it this configuration's token.
        if name != identity {
            return respond(409, "another configuration");
        }
        let now = crate::edge::platform::js::now_secs();
        if message == Message::Status {
            return respond(200, &self.status(&source, now));
        }
        let sealer = self.source(profile.clone()).map(|(s, _)| s);
        if let Ok(sealer) = &sealer {
            self.fleet.seen(&self.own_store(sealer), now).await;
        }
        if message == Message::Note {
            return respond(200, "noted");
        }
        match serve(&source, ask, now).await {
            Ok(a) => {
                // A fresh token sets the alarm at its refresh point; a stale one (the endpoint is
                // held down) leaves the alarm where the hold put it.
                if let Answer::Token(t) = &a {
                    if t.is_fresh(now) && !t.refresh_due(now) {
                        self.schedule(alarm_after(t.refresh_at(), now), profile.as_deref())
                            .await;
                    }
                }
                // Sealed with the configuration's sealer, which the isolate holds too: a token
                // (and a DPoP private key) never travels in the clear.
                match self
                    .seal_answer(&name, &encode_answer(&a), profile.as_deref())
                    .await
                {
                    Ok(sealed) => respond(200, &sealed),
                    Err(e) => respond(503, &e),
                }
            }
            Err(e) => respond(503, &e),
        }
    }
}

#[wasm_bindgen]
impl TokenCoordinator {
    /// Made by workerd with the object's `state` and the Worker's `env`.
    #[wasm_bindgen(constructor)]
    pub fn new(state: JsValue, env: Env) -> Self {
        let storage = js_sys::Reflect::get(&state, &"storage".into())
            .unwrap_or(JsValue::UNDEFINED)
            .unchecked_into();
        let id = object_id(&state).unwrap_or_default();
        Self {
            inner: Rc::new(Object {
                storage,
                id,
                env,
                sources: RefCell::default(),
                fleet: Fleet::default(),
                alarm_at: Cell::new(None),
            }),
        }
    }

    /// Answers one ask: a `POST` whose body is an encoded ask, with an encoded answer.
    pub fn fetch(&self, req: web_sys::Request) -> Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(
            async move { Ok(JsValue::from(inner.fetch(req).await)) },
        )
    }

    /// The object's alarm (workerd calls it; at least once): refreshes the fleet's token ahead
    /// of expiry while the fleet is active (see `coordinator::warm`).
    pub fn alarm(&self) -> Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            inner.alarm().await;
            Ok(JsValue::UNDEFINED)
        })
    }
}
