//! What every layer uses and nothing of ours is below: the error enum, redacting newtypes,
//! redaction of server text, log lines, the bounded cache.

pub(crate) mod error;
pub(crate) mod log;
pub(crate) mod lru;
pub(crate) mod redact;
pub(crate) mod secret;
