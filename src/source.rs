//! Caching wraps fetching: isolate memory, then the shared store, then one token request that
//! every concurrent caller in the isolate shares (single flight), retried within a time budget,
//! held down after a refusal, and falling back to a still-valid token when the endpoint fails.
//!
//! The shape follows golang/oauth2's `reuseTokenSource`. Time is passed in (`now`, Unix seconds):
//! the source never reads a clock, so its behaviour is tested natively with fixed times.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;

use futures_util::future::{join, select, Either, LocalBoxFuture};

use crate::backoff::retry_delay;
use crate::config::{ClientAuth, Config, Dpop};
use crate::coordinator::{Answer, Ask, Coordinator};
use crate::discovery::{
    decode_meta, encode_meta, metadata_urls, parse_metadata, METADATA_TTL_SECS, META_ENTRY,
};
use crate::dpop::{htu, token_endpoint_wants_nonce, DpopKey, Nonces, Proofs};
use crate::error::{Error, Result};
use crate::holddown::{decode_hold, encode_hold, held_error, hold_secs, HOLD_ENTRY};
use crate::log::{self, Source};
use crate::redact::Redactor;
use crate::secret::AccessToken;
use crate::store::{
    decode_record, encode_record, TokenStore, KV_MIN_TTL_SECS, STORE_TIMEOUT_MS, TOKEN_ENTRY,
};
use crate::token::{Scheme, Token};
use crate::token_request::build_token_request;
use crate::token_response::parse_token_response;
use crate::transport::{HttpClient, HttpRequest};

/// Receives one JSON log line at a time.
pub type LogSink = Rc<dyn Fn(&str)>;

/// What the platform provides besides HTTP and storage: running a flight, waiting, randomness.
///
/// A flight must not belong to any one caller: in workerd, a task woken from another request's
/// context is cancelled when that request ends, so the edge runs flights as JS promises that each
/// caller awaits from its own context.
pub trait Runtime {
    /// What waiters hold to await a flight.
    type Handle: Clone;
    /// Starts `work`, which runs to completion whichever caller waits. It has two phases: the
    /// first settles the flight's answer, and waiters are released as soon as it ends; the
    /// second (the future the first returns) writes the answer to the store, and whatever keeps
    /// the flight alive (`ctx.waitUntil`) must cover it too. It must not run `work` before
    /// returning: the flight is registered only after `start` returns.
    fn start(&self, work: LocalBoxFuture<'static, LocalBoxFuture<'static, ()>>) -> Self::Handle;
    /// Resolves when the first phase of the flight behind `handle` is over.
    fn wait(&self, handle: &Self::Handle) -> LocalBoxFuture<'static, ()>;
    /// Resolves after `ms` milliseconds.
    fn sleep(&self, ms: u64) -> impl Future<Output = ()>;
    /// A random number in `[0, 1)`, for backoff jitter.
    fn random(&self) -> f64;
    /// Milliseconds on a clock that never goes back: how long a flight's steps took, read only
    /// off the hot path (the hot path takes `now` from its caller).
    fn now_ms(&self) -> u64;
}

/// Signs client assertions for `private_key_jwt` (RFC 7523 §2.2); the edge does it with WebCrypto.
pub trait Assertions {
    /// A fresh signed client assertion (unique `jti`) for a token request sent at `now` to the
    /// token endpoint `audience`.
    fn assertion(&self, now: u64, audience: &str) -> LocalBoxFuture<'static, Result<String>>;
}

type Outcome = Rc<RefCell<Option<Result<Token>>>>;

/// Called with the handle of a flight a call started (see [`TokenSource::token_ahead`]).
pub type OnStart<'a, H> = &'a dyn Fn(&H);

/// The running flight.
struct Flight<H> {
    generation: u64,
    /// Unix seconds at which it started.
    started: u64,
    /// [`Runtime::now_ms`] at which it started.
    started_ms: u64,
    handle: H,
    outcome: Outcome,
}

/// Slack on top of the token budget before a waiter gives up on a flight: room for what a flight
/// does before its answer besides the token request, each step bounded: the token and hold-down
/// reads (one [`STORE_TIMEOUT_MS`], in parallel), the discovery read (another), and WebCrypto
/// (sealing keys, assertions, proofs). Writes come after the answer and cost waiters nothing.
pub const FLIGHT_SLACK_MS: u64 = 2 * STORE_TIMEOUT_MS + 2_000;

/// Bound on one coordinator ask beyond `OAUTH_TIMEOUT_MS` (the coordinator may make one token
/// request): its storage, and the trip to it. Waiters of a source with a coordinator wait this
/// much longer, so a coordinator that never answers still leaves time for the fallback.
pub const COORDINATOR_SLACK_MS: u64 = 1_000;

/// A store write a flight leaves until its waiters have their answer.
enum Write {
    /// The token, for this long (seconds).
    Token(Token, u64),
    Put(&'static str, String, u64),
    Delete(&'static str),
}

struct Inner<H, S, R: Runtime> {
    config: Config,
    http: H,
    store: S,
    runtime: R,
    log: LogSink,
    memory: RefCell<Option<Token>>,
    /// This source's place in the refresh window (see [`Token::refresh_due_skewed`]).
    refresh_skew: f64,
    /// Until when (Unix seconds) the endpoint is left alone, and what callers get meanwhile.
    held: RefCell<Option<(u64, Error)>>,
    /// The last token an upstream rejected: never taken from KV again, whatever KV says.
    revoked: RefCell<Option<Token>>,
    flight: RefCell<Option<Flight<R::Handle>>>,
    assertions: RefCell<Option<Rc<dyn Assertions>>>,
    /// The fleet's coordinator, asked before the token endpoint (see [`crate::coordinator`]).
    coordinator: RefCell<Option<Rc<dyn Coordinator>>>,
    proofs: RefCell<Option<Rc<dyn Proofs>>>,
    /// The latest DPoP nonce of the token endpoint's origin (RFC 9449 §8.2).
    token_nonces: RefCell<Nonces>,
    /// The latest DPoP nonce of each resource server (RFC 9449 §9). Kept apart from the token
    /// endpoint's: an authorization server and an API on one origin keep separate nonces.
    resource_nonces: RefCell<Nonces>,
    /// A discovered token endpoint and until when (Unix seconds) it is trusted.
    endpoint: RefCell<Option<(String, u64)>>,
    generation: std::cell::Cell<u64>,
    /// When (Unix seconds) an upstream rejection last evicted a token.
    last_eviction: std::cell::Cell<Option<u64>>,
    /// The newest token this source has held, by issue time: a KV record older than that (or as
    /// old and another token: times are whole seconds) is a replay (someone with write access
    /// put back an old value) or a stale read, never news.
    newest: RefCell<Option<(u64, AccessToken)>>,
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
    /// A source for `config` that fetches through `http`, shares tokens and hold-downs through
    /// `store`, waits and runs flights with `runtime`, and reports to `log`.
    pub fn new(config: Config, http: H, store: S, runtime: R, log: LogSink) -> Self {
        Self {
            inner: Rc::new(Inner {
                refresh_skew: runtime.random(),
                config,
                http,
                store,
                runtime,
                log,
                memory: RefCell::new(None),
                held: RefCell::new(None),
                revoked: RefCell::new(None),
                flight: RefCell::new(None),
                assertions: RefCell::new(None),
                coordinator: RefCell::new(None),
                proofs: RefCell::new(None),
                token_nonces: RefCell::default(),
                resource_nonces: RefCell::default(),
                endpoint: RefCell::new(None),
                generation: std::cell::Cell::new(0),
                last_eviction: std::cell::Cell::new(None),
                newest: RefCell::new(None),
            }),
        }
    }

    /// Gives the source the signer of client assertions (`private_key_jwt`).
    pub fn set_assertions(&self, assertions: Rc<dyn Assertions>) {
        *self.inner.assertions.borrow_mut() = Some(assertions);
    }

    /// Gives the source the fleet's coordinator: asked after a KV miss, before the token
    /// endpoint; the source then writes no token to KV itself (the coordinator does).
    pub fn set_coordinator(&self, coordinator: Rc<dyn Coordinator>) {
        *self.inner.coordinator.borrow_mut() = Some(coordinator);
    }

    /// Until when (Unix seconds) the token endpoint is held down at `now`, if it is.
    pub fn held_until(&self, now: u64) -> Option<u64> {
        self.inner
            .held
            .borrow()
            .as_ref()
            .map(|(until, _)| *until)
            .filter(|until| now < *until)
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

    /// Gives the source its maker of DPoP keys and proofs (`OAUTH_DPOP`, RFC 9449).
    pub fn set_proofs(&self, proofs: Rc<dyn Proofs>) {
        *self.inner.proofs.borrow_mut() = Some(proofs);
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
        self.inner.token_nonces.borrow().get(url).map(str::to_owned)
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
    /// inside its refresh window (see [`crate::token`]) is returned at once while one background
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

/// Clears the in-flight slot if it still holds flight `generation`; the next miss starts anew.
fn end_flight<H, S, R: Runtime>(inner: &Inner<H, S, R>, generation: u64) {
    let mut slot = inner.flight.borrow_mut();
    if slot.as_ref().is_some_and(|f| f.generation == generation) {
        slot.take();
    }
}

/// Writes what a flight decided, after its waiters were released; failures are logged, never
/// fatal (the store is an optimisation).
async fn persist<H, S: TokenStore, R: Runtime>(inner: &Inner<H, S, R>, writes: Vec<Write>) {
    for write in writes {
        let (outcome, result) = match write {
            // The answer went out before this write: an upstream may have rejected the token
            // meanwhile, and `invalidate` found nothing in KV to delete. So a token rejected
            // before or while it was written is not left behind for other isolates.
            Write::Token(token, _) if is_revoked(inner, &token) => continue,
            Write::Token(token, ttl) => {
                let written = inner
                    .store
                    .put(TOKEN_ENTRY, encode_record(&token), ttl)
                    .await;
                if written.is_ok() && is_revoked(inner, &token) {
                    ("delete_error", inner.store.delete(TOKEN_ENTRY).await)
                } else {
                    ("write_error", written)
                }
            }
            Write::Put(name, value, ttl) => {
                ("write_error", inner.store.put(name, value, ttl).await)
            }
            Write::Delete(name) => ("delete_error", inner.store.delete(name).await),
        };
        if let Err(e) = result {
            (inner.log)(&log::cache_event(outcome, &e));
        }
    }
}

/// Takes `token` into memory, and remembers how new it is.
fn adopt<H, S, R: Runtime>(inner: &Inner<H, S, R>, token: Token) {
    let mut newest = inner.newest.borrow_mut();
    if newest
        .as_ref()
        .is_none_or(|(at, _)| token.issued_at() >= *at)
    {
        *newest = Some((token.issued_at(), token.access_token().clone()));
    }
    drop(newest);
    *inner.memory.borrow_mut() = Some(token);
}

/// While a hold-down lasts: the still-valid token if there is one, else the held error.
fn held_answer<H, S, R: Runtime>(inner: &Inner<H, S, R>, now: u64) -> Option<Result<Token>> {
    let held = inner.held.borrow();
    let (until, err) = held.as_ref().filter(|(until, _)| now < *until)?;
    Some(usable(inner, now).ok_or_else(|| held_error(err, *until, now)))
}

/// The token in memory if it still has [`crate::token::MIN_REMAINING_SECS`] to live (it may be
/// past its margin): the request that uses it still has to travel.
fn usable<H, S, R: Runtime>(inner: &Inner<H, S, R>, now: u64) -> Option<Token> {
    inner
        .memory
        .borrow()
        .as_ref()
        .filter(|t| t.usable_at(now))
        .cloned()
}

/// Whether a cached token suits the configuration: DPoP-bound exactly when DPoP is on, and to
/// the configured key when there is one (the cache key says so too; this guards a stale entry).
fn fits(config: &Config, t: &Token) -> bool {
    match (&config.dpop, t.dpop_key()) {
        (Dpop::Off, None) | (Dpop::GeneratedKey, Some(_)) => true,
        (Dpop::Key(want), Some(have)) => want == have,
        _ => false,
    }
}

/// Whether `t` is older than the newest token this source has held (see `Inner::newest`).
fn is_older<H, S, R: Runtime>(inner: &Inner<H, S, R>, t: &Token) -> bool {
    inner.newest.borrow().as_ref().is_some_and(|(at, token)| {
        t.issued_at() < *at || (t.issued_at() == *at && t.access_token() != token)
    })
}

fn is_revoked<H, S, R: Runtime>(inner: &Inner<H, S, R>, t: &Token) -> bool {
    inner
        .revoked
        .borrow()
        .as_ref()
        .is_some_and(|r| r.access_token() == t.access_token())
}

/// True unless a newer flight has replaced flight `generation` (presumed dead, it may yet
/// finish): a replaced flight answers its own waiters but leaves memory and KV to the newer one.
fn is_current<H, S, R: Runtime>(inner: &Inner<H, S, R>, generation: u64) -> bool {
    inner
        .flight
        .borrow()
        .as_ref()
        .is_none_or(|f| f.generation == generation)
}

/// A flight's view of time: the caller's `now` (Unix seconds) moved on by what the runtime's
/// clock says has passed since, rounded up, so a deadline is never judged early.
struct Clock<'a, R: Runtime> {
    runtime: &'a R,
    start_secs: u64,
    start_ms: u64,
}

impl<'a, R: Runtime> Clock<'a, R> {
    fn new(runtime: &'a R, now: u64) -> Self {
        Self {
            runtime,
            start_secs: now,
            start_ms: runtime.now_ms(),
        }
    }

    /// Milliseconds since the flight started.
    fn elapsed_ms(&self) -> u64 {
        self.runtime.now_ms().saturating_sub(self.start_ms)
    }

    /// Unix seconds now, at the latest.
    fn now(&self) -> u64 {
        self.start_secs + self.elapsed_ms().div_ceil(1000)
    }
}

/// Gets a token: from KV when a usable one is there, else from the token endpoint. A background
/// refresh (`refresh`) takes a KV token only if it is not itself due for refresh. Whatever it
/// returns has [`crate::token::MIN_REMAINING_SECS`] left when the answer is ready. Store
/// writes it decides on go to `writes`, for after its waiters have the answer.
async fn acquire<H: HttpClient, S: TokenStore, R: Runtime>(
    inner: &Inner<H, S, R>,
    now: u64,
    refresh: bool,
    generation: u64,
    writes: &mut Vec<Write>,
) -> Result<Token> {
    let clock = Clock::new(&inner.runtime, now);
    let (token_entry, hold_entry) =
        join(inner.store.get(TOKEN_ENTRY), inner.store.get(HOLD_ENTRY)).await;
    // The reads may have taken a while: judge what they found at the time they found it.
    let read_at = clock.now();
    match token_entry {
        Ok(Some(raw)) => match decode_record(&raw, inner.config.expiry_margin_secs) {
            Some(t) if is_revoked(inner, &t) || !fits(&inner.config, &t) => {}
            Some(t) if is_older(inner, &t) => {
                (inner.log)(&log::cache_event(
                    "older_record",
                    "KV holds an older token than this isolate has seen; ignoring it",
                ));
            }
            Some(t) if t.is_fresh(read_at) && !(refresh && t.refresh_due(read_at)) => {
                (inner.log)(&log::token_ok(
                    Source::Kv,
                    None,
                    None,
                    t.expires_at().saturating_sub(read_at),
                ));
                adopt(inner, t.clone());
                return Ok(t);
            }
            // Past its margin but not expired: better than nothing if the endpoint fails.
            Some(t) if t.usable_at(read_at) && usable(inner, read_at).is_none() => {
                adopt(inner, t);
            }
            Some(_) => {}
            None => (inner.log)(&log::cache_event(
                "corrupt",
                "cached value unreadable; refetching",
            )),
        },
        Ok(None) => {}
        Err(e) => (inner.log)(&log::cache_event("read_error", &e)),
    }
    match hold_entry {
        Ok(Some(raw)) => {
            if let Some((until, err)) = decode_hold(&raw).filter(|(until, _)| read_at < *until) {
                (inner.log)(&log::cache_event(
                    "hold",
                    "another isolate holds the token endpoint down",
                ));
                *inner.held.borrow_mut() = Some((until, err));
                return held_answer(inner, read_at).expect("hold just set");
            }
        }
        Ok(None) => {}
        Err(e) => (inner.log)(&log::cache_event("read_error", &e)),
    }

    if let Some(answer) = ask_coordinator(inner, &clock, refresh, generation).await {
        return answer;
    }

    let result = fetch_with_retries(inner, &clock, writes).await;
    let done = clock.now();
    if !is_current(inner, generation) {
        // Replaced: answer its own waiters, as any flight would (a capped `Retry-After`).
        return match result {
            Ok(t) if t.usable_at(done) => Ok(t),
            Ok(late) => Err(arrived_too_late(&late, done, clock.elapsed_ms())),
            Err(e) => match hold_secs(&e, inner.config.holddown_secs) {
                0 => Err(e),
                secs => Err(held_error(&e, done + secs, done)),
            },
        };
    }
    match result {
        Ok(token) if token.usable_at(done) => {
            inner.held.borrow_mut().take();
            adopt(inner, token.clone());
            let ttl = token.fresh_until().saturating_sub(done);
            if ttl >= KV_MIN_TTL_SECS {
                writes.push(Write::Token(token.clone(), ttl));
            }
            Ok(token)
        }
        Ok(late) => {
            let err = arrived_too_late(&late, done, clock.elapsed_ms());
            (inner.log)(&log::token_error(None, Some(clock.elapsed_ms()), &err));
            fail(inner, err, done, writes)
        }
        Err(err) => fail(inner, err, done, writes),
    }
}

/// The coordinator tier: its answer, or `None` to go on to the token endpoint (no coordinator,
/// or one that failed: logged, never fatal).
async fn ask_coordinator<H, S, R: Runtime>(
    inner: &Inner<H, S, R>,
    clock: &Clock<'_, R>,
    refresh: bool,
    generation: u64,
) -> Option<Result<Token>> {
    let coordinator = inner.coordinator.borrow().clone()?;
    let ask = Ask {
        refresh,
        have: inner.memory.borrow().as_ref().map(Token::issued_at),
        rejected: inner
            .revoked
            .borrow()
            .as_ref()
            .map(|t| (t.issued_at(), t.expires_at())),
    };
    let answer = coordinator.ask(ask).await;
    let at = clock.now();
    match answer {
        Ok(Answer::Token(t))
            if t.usable_at(at) && fits(&inner.config, &t) && !is_revoked(inner, &t) =>
        {
            (inner.log)(&log::token_ok(
                Source::Coordinator,
                None,
                None,
                t.expires_at().saturating_sub(at),
            ));
            if is_current(inner, generation) {
                inner.held.borrow_mut().take();
                adopt(inner, t.clone());
            }
            Some(Ok(t))
        }
        Ok(Answer::Token(_)) => {
            (inner.log)(&log::cache_event(
                "coordinator_fallback",
                "the coordinator's token is expired, rejected or for another key",
            ));
            None
        }
        Ok(Answer::Held(err, until)) if at < until => {
            // The coordinator shared the hold in KV already; this isolate keeps it in memory.
            *inner.held.borrow_mut() = Some((until, err));
            held_answer(inner, at)
        }
        Ok(Answer::Held(..)) => None,
        Err(reason) => {
            (inner.log)(&log::cache_event("coordinator_fallback", &reason));
            None
        }
    }
}

/// The error for a token that came back with too little life left to hand out.
///
/// It says the endpoint was too slow for the token's lifetime, as seen from this isolate: an
/// unavailability, held down here only (another isolate may reach the endpoint faster).
fn arrived_too_late(token: &Token, now: u64, elapsed_ms: u64) -> Error {
    Error::Unavailable {
        reason: format!(
            "the token had {} s left when it arrived, after {elapsed_ms} ms (tokens are used \
             only with more than {} s left)",
            token.expires_at().saturating_sub(now),
            crate::token::MIN_REMAINING_SECS
        ),
        retry_after: None,
    }
}

/// A failed token request at `done`: holds the endpoint down as the error calls for, and
/// answers with a token still usable if there is one.
fn fail<H, S, R: Runtime>(
    inner: &Inner<H, S, R>,
    err: Error,
    done: u64,
    writes: &mut Vec<Write>,
) -> Result<Token> {
    let secs = hold_secs(&err, inner.config.holddown_secs);
    let mut shown = err.clone();
    if secs > 0 {
        let until = done + secs;
        // Only what the server said is shared: this isolate's own network trouble or
        // timeout must not hold down isolates elsewhere that may reach it fine.
        // Nor is a nonce refusal: nonces are per isolate, and another isolate's may be
        // current.
        let server_said = !matches!(
            err,
            Error::Unavailable {
                retry_after: None,
                ..
            }
        ) && !token_endpoint_wants_nonce(&err);
        if let Some(record) = encode_hold(until, &err).filter(|_| server_said) {
            writes.push(Write::Put(HOLD_ENTRY, record, secs.max(KV_MIN_TTL_SECS)));
        }
        // Callers see the hold as it is (a server's `Retry-After` capped), from the first one.
        shown = held_error(&err, until, done);
        *inner.held.borrow_mut() = Some((until, err));
    }
    match usable(inner, done) {
        Some(stale) => {
            (inner.log)(&log::token_stale(stale.expires_at().saturating_sub(done)));
            Ok(stale)
        }
        None => Err(shown),
    }
}

/// Token requests until one succeeds, one is refused, or the budget (`OAUTH_TIMEOUT_MS`) is
/// spent. The budget counts from the first request by the flight's clock, and at least what
/// each attempt and each backoff reported taking.
async fn fetch_with_retries<H: HttpClient, S: TokenStore, R: Runtime>(
    inner: &Inner<H, S, R>,
    clock: &Clock<'_, R>,
    writes: &mut Vec<Write>,
) -> Result<Token> {
    let config = &inner.config;
    // Everything sent is kept from what comes back: secret forms now, signed values as made.
    let mut redactor = Redactor::for_config(config);
    let budget = config.timeout_ms;
    let started_ms = clock.elapsed_ms();
    let mut reported = 0u64;
    let spent = |reported: u64| reported.max(clock.elapsed_ms().saturating_sub(started_ms));
    let mut failures = 0u32;
    let token_url = match token_endpoint(inner, clock.now(), &mut reported, writes).await {
        Ok(url) => url,
        Err(e) => {
            let e = e.redact(&redactor);
            (inner.log)(&log::token_error(None, None, &e));
            return Err(e);
        }
    };
    // One key for the whole flight: the token that comes back is bound to it.
    let dpop = dpop_key(inner).await?;
    let mut nonce_retried = false;
    loop {
        let sent_at = clock.start_secs + spent(reported) / 1000;
        let signer = inner.assertions.borrow().clone();
        let assertion = match (&config.auth, signer) {
            (ClientAuth::PrivateKeyJwt(_), Some(signer)) => {
                let assertion = signer.assertion(sent_at, &token_url).await?;
                redactor.add_signed(&assertion);
                Some(assertion)
            }
            (ClientAuth::PrivateKeyJwt(_), None) => {
                return Err(Error::Other(
                    "private_key_jwt needs an assertion signer".into(),
                ))
            }
            _ => None,
        };
        let mut request = build_token_request(config, &token_url, assertion.as_deref());
        request.timeout_ms = budget.saturating_sub(spent(reported)).max(1);
        if let Some((proofs, key)) = &dpop {
            let nonce = inner
                .token_nonces
                .borrow()
                .get(&token_url)
                .map(str::to_owned);
            let proof = proofs
                .proof(
                    key,
                    "POST",
                    htu(&token_url),
                    sent_at,
                    None,
                    nonce.as_deref(),
                )
                .await?;
            redactor.add_signed(&proof);
            request.headers.push(("dpop".into(), proof));
        }
        let mut got_nonce = false;
        let (result, status, latency) = match inner.http.execute(request).await {
            Ok(resp) => {
                if let (Some(_), Some(nonce)) = (&dpop, resp.header("dpop-nonce")) {
                    got_nonce = inner.token_nonces.borrow_mut().remember(&token_url, nonce);
                }
                let parsed =
                    parse_token_response(&resp, sent_at, config.expiry_margin_secs, &redactor)
                        .and_then(|t| bind(t, dpop.as_ref().map(|(_, k)| k), resp.status));
                (parsed, Some(resp.status), resp.elapsed_ms)
            }
            Err(e) => (
                Err(Error::Unavailable {
                    reason: format!("network error: {}", e.reason),
                    retry_after: None,
                }),
                None,
                e.elapsed_ms,
            ),
        };
        reported += latency;
        let err = match result {
            // Counted from when it was sent; checked against when it arrived.
            Ok(token) if token.usable_at(clock.now()) => {
                let expires_in = token.expires_at().saturating_sub(sent_at);
                (inner.log)(&log::token_ok(
                    Source::Network,
                    status,
                    Some(latency),
                    expires_in,
                ));
                return Ok(token);
            }
            Ok(late) => arrived_too_late(&late, clock.now(), spent(reported)),
            Err(e) => e.redact(&redactor),
        };
        // RFC 9449 §8: the server wants a nonce and sent one; the retry with it is part of the
        // same token request, at once and only once. Expected on every cold isolate, so it is
        // logged as what it is, not as an error.
        if got_nonce && !nonce_retried && token_endpoint_wants_nonce(&err) {
            nonce_retried = true;
            (inner.log)(&log::cache_event(
                "dpop_nonce",
                "token endpoint asked for a DPoP nonce; retrying with it",
            ));
            continue;
        }
        (inner.log)(&log::token_error(status, Some(latency), &err));
        failures += 1;
        let delay = match &err {
            // A token was issued, only too slowly: another request would cost another token
            // and, from here, likely be as slow.
            _ if status.is_some_and(|s| (200..300).contains(&s)) => None,
            Error::Unavailable { retry_after, .. } => retry_delay(
                failures,
                *retry_after,
                budget.saturating_sub(spent(reported)),
                inner.runtime.random(),
            ),
            _ => None, // refusals and nonsense are not retried
        };
        match delay {
            Some(ms) => {
                inner.runtime.sleep(ms).await;
                reported += ms;
            }
            None => {
                forget_discovered_endpoint(inner, &err, writes);
                return Err(err);
            }
        }
    }
}

/// The DPoP maker and the key for a token request, when DPoP is on.
async fn dpop_key<H, S, R: Runtime>(
    inner: &Inner<H, S, R>,
) -> Result<Option<(Rc<dyn Proofs>, Rc<DpopKey>)>> {
    if !inner.config.dpop.is_on() {
        return Ok(None);
    }
    let proofs = inner
        .proofs
        .borrow()
        .clone()
        .ok_or_else(|| Error::Other("DPoP needs a proof signer".into()))?;
    let key = proofs.key().await?;
    Ok(Some((proofs, key)))
}

/// Checks the token type against what was asked for and binds a DPoP token to its key. A Bearer
/// token when DPoP was asked for means the server ignored the proof: using it as Bearer would
/// silently drop the protection the operator turned on (RFC 9449 §5).
fn bind(token: Token, key: Option<&Rc<DpopKey>>, status: u16) -> Result<Token> {
    let invalid = |reason: &str| Error::InvalidResponse {
        status,
        reason: reason.to_owned(),
    };
    match (token.scheme(), key) {
        (Scheme::DPoP, Some(key)) => Ok(token.with_dpop_key(key.clone())),
        (Scheme::Bearer, None) => Ok(token),
        (Scheme::Bearer, Some(_)) => Err(invalid(
            "`token_type` is Bearer, not DPoP: the server did not bind the token to the DPoP key",
        )),
        (Scheme::DPoP, None) => Err(invalid(
            "`token_type` is DPoP but OAUTH_DPOP is not true: the token needs proofs",
        )),
    }
}

/// A discovered endpoint that cannot be reached, or is gone (404, 405), is forgotten in memory
/// and KV, so the next attempt discovers it again instead of trusting it for a day.
fn forget_discovered_endpoint<H, S, R: Runtime>(
    inner: &Inner<H, S, R>,
    err: &Error,
    writes: &mut Vec<Write>,
) {
    let gone = match err {
        Error::Unavailable { reason, .. } => reason.starts_with("network error"),
        Error::InvalidResponse { status, .. } => matches!(status, 404 | 405),
        _ => false,
    };
    if inner.config.token_url.is_none() && gone && inner.endpoint.borrow_mut().take().is_some() {
        writes.push(Write::Delete(META_ENTRY));
    }
}

/// The token endpoint: as configured, or discovered from `OAUTH_ISSUER` (RFC 8414, then OIDC
/// Discovery), kept in memory and KV for a day. Time spent on the network is added to `spent`.
async fn token_endpoint<H: HttpClient, S: TokenStore, R: Runtime>(
    inner: &Inner<H, S, R>,
    now: u64,
    spent: &mut u64,
    writes: &mut Vec<Write>,
) -> Result<String> {
    let config = &inner.config;
    let issuer = match (&config.token_url, &config.issuer) {
        (Some(url), _) => return Ok(url.to_string()),
        (None, Some(issuer)) => issuer,
        (None, None) => {
            return Err(Error::config(
                "OAUTH_TOKEN_URL",
                "is not set (nor OAUTH_ISSUER)",
            ))
        }
    };
    if let Some((url, _)) = inner
        .endpoint
        .borrow()
        .as_ref()
        .filter(|(_, until)| now < *until)
    {
        return Ok(url.clone());
    }
    if let Ok(Some(raw)) = inner.store.get(META_ENTRY).await {
        if let Some((endpoint, until)) = decode_meta(&raw, now) {
            *inner.endpoint.borrow_mut() = Some((endpoint.clone(), until));
            return Ok(endpoint);
        }
    }
    let mut last = None;
    for url in metadata_urls(issuer) {
        let request = HttpRequest {
            method: "GET",
            url,
            headers: vec![("accept".into(), "application/json".into())],
            body: Vec::new(),
            // Discovery spends the same budget as the token request it serves.
            timeout_ms: config.timeout_ms.saturating_sub(*spent).max(1),
        };
        let resp = match inner.http.execute(request).await {
            Ok(resp) => {
                *spent += resp.elapsed_ms;
                resp
            }
            Err(e) => {
                *spent += e.elapsed_ms;
                last = Some(Error::Unavailable {
                    reason: format!("discovery: network error: {}", e.reason),
                    retry_after: None,
                });
                continue;
            }
        };
        match parse_metadata(&resp, issuer) {
            Ok(endpoint) => {
                let endpoint = endpoint.to_string();
                let until = now + METADATA_TTL_SECS;
                (inner.log)(&log::cache_event(
                    "discovered",
                    &format!("token endpoint {endpoint}"),
                ));
                *inner.endpoint.borrow_mut() = Some((endpoint.clone(), until));
                writes.push(Write::Put(
                    META_ENTRY,
                    encode_meta(&endpoint, until),
                    METADATA_TTL_SECS,
                ));
                return Ok(endpoint);
            }
            // Not found, unusable or failing here: try the next location.
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::Other("discovery found nothing".into())))
}
