//! The credentials port: reading a configuration's Secrets Store credentials again, now, when
//! the token endpoint refuses the client (`invalid_client`, RFC 6749 §5.2): the secret may just
//! have been rotated. What comes back replaces the source's configuration in place
//! ([`crate::TokenSource::rotate`]), so the token in memory and its cache entries stay.

use futures_util::future::LocalBoxFuture;

use crate::base::error::Result;
use crate::config::client::Config;
use crate::source::signers::Signers;

/// A configuration read again, and the signers made for it.
pub struct Rotation {
    /// The configuration as the settings (and the Secrets Store) give it now.
    pub config: Config,
    /// Its signers ([`Signers::for_config`]).
    pub signers: Signers,
}

/// Reads the configuration again with its Secrets Store credentials read afresh (the edge
/// does it; a source without this port never rereads).
pub trait Credentials {
    /// The configuration as its settings give it now, its Secrets Store secrets read again.
    fn reread(&self) -> LocalBoxFuture<'static, Result<Rotation>>;
}
