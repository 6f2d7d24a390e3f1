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
use crate::config::client::Config;
use crate::edge::assembly::build::{sealer_for, token_source};
use crate::edge::coordinator::stub::EdgeCoordinator;
use crate::edge::platform::bindings::{bound, COORDINATOR_BINDING};
use crate::edge::platform::fetch::PlatformHttp;
use crate::edge::platform::kv::{EdgeStore, KvNamespace};
use crate::edge::platform::runtime::EdgeRuntime;
use crate::settings::profile::MAX_PROFILES;
use crate::source::token_source::TokenSource;

/// Configurations remembered per isolate: every profile, and one rotation of each.
const MAX_SOURCES: usize = 2 * MAX_PROFILES;

/// A token source on Workers.
pub(crate) type EdgeSource = TokenSource<PlatformHttp, EdgeStore, EdgeRuntime>;

/// What tells one source from another: a configuration, and the bindings it is used with.
#[derive(Clone, PartialEq, Eq, Hash)]
struct SourceKey {
    config: Config,
    with_kv: bool,
    coordinated: bool,
}

/// A source in the registry, and its use mark.
#[derive(Clone)]
pub(crate) struct Registered {
    pub(crate) source: EdgeSource,
    /// Marks the source used, for the isolate's least-recently-used bound.
    pub(crate) used: LastUse,
}

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
pub(crate) fn source(config: Config, kv: Option<KvNamespace>, env: Option<&Env>) -> Registered {
    if kv.is_none() && !WARNED_NO_KV.replace(true) {
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
    let (source, used) = SOURCES.with(|sources| {
        // A source with a token request under way stays: dropping it would let the next lookup
        // start a second, billed request for the same configuration.
        sources.borrow_mut().get_or_insert_with(
            &key,
            || build_source(&key.config, kv, env.filter(|_| coordinated)),
            |source| !source.in_flight(),
        )
    });
    Registered { source, used }
}

/// A token source for `config` with KV (sealed under its identity) and, with `coordinator_env`,
/// the coordinator bound there.
fn build_source(
    config: &Config,
    kv: Option<KvNamespace>,
    coordinator_env: Option<&Env>,
) -> EdgeSource {
    let sealer = sealer_for(config);
    let source = token_source(config, EdgeStore::new(kv, sealer.clone()));
    if let Some(coordinator) =
        coordinator_env.and_then(|env| EdgeCoordinator::from_env(env, sealer, config))
    {
        source.set_coordinator(Rc::new(coordinator));
    }
    source
}
