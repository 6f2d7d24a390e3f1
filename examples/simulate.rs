//! `make simulate`: a fleet of isolates in many locations, over 24 simulated hours, driving the
//! real I/O-free core (`TokenSource`, `coordinator::serve`) with simulated time, a model of
//! Workers KV (per-location read caching, propagation delay, one write per second per key) and
//! a token endpoint with latency. Prints token requests per token lifetime, KV reads and
//! writes, coordinator requests and requests that waited on a token, KV-only against the
//! coordinator. The model and its sources are in SIMULATION.md.

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    sim::main();
}

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
mod sim {
    use std::cell::{Cell, RefCell};
    use std::cmp::Ordering;
    use std::collections::{BinaryHeap, HashMap};
    use std::future::Future;
    use std::pin::Pin;
    use std::rc::Rc;
    use std::task::{Context, Poll, Waker};

    use futures_executor::{LocalPool, LocalSpawner};
    use futures_util::future::{FutureExt, LocalBoxFuture, Shared};
    use futures_util::task::LocalSpawnExt;
    use worker_m2m::serve_coordinator as serve;
    use worker_m2m::{Answer, Ask, Config, Coordinator};
    use worker_m2m::{HttpClient, HttpRequest, HttpResponse, TransportError};
    use worker_m2m::{LogSink, Runtime, Signers, TokenSource, TokenStore, TOKEN_ENTRY};

    // --- the model's numbers (SIMULATION.md says where they come from) ---------------------
    const DAY_MS: u64 = 86_400_000;
    const TOKEN_LIFETIME_SECS: u64 = 3_600;
    /// How long a one-hour token is used before its refresh (54 minutes, see `crate::token`).
    const USED_FOR_SECS: u64 = 3_240;
    const IDP_LATENCY_MS: u64 = 150;
    const KV_READ_MS: u64 = 10;
    const KV_WRITE_MS: u64 = 30;
    const KV_PROPAGATION_MS: u64 = 60_000;
    const KV_CACHE_TTL_MS: u64 = 60_000;
    const KV_WRITE_INTERVAL_MS: u64 = 1_000;
    const COORDINATOR_RTT_MS: u64 = 40;
    const COORDINATOR_RESTART_MS: u64 = 20 * 60_000;
    const REQUESTS_PER_RUN: u64 = 1_200_000;

    // --- simulated time and a tiny executor ------------------------------------------------
    /// A pending sleep in the timer heap: its waker is updated in place when the sleep is polled
    /// again, so a sleep is in the heap once however often it is polled.
    struct Timer {
        at: u64,
        seq: u64,
        waker: Rc<RefCell<Option<Waker>>>,
    }
    impl PartialEq for Timer {
        fn eq(&self, o: &Self) -> bool {
            (self.at, self.seq) == (o.at, o.seq)
        }
    }
    impl Eq for Timer {}
    impl PartialOrd for Timer {
        fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
            Some(self.cmp(o))
        }
    }
    impl Ord for Timer {
        fn cmp(&self, o: &Self) -> Ordering {
            (o.at, o.seq).cmp(&(self.at, self.seq)) // a min-heap
        }
    }

    thread_local! {
        static NOW: Cell<u64> = const { Cell::new(0) };
        static TIMERS: RefCell<BinaryHeap<Timer>> = const { RefCell::new(BinaryHeap::new()) };
        static SEQ: Cell<u64> = const { Cell::new(0) };
        static SPAWNER: RefCell<Option<LocalSpawner>> = const { RefCell::new(None) };
        static RNG: Cell<u64> = const { Cell::new(0x9E37_79B9_7F4A_7C15) };
    }

    fn now_ms() -> u64 {
        NOW.with(Cell::get)
    }

    fn random() -> f64 {
        RNG.with(|r| {
            let mut x = r.get();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            r.set(x);
            (x >> 11) as f64 / (1u64 << 53) as f64
        })
    }

    struct Sleep {
        at: u64,
        waker: Option<Rc<RefCell<Option<Waker>>>>,
    }
    impl Future for Sleep {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if now_ms() >= self.at {
                return Poll::Ready(());
            }
            if let Some(waker) = &self.waker {
                *waker.borrow_mut() = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let waker = Rc::new(RefCell::new(Some(cx.waker().clone())));
            let seq = SEQ.with(|s| {
                s.set(s.get() + 1);
                s.get()
            });
            TIMERS.with(|t| {
                t.borrow_mut().push(Timer {
                    at: self.at,
                    seq,
                    waker: waker.clone(),
                })
            });
            self.waker = Some(waker);
            Poll::Pending
        }
    }
    impl Drop for Sleep {
        fn drop(&mut self) {
            // A sleep given up (the other side of a `select` won): nothing to wake.
            if let Some(waker) = &self.waker {
                waker.borrow_mut().take();
            }
        }
    }

    fn sleep(ms: u64) -> Sleep {
        Sleep {
            at: now_ms() + ms,
            waker: None,
        }
    }

    fn spawn(f: impl Future<Output = ()> + 'static) {
        SPAWNER.with(|s| {
            s.borrow()
                .as_ref()
                .expect("spawner")
                .spawn_local(f)
                .expect("spawn")
        });
    }

    /// Runs every task until `end_ms` of simulated time.
    fn run(pool: &mut LocalPool, end_ms: u64) {
        loop {
            pool.run_until_stalled();
            let next = TIMERS.with(|t| t.borrow_mut().pop());
            let Some(timer) = next else { break };
            if timer.at > end_ms {
                break;
            }
            NOW.with(|n| n.set(n.get().max(timer.at)));
            let waker = timer.waker.borrow_mut().take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }

    #[derive(Clone, Copy)]
    struct SimRuntime;
    impl Runtime for SimRuntime {
        type Handle = Shared<LocalBoxFuture<'static, ()>>;
        fn start(
            &self,
            work: LocalBoxFuture<'static, LocalBoxFuture<'static, ()>>,
        ) -> Self::Handle {
            let flight = async move { work.await.await }.boxed_local().shared();
            spawn(flight.clone());
            flight
        }
        fn wait(&self, handle: &Self::Handle) -> LocalBoxFuture<'static, ()> {
            handle.clone().boxed_local()
        }
        fn sleep(&self, ms: u64) -> impl Future<Output = ()> {
            sleep(ms)
        }
        fn random(&self) -> f64 {
            random()
        }
        fn now_ms(&self) -> u64 {
            now_ms()
        }
    }

    // --- the token endpoint ---------------------------------------------------------------
    #[derive(Default)]
    struct Idp {
        requests: Cell<u64>,
        issued: Cell<u64>,
        /// [from, to) in ms: answers 503.
        outage: Cell<(u64, u64)>,
    }

    #[derive(Clone)]
    struct SimHttp(Rc<Idp>);
    impl HttpClient for SimHttp {
        fn execute(
            &self,
            _req: HttpRequest,
        ) -> impl Future<Output = Result<HttpResponse, TransportError>> {
            let idp = self.0.clone();
            async move {
                idp.requests.set(idp.requests.get() + 1);
                sleep(IDP_LATENCY_MS).await;
                let (from, to) = idp.outage.get();
                let (status, body) = if (from..to).contains(&now_ms()) {
                    (503, String::new())
                } else {
                    idp.issued.set(idp.issued.get() + 1);
                    (
                        200,
                        format!(
                            r#"{{"access_token":"t-{}","token_type":"Bearer","expires_in":{TOKEN_LIFETIME_SECS}}}"#,
                            idp.issued.get()
                        ),
                    )
                };
                Ok(HttpResponse {
                    status,
                    headers: vec![],
                    body: body.into_bytes(),
                    elapsed_ms: IDP_LATENCY_MS,
                })
            }
        }
    }

    // --- Workers KV ------------------------------------------------------------------------
    struct Write {
        at: u64,
        location: usize,
        value: Option<String>,
    }

    /// When a location read a key, and what it got (a miss included).
    type Cached = (u64, Option<String>);

    #[derive(Default)]
    struct Kv {
        writes: RefCell<HashMap<String, Vec<Write>>>,
        /// (location, key) -> (read at, value): what a location serves without asking again.
        cache: RefCell<HashMap<(usize, String), Cached>>,
        reads: Cell<u64>,
        puts: Cell<u64>,
        refused: Cell<u64>,
    }

    impl Kv {
        fn read(&self, location: usize, key: &str) -> Option<String> {
            let now = now_ms();
            let cache_key = (location, key.to_owned());
            if let Some((at, v)) = self.cache.borrow().get(&cache_key) {
                if now < at + KV_CACHE_TTL_MS {
                    return v.clone();
                }
            }
            let value = self.writes.borrow().get(key).and_then(|ws| {
                ws.iter()
                    .rev()
                    .find(|w| {
                        w.at <= now && (w.location == location || w.at + KV_PROPAGATION_MS <= now)
                    })
                    .and_then(|w| w.value.clone())
            });
            self.cache
                .borrow_mut()
                .insert(cache_key, (now, value.clone()));
            value
        }

        fn write(&self, location: usize, key: &str, value: Option<String>) -> Result<(), String> {
            let now = now_ms();
            let mut writes = self.writes.borrow_mut();
            let ws = writes.entry(key.to_owned()).or_default();
            if ws.last().is_some_and(|w| now < w.at + KV_WRITE_INTERVAL_MS) {
                self.refused.set(self.refused.get() + 1);
                return Err("429: one write per second per key".into());
            }
            ws.push(Write {
                at: now,
                location,
                value: value.clone(),
            });
            // The writer's location sees its own write.
            self.cache
                .borrow_mut()
                .insert((location, key.to_owned()), (now, value));
            Ok(())
        }
    }

    #[derive(Clone)]
    struct KvView {
        kv: Rc<Kv>,
        location: usize,
    }

    impl TokenStore for KvView {
        fn get(&self, name: &str) -> impl Future<Output = Result<Option<String>, String>> {
            let this = self.clone();
            let name = name.to_owned();
            async move {
                this.kv.reads.set(this.kv.reads.get() + 1);
                sleep(KV_READ_MS).await;
                Ok(this.kv.read(this.location, &name))
            }
        }
        fn put(
            &self,
            name: &str,
            value: String,
            _ttl: u64,
        ) -> impl Future<Output = Result<(), String>> {
            let this = self.clone();
            let name = name.to_owned();
            async move {
                this.kv.puts.set(this.kv.puts.get() + 1);
                sleep(KV_WRITE_MS).await;
                this.kv.write(this.location, &name, Some(value))
            }
        }
        fn delete(&self, name: &str) -> impl Future<Output = Result<(), String>> {
            let this = self.clone();
            let name = name.to_owned();
            async move {
                sleep(KV_WRITE_MS).await;
                this.kv.write(this.location, &name, None)
            }
        }
    }

    /// The coordinator's storage: its own map, with the token and hold entries mirrored to KV
    /// from its location (0), as the Durable Object does.
    #[derive(Clone)]
    struct ObjectStore {
        map: Rc<RefCell<HashMap<String, String>>>,
        kv: KvView,
    }

    impl TokenStore for ObjectStore {
        fn get(&self, name: &str) -> impl Future<Output = Result<Option<String>, String>> {
            std::future::ready(Ok(self.map.borrow().get(name).cloned()))
        }
        fn put(
            &self,
            name: &str,
            value: String,
            ttl: u64,
        ) -> impl Future<Output = Result<(), String>> {
            self.map.borrow_mut().insert(name.to_owned(), value.clone());
            let (kv, name) = (self.kv.clone(), name.to_owned());
            async move {
                if name != TOKEN_ENTRY && name != "hold" {
                    return Ok(());
                }
                // As the Durable Object does: a write refused by the one-per-second limit is
                // tried once more after it.
                if kv.put(&name, value.clone(), ttl).await.is_err() {
                    sleep(KV_WRITE_INTERVAL_MS + 100).await;
                    return kv.put(&name, value, ttl).await;
                }
                Ok(())
            }
        }
        fn delete(&self, name: &str) -> impl Future<Output = Result<(), String>> {
            self.map.borrow_mut().remove(name);
            let (kv, name) = (self.kv.clone(), name.to_owned());
            async move { kv.delete(&name).await }
        }
    }

    type IsolateSource = TokenSource<SimHttp, KvView, SimRuntime>;
    type ObjectSource = TokenSource<SimHttp, ObjectStore, SimRuntime>;

    struct Local {
        object: Rc<RefCell<ObjectSource>>,
        asks: Rc<Cell<u64>>,
    }

    impl Coordinator for Local {
        fn ask(&self, ask: Ask) -> LocalBoxFuture<'static, Result<Answer, String>> {
            self.asks.set(self.asks.get() + 1);
            let object = self.object.borrow().clone();
            Box::pin(async move {
                sleep(COORDINATOR_RTT_MS / 2).await;
                let answer = serve(&object, ask, now_ms() / 1000).await;
                sleep(COORDINATOR_RTT_MS / 2).await;
                answer
            })
        }
    }

    fn config() -> Config {
        // The simulated fleet's client, as its settings would give it.
        let settings = [
            ("OAUTH_TOKEN_URL", "https://idp.example/token"),
            ("OAUTH_CLIENT_ID", "fleet"),
            ("OAUTH_CLIENT_SECRET", "fleet-secret"),
            ("OAUTH_SCOPE", "read"),
        ];
        let lookup = |name: &str| {
            let found = settings.iter().find(|(n, _)| *n == name);
            found.map(|(_, v)| (*v).to_owned())
        };
        Config::from_lookup(lookup).expect("the simulated settings are valid")
    }

    /// The simulated client uses a client secret: no signer is ever made.
    fn signers() -> Signers {
        Signers::for_config(
            &config(),
            |_| unreachable!("client secret"),
            |_| unreachable!("no DPoP"),
        )
    }

    #[derive(Clone, Copy, PartialEq)]
    enum Pattern {
        Steady,
        Bursts,
        Deploy,
        Outage,
        Revoked,
    }

    impl Pattern {
        fn name(self) -> &'static str {
            match self {
                Self::Steady => "steady",
                Self::Bursts => "bursts",
                Self::Deploy => "deploy at 12 h",
                Self::Outage => "IdP outage 30 min",
                Self::Revoked => "revoked at 8 h",
            }
        }
    }

    const DEPLOY_AT_MS: u64 = 12 * 3_600_000;
    const REVOKE_AT_MS: u64 = 8 * 3_600_000;
    /// Across the 6th token's refresh window (from 5 h 24 min) and its expiry (6 h).
    const OUTAGE: (u64, u64) = (5 * 3_600_000 + 20 * 60_000, 5 * 3_600_000 + 50 * 60_000);

    #[derive(Default, Clone, Copy)]
    struct Stats {
        requests: u64,
        waited: u64,
        errors: u64,
    }

    struct Outcome {
        token_requests: u64,
        kv_reads: u64,
        kv_puts: u64,
        kv_refused: u64,
        asks: u64,
        stats: Stats,
    }

    fn simulate(pattern: Pattern, isolates: usize, locations: usize, coordinated: bool) -> Outcome {
        NOW.with(|n| n.set(0));
        TIMERS.with(|t| t.borrow_mut().clear());
        let mut pool = LocalPool::new();
        SPAWNER.with(|s| *s.borrow_mut() = Some(pool.spawner()));
        let idp = Rc::new(Idp::default());
        if pattern == Pattern::Outage {
            idp.outage.set(OUTAGE);
        }
        let kv = Rc::new(Kv::default());
        let log: LogSink = Rc::new(|_| {});
        let http = SimHttp(idp.clone());
        let storage = Rc::new(RefCell::new(HashMap::new()));
        let new_object = {
            let (http, kv, log, storage) = (http.clone(), kv.clone(), log.clone(), storage.clone());
            move || {
                let store = ObjectStore {
                    map: storage.clone(),
                    kv: KvView {
                        kv: kv.clone(),
                        location: 0,
                    },
                };
                TokenSource::new(
                    config(),
                    http.clone(),
                    signers(),
                    store,
                    SimRuntime,
                    log.clone(),
                )
            }
        };
        let object = Rc::new(RefCell::new(new_object()));
        let asks = Rc::new(Cell::new(0));
        let new_isolate = {
            let (http, kv, log, object, asks) = (
                http.clone(),
                kv.clone(),
                log.clone(),
                object.clone(),
                asks.clone(),
            );
            move |i: usize| -> IsolateSource {
                let store = KvView {
                    kv: kv.clone(),
                    location: i % locations,
                };
                let s = TokenSource::new(
                    config(),
                    http.clone(),
                    signers(),
                    store,
                    SimRuntime,
                    log.clone(),
                );
                if coordinated {
                    s.set_coordinator(Rc::new(Local {
                        object: object.clone(),
                        asks: asks.clone(),
                    }));
                }
                s
            }
        };
        let new_isolate = Rc::new(new_isolate);
        // Cloudflare evicts an idle Durable Object from memory; it comes back over its storage.
        // Modelled as a restart every 20 minutes (not aligned with refreshes).
        if coordinated {
            let (object, new_object) = (object.clone(), new_object.clone());
            spawn(async move {
                loop {
                    sleep(COORDINATOR_RESTART_MS).await;
                    *object.borrow_mut() = new_object();
                }
            });
        }
        let stats = Rc::new(Cell::new(Stats::default()));
        // Steady traffic spreads a fixed number of requests over the day; bursts send every
        // isolate 5 requests within a second, every 2 hours.
        let interval_ms = (isolates as u64 * DAY_MS / REQUESTS_PER_RUN).max(100);
        let redeployed = Rc::new(Cell::new(false));
        for i in 0..isolates {
            let (new_isolate, stats, redeployed, object) = (
                new_isolate.clone(),
                stats.clone(),
                redeployed.clone(),
                object.clone(),
            );
            let new_object = new_object.clone();
            spawn(async move {
                let mut source = new_isolate(i);
                let mut deployed = false;
                let mut t = (random() * interval_ms as f64) as u64;
                let mut burst_request = 0u64;
                loop {
                    let next = match pattern {
                        // 5 requests within a second from every isolate, every 2 hours.
                        Pattern::Bursts => {
                            let (burst, j) = (burst_request / 5, burst_request % 5);
                            burst_request += 1;
                            burst * 2 * 3_600_000 + j * 150 + (random() * 250.0) as u64
                        }
                        _ => t + (interval_ms as f64 * (0.5 + random())) as u64,
                    };
                    if next >= DAY_MS {
                        break;
                    }
                    sleep(next.saturating_sub(now_ms())).await;
                    t = next;
                    if pattern == Pattern::Deploy && !deployed && t >= DEPLOY_AT_MS {
                        // Every isolate is replaced; the coordinator restarts over its storage.
                        deployed = true;
                        source = new_isolate(i);
                        if !redeployed.replace(true) {
                            *object.borrow_mut() = new_object();
                        }
                    }
                    let started = now_ms();
                    let mut errors = 0;
                    match source.token_ahead(now_ms() / 1000, None).await {
                        Ok(token) => {
                            // The API rejects every token issued before the revocation.
                            let revoked = pattern == Pattern::Revoked
                                && now_ms() >= REVOKE_AT_MS
                                && token.issued_at() * 1000 < REVOKE_AT_MS;
                            if revoked
                                && source.invalidate(&token, now_ms() / 1000).await
                                && source.token(now_ms() / 1000).await.is_err()
                            {
                                errors += 1;
                            }
                        }
                        Err(_) => errors += 1,
                    }
                    let mut s = stats.get();
                    s.requests += 1;
                    s.waited += u64::from(now_ms() > started);
                    s.errors += errors;
                    stats.set(s);
                }
            });
        }
        run(&mut pool, DAY_MS + 60_000);
        Outcome {
            token_requests: idp.requests.get(),
            kv_reads: kv.reads.get(),
            kv_puts: kv.puts.get(),
            kv_refused: kv.refused.get(),
            asks: asks.get(),
            stats: stats.get(),
        }
    }

    pub fn main() {
        let fleets = [(10, 1), (100, 10), (1_000, 100), (10_000, 300)];
        let patterns = [
            Pattern::Steady,
            Pattern::Bursts,
            Pattern::Deploy,
            Pattern::Outage,
            Pattern::Revoked,
        ];
        // A token is used from its request until it is refreshed, 54 minutes for a one-hour token
        // (see `crate::token`): that is the lifetime the promise counts in.
        let lifetimes = DAY_MS as f64 / (USED_FOR_SECS * 1000) as f64;
        println!(
            "# worker-m2m fleet simulation: 24 simulated hours, 1-hour tokens used {} min each ({lifetimes:.1} lifetimes)",
            USED_FOR_SECS / 60
        );
        println!();
        println!("| pattern | fleet | mode | token requests | per lifetime | KV reads | KV writes (refused) | coordinator requests | per isolate per lifetime | requests | waited | errors |");
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
        // `SIM_ONLY=bursts:1000` runs one pattern and fleet size (for profiling the model).
        let only = std::env::var("SIM_ONLY").ok();
        for pattern in patterns {
            for (isolates, locations) in fleets {
                let key = format!(
                    "{}:{isolates}",
                    pattern.name().split(' ').next().unwrap_or("")
                );
                if only.as_ref().is_some_and(|o| !key.starts_with(o.as_str())) {
                    continue;
                }
                for coordinated in [false, true] {
                    let o = simulate(pattern, isolates, locations, coordinated);
                    println!(
                        "| {} | {isolates} isolates / {locations} locations | {} | {} | {:.2} | {} | {} ({}) | {} | {:.2} | {} | {} | {} |",
                        pattern.name(),
                        if coordinated { "coordinator" } else { "KV only" },
                        o.token_requests,
                        o.token_requests as f64 / lifetimes,
                        o.kv_reads,
                        o.kv_puts,
                        o.kv_refused,
                        o.asks,
                        o.asks as f64 / (isolates as f64 * lifetimes),
                        o.stats.requests,
                        o.stats.waited,
                        o.stats.errors,
                    );
                }
            }
        }
    }
}
