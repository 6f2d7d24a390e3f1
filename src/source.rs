//! Caching wraps fetching: isolate memory, then the shared store, then one token request that
//! every concurrent caller in the isolate shares (single flight).
//!
//! The shape follows golang/oauth2's `reuseTokenSource`. Time is passed in (`now`, Unix seconds):
//! the source never reads a clock, so its behaviour is tested natively with fixed times.

use std::cell::RefCell;
use std::rc::Rc;

use futures_util::future::{FutureExt, LocalBoxFuture, Shared};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::log::{self, Source};
use crate::store::{decode_record, encode_record, TokenStore, KV_MIN_TTL_SECS, TOKEN_ENTRY};
use crate::token::Token;
use crate::token_request::build_token_request;
use crate::token_response::parse_token_response;
use crate::transport::HttpClient;

/// Receives one JSON log line at a time.
pub type LogSink = Rc<dyn Fn(&str)>;

/// Runs one token request on behalf of every caller waiting for it.
///
/// The request must not belong to any one caller: in workerd, a task woken from another request's
/// context is cancelled when that request ends, so the edge runs flights as JS promises that each
/// caller awaits from its own context. Natively a shared future does the same job.
pub trait Flights {
    /// What waiters hold to await the flight.
    type Handle: Clone;
    /// Starts `work`, which runs to completion whichever caller waits.
    fn start(&self, work: LocalBoxFuture<'static, ()>) -> Self::Handle;
    /// Resolves when the flight behind `handle` is over.
    fn wait(&self, handle: &Self::Handle) -> LocalBoxFuture<'static, ()>;
}

/// Flights as shared futures, driven by whichever waiter polls: for native use and tests.
#[derive(Debug, Default, Clone, Copy)]
pub struct SharedFlights;

impl Flights for SharedFlights {
    type Handle = Shared<LocalBoxFuture<'static, ()>>;
    fn start(&self, work: LocalBoxFuture<'static, ()>) -> Self::Handle {
        work.shared()
    }
    fn wait(&self, handle: &Self::Handle) -> LocalBoxFuture<'static, ()> {
        handle.clone().boxed_local()
    }
}

type Outcome = Rc<RefCell<Option<Result<Token>>>>;

struct Inner<H, S, F: Flights> {
    config: Config,
    http: H,
    store: S,
    flights: F,
    log: LogSink,
    memory: RefCell<Option<Token>>,
    flight: RefCell<Option<(F::Handle, Outcome)>>,
}

/// A cached, single-flight source of access tokens for one configuration.
pub struct TokenSource<H, S, F: Flights = SharedFlights> {
    inner: Rc<Inner<H, S, F>>,
}

impl<H, S, F: Flights> Clone for TokenSource<H, S, F> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<H: HttpClient + 'static, S: TokenStore + 'static> TokenSource<H, S, SharedFlights> {
    /// A source for `config` that fetches through `http`, shares tokens through `store` and
    /// reports to `log`.
    pub fn new(config: Config, http: H, store: S, log: LogSink) -> Self {
        Self::with_flights(config, http, store, SharedFlights, log)
    }
}

impl<H: HttpClient + 'static, S: TokenStore + 'static, F: Flights + 'static> TokenSource<H, S, F> {
    /// Like [`TokenSource::new`], running token requests with `flights`.
    pub fn with_flights(config: Config, http: H, store: S, flights: F, log: LogSink) -> Self {
        Self {
            inner: Rc::new(Inner {
                config,
                http,
                store,
                flights,
                log,
                memory: RefCell::new(None),
                flight: RefCell::new(None),
            }),
        }
    }

    /// The configuration this source serves.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// A token that is fresh at `now`. Once the isolate holds one, this does no I/O at all.
    pub async fn token(&self, now: u64) -> Result<Token> {
        if let Some(t) = self
            .inner
            .memory
            .borrow()
            .as_ref()
            .filter(|t| t.is_fresh(now))
        {
            return Ok(t.clone());
        }
        let (handle, outcome) = {
            let mut slot = self.inner.flight.borrow_mut();
            slot.get_or_insert_with(|| {
                let inner = self.inner.clone();
                let outcome: Outcome = Rc::default();
                let out = outcome.clone();
                let work = async move {
                    let result = acquire(&inner, now).await;
                    *out.borrow_mut() = Some(result);
                    // The flight ends here; the next miss starts a new one.
                    inner.flight.borrow_mut().take();
                }
                .boxed_local();
                (self.inner.flights.start(work), outcome)
            })
            .clone()
        };
        self.inner.flights.wait(&handle).await;
        let result = outcome.borrow().clone();
        result.unwrap_or_else(|| Err(Error::Other("token request was abandoned".into())))
    }

    /// Forgets the token held in memory (the shared store keeps its copy until it expires).
    pub fn clear_memory(&self) {
        self.inner.memory.borrow_mut().take();
    }
}

async fn acquire<H: HttpClient, S: TokenStore, F: Flights>(
    inner: &Inner<H, S, F>,
    now: u64,
) -> Result<Token> {
    match inner.store.get(TOKEN_ENTRY).await {
        Ok(Some(raw)) => match decode_record(&raw) {
            Some(t) if t.is_fresh(now) => {
                (inner.log)(&log::token_ok(
                    Source::Kv,
                    None,
                    None,
                    t.expires_at().saturating_sub(now),
                ));
                *inner.memory.borrow_mut() = Some(t.clone());
                return Ok(t);
            }
            Some(_) => {} // stale: KV may serve a value a little past its expiration
            None => (inner.log)(&log::cache_event(
                "corrupt",
                "cached value unreadable; refetching",
            )),
        },
        Ok(None) => {}
        Err(e) => (inner.log)(&log::cache_event("read_error", &e)),
    }

    let config = &inner.config;
    let secret = config.auth.secret().expose();
    let (result, status, latency) = match inner.http.execute(build_token_request(config)).await {
        Ok(resp) => (
            parse_token_response(&resp, now, config.expiry_margin_secs),
            Some(resp.status),
            Some(resp.elapsed_ms),
        ),
        Err(e) => (
            Err(Error::Unavailable {
                reason: format!("network error: {}", e.reason),
                retry_after: None,
            }),
            None,
            Some(e.elapsed_ms),
        ),
    };
    let token = match result {
        Ok(t) => t,
        Err(e) => {
            let e = e.scrub(&[secret]);
            (inner.log)(&log::token_error(status, latency, &e));
            return Err(e);
        }
    };
    (inner.log)(&log::token_ok(
        Source::Network,
        status,
        latency,
        token.expires_at().saturating_sub(now),
    ));
    *inner.memory.borrow_mut() = Some(token.clone());
    let ttl = token.fresh_until().saturating_sub(now);
    if ttl >= KV_MIN_TTL_SECS {
        if let Err(e) = inner
            .store
            .put(TOKEN_ENTRY, encode_record(&token), ttl)
            .await
        {
            (inner.log)(&log::cache_event("write_error", &e));
        }
    }
    Ok(token)
}
