//! The egress proxy's pure decisions: routing and the origin lock, what a request must be to
//! be forwarded (`admission`), the header policy, what becomes of a redirect, the proxy's own
//! settings.

pub(crate) mod admission;
pub(crate) mod config;
pub(crate) mod headers;
pub(crate) mod redirect;
pub(crate) mod route;
#[cfg(test)]
mod route_tests;
