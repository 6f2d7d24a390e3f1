//! The egress proxy's pure decisions: routing and the origin lock, the header policy, the
//! proxy's own settings.

pub(crate) mod config;
pub(crate) mod headers;
pub(crate) mod route;
