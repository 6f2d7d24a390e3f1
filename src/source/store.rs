//! The one cache trait the core needs, and the layout of a cached token.
//!
//! The store belongs to one configuration: it namespaces the names given here under that
//! configuration's cache key, so the core never sees or builds KV keys.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;

use crate::oauth::token::Token;

/// Workers KV refuses an `expirationTtl` below 60 seconds; shorter-lived tokens stay in memory.
pub(crate) const KV_MIN_TTL_SECS: u64 = 60;

/// A store write a flight leaves until its waiters have their answer.
pub(crate) enum Write {
    /// The token, for this long (seconds).
    Token(Token, u64),
    Put(&'static str, String, u64),
    Delete(&'static str),
}

impl std::fmt::Debug for Write {
    // Names and lifetimes only: the values are records (a token among them).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Write::Token(_, ttl) => write!(f, "Token(ttl {ttl} s)"),
            Write::Put(name, _, ttl) => write!(f, "Put({name}, ttl {ttl} s)"),
            Write::Delete(name) => write!(f, "Delete({name})"),
        }
    }
}

/// Longest any one store operation may take; an implementation must give up by then (a read is
/// then a miss, a write skipped). Flights budget for it (see [`crate::source::token_source::FLIGHT_SLACK_MS`]).
pub(crate) const STORE_TIMEOUT_MS: u64 = 1_500;

/// A shared cache (Workers KV in production). Failures are reported as text and treated by the
/// caller as a miss or a skipped write: the cache is an optimisation, never a dependency. Every
/// operation settles within `STORE_TIMEOUT_MS` (1.5 s).
pub trait TokenStore {
    /// Reads an entry.
    fn get(&self, name: &str) -> impl Future<Output = Result<Option<String>, String>>;
    /// Writes an entry that expires after `ttl_secs` (at least `KV_MIN_TTL_SECS`, 60 s, as Workers KV requires).
    fn put(
        &self,
        name: &str,
        value: String,
        ttl_secs: u64,
    ) -> impl Future<Output = Result<(), String>>;
    /// Removes an entry.
    fn delete(&self, name: &str) -> impl Future<Output = Result<(), String>>;
}

/// No shared cache: memory only.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoStore;

impl TokenStore for NoStore {
    fn get(&self, _: &str) -> impl Future<Output = Result<Option<String>, String>> {
        std::future::ready(Ok(None))
    }
    fn put(&self, _: &str, _: String, _: u64) -> impl Future<Output = Result<(), String>> {
        std::future::ready(Ok(()))
    }
    fn delete(&self, _: &str) -> impl Future<Output = Result<(), String>> {
        std::future::ready(Ok(()))
    }
}

/// A map as a store, for tests and for embedding in other caches. TTLs are not enforced.
impl TokenStore for RefCell<HashMap<String, String>> {
    fn get(&self, name: &str) -> impl Future<Output = Result<Option<String>, String>> {
        std::future::ready(Ok(self.borrow().get(name).cloned()))
    }
    fn put(&self, name: &str, value: String, _: u64) -> impl Future<Output = Result<(), String>> {
        self.borrow_mut().insert(name.to_owned(), value);
        std::future::ready(Ok(()))
    }
    fn delete(&self, name: &str) -> impl Future<Output = Result<(), String>> {
        self.borrow_mut().remove(name);
        std::future::ready(Ok(()))
    }
}
