//! What every layer uses and nothing of ours is below: the error enum, redacting newtypes,
//! redaction of server text, log lines, the bounded cache.

pub(crate) mod bounded;
pub(crate) mod error;
pub(crate) mod log;
// Only the Workers edge uses these: compiled for wasm32, where it lives, and for native tests.
#[cfg(any(target_arch = "wasm32", test))]
pub(crate) mod lru;
pub(crate) mod redact;
pub(crate) mod secret;
