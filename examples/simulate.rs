//! `make simulate`: a fleet of isolates in many locations, over 24 simulated hours, driving the
//! real I/O-free core (`TokenSource`, `coordinator::serve`) with simulated time, a model of
//! Workers KV (per-location read caching, propagation delay, one write per second per key) and
//! a token endpoint with varying latency, a coordinator that serves one request at a time
//! with a bounded queue (and its alarm), over normal days, IdP outages, a coordinator outage,
//! deploys and revocations. Prints token requests per token lifetime, the peak per minute in an
//! outage, caller errors, coordinator asks and notes (peak per second, overloaded), KV reads
//! and writes, KV-only against the coordinator. The model and its sources are in SIMULATION.md.

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
    use worker_m2m::{alarm_after, keep_warm, Alarm, Fleet};
    use worker_m2m::{Answer, Ask, Config, Coordinator};
    use worker_m2m::{HttpClient, HttpRequest, HttpResponse, TransportError};
    use worker_m2m::{LogSink, Runtime, Signers, TokenSource, TokenStore, TOKEN_ENTRY};

    // --- the model's numbers (SIMULATION.md says where they come from) ---------------------
    const DAY_MS: u64 = 86_400_000;
    const TOKEN_LIFETIME_SECS: u64 = 3_600;
    /// How long a one-hour token is used before its refresh (54 minutes, see `crate::token`).
    const USED_FOR_SECS: u64 = 3_240;
    const KV_READ_MS: u64 = 10;
    const KV_WRITE_MS: u64 = 30;
    const KV_PROPAGATION_MS: u64 = 60_000;
    const KV_CACHE_TTL_MS: u64 = 60_000;
    const KV_WRITE_INTERVAL_MS: u64 = 1_000;
    const COORDINATOR_RTT_MS: u64 = 40;
    const COORDINATOR_RESTART_MS: u64 = 20 * 60_000;
    /// One Durable Object serves about 1 000 requests a second (Cloudflare's stated soft limit):
    /// 1 ms of its single thread per ask or note.
    const COORDINATOR_SERVICE_MS: u64 = 1;
    /// Past a second of queued work, an ask gets "Durable Object is overloaded".
    const COORDINATOR_QUEUE_MS: u64 = 1_000;
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
        /// Token requests per minute of simulated time, for the peak in an outage.
        per_minute: RefCell<HashMap<u64, u64>>,
    }

    impl Idp {
        /// A token endpoint's latency: mostly near 150 ms, one in five up to a second, one in a
        /// hundred near the 10 s timeout (an overloaded IdP).
        fn latency() -> u64 {
            let r = random();
            if r < 0.80 {
                100 + (random() * 100.0) as u64
            } else if r < 0.99 {
                200 + (random() * 800.0) as u64
            } else {
                8_000 + (random() * 1_900.0) as u64
            }
        }
    }

    #[derive(Clone)]
    struct SimHttp(Rc<Idp>);
    impl HttpClient for SimHttp {
        fn execute(
            &self,
            req: HttpRequest,
        ) -> impl Future<Output = Result<HttpResponse, TransportError>> {
            let idp = self.0.clone();
            async move {
                idp.requests.set(idp.requests.get() + 1);
                *idp.per_minute
                    .borrow_mut()
                    .entry(now_ms() / 60_000)
                    .or_default() += 1;
                let latency = Idp::latency();
                if latency >= req.timeout_ms {
                    sleep(req.timeout_ms).await;
                    return Err(TransportError {
                        reason: format!("timed out after {} ms", req.timeout_ms),
                        elapsed_ms: req.timeout_ms,
                    });
                }
                sleep(latency).await;
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
                    elapsed_ms: latency,
                })
            }
        }
    }

    // --- Workers KV ------------------------------------------------------------------------
    struct Write {
        at: u64,
        location: usize,
        value: Option<String>,
        /// `expirationTtl`: gone everywhere from then on (ms).
        expires: u64,
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
                    .filter(|w| now < w.expires)
                    .and_then(|w| w.value.clone())
            });
            self.cache
                .borrow_mut()
                .insert(cache_key, (now, value.clone()));
            value
        }

        fn write(
            &self,
            location: usize,
            key: &str,
            value: Option<String>,
            ttl_secs: u64,
        ) -> Result<(), String> {
            let now = now_ms();
            let mut writes = self.writes.borrow_mut();
            let ws = writes.entry(key.to_owned()).or_default();
            if ws.last().is_some_and(|w| now < w.at + KV_WRITE_INTERVAL_MS) {
                self.refused.set(self.refused.get() + 1);
                return Err("429: one write per second per key".into());
            }
            // KV's minimum `expirationTtl` is 60 s.
            ws.push(Write {
                at: now,
                location,
                value: value.clone(),
                expires: now + ttl_secs.max(60) * 1000,
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
            ttl: u64,
        ) -> impl Future<Output = Result<(), String>> {
            let this = self.clone();
            let name = name.to_owned();
            async move {
                this.kv.puts.set(this.kv.puts.get() + 1);
                sleep(KV_WRITE_MS).await;
                this.kv.write(this.location, &name, Some(value), ttl)
            }
        }
        fn delete(&self, name: &str) -> impl Future<Output = Result<(), String>> {
            let this = self.clone();
            let name = name.to_owned();
            async move {
                sleep(KV_WRITE_MS).await;
                this.kv.write(this.location, &name, None, 60)
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

    /// The Durable Object as the fleet reaches it: one thread with a bounded queue, memory
    /// that an eviction loses, storage and an alarm that it keeps.
    struct Object {
        source: RefCell<ObjectSource>,
        fleet: RefCell<Rc<Fleet>>,
        storage: ObjectStore,
        busy_until: Cell<u64>,
        asks: Cell<u64>,
        notes: Cell<u64>,
        overloaded: Cell<u64>,
        /// Asks and notes per second of simulated time, for the peak.
        per_second: RefCell<HashMap<u64, u64>>,
        /// The alarm, in ms of simulated time.
        alarm: Cell<Option<u64>>,
        /// [from, to) in ms: unreachable; then slow (3 s more per request) as long again.
        down: Cell<(u64, u64)>,
    }

    impl Object {
        /// Takes a request onto the object's one thread, or refuses it as workerd does when the
        /// queue is too long ("Durable Object is overloaded"); returns once it has been served.
        async fn admit(&self) -> Result<(), String> {
            let now = now_ms();
            *self.per_second.borrow_mut().entry(now / 1000).or_default() += 1;
            let (from, to) = self.down.get();
            if (from..to).contains(&now) {
                sleep(COORDINATOR_RTT_MS).await;
                return Err("coordinator unreachable".into());
            }
            let slow = if (to..to + (to - from)).contains(&now) {
                3_000
            } else {
                0
            };
            let queued = self.busy_until.get().saturating_sub(now);
            if queued > COORDINATOR_QUEUE_MS {
                self.overloaded.set(self.overloaded.get() + 1);
                sleep(COORDINATOR_RTT_MS).await;
                return Err("Durable Object is overloaded".into());
            }
            self.busy_until
                .set(now.max(self.busy_until.get()) + COORDINATOR_SERVICE_MS);
            sleep(COORDINATOR_RTT_MS / 2 + queued + COORDINATOR_SERVICE_MS + slow).await;
            Ok(())
        }

        fn set_alarm(&self, alarm: Alarm) {
            self.alarm.set(match alarm {
                Alarm::At(secs) => Some(secs * 1000),
                Alarm::Stop => None,
            });
        }

        async fn seen(&self) {
            let fleet = self.fleet.borrow().clone();
            fleet.seen(&self.storage, now_ms() / 1000).await;
        }
    }

    struct Local(Rc<Object>);

    impl Coordinator for Local {
        fn ask(&self, ask: Ask) -> LocalBoxFuture<'static, Result<Answer, String>> {
            let object = self.0.clone();
            Box::pin(async move {
                object.asks.set(object.asks.get() + 1);
                object.admit().await?;
                object.seen().await;
                let source = object.source.borrow().clone();
                let now = now_ms() / 1000;
                let answer = serve(&source, ask, now).await;
                if let Ok(Answer::Token(t)) = &answer {
                    object.set_alarm(alarm_after(t.refresh_at(), now));
                }
                sleep(COORDINATOR_RTT_MS / 2).await;
                answer
            })
        }

        fn note(&self) -> LocalBoxFuture<'static, ()> {
            let object = self.0.clone();
            Box::pin(async move {
                object.notes.set(object.notes.get() + 1);
                if object.admit().await.is_ok() {
                    object.seen().await;
                }
            })
        }
    }

    /// The object's alarm: fires at its time, even after an eviction (alarms are stored).
    async fn alarms(object: Rc<Object>) {
        loop {
            let now = now_ms();
            match object.alarm.get() {
                Some(at) if at <= now => {
                    object.alarm.set(None);
                    let source = object.source.borrow().clone();
                    let fleet = object.fleet.borrow().clone();
                    let next = keep_warm(&source, &fleet, &object.storage, now / 1000).await;
                    if object.alarm.get().is_none() {
                        object.set_alarm(next);
                    }
                }
                Some(at) => sleep((at - now).min(60_000)).await,
                None => sleep(60_000).await,
            }
            if now_ms() >= DAY_MS {
                return;
            }
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
        /// The whole fleet wakes in the same second every 2 hours, the token expired in every
        /// isolate's memory (after one request at the start: the first cold start of a whole
        /// fleet in one second is not this pattern, see SIMULATION.md).
        Bursts,
        Deploy,
        Revoked,
        /// The token endpoint answers 503 for this many minutes, from 5 h 20 min.
        Outage(u64),
        /// The coordinator is unreachable for 15 minutes from 5 h 20 min, then slow (3 s more
        /// per request) for 15 more.
        CoordinatorDown,
        /// A deploy (every isolate new, the coordinator restarted) at the start of a 30-minute
        /// IdP outage.
        DeployInOutage,
    }

    impl Pattern {
        fn name(self) -> String {
            match self {
                Self::Steady => "steady".into(),
                Self::Bursts => "bursts: fleet wakes every 2 h".into(),
                Self::Deploy => "deploy at 12 h".into(),
                Self::Revoked => "revoked at 8 h".into(),
                Self::Outage(m) => format!("IdP outage {m} min"),
                Self::CoordinatorDown => "coordinator down 15 + slow 15 min".into(),
                Self::DeployInOutage => "deploy in a 30 min IdP outage".into(),
            }
        }

        fn outage(self) -> Option<(u64, u64)> {
            match self {
                Self::Outage(m) => Some((OUTAGE_AT_MS, OUTAGE_AT_MS + m * 60_000)),
                Self::DeployInOutage => Some((OUTAGE_AT_MS, OUTAGE_AT_MS + 30 * 60_000)),
                _ => None,
            }
        }

        fn deploy_at(self) -> Option<u64> {
            match self {
                Self::Deploy => Some(DEPLOY_AT_MS),
                Self::DeployInOutage => Some(OUTAGE_AT_MS),
                _ => None,
            }
        }
    }

    /// `SIM_COLD=1`: the bursts pattern without its first request, so the first burst is the
    /// cold start of the whole fleet in one second (SIMULATION.md, "What the model leaves out").
    fn cold_start() -> bool {
        std::env::var("SIM_COLD").is_ok_and(|v| v == "1")
    }

    const DEPLOY_AT_MS: u64 = 12 * 3_600_000;
    const REVOKE_AT_MS: u64 = 8 * 3_600_000;
    /// Within the 6th token's refresh window (from 5 h 24 min, before its expiry at 6 h), so an
    /// outage of more than 6 minutes outlasts the token with the default lead.
    const OUTAGE_AT_MS: u64 = 5 * 3_600_000 + 20 * 60_000;

    #[derive(Default, Clone, Copy)]
    struct Stats {
        requests: u64,
        waited: u64,
        errors: u64,
    }

    struct Outcome {
        token_requests: u64,
        peak_per_minute_in_outage: u64,
        kv_reads: u64,
        kv_puts: u64,
        kv_refused: u64,
        asks: u64,
        notes: u64,
        peak_per_second: u64,
        overloaded: u64,
        stats: Stats,
    }

    fn config_with(lead: Option<u64>) -> Config {
        let mut c = config();
        c.refresh_lead_secs = lead;
        c
    }

    fn simulate(
        pattern: Pattern,
        lead: Option<u64>,
        isolates: usize,
        locations: usize,
        coordinated: bool,
    ) -> Outcome {
        NOW.with(|n| n.set(0));
        TIMERS.with(|t| t.borrow_mut().clear());
        let mut pool = LocalPool::new();
        SPAWNER.with(|s| *s.borrow_mut() = Some(pool.spawner()));
        let idp = Rc::new(Idp::default());
        if let Some(window) = pattern.outage() {
            idp.outage.set(window);
        }
        let kv = Rc::new(Kv::default());
        let log: LogSink = Rc::new(|_| {});
        let http = SimHttp(idp.clone());
        let storage = ObjectStore {
            map: Rc::new(RefCell::new(HashMap::new())),
            kv: KvView {
                kv: kv.clone(),
                location: 0,
            },
        };
        let new_object = {
            let (http, log, storage) = (http.clone(), log.clone(), storage.clone());
            move || {
                TokenSource::new(
                    config_with(lead),
                    http.clone(),
                    signers(),
                    storage.clone(),
                    SimRuntime,
                    log.clone(),
                )
            }
        };
        let object = Rc::new(Object {
            source: RefCell::new(new_object()),
            fleet: RefCell::default(),
            storage: storage.clone(),
            busy_until: Cell::new(0),
            asks: Cell::new(0),
            notes: Cell::new(0),
            overloaded: Cell::new(0),
            per_second: RefCell::default(),
            alarm: Cell::new(None),
            down: Cell::new((0, 0)),
        });
        if pattern == Pattern::CoordinatorDown {
            object.down.set((OUTAGE_AT_MS, OUTAGE_AT_MS + 15 * 60_000));
        }
        let new_isolate = {
            let (http, kv, log, object) = (http.clone(), kv.clone(), log.clone(), object.clone());
            move |i: usize| -> IsolateSource {
                let store = KvView {
                    kv: kv.clone(),
                    location: i % locations,
                };
                let s = TokenSource::new(
                    config_with(lead),
                    http.clone(),
                    signers(),
                    store,
                    SimRuntime,
                    log.clone(),
                );
                if coordinated {
                    s.set_coordinator(Rc::new(Local(object.clone())));
                }
                s
            }
        };
        let new_isolate = Rc::new(new_isolate);
        // Cloudflare evicts an idle Durable Object from memory; it comes back over its storage,
        // and its alarm still fires. Modelled as a restart every 20 minutes (not aligned with
        // refreshes).
        let restart = {
            let (object, new_object) = (object.clone(), new_object.clone());
            move || {
                *object.source.borrow_mut() = new_object();
                *object.fleet.borrow_mut() = Rc::default();
            }
        };
        if coordinated {
            let restart = restart.clone();
            spawn(async move {
                loop {
                    sleep(COORDINATOR_RESTART_MS).await;
                    restart();
                }
            });
            spawn(alarms(object.clone()));
        }
        let stats = Rc::new(Cell::new(Stats::default()));
        // Steady traffic spreads a fixed number of requests over the day; bursts send every
        // isolate 5 requests within a second, every 2 hours.
        let interval_ms = (isolates as u64 * DAY_MS / REQUESTS_PER_RUN).max(100);
        let redeployed = Rc::new(Cell::new(false));
        for i in 0..isolates {
            let (new_isolate, stats, redeployed, restart) = (
                new_isolate.clone(),
                stats.clone(),
                redeployed.clone(),
                restart.clone(),
            );
            spawn(async move {
                let mut source = new_isolate(i);
                let mut deployed = false;
                let mut t = (random() * interval_ms as f64) as u64;
                let mut burst_request = 0u64;
                let mut warmed = false;
                loop {
                    let next = match pattern {
                        // 5 requests within a second from every isolate, every 2 hours from 2 h;
                        // before, one request (the deploy's first) at 1 s.
                        Pattern::Bursts if i == 0 && !warmed && !cold_start() => {
                            warmed = true;
                            1_000
                        }
                        Pattern::Bursts => {
                            let (burst, j) = (burst_request / 5, burst_request % 5);
                            burst_request += 1;
                            (burst + 1) * 2 * 3_600_000 + j * 150 + (random() * 250.0) as u64
                        }
                        _ => t + (interval_ms as f64 * (0.5 + random())) as u64,
                    };
                    if next >= DAY_MS {
                        break;
                    }
                    sleep(next.saturating_sub(now_ms())).await;
                    t = next;
                    if pattern.deploy_at().is_some_and(|at| !deployed && t >= at) {
                        // Every isolate is replaced; the coordinator restarts over its storage.
                        deployed = true;
                        source = new_isolate(i);
                        if !redeployed.replace(true) {
                            restart();
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
        let peak_per_minute_in_outage = pattern.outage().map_or(0, |(from, to)| {
            let per_minute = idp.per_minute.borrow();
            (from / 60_000..to / 60_000 + 1)
                .map(|m| per_minute.get(&m).copied().unwrap_or(0))
                .max()
                .unwrap_or(0)
        });
        let peak_per_second = object
            .per_second
            .borrow()
            .values()
            .copied()
            .max()
            .unwrap_or(0);
        Outcome {
            token_requests: idp.requests.get(),
            peak_per_minute_in_outage,
            kv_reads: kv.reads.get(),
            kv_puts: kv.puts.get(),
            kv_refused: kv.refused.get(),
            asks: object.asks.get(),
            notes: object.notes.get(),
            peak_per_second,
            overloaded: object.overloaded.get(),
            stats: stats.get(),
        }
    }

    /// A longer refresh lead, for the rows that show what it buys and costs: 35 minutes, longer
    /// than the 30-minute outage.
    const LONG_LEAD_SECS: u64 = 35 * 60;

    pub fn main() {
        let fleets = [(10, 1), (100, 10), (1_000, 100), (10_000, 300)];
        let scenarios: Vec<(Pattern, Option<u64>)> = vec![
            (Pattern::Steady, None),
            (Pattern::Bursts, None),
            (Pattern::Deploy, None),
            (Pattern::Revoked, None),
            (Pattern::Outage(5), None),
            (Pattern::Outage(15), None),
            (Pattern::Outage(30), None),
            (Pattern::Outage(60), None),
            (Pattern::CoordinatorDown, None),
            (Pattern::DeployInOutage, None),
            (Pattern::Steady, Some(LONG_LEAD_SECS)),
            (Pattern::Outage(5), Some(LONG_LEAD_SECS)),
            (Pattern::Outage(15), Some(LONG_LEAD_SECS)),
            (Pattern::Outage(30), Some(LONG_LEAD_SECS)),
        ];
        // A token is used from its request until it is refreshed, 54 minutes for a one-hour token
        // (see `crate::token`): that is the lifetime the promise counts in.
        let lifetimes = DAY_MS as f64 / (USED_FOR_SECS * 1000) as f64;
        println!(
            "# worker-m2m fleet simulation: 24 simulated hours, 1-hour tokens used {} min each ({lifetimes:.1} lifetimes)",
            USED_FOR_SECS / 60
        );
        println!();
        println!("| pattern | lead | fleet | mode | token requests | per lifetime | peak per min in outage | caller errors | coordinator asks (notes) | asks per isolate per lifetime | peak per s | overloaded | KV reads | KV writes (refused) | requests | waited |");
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        // `SIM_ONLY=bursts:1000` runs one pattern and fleet size (for profiling the model).
        let only = std::env::var("SIM_ONLY").ok();
        for (pattern, lead) in scenarios {
            for (isolates, locations) in fleets {
                let key = format!(
                    "{}:{isolates}",
                    pattern.name().split([' ', ':']).next().unwrap_or("")
                );
                if only.as_ref().is_some_and(|o| !key.starts_with(o.as_str())) {
                    continue;
                }
                for coordinated in [false, true] {
                    let o = simulate(pattern, lead, isolates, locations, coordinated);
                    let (asks, peak, overloaded) = if coordinated {
                        (
                            format!("{} ({})", o.asks, o.notes),
                            o.peak_per_second.to_string(),
                            o.overloaded.to_string(),
                        )
                    } else {
                        ("-".into(), "-".into(), "-".into())
                    };
                    println!(
                        "| {} | {} | {isolates} isolates / {locations} locations | {} | {} | {:.2} | {} | {} | {asks} | {:.2} | {peak} | {overloaded} | {} | {} ({}) | {} | {} |",
                        pattern.name(),
                        lead.map_or("default".to_owned(), |l| format!("{} min", l / 60)),
                        if coordinated { "coordinator" } else { "KV only" },
                        o.token_requests,
                        o.token_requests as f64 / lifetimes,
                        if pattern.outage().is_some() { o.peak_per_minute_in_outage.to_string() } else { "-".into() },
                        o.stats.errors,
                        o.asks as f64 / (isolates as f64 * lifetimes),
                        o.kv_reads,
                        o.kv_puts,
                        o.kv_refused,
                        o.stats.requests,
                        o.stats.waited,
                    );
                }
            }
        }
    }
}
