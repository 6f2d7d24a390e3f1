//! One assembly of a token source on Workers, used by the isolate's registry and by the
//! coordinator's Durable Object alike: the configuration's sealer (its identity), the signers
//! its settings call for (WebCrypto), `fetch`, the edge runtime and a log sink naming the
//! profile. Only the store differs: KV in an isolate, the object's storage in the coordinator.

use std::rc::Rc;

use crate::config::cache_key::{cache_key_material, CacheRoot};
use crate::config::client::Config;
use crate::edge::platform::fetch::PlatformHttp;
use crate::edge::platform::js::log_sink;
use crate::edge::platform::runtime::EdgeRuntime;
use crate::edge::platform::seal::Sealer;
use crate::edge::signers::assertions::EdgeAssertions;
use crate::edge::signers::dpop::EdgeProofs;
use crate::source::metric::MetricSink;
use crate::source::signers::Signers;
use crate::source::store::TokenStore;
use crate::source::token_source::TokenSource;

/// The sealer of `config`'s entries: names and seals them under its cache identity.
pub(crate) fn sealer_for(config: &Config) -> Rc<Sealer> {
    Rc::new(Sealer::new(
        cache_key_material(config),
        CacheRoot::of(config),
    ))
}

/// A token source for `config` over `store`, reporting to `metrics`.
pub(crate) fn token_source<S: TokenStore + 'static>(
    config: &Config,
    store: S,
    metrics: Option<MetricSink>,
) -> TokenSource<PlatformHttp, S, EdgeRuntime> {
    TokenSource::reporting(
        config.clone(),
        PlatformHttp,
        signers(config),
        store,
        EdgeRuntime,
        log_sink(config),
        metrics,
    )
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
