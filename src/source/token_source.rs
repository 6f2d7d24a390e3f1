//! Caching wraps fetching: isolate memory, then the shared store, then one token request that
//! every concurrent caller in the isolate shares (single flight), retried within a time budget,
//! held down after a refusal, and falling back to a still-valid token when the endpoint fails.
//!
//! The shape follows golang/oauth2's `reuseTokenSource`. Time is passed in (`now`, Unix seconds);
//! what a flight does below memory is the state machine [`crate::source::flight`], driven by
//! [`crate::source::driver`], which alone reads the runtime's clock (how long each step took).

use std::cell::RefCell;
use std::rc::Rc;

use futures_util::future::{select, Either, LocalBoxFuture};

use crate::base::error::{Error, Result};
use crate::base::log;
use crate::config::client::Config;
use crate::oauth::token::Token;
use crate::oauth::transport::HttpClient;
use crate::source::coordinator::Coordinator;
use crate::source::credentials::{Credentials, Rotation};
use crate::source::discovery::Discovery;
use crate::source::driver::{self, Parts, Ports};
use crate::source::flight::Purpose;
use crate::source::metric::{MetricSink, Served};
use crate::source::report::Report;
use crate::source::runtime::{LogSink, Runtime};
use crate::source::signers::Signers;
use crate::source::slot::{Joined, Outcome, Slot};
use crate::source::state::{Hold, State};
use crate::source::store::TokenStore;
use crate::source::store::STORE_TIMEOUT_MS;

/// Called with the handle of a flight a call started (see [`TokenSource::token_ahead`]).
pub(crate) type OnStart<'a, H> = &'a dyn Fn(&H);

/// Slack on top of the token budget before a waiter gives up on a flight: room for what a flight
/// does before its answer besides the token request, each step bounded: the token and hold-down
/// reads (one [`STORE_TIMEOUT_MS`], in parallel), the discovery read (another), and WebCrypto
/// (sealing keys, assertions, proofs). Writes come after the answer and cost waiters nothing.
pub(crate) const FLIGHT_SLACK_MS: u64 = 2 * STORE_TIMEOUT_MS + 2_000;

/// Bound on one coordinator ask beyond `OAUTH_TIMEOUT_MS`: the coordinator's whole flight (its
/// token budget plus [`FLIGHT_SLACK_MS`] for its storage and WebCrypto) and the trip to it.
/// Waiters of a source with a coordinator wait this much longer, so a coordinator that never
/// answers still leaves time for the fallback.
pub(crate) const COORDINATOR_SLACK_MS: u64 = FLIGHT_SLACK_MS + 1_000;

/// How long a KV write takes, at most, to be read everywhere: 60 s to reach other locations, and
/// up to 60 s more that a location serves what it read before (KV's `cacheTtl`).
pub const KV_VISIBLE_SECS: u64 = 120;

pub(super) struct Inner<H, S, R: Runtime> {
    /// Replaced only by a credential's rotation ([`TokenSource::rotate`]).
    pub(super) config: RefCell<Rc<Config>>,
    pub(super) ports: Ports<H, S, R>,
    discovery: Discovery,
    pub(super) state: RefCell<State>,
    slot: RefCell<Slot<R::Handle>>,
    pub(super) report: Report,
    /// This source's place in the refresh window (see [`Token::refresh_due_skewed`]).
    refresh_skew: f64,
}

impl<H, S, R: Runtime> Inner<H, S, R> {
    fn parts<'a>(&'a self, current: &'a dyn Fn() -> bool) -> Parts<'a, H, S, R> {
        Parts {
            config: &self.config,
            ports: &self.ports,
            state: &self.state,
            discovery: &self.discovery,
            report: &self.report,
            current,
        }
    }
}

/// A cached, single-flight source of access tokens for one configuration.
pub struct TokenSource<H, S, R: Runtime> {
    pub(super) inner: Rc<Inner<H, S, R>>,
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
        Self::reporting(config, http, signers, store, runtime, log, None)
    }

    /// Like [`Self::new`], reporting every [`Metric`] to `metrics` (the edge's Analytics
    /// Engine writer) besides counting it for [`Self::status`].
    pub(crate) fn reporting(
        config: Config,
        http: H,
        signers: Signers,
        store: S,
        runtime: R,
        log: LogSink,
        metrics: Option<MetricSink>,
    ) -> Self {
        Self {
            inner: Rc::new(Inner {
                refresh_skew: runtime.random(),
                report: Report::new(metrics, config.metrics_interval_secs),
                config: RefCell::new(Rc::new(config)),
                ports: Ports {
                    http,
                    store,
                    runtime,
                    signers: RefCell::new(signers),
                    log,
                    coordinator: RefCell::new(None),
                    credentials: RefCell::new(None),
                },
                discovery: Discovery::default(),
                state: RefCell::default(),
                slot: RefCell::new(Slot::new()),
            }),
        }
    }

    /// Gives the source the fleet's coordinator: asked after a KV miss, before the token
    /// endpoint. A token the coordinator answers is not written to KV by this source (the
    /// coordinator writes it); one this source fetched itself after a failed ask is.
    pub fn set_coordinator(&self, coordinator: Rc<dyn Coordinator>) {
        *self.inner.ports.coordinator.borrow_mut() = Some(coordinator);
    }

    /// The hold-down in force at `now`, if any: until when, and the error that caused it, as
    /// the endpoint gave it.
    pub fn hold(&self, now: u64) -> Option<Hold> {
        self.inner.state.borrow().hold_down.active(now).cloned()
    }

    /// The token in memory when it can be used at `now` with nothing else to do: fresh, and
    /// (with refresh ahead on) not yet due for its background refresh. What
    /// [`Self::token_ahead`] would return without starting anything, so a caller can skip the
    /// asynchronous path; `None` means "take it".
    pub fn ready(&self, now: u64) -> Option<Token> {
        let state = self.inner.state.borrow();
        let token = state.memory.fresh(now)?;
        (!self.refresh_due(token, now)).then(|| token.clone())
    }

    /// Counts a call served at `now` with the token [`Self::ready`] gave: the caller (the
    /// proxy's hot path) says so once it has used it, so a call that goes on to the full path
    /// is counted there, once.
    #[cfg(all(target_arch = "wasm32", feature = "proxy"))]
    pub(crate) fn served_from_memory(&self, now: u64) {
        self.inner.report.served(Served::Memory, now);
    }

    /// Whether `token` is due for its background refresh at `now` (refresh ahead on). With a
    /// coordinator, which refreshes the fleet's token itself at the window's start and writes
    /// KV, the isolate looks only once KV shows the new token everywhere
    /// ([`KV_VISIBLE_SECS`] later).
    fn refresh_due(&self, token: &Token, now: u64) -> bool {
        let coordinated = self.inner.ports.coordinator.borrow().is_some();
        let delay = if coordinated { KV_VISIBLE_SECS } else { 0 };
        self.inner.config.borrow().refresh_ahead
            && token.refresh_due_after(now, delay, self.inner.refresh_skew)
    }

    /// The token this source holds, or the one before it, whose `Authorization` value is
    /// `authorization`: what an upstream's rejection of a request names.
    pub fn handed_out(&self, authorization: &str) -> Option<Token> {
        self.inner
            .state
            .borrow()
            .memory
            .handed_out(authorization)
            .cloned()
    }

    /// The token in memory, fresh or not (for a coordinator comparing what it holds).
    pub fn peek(&self) -> Option<Token> {
        self.inner.state.borrow().memory.token().cloned()
    }

    /// A token newer than the one held: joins or starts a refresh and waits for it (what a
    /// coordinator does when an isolate's token is due).
    pub async fn refresh(&self, now: u64) -> Result<Token> {
        let held = self.inner.state.borrow().held_answer(now);
        let result = match held {
            Some(held) => held,
            None => self.wait_for(now, Purpose::Refresh, None).await,
        };
        self.count(&result, now);
        result
    }

    /// The latest DPoP nonce of the resource server at `url` (RFC 9449 §9), if it gave one.
    pub fn dpop_nonce(&self, url: &str) -> Option<String> {
        let state = self.inner.state.borrow();
        state.resource_nonces.get(url).map(str::to_owned)
    }

    /// Remembers the DPoP nonce a resource server's response to `url` carried; false if it was
    /// malformed (and then ignored).
    pub fn remember_dpop_nonce(&self, url: &str, nonce: &str) -> bool {
        self.inner
            .state
            .borrow_mut()
            .resource_nonces
            .remember(url, nonce)
    }

    /// The latest DPoP nonce of the token endpoint at `url` (RFC 9449 §8), if it gave one.
    pub fn token_endpoint_nonce(&self, url: &str) -> Option<String> {
        let state = self.inner.state.borrow();
        state.token_nonces.get(url).map(str::to_owned)
    }

    /// How long waiters wait for a flight: the token budget, the slack for store reads and
    /// WebCrypto, and with a coordinator, a bounded ask before the fallback.
    fn bound_ms(&self) -> u64 {
        let timeout_ms = self.inner.config.borrow().timeout_ms;
        let coordinator = if self.inner.ports.coordinator.borrow().is_some() {
            timeout_ms + COORDINATOR_SLACK_MS
        } else {
            0
        };
        timeout_ms + FLIGHT_SLACK_MS + coordinator
    }

    /// Whether a token request (a flight) is under way.
    pub fn in_flight(&self) -> bool {
        self.inner.slot.borrow().is_running()
    }

    /// The configuration this source serves (as of now: a rotated credential replaces it).
    pub fn config(&self) -> Rc<Config> {
        self.inner.config.borrow().clone()
    }

    /// Gives the source a way to read its Secrets Store credentials again when the token
    /// endpoint refuses the client (see [`Credentials`]).
    pub fn set_credentials(&self, credentials: Rc<dyn Credentials>) {
        *self.inner.ports.credentials.borrow_mut() = Some(credentials);
    }

    /// Takes a rotated client credential in place (the configuration read again, see
    /// [`Config::same_source`]): the token in memory, its cache entries and any flight under
    /// way stay; new token requests use the new credential. Whether `rotation` was one (false:
    /// the same values, or another configuration altogether, which needs a source of its own).
    pub fn rotate(&self, rotation: Rotation) -> bool {
        let rotated = driver::rotate(&self.inner.config, &self.inner.ports.signers, rotation);
        if rotated {
            (self.inner.ports.log)(&log::cache_event(
                "credential_rotated",
                "the Secrets Store holds a new client credential; new token requests use it",
            ));
        }
        rotated
    }

    /// A token usable at `now`. Once the isolate holds a fresh one, this does no I/O at all.
    ///
    /// While the endpoint is failing or held down, a token inside its expiry margin but not yet
    /// expired is still returned; no token is ever returned past its expiry.
    pub async fn token(&self, now: u64) -> Result<Token> {
        self.token_or_flight(now, None, None).await
    }

    /// Like [`TokenSource::token`], and with `OAUTH_REFRESH_AHEAD` on, a fresh token inside its
    /// refresh window (see [`Token::refresh_at`]) is returned at once while one background
    /// refresh starts.
    ///
    /// `on_start` is called with the handle of any flight this call starts (a background refresh
    /// or a plain token request), before anything is awaited, so the caller can keep the
    /// platform working on it even if the caller itself goes away (`ctx.waitUntil`).
    pub async fn token_ahead(
        &self,
        now: u64,
        on_start: Option<OnStart<'_, R::Handle>>,
    ) -> Result<Token> {
        self.token_or_flight(now, Some(Purpose::Refresh), on_start)
            .await
    }

    /// The fresh token in memory (starting `ahead`'s flight if it is due), else the hold-down's
    /// answer, else a flight's.
    async fn token_or_flight(
        &self,
        now: u64,
        ahead: Option<Purpose>,
        on_start: Option<OnStart<'_, R::Handle>>,
    ) -> Result<Token> {
        let (fresh, held) = {
            let state = self.inner.state.borrow();
            let fresh = state.memory.fresh(now).cloned();
            (fresh, state.held_answer(now))
        };
        let report = &self.inner.report;
        if let Some(t) = fresh {
            let due = ahead.is_some() && self.refresh_due(&t, now);
            if due && held.is_none() {
                self.flight(now, Purpose::Refresh, on_start);
            }
            report.served(Served::Memory, now);
            return Ok(t);
        }
        let result = match held {
            Some(held) => held,
            None => self.wait_for(now, Purpose::Token, on_start).await,
        };
        self.count(&result, now);
        result
    }

    /// Counts a call that waited (or got a hold-down's answer) at `now`, by where its token came
    /// from.
    fn count(&self, result: &Result<Token>, now: u64) {
        let served = match result {
            Ok(t) => Served::by(t.obtained()),
            Err(_) => Served::Failed,
        };
        self.inner.report.served(served, now);
    }

    /// The status view at `now` (see [`crate::source::status`]): no token, no credential.
    #[cfg(any(target_arch = "wasm32", test))]
    pub(crate) fn status(&self, now: u64) -> String {
        let state = self.inner.state.borrow();
        crate::source::status::status(crate::source::status::Parts {
            now,
            token: state.memory.token(),
            hold: state.hold_down.active(now),
            failed_flights: state.hold_down.failed_flights(),
            evictions: &state.evictions,
            in_flight: self.in_flight(),
            report: &self.inner.report,
        })
    }

    /// The coordinator's status view (see [`Coordinator::status`]); `None` without one.
    #[cfg(target_arch = "wasm32")]
    pub(crate) async fn coordinator_status(&self) -> Option<Result<String, String>> {
        let coordinator = self.inner.ports.coordinator.borrow().clone()?;
        Some(coordinator.status().await)
    }

    /// Counts `metric`, which happened at `now`, for the status view and the metrics sink:
    /// for what the edge sees (a replay) besides what the token path reports itself.
    #[cfg(any(target_arch = "wasm32", test))]
    pub(crate) fn record(&self, metric: crate::source::metric::Metric, now: u64) {
        self.inner.report.event(metric, now);
    }

    /// The running flight, or a new one for `purpose` started at `now`. A flight older than the
    /// waiters' bound is presumed dead (its request was cancelled with the I/O it owned) and
    /// replaced, so no caller joins it.
    fn flight(
        &self,
        now: u64,
        purpose: Purpose,
        on_start: Option<OnStart<'_, R::Handle>>,
    ) -> Joined<R::Handle> {
        let bound_ms = self.bound_ms();
        let now_ms = self.inner.ports.runtime.now_ms();
        let mut slot = self.inner.slot.borrow_mut();
        if let Some(joined) = slot.joinable(now, now_ms, bound_ms) {
            return joined;
        }
        let generation = slot.next_generation();
        let inner = self.inner.clone();
        let outcome: Outcome = Rc::default();
        let out = outcome.clone();
        // Two phases on purpose (see `Runtime::start`): the answer, then the writes.
        #[allow(clippy::async_yields_async)]
        let work = Box::pin(async move {
            let current = || inner.slot.borrow().is_current(generation);
            let finished = driver::run(&inner.parts(&current), purpose, now).await;
            *out.borrow_mut() = Some(finished.result);
            inner.slot.borrow_mut().end(generation);
            let (writes, note) = (finished.writes, finished.note_coordinator);
            let persist: LocalBoxFuture<'static, ()> = Box::pin(async move {
                let config = inner.config.borrow().clone();
                driver::persist(&config, &inner.ports, &inner.state, writes).await;
                let coordinator = inner.ports.coordinator.borrow().clone();
                if let Some(coordinator) = coordinator.filter(|_| note) {
                    coordinator.note().await;
                }
            });
            persist
        });
        let handle = self.inner.ports.runtime.start(work);
        let joined = Joined {
            generation,
            handle,
            outcome,
        };
        slot.occupy(joined.clone(), now, now_ms);
        drop(slot);
        if let Some(on_start) = on_start {
            on_start(&joined.handle);
        }
        joined
    }

    async fn wait_for(
        &self,
        now: u64,
        purpose: Purpose,
        on_start: Option<OnStart<'_, R::Handle>>,
    ) -> Result<Token> {
        let Joined {
            generation,
            handle,
            outcome,
        } = self.flight(now, purpose, on_start);
        // Bounded on the waiter's side: if the request that started the flight is cancelled,
        // the platform may drop the flight's I/O with it, and nobody must wait for it forever.
        let bound = self.bound_ms();
        let runtime = &self.inner.ports.runtime;
        let waited = select(runtime.wait(&handle), Box::pin(runtime.sleep(bound))).await;
        if let Either::Right(_) = waited {
            self.inner.slot.borrow_mut().end(generation);
            (self.inner.ports.log)(&log::cache_event(
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
}
