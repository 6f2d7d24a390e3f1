//! Settings: reading them (a profile's prefix, what is shared), credentials named in the
//! Secrets Store, profile names, URL and secret values, and the names a Worker sets that none
//! of them reads.

pub(crate) mod lookup;
pub(crate) mod profile;
pub(crate) mod secrets;
#[cfg(any(target_arch = "wasm32", test))]
pub(crate) mod unknown;
pub(crate) mod values;
