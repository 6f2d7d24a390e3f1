//! The fleet's coordinator, its side: `serve` (answering an isolate's ask from the coordinator's
//! own token source) and the wire format of asks and answers. What an isolate asks through is
//! the port [`crate::source::coordinator`]; the Durable Object is in `edge/coordinator/`.

pub(crate) mod serve;
pub(crate) mod warm;
// Only the Workers edge uses these: compiled for wasm32, where it lives, and for native tests.
#[cfg(any(target_arch = "wasm32", test))]
pub(crate) mod wire;
