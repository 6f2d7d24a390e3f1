//! The Workers edge: the only code that touches `fetch`, KV, WebCrypto and the clock.
//! Each piece is a thin adapter from a platform API to a core trait or type.
//!
//! - `platform/`: adapters from platform APIs to the core's ports (fetch, KV, timers, WebCrypto,
//!   sealing, the clock and console);
//! - `signers/`: client assertions and DPoP proofs signed with WebCrypto;
//! - `assembly/`: the Worker's configurations per `env`, one assembly of a token source, the
//!   isolate's sources, and `TokenClient`;
//! - `coordinator/`: the `TokenCoordinator` Durable Object and the isolates' stub for it;
//! - `isolate.rs`: what an isolate remembers between requests, in one place;
//! - `proxy/` (feature `proxy`): the proxy's full path, its hot path, the outbound request.

pub(crate) mod assembly;
pub(crate) mod coordinator;
pub(crate) mod isolate;
pub(crate) mod platform;
#[cfg(feature = "proxy")]
pub(crate) mod proxy;
pub(crate) mod signers;

#[cfg(test)]
mod tests;
