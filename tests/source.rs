//! The cache and single flight, natively, with a fixed clock and test doubles.
#![cfg(not(target_arch = "wasm32"))]

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use futures_executor::block_on;
use futures_util::future::join_all;
use worker_m2m::config::{ClientAuth, Config};
use worker_m2m::secret::ClientSecret;
use worker_m2m::store::{encode_record, TokenStore, TOKEN_ENTRY};
use worker_m2m::transport::{HttpClient, HttpRequest, HttpResponse, TransportError};
use worker_m2m::{AccessToken, Scheme, Token, TokenSource};

const NOW: u64 = 1_700_000_000;
const SECRET: &str = "s3cr%t+:/=&";

fn config() -> Config {
    Config {
        token_url: "https://idp.example/token".parse().unwrap(),
        client_id: "client".into(),
        auth: ClientAuth::Basic(ClientSecret::new(SECRET)),
        scope: Some("read".into()),
        audience: None,
        resource: None,
        extra_params: vec![],
        expiry_margin_secs: 60,
        timeout_ms: 1000,
    }
}

/// Yields once before answering, so concurrent callers overlap the request.
struct YieldOnce(bool);
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
struct Gate {
    open: Cell<bool>,
    wakers: RefCell<Vec<std::task::Waker>>,
}

impl Gate {
    fn open(&self) {
        self.open.set(true);
        self.wakers.borrow_mut().drain(..).for_each(|w| w.wake());
    }
}

struct Wait(Rc<Gate>);
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

/// A token endpoint that counts requests and answers with a fixed status and body.
#[derive(Clone)]
struct Endpoint {
    calls: Rc<Cell<u32>>,
    status: u16,
    body: Rc<RefCell<String>>,
    gate: Option<Rc<Gate>>,
}

impl Endpoint {
    fn new(status: u16, body: &str) -> Self {
        Self {
            calls: Rc::new(Cell::new(0)),
            status,
            body: Rc::new(RefCell::new(body.into())),
            gate: None,
        }
    }
}

impl HttpClient for Endpoint {
    fn execute(
        &self,
        _req: HttpRequest,
    ) -> impl Future<Output = Result<HttpResponse, TransportError>> {
        self.calls.set(self.calls.get() + 1);
        let (status, body, gate) = (self.status, self.body.borrow().clone(), self.gate.clone());
        async move {
            match gate {
                Some(g) => Wait(g).await,
                None => YieldOnce(false).await,
            }
            Ok(HttpResponse {
                status,
                headers: vec![],
                body: body.into_bytes(),
                elapsed_ms: 3,
            })
        }
    }
}

/// A map store that counts reads and writes and can be made to fail.
#[derive(Clone, Default)]
struct Kv {
    map: Rc<RefCell<HashMap<String, (String, u64)>>>,
    reads: Rc<Cell<u32>>,
    fail: bool,
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
}

type Lines = Rc<RefCell<Vec<String>>>;

fn logs() -> (Lines, worker_m2m::source::LogSink) {
    let lines = Rc::new(RefCell::new(Vec::new()));
    let sink = lines.clone();
    (
        lines,
        Rc::new(move |l: &str| sink.borrow_mut().push(l.to_owned())),
    )
}

const GOOD: &str = r#"{"access_token":"tok-1","token_type":"Bearer","expires_in":3600}"#;

#[test]
fn one_request_for_many_concurrent_callers_then_memory_only() {
    let ep = Endpoint::new(200, GOOD);
    let kv = Kv::default();
    let (lines, log) = logs();
    let source = TokenSource::new(config(), ep.clone(), kv.clone(), log);
    let results = block_on(join_all((0..100).map(|_| source.token(NOW))));
    assert_eq!(
        ep.calls.get(),
        1,
        "100 concurrent callers share one token request"
    );
    assert!(results
        .iter()
        .all(|r| r.as_ref().unwrap().access_token().expose() == "tok-1"));
    assert_eq!(kv.reads.get(), 1, "one KV read for the whole flight");
    // Stored for fresh_until - now = 3540 s.
    let (_, ttl) = kv.map.borrow().get(TOKEN_ENTRY).cloned().unwrap();
    assert_eq!(ttl, 3540);

    // Later calls within the token's fresh life touch neither the network nor KV.
    for t in [NOW + 1, NOW + 3539] {
        block_on(source.token(t)).unwrap();
    }
    assert_eq!((ep.calls.get(), kv.reads.get()), (1, 1));
    assert_eq!(
        lines
            .borrow()
            .iter()
            .filter(|l| l.contains(r#""source":"network""#))
            .count(),
        1
    );

    // Past the margin, a new token is fetched.
    *ep.body.borrow_mut() = GOOD.replace("tok-1", "tok-2");
    let t = block_on(source.token(NOW + 3540)).unwrap();
    assert_eq!((t.access_token().expose(), ep.calls.get()), ("tok-2", 2));
}

#[test]
fn a_second_isolate_reads_kv_instead_of_the_network() {
    let ep = Endpoint::new(200, GOOD);
    let kv = Kv::default();
    let first = TokenSource::new(config(), ep.clone(), kv.clone(), logs().1);
    block_on(first.token(NOW)).unwrap();
    let (lines, log) = logs();
    let second = TokenSource::new(config(), ep.clone(), kv.clone(), log);
    let t = block_on(second.token(NOW + 10)).unwrap();
    assert_eq!((t.access_token().expose(), ep.calls.get()), ("tok-1", 1));
    assert!(
        lines.borrow()[0].contains(r#""source":"kv""#),
        "{:?}",
        lines.borrow()
    );
}

#[test]
fn stale_or_corrupt_kv_values_are_misses_and_get_overwritten() {
    let stale = Token::new(
        AccessToken::new("old"),
        Scheme::Bearer,
        NOW - 4000,
        NOW - 400,
        60,
    );
    for value in [encode_record(&stale), "garbage".into(), r#"{"v":1}"#.into()] {
        let ep = Endpoint::new(200, GOOD);
        let kv = Kv::default();
        kv.map
            .borrow_mut()
            .insert(TOKEN_ENTRY.into(), (value.clone(), 60));
        let source = TokenSource::new(config(), ep.clone(), kv.clone(), logs().1);
        let t = block_on(source.token(NOW)).unwrap();
        assert_eq!(
            (t.access_token().expose(), ep.calls.get()),
            ("tok-1", 1),
            "{value}"
        );
        assert!(kv.map.borrow()[TOKEN_ENTRY].0.contains("tok-1"));
    }
}

#[test]
fn short_lived_tokens_stay_in_memory_only() {
    let ep = Endpoint::new(200, r#"{"access_token":"short","expires_in":70}"#);
    let kv = Kv::default();
    let source = TokenSource::new(config(), ep.clone(), kv.clone(), logs().1);
    block_on(source.token(NOW)).unwrap();
    // 70 s lifetime, margin min(60, 17) = 17: fresh for 53 s, below KV's 60 s minimum TTL.
    assert!(kv.map.borrow().is_empty());
    block_on(source.token(NOW + 52)).unwrap();
    assert_eq!(ep.calls.get(), 1);
}

#[test]
fn a_failing_kv_is_a_miss_not_an_error() {
    let ep = Endpoint::new(200, GOOD);
    let kv = Kv {
        fail: true,
        ..Kv::default()
    };
    let (lines, log) = logs();
    let source = TokenSource::new(config(), ep.clone(), kv, log);
    assert!(block_on(source.token(NOW)).is_ok());
    let lines = lines.borrow();
    assert!(
        lines.iter().any(|l| l.contains("read_error"))
            && lines.iter().any(|l| l.contains("write_error"))
    );
}

#[test]
fn refusals_are_shared_logged_and_scrubbed() {
    let body =
        format!(r#"{{"error":"invalid_client","error_description":"secret {SECRET} is wrong"}}"#);
    let gate = Rc::new(Gate::default());
    let ep = Endpoint {
        gate: Some(gate.clone()),
        ..Endpoint::new(401, &body)
    };
    let (lines, log) = logs();
    let source = TokenSource::new(config(), ep.clone(), Kv::default(), log);
    let results = Rc::new(RefCell::new(Vec::new()));
    let mut pool = futures_executor::LocalPool::new();
    for _ in 0..5 {
        let (source, results) = (source.clone(), results.clone());
        futures_util::task::LocalSpawnExt::spawn_local(&pool.spawner(), async move {
            let r = source.token(NOW).await;
            results.borrow_mut().push(r);
        })
        .unwrap();
    }
    pool.run_until_stalled();
    assert_eq!(
        results.borrow().len(),
        0,
        "all five wait on the one request"
    );
    gate.open();
    pool.run();
    let results = results.take();
    assert_eq!(results.len(), 5);
    assert_eq!(ep.calls.get(), 1);
    for r in results {
        let e = r.unwrap_err();
        assert_eq!((e.http_status(), e.code()), (502, "invalid_client"));
        assert!(!e.to_string().contains(SECRET), "{e}");
    }
    {
        let lines = lines.borrow();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains(r#""outcome":"error""#) && lines[0].contains(r#""status":401"#));
        assert!(!lines[0].contains(SECRET));
    }
    // The failed flight is over: the next call tries again.
    let _ = block_on(source.token(NOW + 1));
    assert_eq!(ep.calls.get(), 2);
}

#[test]
fn network_errors_are_unavailable() {
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    let http = move |_: &HttpRequest| -> Result<HttpResponse, TransportError> {
        c.set(c.get() + 1);
        Err(TransportError {
            reason: "connection refused".into(),
            elapsed_ms: 1,
        })
    };
    let source = TokenSource::new(config(), http, worker_m2m::store::NoStore, logs().1);
    let e = block_on(source.token(NOW)).unwrap_err();
    assert_eq!((e.http_status(), e.retry_after()), (503, Some(5)));
    assert!(e.to_string().contains("connection refused"));
}
