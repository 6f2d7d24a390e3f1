//! Putting a token source together on Workers: the configurations an `env` holds (and the
//! settings it holds that none reads), the isolate's sources (one per configuration), and
//! `TokenClient`, the library's face.

pub(crate) mod build;
pub(crate) mod client;
pub(crate) mod credentials;
pub(crate) mod profiles;
pub(crate) mod registry;
pub(crate) mod send;
pub(crate) mod settings;
pub(crate) mod unknown;
