//! The isolate's token sources, one per configuration: so that `TokenClient::from_env` on every
//! request finds the token (and the token request under way) of earlier ones. Keyed by the whole
//! configuration (the profile is part of it), so a rotated secret gets a fresh source; bounded,
//! evicting the least recently used idle source, so every profile of a Worker stays while old
//! rotations age out.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use worker::Env;

use crate::base::log;
use crate::base::lru::{LastUse, Lru};
use crate::config::cache_key::{cache_key_material, CacheRoot};
use crate::config::client::Config;
use crate::edge::coordinator::object::{EdgeCoordinator, COORDINATOR_BINDING};
use crate::edge::platform::fetch::PlatformHttp;
use crate::edge::platform::kv::{EdgeStore, KvNamespace};
use crate::edge::platform::runtime::EdgeRuntime;
use crate::edge::platform::seal::Sealer;
use crate::edge::signers::assertions::EdgeAssertions;
use crate::edge::signers::dpop::EdgeProofs;
use crate::settings::profile::MAX_PROFILES;
use crate::source::acquire::Signers;
use crate::source::token_source::TokenSource;

/// Configurations remembered per isolate: every profile, and one rotation of each.
const MAX_SOURCES: usize = 2 * MAX_PROFILES;

/// A token source on Workers.
pub(crate) type EdgeSource = TokenSource<PlatformHttp, EdgeStore, EdgeRuntime>;

/// A configuration, and whether it has KV and a coordinator.
type SourceKey = (Config, bool, bool);

thread_local! {
    static SOURCES: RefCell<Lru<SourceKey, EdgeSource>> = RefCell::new(Lru::new(MAX_SOURCES));
    static WARNED_NO_KV: Cell<bool> = const { Cell::new(false) };
}

/// Marks a source used by a client that holds it (see [`LastUse`]).
pub(crate) fn touch(used: &LastUse) {
    SOURCES.with(|s| {
        let now = s.borrow_mut().now();
        used.touch(now);
    });
}

/// The source for `config` with `kv`, asking the `TOKEN_COORDINATOR` bound on `env` when there
/// is one: the isolate's existing one, or a new one; and its use mark.
pub(crate) fn source(
    config: Config,
    kv: Option<KvNamespace>,
    env: Option<&Env>,
) -> (EdgeSource, LastUse) {
    if kv.is_none() && !WARNED_NO_KV.replace(true) {
        crate::edge::platform::js::log_line(&log::cache_event(
            "memory_only",
            "no TOKEN_CACHE KV binding: tokens are cached in this isolate only",
        ));
    }
    let coordinated = env.is_some_and(|env| {
        js_sys::Reflect::get(env, &COORDINATOR_BINDING.into()).is_ok_and(|b| b.is_object())
    });
    let key = (config, kv.is_some(), coordinated);
    SOURCES.with(|sources| {
        // A source with a token request under way stays: dropping it would let the next lookup
        // start a second, billed request for the same configuration.
        sources.borrow_mut().get_or_insert_with(
            &key,
            || {
                let material = cache_key_material(&key.0);
                build_source(&key.0, kv, material, env.filter(|_| coordinated))
            },
            |source| !source.in_flight(),
        )
    })
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
        crate::edge::platform::js::log_sink(config),
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
        |key| {
            Rc::new(EdgeAssertions::new(
                key.clone(),
                config.client_id.clone(),
                config.setting("OAUTH_PRIVATE_KEY"),
            ))
        },
        |key| {
            Rc::new(EdgeProofs::new(
                key.cloned(),
                config.setting("OAUTH_DPOP_KEY"),
            ))
        },
    )
}
