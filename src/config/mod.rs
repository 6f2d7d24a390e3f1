//! Configuration: `Config` and its parts (`client`), reading it from settings (`parse`), and
//! the cache identity it selects (`cache_key`).

// Only the Workers edge uses these: compiled for wasm32, where it lives, and for native tests.
#[cfg(any(target_arch = "wasm32", test))]
pub(crate) mod cache_key;
pub(crate) mod client;
pub(crate) mod parse;
