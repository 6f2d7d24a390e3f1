//! The signer ports a token source is made with: client assertions for `private_key_jwt`
//! (RFC 7523) and DPoP keys and proofs (RFC 9449); the edge implements them with WebCrypto.

use std::rc::Rc;

use futures_util::future::LocalBoxFuture;

use crate::base::error::Result;
use crate::config::client::{ClientAuth, Config, Dpop};
use crate::keys::dpop_key::DpopKey;
use crate::keys::private_key::PrivateKey;
use crate::oauth::dpop::Proofs;

/// Signs client assertions for `private_key_jwt` (RFC 7523 §2.2); the edge does it with WebCrypto.
pub trait Assertions {
    /// A fresh signed client assertion (unique `jti`) for a token request sent at `now` to the
    /// token endpoint `audience`.
    fn assertion(&self, now: u64, audience: &str) -> LocalBoxFuture<'static, Result<String>>;
}

/// The signers a configuration needs: a client assertion signer for `private_key_jwt`, a DPoP key
/// and proof maker for `OAUTH_DPOP`. Made from factories when the source is made, and only by
/// [`Signers::for_config`]: a source that needs a signer cannot be built without one.
pub struct Signers {
    /// Present exactly when the configuration uses `private_key_jwt`.
    assertions: Option<Rc<dyn Assertions>>,
    /// Present exactly when DPoP is on.
    proofs: Option<Rc<dyn Proofs>>,
}

impl Signers {
    /// The signers `config` calls for: `assertions` is called with the `private_key_jwt` key,
    /// `proofs` with the configured DPoP key (`None`: a key per token); each only when the
    /// configuration uses it.
    pub fn for_config(
        config: &Config,
        assertions: impl FnOnce(&PrivateKey) -> Rc<dyn Assertions>,
        proofs: impl FnOnce(Option<&Rc<DpopKey>>) -> Rc<dyn Proofs>,
    ) -> Self {
        Self {
            assertions: match &config.auth {
                ClientAuth::PrivateKeyJwt(key) => Some(assertions(key)),
                ClientAuth::Basic(_) | ClientAuth::Post(_) => None,
            },
            proofs: match &config.dpop {
                Dpop::Off => None,
                Dpop::GeneratedKey => Some(proofs(None)),
                Dpop::Key(key) => Some(proofs(Some(key))),
            },
        }
    }

    /// The client assertion signer, for `private_key_jwt`.
    pub(super) fn assertions(&self) -> Option<&Rc<dyn Assertions>> {
        self.assertions.as_ref()
    }

    /// The DPoP key and proof maker, with DPoP on.
    pub(super) fn proofs(&self) -> Option<&Rc<dyn Proofs>> {
        self.proofs.as_ref()
    }
}
