//! Caching wraps fetching: isolate memory, then the shared store, then one token request that
//! every concurrent caller in the isolate shares (single flight), retried within a time budget,
//! held down after a refusal, and falling back to a still-valid token when the endpoint fails.
//!
//! The shape follows golang/oauth2's `reuseTokenSource`. Time is passed in (`now`, Unix seconds):
//! the source never reads a clock, so its behaviour is tested natively with fixed times.

use std::cell::RefCell;
use std::rc::Rc;

use futures_util::future::{select, Either, LocalBoxFuture};

use crate::base::error::{Error, Result};
use crate::base::log;
use crate::base::secret::AccessToken;
use crate::config::client::Config;
use crate::oauth::dpop::Nonces;
use crate::oauth::token::Token;
use crate::oauth::transport::HttpClient;
use crate::source::acquire::Acquirer;
pub use crate::source::acquire::{Assertions, Signers};
use crate::source::coordinator::Coordinator;
pub use crate::source::runtime::{LogSink, Runtime};
use crate::source::store::{decode_record, TokenStore, STORE_TIMEOUT_MS, TOKEN_ENTRY};
use crate::source::tiers::{acquire, end_flight, held_answer, persist};

pub(crate) type Outcome = Rc<RefCell<Option<Result<Token>>>>;

/// Called with the handle of a flight a call started (see [`TokenSource::token_ahead`]).
pub type OnStart<'a, H> = &'a dyn Fn(&H);

/// The running flight.
pub(crate) struct Flight<H> {
    pub(crate) generation: u64,
    /// Unix seconds at which it started.
    pub(crate) started: u64,
    /// [`Runtime::now_ms`] at which it started.
    pub(crate) started_ms: u64,
    pub(crate) handle: H,
    pub(crate) outcome: Outcome,
}

/// Slack on top of the token budget before a waiter gives up on a flight: room for what a flight
/// does before its answer besides the token request, each step bounded: the token and hold-down
/// reads (one [`STORE_TIMEOUT_MS`], in parallel), the discovery read (another), and WebCrypto
/// (sealing keys, assertions, proofs). Writes come after the answer and cost waiters nothing.
pub const FLIGHT_SLACK_MS: u64 = 2 * STORE_TIMEOUT_MS + 2_000;

/// Bound on one coordinator ask beyond `OAUTH_TIMEOUT_MS`: the coordinator's whole flight (its
/// token budget plus [`FLIGHT_SLACK_MS`] for its storage and WebCrypto) and the trip to it.
/// Waiters of a source with a coordinator wait this much longer, so a coordinator that never
/// answers still leaves time for the fallback.
pub const COORDINATOR_SLACK_MS: u64 = FLIGHT_SLACK_MS + 1_000;

pub(crate) struct Inner<H, S, R: Runtime> {
    pub(crate) config: Config,
    /// One token acquisition at a time: the endpoint, signers, retries.
    pub(crate) acquirer: Acquirer<H>,
    pub(crate) store: S,
    pub(crate) runtime: R,
    pub(crate) log: LogSink,
    pub(crate) memory: RefCell<Option<Token>>,
    /// This source's place in the refresh window (see [`Token::refresh_due_skewed`]).
    pub(crate) refresh_skew: f64,
    /// Until when (Unix seconds) the endpoint is left alone, and what callers get meanwhile.
    pub(crate) held: RefCell<Option<(u64, Error)>>,
    /// The last token an upstream rejected: never taken from KV again, whatever KV says.
    pub(crate) revoked: RefCell<Option<Token>>,
    pub(crate) flight: RefCell<Option<Flight<R::Handle>>>,
    /// The fleet's coordinator, asked before the token endpoint (see [`crate::source::coordinator`]).
    pub(crate) coordinator: RefCell<Option<Rc<dyn Coordinator>>>,
    /// The latest DPoP nonce of each resource server (RFC 9449 §9). Kept apart from the token
    /// endpoint's: an authorization server and an API on one origin keep separate nonces.
    pub(crate) resource_nonces: RefCell<Nonces>,
    pub(crate) generation: std::cell::Cell<u64>,
    /// When (Unix seconds) an upstream rejection last evicted a token.
    pub(crate) last_eviction: std::cell::Cell<Option<u64>>,
    /// The newest token this source has held, by issue time: a KV record older than that (or as
    /// old and another token: times are whole seconds) is a replay (someone with write access
    /// put back an old value) or a stale read, never news.
    pub(crate) newest: RefCell<Option<(u64, AccessToken)>>,
}

/// A cached, single-flight source of access tokens for one configuration.
pub struct TokenSource<H, S, R: Runtime> {
    inner: Rc<Inner<H, S, R>>,
}

impl<H, S, R: Runtime> Clone for TokenSource<H, S, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<H: HttpClient + 'static, S: TokenStore + 'static, R: Runtime + 'static> TokenSource<H, S, R> {
    /// A source for `config` that fetches through `http` and signs with `signers` (made for
    /// this configuration by [`Signers::for_config`]), shares tokens and hold-downs through
    /// `store`, waits and runs flights with `runtime`, and reports to `log`.
    pub fn new(
        config: Config,
        http: H,
        signers: Signers,
        store: S,
        runtime: R,
        log: LogSink,
    ) -> Self {
        Self {
            inner: Rc::new(Inner {
                refresh_skew: runtime.random(),
                acquirer: Acquirer::new(config.clone(), http, signers),
                config,
                store,
                runtime,
                log,
                memory: RefCell::new(None),
                held: RefCell::new(None),
                revoked: RefCell::new(None),
                flight: RefCell::new(None),
                coordinator: RefCell::new(None),
                resource_nonces: RefCell::default(),
                generation: std::cell::Cell::new(0),
                last_eviction: std::cell::Cell::new(None),
                newest: RefCell::new(None),
            }),
        }
    }

    /// Gives the source the fleet's coordinator: asked after a KV miss, before the token
    /// endpoint. A token the coordinator answers is not written to KV by this source (the
    /// coordinator writes it); one this source fetched itself after a failed ask is.
    pub fn set_coordinator(&self, coordinator: Rc<dyn Coordinator>) {
        *self.inner.coordinator.borrow_mut() = Some(coordinator);
    }

    /// The hold-down in force at `now`, if any: until when (Unix seconds), and the error that
    /// caused it, as the endpoint gave it.
    pub fn hold(&self, now: u64) -> Option<(u64, Error)> {
        self.inner
            .held
            .borrow()
            .as_ref()
            .filter(|(until, _)| now < *until)
            .cloned()
    }

    /// The token in memory when it can be used at `now` with nothing else to do: fresh, and
    /// (with refresh ahead on) not yet due for its background refresh. What
    /// [`Self::token_ahead`] would return without starting anything, so a caller can skip the
    /// asynchronous path; `None` means "take it".
    pub fn ready(&self, now: u64) -> Option<Token> {
        self.inner
            .memory
            .borrow()
            .as_ref()
            .filter(|t| {
                t.is_fresh(now)
                    && !(self.inner.config.refresh_ahead
                        && t.refresh_due_skewed(now, self.inner.refresh_skew))
            })
            .cloned()
    }

    /// The token in memory, fresh or not (for a coordinator comparing what it holds).
    pub fn peek(&self) -> Option<Token> {
        self.inner.memory.borrow().clone()
    }

    /// A token newer than the one held: joins or starts a refresh and waits for it (what a
    /// coordinator does when an isolate's token is due).
    pub async fn refresh(&self, now: u64) -> Result<Token> {
        if let Some(held) = held_answer(&self.inner, now) {
            return held;
        }
        self.wait_for(now, true, None).await
    }

    /// The latest DPoP nonce of the resource server at `url` (RFC 9449 §9), if it gave one.
    pub fn dpop_nonce(&self, url: &str) -> Option<String> {
        self.inner
            .resource_nonces
            .borrow()
            .get(url)
            .map(str::to_owned)
    }

    /// Remembers the DPoP nonce a resource server's response to `url` carried; false if it was
    /// malformed (and then ignored).
    pub fn remember_dpop_nonce(&self, url: &str, nonce: &str) -> bool {
        self.inner.resource_nonces.borrow_mut().remember(url, nonce)
    }

    /// The latest DPoP nonce of the token endpoint at `url` (RFC 9449 §8), if it gave one.
    pub fn token_endpoint_nonce(&self, url: &str) -> Option<String> {
        self.inner
            .acquirer
            .token_nonces
            .borrow()
            .get(url)
            .map(str::to_owned)
    }

    /// How long waiters wait for a flight: the token budget, the slack for store reads and
    /// WebCrypto, and with a coordinator, a bounded ask before the fallback.
    fn bound_ms(&self) -> u64 {
        let coordinator = if self.inner.coordinator.borrow().is_some() {
            self.inner.config.timeout_ms + COORDINATOR_SLACK_MS
        } else {
            0
        };
        self.inner.config.timeout_ms + FLIGHT_SLACK_MS + coordinator
    }

    /// Whether a token request (a flight) is under way.
    pub fn in_flight(&self) -> bool {
        self.inner.flight.borrow().is_some()
    }

    /// The configuration this source serves.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// A token usable at `now`. Once the isolate holds a fresh one, this does no I/O at all.
    ///
    /// While the endpoint is failing or held down, a token inside its expiry margin but not yet
    /// expired is still returned; no token is ever returned past its expiry.
    pub async fn token(&self, now: u64) -> Result<Token> {
        self.token_ahead(now, false, None).await
    }

    /// Like [`TokenSource::token`], and with `ahead` (and `OAUTH_REFRESH_AHEAD` on), a fresh token
    /// inside its refresh window (see [`Token::refresh_at`]) is returned at once while one background
    /// refresh starts.
    ///
    /// `on_start` is called with the handle of any flight this call starts (a background refresh
    /// or a plain token request), before anything is awaited, so the caller can keep the
    /// platform working on it even if the caller itself goes away (`ctx.waitUntil`).
    pub async fn token_ahead(
        &self,
        now: u64,
        ahead: bool,
        on_start: Option<OnStart<'_, R::Handle>>,
    ) -> Result<Token> {
        let fresh = self
            .inner
            .memory
            .borrow()
            .as_ref()
            .filter(|t| t.is_fresh(now))
            .cloned();
        if let Some(t) = fresh {
            let due = ahead
                && self.inner.config.refresh_ahead
                && t.refresh_due_skewed(now, self.inner.refresh_skew);
            let held = self
                .inner
                .held
                .borrow()
                .as_ref()
                .is_some_and(|(until, _)| now < *until);
            if due && !held {
                self.flight(now, true, on_start);
            }
            return Ok(t);
        }
        if let Some(held) = held_answer(&self.inner, now) {
            return held;
        }
        self.wait_for(now, false, on_start).await
    }

    /// The running flight, or a new one started at `now` (`refresh`: a background refresh). A
    /// flight older than the waiters' bound is presumed dead (its request was cancelled with the
    /// I/O it owned) and replaced, so no caller joins it.
    fn flight(
        &self,
        now: u64,
        refresh: bool,
        on_start: Option<OnStart<'_, R::Handle>>,
    ) -> (u64, R::Handle, Outcome) {
        let bound_ms = self.bound_ms();
        let now_ms = self.inner.runtime.now_ms();
        let mut slot = self.inner.flight.borrow_mut();
        // Presumed dead only once its waiters' bound has surely passed: by the clock, or by
        // whole seconds with the second `now` may lag the real time counted against it.
        let dead = |f: &Flight<R::Handle>| {
            now_ms.saturating_sub(f.started_ms) >= bound_ms
                || now.saturating_sub(f.started) > bound_ms.div_ceil(1000)
        };
        if slot.as_ref().is_some_and(dead) {
            slot.take();
        }
        if let Some(f) = slot.as_ref() {
            return (f.generation, f.handle.clone(), f.outcome.clone());
        }
        let generation = self.inner.generation.get() + 1;
        self.inner.generation.set(generation);
        let inner = self.inner.clone();
        let outcome: Outcome = Rc::default();
        let out = outcome.clone();
        // Two phases on purpose (see `Runtime::start`): the answer, then the writes.
        #[allow(clippy::async_yields_async)]
        let work = Box::pin(async move {
            let mut writes = Vec::new();
            let result = acquire(&inner, now, refresh, generation, &mut writes).await;
            *out.borrow_mut() = Some(result);
            end_flight(&inner, generation);
            let persist: LocalBoxFuture<'static, ()> =
                Box::pin(async move { persist(&inner, writes).await });
            persist
        });
        let handle = self.inner.runtime.start(work);
        *slot = Some(Flight {
            generation,
            started: now,
            started_ms: now_ms,
            handle: handle.clone(),
            outcome: outcome.clone(),
        });
        drop(slot);
        if let Some(on_start) = on_start {
            on_start(&handle);
        }
        (generation, handle, outcome)
    }

    async fn wait_for(
        &self,
        now: u64,
        refresh: bool,
        on_start: Option<OnStart<'_, R::Handle>>,
    ) -> Result<Token> {
        let (generation, handle, outcome) = self.flight(now, refresh, on_start);
        // Bounded on the waiter's side: if the request that started the flight is cancelled,
        // the platform may drop the flight's I/O with it, and nobody must wait for it forever.
        let bound = self.bound_ms();
        let waited = select(
            self.inner.runtime.wait(&handle),
            Box::pin(self.inner.runtime.sleep(bound)),
        )
        .await;
        if let Either::Right(_) = waited {
            end_flight(&self.inner, generation);
            (self.inner.log)(&log::cache_event(
                "flight_abandoned",
                "a token request did not finish in time; starting over",
            ));
            return Err(Error::Unavailable {
                reason: format!("token request did not complete within {bound} ms"),
                retry_after: None,
            });
        }
        let result = outcome.borrow().clone();
        result.unwrap_or_else(|| Err(Error::Other("token request was abandoned".into())))
    }

    /// The upstream rejected `used` at `now` (RFC 6750 §3.1 `invalid_token`, e.g. a revoked
    /// token): forget it in memory and KV so the next [`TokenSource::token`] fetches a new one.
    ///
    /// Returns whether a new token is worth fetching. Only the first of many concurrent
    /// rejections of the same token evicts anything, and evictions happen at most once per
    /// `OAUTH_HOLDDOWN_SECS`: an upstream that rejects every token (wrong audience, its own
    /// outage) must not turn each proxied request into a token request.
    pub async fn invalidate(&self, used: &Token, now: u64) -> bool {
        let inner = &self.inner;
        let memory = inner.memory.borrow().clone();
        let held_by_memory = memory
            .as_ref()
            .is_some_and(|t| t.access_token() == used.access_token());
        if !held_by_memory {
            // Another caller already evicted it, or a refresh replaced it: a newer token is
            // there or on its way.
            let newer = memory.is_some_and(|t| t.is_fresh(now));
            return newer
                || inner
                    .revoked
                    .borrow()
                    .as_ref()
                    .is_some_and(|r| r.access_token() == used.access_token());
        }
        let recent = inner
            .last_eviction
            .get()
            .is_some_and(|at| now < at + inner.config.holddown_secs.max(1));
        if recent {
            (inner.log)(&log::cache_event(
                "evict_skipped",
                "upstream rejected a fresh token again; passing its answer through",
            ));
            return false;
        }
        inner.last_eviction.set(Some(now));
        *inner.revoked.borrow_mut() = Some(used.clone());
        inner.memory.borrow_mut().take();
        (inner.log)(&log::cache_event(
            "evicted",
            "upstream rejected the token; fetching a new one",
        ));
        // With a coordinator, it is the only writer of KV: it hears of the rejection in the next
        // ask. Without one, delete the KV copy only if it is still the rejected token.
        if inner.coordinator.borrow().is_some() {
            return true;
        }
        if let Ok(Some(raw)) = inner.store.get(TOKEN_ENTRY).await {
            let margin = inner.config.expiry_margin_secs;
            if decode_record(&raw, margin).is_some_and(|t| t.access_token() == used.access_token())
            {
                if let Err(e) = inner.store.delete(TOKEN_ENTRY).await {
                    (inner.log)(&log::cache_event("delete_error", &e));
                }
            }
        }
        true
    }
}
