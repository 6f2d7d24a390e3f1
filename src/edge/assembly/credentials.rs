//! The credentials port on Workers: a configuration read again from `env` with its Secrets
//! Store secrets read afresh (see [`crate::source::credentials`]), for the isolates' sources
//! and the coordinator's alike.

use std::rc::Rc;

use futures_util::future::LocalBoxFuture;
use worker::Env;

use crate::base::error::Result;
use crate::config::client::Config;
use crate::edge::assembly::build::signers;
use crate::edge::assembly::settings::read_config;
use crate::edge::platform::secrets::{self, Read};
use crate::oauth::transport::HttpClient;
use crate::source::credentials::{Credentials, Rotation};
use crate::source::runtime::Runtime;
use crate::source::store::TokenStore;
use crate::source::token_source::TokenSource;

/// Reads `profile`'s configuration from `env` again.
pub(crate) struct EdgeCredentials {
    env: Env,
    profile: Option<String>,
}

impl EdgeCredentials {
    /// The port for `config`'s source, whose settings `env` holds.
    pub(crate) fn new(env: &Env, config: &Config) -> Self {
        Self {
            env: env.clone(),
            profile: config.profile.as_ref().map(|p| p.name().to_owned()),
        }
    }
}

impl Credentials for EdgeCredentials {
    fn reread(&self) -> LocalBoxFuture<'static, Result<Rotation>> {
        let (env, profile) = (self.env.clone(), self.profile.clone());
        Box::pin(async move {
            secrets::refresh(&env, crate::edge::platform::js::now_secs(), Read::Now).await;
            read_config(&env, profile.as_deref()).map(rotation)
        })
    }
}

/// Gives `source`, made for `config` from `env`'s settings, the port when its client
/// credential is kept in the Secrets Store.
pub(crate) fn reread_from<
    H: HttpClient + 'static,
    S: TokenStore + 'static,
    R: Runtime + 'static,
>(
    source: &TokenSource<H, S, R>,
    env: &Env,
    config: &Config,
) {
    if config.credential_from_store.is_some() {
        source.set_credentials(Rc::new(EdgeCredentials::new(env, config)));
    }
}

/// `config` with the signers it needs, for [`crate::TokenSource::rotate`].
pub(crate) fn rotation(config: Config) -> Rotation {
    Rotation {
        signers: signers(&config),
        config,
    }
}
