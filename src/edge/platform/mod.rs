//! Adapters from the Workers platform to the core's ports: `fetch` (HTTP), KV (the store),
//! timers and flights (the runtime), WebCrypto, sealing, the clock and console.

pub(crate) mod analytics;
pub(crate) mod bindings;
pub(crate) mod crypto;
pub(crate) mod env;
pub(crate) mod fetch;
pub(crate) mod js;
pub(crate) mod kv;
pub(crate) mod runtime;
pub(crate) mod seal;
pub(crate) mod secrets;
