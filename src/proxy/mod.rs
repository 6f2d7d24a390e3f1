//! The egress proxy's pure decisions: routing and the origin lock, the header policy, what
//! becomes of a redirect, the proxy's own settings.

pub(crate) mod config;
pub(crate) mod headers;
pub(crate) mod redirect;
pub(crate) mod route;
