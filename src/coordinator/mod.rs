//! The fleet's coordinator, its side: `serve` (answering an isolate's ask from the coordinator's
//! own token source) and the wire format of asks and answers. What an isolate asks through is
//! the port [`crate::source::coordinator`]; the Durable Object is in `edge/coordinator/`.

pub(crate) mod serve;
pub(crate) mod wire;
