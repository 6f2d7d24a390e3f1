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

type Flight = Shared<LocalBoxFuture<'static, Result<Token>>>;

struct Inner<H, S> {
    config: Config,
    http: H,
    store: S,
    log: LogSink,
    memory: RefCell<Option<Token>>,
    flight: RefCell<Option<Flight>>,
}

/// A cached, single-flight source of access tokens for one configuration.
pub struct TokenSource<H, S> {
    inner: Rc<Inner<H, S>>,
}

impl<H, S> Clone for TokenSource<H, S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<H: HttpClient + 'static, S: TokenStore + 'static> TokenSource<H, S> {
    /// A source for `config` that fetches through `http`, shares tokens through `store` and
    /// reports to `log`.
    pub fn new(config: Config, http: H, store: S, log: LogSink) -> Self {
        Self {
            inner: Rc::new(Inner {
                config,
                http,
                store,
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
        if let Some(t) = self.inner.memory.borrow().as_ref().filter(|t| t.is_fresh(now)) {
            return Ok(t.clone());
        }
        let flight = {
            let mut slot = self.inner.flight.borrow_mut();
            slot.get_or_insert_with(|| {
                let inner = self.inner.clone();
                async move {
                    let result = acquire(&inner, now).await;
                    // The flight ends here, whoever is polling it; the next miss starts a new one.
                    inner.flight.borrow_mut().take();
                    result
                }
                .boxed_local()
                .shared()
            })
            .clone()
        };
        flight.await
    }

    /// Forgets the token held in memory (the shared store keeps its copy until it expires).
    pub fn clear_memory(&self) {
        self.inner.memory.borrow_mut().take();
    }
}

async fn acquire<H: HttpClient, S: TokenStore>(inner: &Inner<H, S>, now: u64) -> Result<Token> {
    match inner.store.get(TOKEN_ENTRY).await {
        Ok(Some(raw)) => match decode_record(&raw) {
            Some(t) if t.is_fresh(now) => {
                (inner.log)(&log::token_ok(Source::Kv, None, None, t.expires_at().saturating_sub(now)));
                *inner.memory.borrow_mut() = Some(t.clone());
                return Ok(t);
            }
            Some(_) => {} // stale: KV may serve a value a little past its expiration
            None => (inner.log)(&log::cache_event("corrupt", "cached value unreadable; refetching")),
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
    (inner.log)(&log::token_ok(Source::Network, status, latency, token.expires_at().saturating_sub(now)));
    *inner.memory.borrow_mut() = Some(token.clone());
    let ttl = token.fresh_until().saturating_sub(now);
    if ttl >= KV_MIN_TTL_SECS {
        if let Err(e) = inner.store.put(TOKEN_ENTRY, encode_record(&token), ttl).await {
            (inner.log)(&log::cache_event("write_error", &e));
        }
    }
    Ok(token)
}
