//! The coordinator port: what the token source asks the fleet's coordinator, and what it
//! answers.
//!
//! Token path, tier by tier: isolate memory → KV → coordinator → token endpoint. Without a
//! coordinator every isolate that misses KV (KV is eventually consistent: a write takes up to a
//! minute to reach other locations) asks the token endpoint itself. With one (a Durable Object
//! on Workers), isolates ask it instead: it answers from its memory or storage, or makes the one
//! token request for its configuration, and is the only writer of the configuration's KV entries.
//! A coordinator that errs, is slow or is absent is never fatal: the source falls back to its own
//! token request and says so in the log. The coordinator's side is [`crate::coordinator`].

use futures_util::future::LocalBoxFuture;
use serde::{Deserialize, Serialize};

use crate::base::error::Error;
use crate::oauth::token::Token;

/// What an isolate asks the coordinator.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Ask {
    /// The isolate's token is in its refresh window: answer a newer one than `have`, refreshing
    /// if need be, rather than the current one.
    pub refresh: bool,
    /// Issue time (Unix seconds) of the token the isolate holds, if any.
    pub have: Option<u64>,
    /// An upstream rejected this token (issue and expiry times, Unix seconds: the token itself
    /// never travels in an ask): evict it if it is still the coordinator's, once for the fleet.
    pub rejected: Option<(u64, u64)>,
}

/// What the coordinator answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A token (with its DPoP key, for a DPoP token).
    Token(Token),
    /// The token endpoint refused or is held down, until `until`: the same answer the isolate
    /// would have got itself, without asking the endpoint.
    Held {
        /// What the endpoint said (or the hold-down that keeps it from being asked).
        error: Error,
        /// Unix seconds.
        until: u64,
    },
}

/// One in how many isolates that take a token from KV notes it to the coordinator (see
/// [`Coordinator::note`]): enough for a fleet of any size to be seen within the coordinator's
/// idle time (`crate::coordinator::warm`), few enough that a whole fleet waking in one second
/// (10 000 isolates: about 300 notes) stays well inside what one Durable Object serves (about
/// 1 000 requests a second).
pub const NOTE_ONE_IN: u32 = 32;

/// A coordinator as the token source sees it. `Err` is the coordinator's own trouble (absent,
/// slow, failing, overloaded, another configuration): the source then does the work itself.
pub trait Coordinator {
    /// Asks for a token.
    fn ask(&self, ask: Ask) -> LocalBoxFuture<'static, Result<Answer, String>>;

    /// Tells the coordinator the fleet is using its token (this isolate took it from KV, where
    /// the coordinator cannot see it): fire and forget, sent after the caller has its answer,
    /// by one in [`NOTE_ONE_IN`] isolates. The coordinator keeps KV fresh while the fleet is
    /// seen. By default nothing is sent.
    fn note(&self) -> LocalBoxFuture<'static, ()> {
        Box::pin(std::future::ready(()))
    }

    /// The coordinator's status view (JSON text without a token or a credential), for an
    /// operator; by default there is none to give.
    fn status(&self) -> LocalBoxFuture<'static, Result<String, String>> {
        Box::pin(async { Err("this coordinator has no status view".to_owned()) })
    }
}
