//! The egress proxy on Workers: the full path (any request), the hot path (a token in
//! memory, no Rust future) and the outbound request both build; where a request goes
//! (`routed`) and the shared-secret door (`guard`), which both paths share.

pub(crate) mod full;
pub(crate) mod guard;
pub(crate) mod hot;
pub(crate) mod outbound;
pub(crate) mod routed;
pub(crate) mod rpc;
