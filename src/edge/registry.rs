//! The isolate's token sources, one per configuration: so that `TokenClient::from_env` on every
//! request finds the token (and the token request under way) of earlier ones. Keyed by the whole
//! configuration, so a rotated secret gets a fresh source; bounded, evicting the least recently
//! used idle source.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use worker::Env;

use super::coordinator::{EdgeCoordinator, COORDINATOR_BINDING};
use super::dpop::EdgeProofs;
use super::fetch::PlatformHttp;
use super::kv::{EdgeStore, KvNamespace};
use super::runtime::EdgeRuntime;
use super::seal::Sealer;
use super::signing::EdgeAssertions;
use crate::cache_key::{cache_key_material, CacheRoot};
use crate::config::Config;
use crate::log;
use crate::source::{Signers, TokenSource};

/// Configurations remembered per isolate; past that the least recently used idle one goes.
const MAX_SOURCES: usize = 16;

/// A token source on Workers.
pub(crate) type EdgeSource = TokenSource<PlatformHttp, EdgeStore, EdgeRuntime>;

/// A configuration, and whether it has KV and a coordinator.
type SourceKey = (Config, bool, bool);

thread_local! {
    // Each with the tick of its last lookup, for evicting the least recently used.
    static SOURCES: RefCell<HashMap<SourceKey, (EdgeSource, u64)>> = RefCell::new(HashMap::new());
    static TICK: Cell<u64> = const { Cell::new(0) };
    static WARNED_NO_KV: Cell<bool> = const { Cell::new(false) };
}

/// The source for `config` with `kv`, asking the `TOKEN_COORDINATOR` bound on `env` when there
/// is one: the isolate's existing one, or a new one.
pub(crate) fn source(config: Config, kv: Option<KvNamespace>, env: Option<&Env>) -> EdgeSource {
    if kv.is_none() && !WARNED_NO_KV.replace(true) {
        super::log_line(&log::cache_event(
            "memory_only",
            "no TOKEN_CACHE KV binding: tokens are cached in this isolate only",
        ));
    }
    let material = cache_key_material(&config);
    let coordinated = env.is_some_and(|env| {
        js_sys::Reflect::get(env, &COORDINATOR_BINDING.into()).is_ok_and(|b| b.is_object())
    });
    let registry_key = (config.clone(), kv.is_some(), coordinated);
    let tick = TICK.with(|t| {
        t.set(t.get() + 1);
        t.get()
    });
    let source = SOURCES.with(|sources| {
        let mut sources = sources.borrow_mut();
        if let Some((source, used)) = sources.get_mut(&registry_key) {
            *used = tick;
            return source.clone();
        }
        // Rotations add configurations; an isolate never needs more than a few at once. A
        // source with a token request under way stays: dropping it would let the next
        // lookup start a second, billed request for the same configuration.
        if sources.len() >= MAX_SOURCES {
            let idle_lru = sources
                .iter()
                .filter(|(_, (source, _))| !source.in_flight())
                .min_by_key(|(_, (_, used))| *used)
                .map(|(key, _)| key.clone());
            if let Some(key) = idle_lru {
                sources.remove(&key);
            }
        }
        let source = build_source(&config, kv, material, env.filter(|_| coordinated));
        sources.insert(registry_key, (source.clone(), tick));
        source
    });
    source
}

/// A token source for `config` with its store, and the signers its settings call for.
fn build_source(
    config: &Config,
    kv: Option<KvNamespace>,
    material: Vec<u8>,
    coordinator_env: Option<&Env>,
) -> EdgeSource {
    let sealer = Rc::new(Sealer::new(material, CacheRoot::of(config)));
    let source = TokenSource::new(
        config.clone(),
        PlatformHttp,
        signers(config),
        EdgeStore::new(kv, sealer.clone()),
        EdgeRuntime,
        Rc::new(super::log_line),
    );
    if let Some(coordinator) =
        coordinator_env.and_then(|env| EdgeCoordinator::from_env(env, sealer, config))
    {
        source.set_coordinator(Rc::new(coordinator));
    }
    source
}

/// The signers `config` calls for, with WebCrypto: client assertions for `private_key_jwt`, DPoP
/// keys and proofs for `OAUTH_DPOP`.
pub(crate) fn signers(config: &Config) -> Signers {
    Signers::for_config(
        config,
        |key| Rc::new(EdgeAssertions::new(key.clone(), config.client_id.clone())),
        |key| Rc::new(EdgeProofs::new(key.cloned())),
    )
}
