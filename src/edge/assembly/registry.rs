//! The isolate's token sources, one per configuration: so that `TokenClient::from_env` on every
//! request finds the token (and the token request under way) of earlier ones. Keyed by the whole
//! configuration (the profile is part of it), so a rotated secret gets a fresh source; bounded,
//! evicting the least recently used idle source, so every profile of a Worker stays while old
//! rotations age out.

use std::rc::Rc;

use worker::Env;

use crate::base::log;
use crate::base::lru::LastUse;
use crate::config::client::Config;
use crate::edge::assembly::build::{sealer_for, token_source};
use crate::edge::assembly::credentials::{reread_from, rotation};
use crate::edge::coordinator::stub::EdgeCoordinator;
use crate::edge::isolate::{self, EdgeSource, Registered, SourceKey};
use crate::edge::platform::analytics;
use crate::edge::platform::bindings::{bound, COORDINATOR_BINDING};
use crate::edge::platform::kv::{EdgeStore, KvNamespace};
use crate::source::metric::Place;

/// Marks a source used by a client that holds it (see [`LastUse`]).
pub(crate) fn touch(used: &LastUse) {
    isolate::with(|i| {
        let now = i.sources.borrow_mut().now();
        used.touch(now);
    });
}

/// The source for `config` with `kv`, asking the `TOKEN_COORDINATOR` bound on `env` when there
/// is one: the isolate's existing one, or a new one; and its use mark.
pub(crate) fn source(config: Config, kv: Option<KvNamespace>, env: Option<&Env>) -> Registered {
    if kv.is_none() && !isolate::with(|i| i.said_memory_only.replace(true)) {
        crate::edge::platform::js::log_line(&log::cache_event(
            "memory_only",
            "no TOKEN_CACHE KV binding: tokens are cached in this isolate only",
        ));
    }
    let coordinated = env.is_some_and(|env| bound(env, COORDINATOR_BINDING));
    let key = SourceKey {
        config,
        with_kv: kv.is_some(),
        coordinated,
    };
    let (source, used): (EdgeSource, _) = isolate::with(|i| {
        // A source with a token request under way stays: dropping it would let the next lookup
        // start a second, billed request for the same configuration.
        i.sources.borrow_mut().get_or_insert_with(
            &key,
            || build_source(&key.config, kv, env, coordinated),
            |source| !source.in_flight(),
        )
    });
    // The same source, its Secrets Store credential rotated: taken in place.
    if source.config().auth.credential() != key.config.auth.credential() {
        source.rotate(rotation(key.config));
    }
    Registered { source, used }
}

/// A token source for `config` with KV (sealed under its identity), writing metrics to the
/// dataset bound on `env` and, when `coordinated`, asking the coordinator bound there.
fn build_source(
    config: &Config,
    kv: Option<KvNamespace>,
    env: Option<&Env>,
    coordinated: bool,
) -> EdgeSource {
    let sealer = sealer_for(config);
    let profile = config.profile.as_ref().map(|p| p.name());
    let metrics = env.and_then(|env| analytics::sink(env, profile, Place::Isolate));
    let source = token_source(config, EdgeStore::new(kv, sealer.clone()), metrics);
    if let Some(env) = env {
        reread_from(&source, env, config);
    }
    let coordinator_env = env.filter(|_| coordinated);
    if let Some(coordinator) =
        coordinator_env.and_then(|env| EdgeCoordinator::from_env(env, sealer, config))
    {
        source.set_coordinator(Rc::new(coordinator));
    }
    source
}
