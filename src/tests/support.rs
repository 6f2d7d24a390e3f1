//! Test doubles shared by the native integration tests: a scripted token endpoint, a counting
//! KV, a runtime with recorded sleeps, and a fixed clock.
#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use crate::base::secret::ClientSecret;
use crate::config::client::{ClientAuth, Config};
use crate::oauth::transport::{HttpClient, HttpRequest, HttpResponse, TransportError};
use crate::source::runtime::Runtime;
pub(super) use crate::source::signers::Signers;
use crate::source::store::TokenStore;
use crate::{Token, TokenSource};
use futures_executor::block_on;
use futures_util::future::{FutureExt, LocalBoxFuture, Shared};

pub(super) const NOW: u64 = 1_700_000_000;
pub(super) const SECRET: &str = "s3cr%t+:/=&";

pub(super) fn config() -> Config {
    Config {
        profile: None,
        endpoint: crate::config::client::Endpoint::TokenUrl(
            "https://idp.example/token".parse().unwrap(),
        ),
        token_endpoint_hosts: Vec::new(),
        client_id: "client".into(),
        auth: ClientAuth::Basic(ClientSecret::new(SECRET)),
        credential_from_store: None,
        scope: Some("read".into()),
        audience: None,
        resource: None,
        extra_params: vec![],
        expiry_margin_secs: 60,
        timeout_ms: 1000,
        holddown_secs: 30,
        retry_statuses: vec![401],
        cache_key_secret: None,
        refresh_ahead: true,
        refresh_lead_secs: None,
        dpop: Default::default(),
        metrics_interval_secs: 60,
    }
}

/// Yields once before answering, so concurrent callers overlap the request.
pub(super) struct YieldOnce(pub bool);
impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// Holds every request until the test opens it, so callers provably overlap.
#[derive(Default)]
pub(super) struct Gate {
    pub open: Cell<bool>,
    pub wakers: RefCell<Vec<std::task::Waker>>,
}

impl Gate {
    pub(super) fn open(&self) {
        self.open.set(true);
        self.wakers.borrow_mut().drain(..).for_each(|w| w.wake());
    }
}

pub(super) struct Wait(pub Rc<Gate>);
impl Future for Wait {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.open.get() {
            return Poll::Ready(());
        }
        self.0.wakers.borrow_mut().push(cx.waker().clone());
        Poll::Pending
    }
}

/// One scripted answer of the token endpoint.
#[derive(Clone)]
pub(super) enum Reply {
    Http(u16, &'static str, Vec<(String, String)>),
    Fail(&'static str, u64),
}

/// A token endpoint that counts requests and plays a script of answers (the last one repeats).
#[derive(Clone)]
pub(super) struct Endpoint {
    pub calls: Rc<Cell<u32>>,
    pub script: Rc<RefCell<Vec<Reply>>>,
    pub timeouts: Rc<RefCell<Vec<u64>>>,
    /// Every request received, in order.
    pub requests: Rc<RefCell<Vec<HttpRequest>>>,
    pub gate: Option<Rc<Gate>>,
    /// How far each request moves the test clock on before it is answered.
    pub latency_ms: Rc<Cell<u64>>,
}

impl Endpoint {
    pub(super) fn new(status: u16, body: &'static str) -> Self {
        Self::script(vec![Reply::Http(status, body, vec![])])
    }

    pub(super) fn script(script: Vec<Reply>) -> Self {
        Self {
            calls: Rc::new(Cell::new(0)),
            script: Rc::new(RefCell::new(script)),
            timeouts: Rc::default(),
            requests: Rc::default(),
            gate: None,
            latency_ms: Rc::default(),
        }
    }

    pub(super) fn then(&self, reply: Reply) {
        *self.script.borrow_mut() = vec![reply];
    }
}

impl HttpClient for Endpoint {
    fn execute(
        &self,
        req: HttpRequest,
    ) -> impl Future<Output = Result<HttpResponse, TransportError>> {
        self.calls.set(self.calls.get() + 1);
        self.timeouts.borrow_mut().push(req.timeout_ms);
        self.requests.borrow_mut().push(req.clone());
        let reply = {
            let mut script = self.script.borrow_mut();
            if script.len() > 1 {
                script.remove(0)
            } else {
                script[0].clone()
            }
        };
        let gate = self.gate.clone();
        let latency = self.latency_ms.get();
        async move {
            advance(latency);
            match gate {
                Some(g) => Wait(g).await,
                None => YieldOnce(false).await,
            }
            match reply {
                Reply::Http(status, body, headers) => Ok(HttpResponse {
                    status,
                    headers,
                    body: body.as_bytes().to_vec(),
                    elapsed_ms: 3,
                }),
                Reply::Fail(reason, elapsed_ms) => Err(TransportError {
                    reason: reason.into(),
                    elapsed_ms,
                }),
            }
        }
    }
}

thread_local! {
    /// The test's clock in milliseconds (each test runs on its own thread): moved on by sleeps
    /// that end and by the endpoint's `latency_ms`.
    pub static CLOCK_MS: Cell<u64> = const { Cell::new(0) };
}

pub(super) fn advance(ms: u64) {
    CLOCK_MS.with(|c| c.set(c.get() + ms));
}

/// Flights as shared futures (both phases); fixed jitter; sleeps recorded and skipped (moving
/// the clock on), except a waiter's long bound on a flight, which fires only once the test sets
/// `bounds_fire`.
#[derive(Clone, Default)]
pub(super) struct TestRuntime {
    pub sleeps: Rc<RefCell<Vec<u64>>>,
    pub bounds_fire: Rc<Cell<bool>>,
}

impl Runtime for TestRuntime {
    type Handle = Shared<LocalBoxFuture<'static, ()>>;
    fn start(&self, work: LocalBoxFuture<'static, LocalBoxFuture<'static, ()>>) -> Self::Handle {
        async move { work.await.await }.boxed_local().shared()
    }
    fn now_ms(&self) -> u64 {
        CLOCK_MS.with(Cell::get)
    }
    fn wait(&self, handle: &Self::Handle) -> LocalBoxFuture<'static, ()> {
        handle.clone().boxed_local()
    }
    fn sleep(&self, ms: u64) -> impl Future<Output = ()> {
        self.sleeps.borrow_mut().push(ms);
        if ms >= crate::source::token_source::FLIGHT_SLACK_MS && !self.bounds_fire.get() {
            futures_util::future::Either::Left(std::future::pending())
        } else {
            advance(ms);
            futures_util::future::Either::Right(std::future::ready(()))
        }
    }
    fn random(&self) -> f64 {
        0.5
    }
}

pub(super) type Source = TokenSource<Endpoint, Kv, TestRuntime>;
pub(super) type Handle = Shared<LocalBoxFuture<'static, ()>>;

/// `token_ahead` with refresh ahead on, and the handle of any flight it started.
pub(super) fn ahead(source: &Source, now: u64) -> (crate::Result<Token>, Option<Handle>) {
    let started = RefCell::new(None);
    let record = |h: &Handle| *started.borrow_mut() = Some(h.clone());
    let t = block_on(source.token_ahead(now, Some(&record)));
    (t, started.into_inner())
}

/// Signers for a configuration that needs none (client secrets, no DPoP): the factories are
/// never called.
pub(super) fn no_signers(config: &Config) -> Signers {
    Signers::for_config(
        config,
        |_| unreachable!("this configuration does not use private_key_jwt"),
        |_| unreachable!("this configuration does not use DPoP"),
    )
}

/// A source for a configuration that needs no signers.
pub(super) fn new_source<
    H: crate::oauth::transport::HttpClient + 'static,
    S: TokenStore + 'static,
>(
    config: Config,
    http: H,
    store: S,
    runtime: TestRuntime,
    log: crate::source::runtime::LogSink,
) -> TokenSource<H, S, TestRuntime> {
    let signers = no_signers(&config);
    TokenSource::new(config, http, signers, store, runtime, log)
}

pub(super) fn source(ep: &Endpoint, kv: &Kv, log: crate::source::runtime::LogSink) -> Source {
    new_source(
        config(),
        ep.clone(),
        kv.clone(),
        TestRuntime::default(),
        log,
    )
}

/// A map store that counts reads and writes and can be made to fail.
#[derive(Clone, Default)]
pub(super) struct Kv {
    pub map: Rc<RefCell<HashMap<String, (String, u64)>>>,
    pub reads: Rc<Cell<u32>>,
    pub fail: bool,
}

impl TokenStore for Kv {
    fn get(&self, name: &str) -> impl Future<Output = Result<Option<String>, String>> {
        self.reads.set(self.reads.get() + 1);
        let r = if self.fail {
            Err("kv down".into())
        } else {
            Ok(self.map.borrow().get(name).map(|v| v.0.clone()))
        };
        std::future::ready(r)
    }
    fn put(&self, name: &str, value: String, ttl: u64) -> impl Future<Output = Result<(), String>> {
        let r = if self.fail {
            Err("kv down".into())
        } else {
            self.map.borrow_mut().insert(name.into(), (value, ttl));
            Ok(())
        };
        std::future::ready(r)
    }
    fn delete(&self, name: &str) -> impl Future<Output = Result<(), String>> {
        self.map.borrow_mut().remove(name);
        std::future::ready(Ok(()))
    }
}

pub(super) type Lines = Rc<RefCell<Vec<String>>>;

pub(super) fn logs() -> (Lines, crate::source::runtime::LogSink) {
    let lines = Rc::new(RefCell::new(Vec::new()));
    let sink = lines.clone();
    (
        lines,
        Rc::new(move |l: &str| sink.borrow_mut().push(l.to_owned())),
    )
}

pub(super) const GOOD: &str = r#"{"access_token":"tok-1","token_type":"Bearer","expires_in":3600}"#;
pub(super) const GOOD2: &str =
    r#"{"access_token":"tok-2","token_type":"Bearer","expires_in":3600}"#;
pub(super) const REFUSED: &str =
    r#"{"error":"invalid_client","error_description":"secret s3cr%t+:/=& is wrong"}"#;

pub(super) fn ok(body: &'static str) -> Reply {
    Reply::Http(200, body, vec![])
}

/// A token endpoint that answers `tok-0`, `tok-1`, ... (`n` of them, then the last again), each
/// living `lifetime` seconds.
pub(super) fn minted(n: usize, lifetime: u64) -> Endpoint {
    Endpoint::script(
        (0..n)
            .map(|i| {
                let body = format!(
                    r#"{{"access_token":"tok-{i}","token_type":"Bearer","expires_in":{lifetime}}}"#
                );
                ok(Box::leak(body.into_boxed_str()))
            })
            .collect(),
    )
}

pub(super) fn with_retry_after(status: u16, secs: &str) -> Reply {
    Reply::Http(status, "", vec![("retry-after".into(), secs.into())])
}

pub(super) fn count(lines: &Lines, needle: &str) -> usize {
    lines.borrow().iter().filter(|l| l.contains(needle)).count()
}
