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
use crate::discovery::{metadata_urls, parse_metadata, METADATA_TTL_SECS, META_ENTRY};
use crate::dpop::{htu, token_endpoint_wants_nonce, DpopKey, Nonces, Proofs};
use crate::error::{Error, Result};
use crate::holddown::{decode_hold, encode_hold, held_error, hold_secs, HOLD_ENTRY};
use crate::log::{self, Source};
use crate::secret::AccessToken;
use crate::store::{decode_record, encode_record, TokenStore, KV_MIN_TTL_SECS, TOKEN_ENTRY};
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
    /// Starts `work`, which runs to completion whichever caller waits. It must not run `work`
    /// before returning: the flight is registered only after `start` returns.
    fn start(&self, work: LocalBoxFuture<'static, ()>) -> Self::Handle;
    /// Resolves when the flight behind `handle` is over.
    fn wait(&self, handle: &Self::Handle) -> LocalBoxFuture<'static, ()>;
    /// Resolves after `ms` milliseconds.
    fn sleep(&self, ms: u64) -> impl Future<Output = ()>;
    /// A random number in `[0, 1)`, for backoff jitter.
    fn random(&self) -> f64;
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
    handle: H,
    outcome: Outcome,
}

/// Slack on top of the token budget before a waiter gives up on a flight: room for the KV reads
/// and writes around the token request.
pub const FLIGHT_SLACK_MS: u64 = 5_000;

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
    revoked: RefCell<Option<AccessToken>>,
    flight: RefCell<Option<Flight<R::Handle>>>,
    assertions: RefCell<Option<Rc<dyn Assertions>>>,
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
                proofs: RefCell::new(None),
                token_nonces: RefCell::default(),
                resource_nonces: RefCell::default(),
                endpoint: RefCell::new(None),
                generation: std::cell::Cell::new(0),
                last_eviction: std::cell::Cell::new(None),
            }),
        }
    }

    /// Gives the source the signer of client assertions (`private_key_jwt`).
    pub fn set_assertions(&self, assertions: Rc<dyn Assertions>) {
        *self.inner.assertions.borrow_mut() = Some(assertions);
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
        self.wait_for_flight(now, on_start).await
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
        let bound_secs = (self.inner.config.timeout_ms + FLIGHT_SLACK_MS).div_ceil(1000);
        let mut slot = self.inner.flight.borrow_mut();
        if slot.as_ref().is_some_and(|f| now >= f.started + bound_secs) {
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
        let work = Box::pin(async move {
            let result = acquire(&inner, now, refresh, generation).await;
            *out.borrow_mut() = Some(result);
            end_flight(&inner, generation);
        });
        let handle = self.inner.runtime.start(work);
        *slot = Some(Flight {
            generation,
            started: now,
            handle: handle.clone(),
            outcome: outcome.clone(),
        });
        drop(slot);
        if let Some(on_start) = on_start {
            on_start(&handle);
        }
        (generation, handle, outcome)
    }

    async fn wait_for_flight(
        &self,
        now: u64,
        on_start: Option<OnStart<'_, R::Handle>>,
    ) -> Result<Token> {
        let (generation, handle, outcome) = self.flight(now, false, on_start);
        // Bounded on the waiter's side: if the request that started the flight is cancelled,
        // the platform may drop the flight's I/O with it, and nobody must wait for it forever.
        let bound = self.inner.config.timeout_ms + FLIGHT_SLACK_MS;
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
            return newer || inner.revoked.borrow().as_ref() == Some(used.access_token());
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
        *inner.revoked.borrow_mut() = Some(used.access_token().clone());
        inner.memory.borrow_mut().take();
        (inner.log)(&log::cache_event(
            "evicted",
            "upstream rejected the token; fetching a new one",
        ));
        // Delete the KV copy only if it is still the rejected token, not a newer one.
        if let Ok(Some(raw)) = inner.store.get(TOKEN_ENTRY).await {
            if decode_record(&raw).is_some_and(|t| t.access_token() == used.access_token()) {
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

/// While a hold-down lasts: the still-valid token if there is one, else the held error.
fn held_answer<H, S, R: Runtime>(inner: &Inner<H, S, R>, now: u64) -> Option<Result<Token>> {
    let held = inner.held.borrow();
    let (until, err) = held.as_ref().filter(|(until, _)| now < *until)?;
    Some(usable(inner, now).ok_or_else(|| held_error(err, *until, now)))
}

/// A token past its margin is used (while the endpoint fails) only if it has at least this long
/// to live: `now` is whole seconds and the request still has to travel.
pub const STALE_MIN_REMAINING_SECS: u64 = 5;

/// The token in memory if it has not yet expired (it may be past its margin).
fn usable<H, S, R: Runtime>(inner: &Inner<H, S, R>, now: u64) -> Option<Token> {
    inner
        .memory
        .borrow()
        .as_ref()
        .filter(|t| now + STALE_MIN_REMAINING_SECS <= t.expires_at())
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

fn is_revoked<H, S, R: Runtime>(inner: &Inner<H, S, R>, t: &Token) -> bool {
    inner.revoked.borrow().as_ref() == Some(t.access_token())
}

/// Gets a token: from KV when a usable one is there, else from the token endpoint. A background
/// refresh (`refresh`) takes a KV token only if it is not itself due for refresh.
/// True unless a newer flight has replaced flight `generation` (presumed dead, it may yet
/// finish): a replaced flight answers its own waiters but leaves memory and KV to the newer one.
fn is_current<H, S, R: Runtime>(inner: &Inner<H, S, R>, generation: u64) -> bool {
    inner
        .flight
        .borrow()
        .as_ref()
        .is_none_or(|f| f.generation == generation)
}

async fn acquire<H: HttpClient, S: TokenStore, R: Runtime>(
    inner: &Inner<H, S, R>,
    now: u64,
    refresh: bool,
    generation: u64,
) -> Result<Token> {
    let (token_entry, hold_entry) =
        join(inner.store.get(TOKEN_ENTRY), inner.store.get(HOLD_ENTRY)).await;
    match token_entry {
        Ok(Some(raw)) => match decode_record(&raw) {
            Some(t) if is_revoked(inner, &t) || !fits(&inner.config, &t) => {}
            Some(t) if t.is_fresh(now) && !(refresh && t.refresh_due(now)) => {
                (inner.log)(&log::token_ok(
                    Source::Kv,
                    None,
                    None,
                    t.expires_at().saturating_sub(now),
                ));
                *inner.memory.borrow_mut() = Some(t.clone());
                return Ok(t);
            }
            // Past its margin but not expired: better than nothing if the endpoint fails.
            Some(t) if now < t.expires_at() && usable(inner, now).is_none() => {
                *inner.memory.borrow_mut() = Some(t);
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
            if let Some((until, err)) = decode_hold(&raw).filter(|(until, _)| now < *until) {
                (inner.log)(&log::cache_event(
                    "hold",
                    "another isolate holds the token endpoint down",
                ));
                *inner.held.borrow_mut() = Some((until, err));
                return held_answer(inner, now).expect("hold just set");
            }
        }
        Ok(None) => {}
        Err(e) => (inner.log)(&log::cache_event("read_error", &e)),
    }

    let (result, elapsed_ms) = fetch_with_retries(inner, now).await;
    let done = now + elapsed_ms.div_ceil(1000);
    if !is_current(inner, generation) {
        return result;
    }
    match result {
        Ok(token) => {
            inner.held.borrow_mut().take();
            *inner.memory.borrow_mut() = Some(token.clone());
            let ttl = token.fresh_until().saturating_sub(done);
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
        Err(err) => {
            let secs = hold_secs(&err, inner.config.holddown_secs);
            if secs > 0 {
                let until = done + secs;
                *inner.held.borrow_mut() = Some((until, err.clone()));
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
                    if let Err(e) = inner
                        .store
                        .put(HOLD_ENTRY, record, secs.max(KV_MIN_TTL_SECS))
                        .await
                    {
                        (inner.log)(&log::cache_event("write_error", &e));
                    }
                }
            }
            match usable(inner, done) {
                Some(stale) => {
                    (inner.log)(&log::token_stale(stale.expires_at().saturating_sub(done)));
                    Ok(stale)
                }
                None => Err(err),
            }
        }
    }
}

/// Token requests until one succeeds, one is refused, or the budget (`OAUTH_TIMEOUT_MS`) is spent.
/// Returns the outcome and the time spent.
async fn fetch_with_retries<H: HttpClient, S: TokenStore, R: Runtime>(
    inner: &Inner<H, S, R>,
    sent_at: u64,
) -> (Result<Token>, u64) {
    let config = &inner.config;
    let secrets = credential_forms(config);
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let budget = config.timeout_ms;
    let mut spent = 0u64;
    let mut failures = 0u32;
    let token_url = match token_endpoint(inner, sent_at, &mut spent).await {
        Ok(url) => url,
        Err(e) => {
            (inner.log)(&log::token_error(None, None, &e));
            return (Err(e), spent);
        }
    };
    // One key for the whole flight: the token that comes back is bound to it.
    let dpop = match dpop_key(inner).await {
        Ok(dpop) => dpop,
        Err(e) => return (Err(e), spent),
    };
    let mut nonce_retried = false;
    loop {
        let now = sent_at + spent / 1000;
        let signer = inner.assertions.borrow().clone();
        let assertion = match (&config.auth, signer) {
            (ClientAuth::PrivateKeyJwt(_), Some(signer)) => {
                match signer.assertion(now, &token_url).await {
                    Ok(a) => Some(a),
                    Err(e) => return (Err(e), spent),
                }
            }
            (ClientAuth::PrivateKeyJwt(_), None) => {
                return (
                    Err(Error::Other(
                        "private_key_jwt needs an assertion signer".into(),
                    )),
                    spent,
                )
            }
            _ => None,
        };
        let mut request = build_token_request(config, &token_url, assertion.as_deref());
        request.timeout_ms = budget.saturating_sub(spent).max(1);
        if let Some((proofs, key)) = &dpop {
            let nonce = inner
                .token_nonces
                .borrow()
                .get(&token_url)
                .map(str::to_owned);
            match proofs
                .proof(key, "POST", htu(&token_url), now, None, nonce.as_deref())
                .await
            {
                Ok(proof) => request.headers.push(("dpop".into(), proof)),
                Err(e) => return (Err(e), spent),
            }
        }
        let mut got_nonce = false;
        let (result, status, latency) = match inner.http.execute(request).await {
            Ok(resp) => {
                if let (Some(_), Some(nonce)) = (&dpop, resp.header("dpop-nonce")) {
                    got_nonce = inner.token_nonces.borrow_mut().remember(&token_url, nonce);
                }
                let parsed = parse_token_response(&resp, now, config.expiry_margin_secs)
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
        spent += latency;
        let err = match result {
            Ok(token) => {
                let expires_in = token.expires_at().saturating_sub(now);
                (inner.log)(&log::token_ok(
                    Source::Network,
                    status,
                    Some(latency),
                    expires_in,
                ));
                return (Ok(token), spent);
            }
            Err(e) => e.scrub(&secrets),
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
            Error::Unavailable { retry_after, .. } => retry_delay(
                failures,
                *retry_after,
                budget.saturating_sub(spent),
                inner.runtime.random(),
            ),
            _ => None, // refusals and nonsense are not retried
        };
        match delay {
            Some(ms) => {
                inner.runtime.sleep(ms).await;
                spent += ms;
            }
            None => {
                forget_discovered_endpoint(inner, &err).await;
                return (Err(err), spent);
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

/// Every form in which the credential travels, for scrubbing server text: raw, form-encoded
/// (RFC 6749 §2.3.1), and the Basic header value with its base64 part.
fn credential_forms(config: &Config) -> Vec<String> {
    let secret = config.auth.credential();
    let encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let basic = crate::token_request::basic_credentials(&config.client_id, secret);
    let b64 = basic.trim_start_matches("Basic ").to_owned();
    vec![secret.to_owned(), encoded, basic, b64]
}

/// A discovered endpoint that cannot be reached, or is gone (404, 405), is forgotten in memory
/// and KV, so the next attempt discovers it again instead of trusting it for a day.
async fn forget_discovered_endpoint<H, S: TokenStore, R: Runtime>(
    inner: &Inner<H, S, R>,
    err: &Error,
) {
    let gone = match err {
        Error::Unavailable { reason, .. } => reason.starts_with("network error"),
        Error::InvalidResponse { status, .. } => matches!(status, 404 | 405),
        _ => false,
    };
    if inner.config.token_url.is_none() && gone && inner.endpoint.borrow_mut().take().is_some() {
        if let Err(e) = inner.store.delete(META_ENTRY).await {
            (inner.log)(&log::cache_event("delete_error", &e));
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct MetaRecord {
    v: u8,
    token_endpoint: String,
    until: u64,
}

/// The token endpoint: as configured, or discovered from `OAUTH_ISSUER` (RFC 8414, then OIDC
/// Discovery), kept in memory and KV for a day.
async fn token_endpoint<H: HttpClient, S: TokenStore, R: Runtime>(
    inner: &Inner<H, S, R>,
    now: u64,
    spent: &mut u64,
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
        if let Ok(meta) = serde_json::from_str::<MetaRecord>(&raw) {
            if meta.v == 1
                && now < meta.until
                && crate::config::parse_endpoint_url(&meta.token_endpoint).is_ok()
            {
                *inner.endpoint.borrow_mut() = Some((meta.token_endpoint.clone(), meta.until));
                return Ok(meta.token_endpoint);
            }
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
                let record = MetaRecord {
                    v: 1,
                    token_endpoint: endpoint.clone(),
                    until,
                };
                let record =
                    serde_json::to_string(&record).expect("strings and integers serialise");
                if let Err(e) = inner.store.put(META_ENTRY, record, METADATA_TTL_SECS).await {
                    (inner.log)(&log::cache_event("write_error", &e));
                }
                return Ok(endpoint);
            }
            // Not found, unusable or failing here: try the next location.
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::Other("discovery found nothing".into())))
}
