//! The fleet's coordinator on Workers: the `TokenCoordinator` Durable Object, and the
//! isolates' stub for asking it.

pub(crate) mod object;
pub(crate) mod stub;
