//! Configuration: a client's settings parsed into a `Config`, and the cache identity it
//! selects (`cache_key`).

pub(crate) mod cache_key;
pub(crate) mod client;
