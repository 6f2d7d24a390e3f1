//! The flight's driver: performs each [`Action`] of a [`Flight`] through the ports (store,
//! coordinator, HTTP, signers, runtime) and feeds back what came of it, with the time by the
//! flight's clock. The only async code on the token path below the source, and no decisions.

use std::cell::RefCell;
use std::rc::Rc;

use futures_util::future::join;

use crate::base::log;
use crate::config::client::Config;
use crate::oauth::transport::HttpClient;
use crate::source::context::{Context, Moment};
use crate::source::coordinator::Coordinator;
use crate::source::credentials::{Credentials, Rotation};
use crate::source::discovery::{Discovery, Io};
use crate::source::flight::{Action, Event, Finished, Flight, Purpose};
use crate::source::records::{decode_record, encode_record, HOLD_ENTRY, TOKEN_ENTRY};
use crate::source::report::Report;
use crate::source::runtime::{Clock, LogSink, Runtime};
use crate::source::signers::Signers;
use crate::source::state::State;
use crate::source::store::{TokenStore, Write};

/// What a token source drives its flights through.
pub(super) struct Ports<H, S, R> {
    pub(super) http: H,
    pub(super) store: S,
    pub(super) runtime: R,
    /// Replaced with the configuration when a credential rotates.
    pub(super) signers: RefCell<Signers>,
    pub(super) log: LogSink,
    /// The fleet's coordinator, asked after KV and before the token endpoint.
    pub(super) coordinator: RefCell<Option<Rc<dyn Coordinator>>>,
    /// Reads the Secrets Store credentials again after a refusal (see
    /// [`crate::source::credentials`]).
    pub(super) credentials: RefCell<Option<Rc<dyn Credentials>>>,
}

/// A source's parts a flight works on.
pub(super) struct Parts<'a, H, S, R> {
    /// The source's configuration: each step takes it as it is then (a rotation replaces it).
    pub(super) config: &'a RefCell<Rc<Config>>,
    pub(super) ports: &'a Ports<H, S, R>,
    pub(super) state: &'a RefCell<State>,
    pub(super) discovery: &'a Discovery,
    pub(super) report: &'a Report,
    /// Whether the flight being driven is still the source's current one.
    pub(super) current: &'a dyn Fn() -> bool,
}

/// Runs one flight for `purpose`, started at `now`, to its end.
pub(super) async fn run<H: HttpClient, S: TokenStore, R: Runtime>(
    parts: &Parts<'_, H, S, R>,
    purpose: Purpose,
    now: u64,
) -> Finished {
    let ports = parts.ports;
    let clock = Clock::new(&ports.runtime, now);
    let mut flight = Flight::new(purpose, now);
    let mut discovered = Vec::new();
    let mut event = Event::Started;
    loop {
        let action = step(parts, &mut flight, event, &clock);
        event = match action {
            Action::ReadKv => {
                let (token, hold) =
                    join(ports.store.get(TOKEN_ENTRY), ports.store.get(HOLD_ENTRY)).await;
                Event::KvRead { token, hold }
            }
            Action::AskCoordinator(ask) => {
                let coordinator = ports.coordinator.borrow().clone();
                match coordinator {
                    Some(c) => Event::CoordinatorAnswered(c.ask(ask).await),
                    None => Event::CoordinatorAnswered(Err("no coordinator".into())),
                }
            }
            Action::FindEndpoint => {
                let io = Io {
                    http: &ports.http,
                    store: &ports.store,
                    log: &ports.log,
                };
                let config = parts.config.borrow().clone();
                let found = parts.discovery.endpoint(&config, io, clock.now()).await;
                discovered.extend(found.write);
                Event::EndpointFound {
                    url: found.url,
                    spent_ms: found.spent_ms,
                }
            }
            Action::MakeDpopKey => Event::DpopKeyReady(proofs(ports).key().await),
            Action::SignAssertion { at, audience } => {
                let signer =
                    ports.signers.borrow().assertions().cloned().expect(
                        "Signers::for_config makes an assertion signer for private_key_jwt",
                    );
                Event::Signed(signer.assertion(at, &audience).await)
            }
            Action::RereadCredentials => {
                reread(parts).await;
                Event::CredentialsReread
            }
            Action::SignProof(order) => {
                let htu = order.htu.as_str();
                let proof = proofs(ports).proof(
                    &order.key,
                    "POST",
                    htu,
                    order.at,
                    None,
                    order.nonce.as_deref(),
                );
                Event::Signed(proof.await)
            }
            Action::Send(request) => Event::HttpAnswered(ports.http.execute(request).await),
            Action::Sleep(ms) => {
                ports.runtime.sleep(ms).await;
                Event::TimerFired
            }
            Action::Done(mut finished) => {
                if finished.forget_endpoint {
                    let config = parts.config.borrow().clone();
                    discovered.extend(parts.discovery.forget(&config));
                }
                discovered.append(&mut finished.writes);
                finished.writes = discovered;
                return finished;
            }
        };
    }
}

/// Hands one event to the flight, with the source's state borrowed for that call only.
fn step<H, S, R: Runtime>(
    parts: &Parts<'_, H, S, R>,
    flight: &mut Flight,
    event: Event,
    clock: &Clock<'_, R>,
) -> Action {
    let at = Moment {
        secs: clock.now(),
        ms: clock.elapsed_ms(),
    };
    let ports = parts.ports;
    let random = || ports.runtime.random();
    let config = parts.config.borrow().clone();
    let mut state = parts.state.borrow_mut();
    let mut cx = Context {
        config: &config,
        state: &mut state,
        log: &ports.log,
        report: parts.report,
        random: &random,
        current: (parts.current)(),
        coordinated: ports.coordinator.borrow().is_some(),
    };
    flight.handle(event, at, &mut cx)
}

fn proofs<H, S, R>(ports: &Ports<H, S, R>) -> Rc<dyn crate::oauth::dpop::Proofs> {
    ports
        .signers
        .borrow()
        .proofs()
        .cloned()
        .expect("Signers::for_config makes a proof maker with DPoP on")
}

/// Reads the credentials again and takes a rotated one.
async fn reread<H, S, R>(parts: &Parts<'_, H, S, R>) {
    let port = parts.ports.credentials.borrow().clone();
    let Some(port) = port else {
        return;
    };
    match port.reread().await {
        Ok(rotation) => {
            rotate(parts.config, &parts.ports.signers, rotation);
        }
        Err(e) => {
            (parts.ports.log)(&log::cache_event("credential_reread_error", &e.to_string()));
        }
    }
}

/// Takes `rotation` into `config` and `signers` when it is a rotation of the same source's
/// credential (see [`Config::same_source`]) to another value; whether it was.
pub(super) fn rotate(
    config: &RefCell<Rc<Config>>,
    signers: &RefCell<Signers>,
    rotation: Rotation,
) -> bool {
    let current = config.borrow().clone();
    let changed = current.same_source(&rotation.config)
        && current.auth.credential() != rotation.config.auth.credential();
    if changed {
        *config.borrow_mut() = Rc::new(rotation.config);
        *signers.borrow_mut() = rotation.signers;
    }
    changed
}

/// Writes what a flight decided, after its waiters were released; failures are logged, never
/// fatal (the store is an optimisation).
pub(super) async fn persist<H, S: TokenStore, R>(
    config: &Config,
    ports: &Ports<H, S, R>,
    state: &RefCell<State>,
    writes: Vec<Write>,
) {
    let store = &ports.store;
    let revoked = |t: &_| state.borrow().memory.is_revoked(t);
    for write in writes {
        let (outcome, result) = match write {
            // The answer went out before this write: an upstream may have rejected the token
            // meanwhile, and `invalidate` found nothing in KV to delete. So a token rejected
            // before or while it was written is not left behind for other isolates.
            Write::Token(token, _) if revoked(&token) => continue,
            Write::Token(token, ttl) => {
                let written = store.put(TOKEN_ENTRY, encode_record(&token), ttl).await;
                if written.is_ok() && revoked(&token) {
                    // Only while the entry still holds it: a newer token may be there by now.
                    if !entry_holds(config, store, &token).await {
                        continue;
                    }
                    ("delete_error", store.delete(TOKEN_ENTRY).await)
                } else {
                    ("write_error", written)
                }
            }
            Write::Put(name, value, ttl) => ("write_error", store.put(name, value, ttl).await),
            Write::Delete(name) => ("delete_error", store.delete(name).await),
        };
        if let Err(e) = result {
            (ports.log)(&log::cache_event(outcome, &e));
        }
    }
}

/// Whether the store's token entry holds `token` (read with this source's margin).
pub(super) async fn entry_holds<S: TokenStore>(
    config: &Config,
    store: &S,
    token: &crate::oauth::token::Token,
) -> bool {
    match store.get(TOKEN_ENTRY).await {
        Ok(Some(raw)) => {
            decode_record(&raw, config.expiry_margin_secs).is_some_and(|t| t.same(token))
        }
        _ => false,
    }
}
