//! The fleet's coordinator on Workers: the `TokenCoordinator` Durable Object.

pub(crate) mod object;
