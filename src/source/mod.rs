//! The token path: the token source (memory, single flight, hold-down, eviction and its
//! backoff), the tiers below memory (KV, coordinator, endpoint), one token acquisition,
//! discovery, the store port and its records, the runtime port.

pub(crate) mod acquire;
pub(crate) mod answer;
pub(crate) mod context;
pub(crate) mod coordinator;
pub(crate) mod credentials;
pub(crate) mod discovery;
pub(crate) mod driver;
pub(crate) mod evictions;
pub(crate) mod flight;
#[cfg(test)]
mod flight_tests;
pub(crate) mod metric;
pub(crate) mod records;
pub(crate) mod report;
pub(crate) mod runtime;
pub(crate) mod signers;
pub(crate) mod slot;
pub(crate) mod state;
#[cfg(any(target_arch = "wasm32", test))]
pub(crate) mod status;
pub(crate) mod store;
pub(crate) mod token_source;
mod verdict;
