//! Settings: reading them (a profile's prefix, what is shared), profile names, URL and secret
//! values.

pub(crate) mod lookup;
pub(crate) mod profile;
pub(crate) mod values;
