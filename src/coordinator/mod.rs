//! The fleet's coordinator tier: the contract an isolate asks through, the wire format, and
//! `serve`, the coordinator's side.

pub(crate) mod contract;
