//! The egress proxy on Workers: the full path (any request), the hot path (a token in
//! memory, no Rust future) and the outbound request both build.

pub(crate) mod full;
pub(crate) mod hot;
pub(crate) mod outbound;
pub(crate) mod rpc;
