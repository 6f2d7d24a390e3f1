//! Settings: reading them (a profile's prefix, what is shared), credentials named in the
//! Secrets Store, profile names, URL and secret values.

pub(crate) mod lookup;
pub(crate) mod profile;
pub(crate) mod secrets;
pub(crate) mod values;
