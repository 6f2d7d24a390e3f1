//! One flight of a token source, as a synchronous state machine (quinn-proto style): it takes
//! events with the time they happened ([`Moment`]) and returns the next [`Action`]; it never
//! awaits and never reads a clock. The driver ([`crate::source::driver`]) performs the actions
//! through the ports and feeds back what came of them.
//!
//! The tiers below isolate memory, in order: KV (a fresh token, or a hold-down another isolate
//! shared), the coordinator (its token or the fleet's hold), then the token endpoint (one
//! [`Acquisition`]). A flight ends with its answer and the store writes it decided on, which
//! the driver makes after the flight's waiters have the answer.

use std::rc::Rc;

use crate::base::error::{Error, Result};
use crate::base::log::{self, Source};
use crate::keys::dpop_key::DpopKey;
use crate::oauth::holddown::{held_error, hold_secs, shared};
use crate::oauth::token::Token;
use crate::oauth::transport::{HttpRequest, HttpResponse, TransportError};
use crate::source::acquire::{out_of_order, Acquisition, Need, ProofOrder, Step};
use crate::source::answer::arrived_too_late;
use crate::source::context::{Context, Moment};
use crate::source::coordinator::{Answer, Ask, NOTE_ONE_IN};
use crate::source::metric::{Fallback, Metric};
use crate::source::records::encode_hold;
use crate::source::records::{decode_hold, decode_record, HOLD_ENTRY};
use crate::source::state::fits;
use crate::source::store::{Write, KV_MIN_TTL_SECS};

/// A read from the store: the value, none, or the store's trouble (a miss either way).
pub(super) type StoreRead = std::result::Result<Option<String>, String>;

/// What happened, for the flight to take.
#[derive(Debug)]
pub(super) enum Event {
    /// The flight begins.
    Started,
    /// The store answered the token and hold-down reads.
    KvRead { token: StoreRead, hold: StoreRead },
    /// The coordinator answered, or could not (`Err`: its own trouble).
    CoordinatorAnswered(std::result::Result<Answer, String>),
    /// The token endpoint is known (or not), after `spent_ms` on the network.
    EndpointFound { url: Result<String>, spent_ms: u64 },
    /// The DPoP key for this token is ready.
    DpopKeyReady(Result<Rc<DpopKey>>),
    /// The signer made what was asked (a client assertion or a DPoP proof).
    Signed(Result<String>),
    /// The token endpoint answered, or could not be reached.
    HttpAnswered(std::result::Result<HttpResponse, TransportError>),
    /// The pause asked for is over.
    TimerFired,
    /// The client credential was read again (the source's configuration holds what was read).
    CredentialsReread,
}

/// What the driver is to do next.
#[derive(Debug)]
pub(super) enum Action {
    /// Read the token and hold-down entries (together).
    ReadKv,
    /// Ask the coordinator.
    AskCoordinator(Ask),
    /// Find the token endpoint: configured, or discovered.
    FindEndpoint,
    /// Get the DPoP key for this token.
    MakeDpopKey,
    /// Sign a client assertion (RFC 7523) for a request sent at `at` to `audience`.
    SignAssertion { at: u64, audience: String },
    /// Sign a DPoP proof (RFC 9449 §4.2) for the token request.
    SignProof(ProofOrder),
    /// Send the token request.
    Send(HttpRequest),
    /// Wait this many milliseconds.
    Sleep(u64),
    /// Read the client credential again (the token endpoint refused it) and take it if it
    /// changed.
    RereadCredentials,
    /// The flight is over.
    Done(Finished),
}

/// How a flight ended.
#[derive(Debug)]
pub(super) struct Finished {
    /// Its waiters' answer.
    pub(super) result: Result<Token>,
    /// What to write once the waiters have it.
    pub(super) writes: Vec<Write>,
    /// The discovered token endpoint is gone: forget it.
    pub(super) forget_endpoint: bool,
    /// Note the coordinator that the fleet uses its token (see
    /// [`crate::source::coordinator::Coordinator::note`]).
    pub(super) note_coordinator: bool,
}

/// Why a flight runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    /// A caller needs a token.
    Token,
    /// The token held is due for refresh: only a token not itself due will do from KV, and the
    /// coordinator is asked for a newer one.
    Refresh,
}

enum Stage {
    Begin,
    Kv,
    Coordinator,
    Endpoint(Box<Acquisition>),
    Over,
}

/// One flight in progress.
pub(super) struct Flight {
    purpose: Purpose,
    /// Unix seconds at which the flight started (the caller's `now`).
    start_secs: u64,
    stage: Stage,
    writes: Vec<Write>,
    note_coordinator: bool,
}

impl Flight {
    /// A flight for `purpose` started at `now` (Unix seconds); its first event is
    /// [`Event::Started`].
    pub(super) fn new(purpose: Purpose, now: u64) -> Self {
        Self {
            purpose,
            start_secs: now,
            stage: Stage::Begin,
            writes: Vec::new(),
            note_coordinator: false,
        }
    }

    /// Takes `event`, which happened at `at`, and says what to do next.
    pub(super) fn handle(&mut self, event: Event, at: Moment, cx: &mut Context<'_>) -> Action {
        let stage = std::mem::replace(&mut self.stage, Stage::Over);
        match (stage, event) {
            (Stage::Begin, Event::Started) => {
                self.stage = Stage::Kv;
                Action::ReadKv
            }
            (Stage::Kv, Event::KvRead { token, hold }) => match self.kv_answer(token, hold, at, cx)
            {
                Some(answer) => self.done(answer, false),
                None => self.after_kv(at, cx),
            },
            (Stage::Coordinator, Event::CoordinatorAnswered(answer)) => {
                match self.coordinator_answer(answer, at, cx) {
                    Some(answer) => self.done(answer, false),
                    None => self.ask_endpoint(at, cx),
                }
            }
            (Stage::Endpoint(mut acquisition), event) => {
                let step = match event {
                    Event::EndpointFound { url, spent_ms } => {
                        acquisition.endpoint(url, spent_ms, at, cx)
                    }
                    Event::DpopKeyReady(key) => acquisition.dpop_key(key, at, cx),
                    Event::Signed(value) => acquisition.signed(value, at, cx),
                    Event::HttpAnswered(answer) => acquisition.answered(answer, at, cx),
                    Event::TimerFired => acquisition.slept(at, cx),
                    Event::CredentialsReread => acquisition.reread(at, cx),
                    _ => out_of_order(),
                };
                self.stage = Stage::Endpoint(acquisition);
                self.step(step, at, cx)
            }
            (_, _) => {
                let err = Error::Other("token path: an event out of order".into());
                self.done(Err(err), false)
            }
        }
    }

    fn after_kv(&mut self, at: Moment, cx: &mut Context<'_>) -> Action {
        if !cx.coordinated {
            return self.ask_endpoint(at, cx);
        }
        let memory = &cx.state.memory;
        self.stage = Stage::Coordinator;
        Action::AskCoordinator(Ask {
            refresh: self.purpose == Purpose::Refresh,
            have: memory.token().map(Token::issued_at),
            rejected: memory.revoked().map(|t| (t.issued_at(), t.expires_at())),
        })
    }

    fn ask_endpoint(&mut self, at: Moment, cx: &mut Context<'_>) -> Action {
        // In an outage (the last flight failed), one attempt: the outage schedule is the pause.
        let retries = cx.state.hold_down.failed_flights() == 0;
        let (acquisition, step) = Acquisition::start(cx.config, self.start_secs, retries, at);
        self.stage = Stage::Endpoint(Box::new(acquisition));
        self.step(step, at, cx)
    }

    fn step(&mut self, step: Step, at: Moment, cx: &mut Context<'_>) -> Action {
        match step {
            Step::Need(Need::Endpoint) => Action::FindEndpoint,
            Step::Need(Need::DpopKey) => Action::MakeDpopKey,
            Step::Need(Need::Assertion { at, audience }) => Action::SignAssertion { at, audience },
            Step::Need(Need::Proof(order)) => Action::SignProof(order),
            Step::Need(Need::Send(request)) => Action::Send(request),
            Step::Need(Need::Sleep(ms)) => Action::Sleep(ms),
            Step::Need(Need::Credentials) => Action::RereadCredentials,
            Step::Done {
                result,
                endpoint_gone,
            } => {
                let answer = self.endpoint_answer(result, at, cx);
                self.done(answer, endpoint_gone)
            }
        }
    }

    fn done(&mut self, result: Result<Token>, forget_endpoint: bool) -> Action {
        self.stage = Stage::Over;
        Action::Done(Finished {
            result,
            writes: std::mem::take(&mut self.writes),
            forget_endpoint,
            note_coordinator: self.note_coordinator,
        })
    }

    /// The KV tier: a fresh token from KV (not one due for refresh, on a refresh), or the
    /// hold-down another isolate shared; `None` to go on. A KV token past its margin but still
    /// usable is kept in memory for the case the endpoint fails. What the reads found is judged
    /// at the time they found it.
    fn kv_answer(
        &mut self,
        token: StoreRead,
        hold: StoreRead,
        at: Moment,
        cx: &mut Context<'_>,
    ) -> Option<Result<Token>> {
        let read_at = at.secs;
        let memory = &mut cx.state.memory;
        match token {
            Ok(Some(raw)) => match decode_record(&raw, cx.config.expiry_margin_secs)
                .map(|t| t.with_refresh(cx.config.refresh_lead_secs, None))
            {
                Some(t) if memory.is_revoked(&t) || !fits(cx.config, &t) => {}
                Some(t) if memory.is_older(&t) => {
                    (cx.log)(&log::cache_event(
                        "older_record",
                        "KV holds an older token than this isolate has seen; ignoring it",
                    ));
                }
                Some(t)
                    if t.is_fresh(read_at)
                        && !(self.purpose == Purpose::Refresh && t.refresh_due(read_at)) =>
                {
                    let expires_in = t.expires_at().saturating_sub(read_at);
                    (cx.log)(&log::token_ok(Source::Kv, None, None, expires_in));
                    cx.report.event(
                        Metric::Token {
                            source: Source::Kv,
                            latency_ms: at.ms,
                            expires_in,
                        },
                        read_at,
                    );
                    let t = t.obtained_from(Source::Kv);
                    memory.adopt(t.clone());
                    cx.state.hold_down.clear();
                    // The coordinator cannot see isolates served by KV: a few tell it.
                    self.note_coordinator =
                        cx.coordinated && (cx.random)() < 1.0 / f64::from(NOTE_ONE_IN);
                    return Some(Ok(t));
                }
                // Past its margin but not expired: better than nothing if the endpoint fails.
                Some(t) if t.usable_at(read_at) && memory.usable(read_at).is_none() => {
                    memory.adopt(t);
                }
                Some(_) => {}
                None => (cx.log)(&log::cache_event(
                    "corrupt",
                    "cached value unreadable; refetching",
                )),
            },
            Ok(None) => {}
            Err(e) => (cx.log)(&log::cache_event("read_error", &e)),
        }
        match hold {
            Ok(Some(raw)) => {
                let stored = decode_hold(&raw)?;
                // An outage goes on where the writer left it, whether or not its pause is over.
                cx.state.hold_down.resume_outage(stored.failed);
                if read_at >= stored.until {
                    return None;
                }
                let (until, err) = (stored.until, stored.error);
                (cx.log)(&log::cache_event(
                    "hold",
                    "another isolate holds the token endpoint down",
                ));
                cx.state.hold_down.set(until, err);
                cx.state.held_answer(read_at)
            }
            Ok(None) => None,
            Err(e) => {
                (cx.log)(&log::cache_event("read_error", &e));
                None
            }
        }
    }

    /// The coordinator tier: its answer, or `None` to go on to the token endpoint (a
    /// coordinator that failed: logged, never fatal).
    fn coordinator_answer(
        &self,
        answer: std::result::Result<Answer, String>,
        at: Moment,
        cx: &mut Context<'_>,
    ) -> Option<Result<Token>> {
        let (ms, at) = (at.ms, at.secs);
        let lead = cx.config.refresh_lead_secs;
        let answer = answer.map(|a| match a {
            Answer::Token(t) => Answer::Token(
                t.with_refresh(lead, None)
                    .obtained_from(Source::Coordinator),
            ),
            held => held,
        });
        match answer {
            // A token this isolate saw rejected comes back only when the coordinator's eviction
            // window keeps it (an upstream that rejects every token): used, as without one.
            Ok(Answer::Token(t)) if t.usable_at(at) && fits(cx.config, &t) => {
                let expires_in = t.expires_at().saturating_sub(at);
                (cx.log)(&log::token_ok(Source::Coordinator, None, None, expires_in));
                cx.report.event(
                    Metric::Token {
                        source: Source::Coordinator,
                        latency_ms: ms,
                        expires_in,
                    },
                    at,
                );
                if cx.current {
                    cx.state.hold_down.clear();
                    cx.state.memory.adopt(t.clone());
                }
                Some(Ok(t))
            }
            Ok(Answer::Token(_)) => {
                (cx.log)(&log::cache_event(
                    "coordinator_fallback",
                    "the coordinator's token is expired, rejected or for another key",
                ));
                cx.report
                    .event(Metric::Fallback(Fallback::UnusableAnswer), at);
                None
            }
            Ok(Answer::Held { error, until }) => {
                // The fleet's answer, whatever the clocks say: the coordinator shared the hold in
                // KV already; this isolate keeps it in memory (a second at least).
                cx.state.hold_down.set(until.max(at + 1), error);
                cx.state.held_answer(at)
            }
            Err(reason) => {
                (cx.log)(&log::cache_event("coordinator_fallback", &reason));
                cx.report.event(Metric::Fallback(Fallback::Unreachable), at);
                None
            }
        }
    }

    /// The endpoint tier's outcome at `at`: taken into memory and written, or failed (held down
    /// as the error calls for, with a still-usable token as the answer if there is one).
    fn endpoint_answer(
        &mut self,
        result: Result<Token>,
        at: Moment,
        cx: &mut Context<'_>,
    ) -> Result<Token> {
        let done = at.secs;
        if !cx.current {
            // Replaced: answer its own waiters, as any flight would (a capped `Retry-After`).
            return match result {
                Ok(t) if t.usable_at(done) => Ok(t),
                Ok(late) => Err(arrived_too_late(&late, done, at.ms)),
                Err(e) => {
                    let secs = hold_secs(
                        &e,
                        cx.config.holddown_secs,
                        cx.state.hold_down.failed_flights() + 1,
                        (cx.random)(),
                    );
                    self.report_failure(&e, secs, done, cx);
                    match secs {
                        0 => Err(e),
                        secs => Err(held_error(&e, done + secs, done)),
                    }
                }
            };
        }
        match result {
            Ok(token) if token.usable_at(done) => {
                cx.state.hold_down.clear();
                cx.state.memory.adopt(token.clone());
                let ttl = token.fresh_until().saturating_sub(done);
                if ttl >= KV_MIN_TTL_SECS {
                    self.writes.push(Write::Token(token.clone(), ttl));
                }
                Ok(token)
            }
            Ok(late) => {
                let err = arrived_too_late(&late, done, at.ms);
                (cx.log)(&log::token_error(None, Some(at.ms), &err));
                self.fail(err, done, cx)
            }
            Err(err) => self.fail(err, done, cx),
        }
    }

    /// A failed token request at `done`: holds the endpoint down as the error calls for, and
    /// answers with a token still usable if there is one.
    fn fail(&mut self, err: Error, done: u64, cx: &mut Context<'_>) -> Result<Token> {
        let failed = cx.state.hold_down.count_failure(&err);
        let secs = hold_secs(&err, cx.config.holddown_secs, failed, (cx.random)());
        self.report_failure(&err, secs, done, cx);
        let mut shown = err.clone();
        if secs > 0 {
            let until = done + secs;
            if let Some(record) = encode_hold(until, &err, failed).filter(|_| shared(&err)) {
                self.writes
                    .push(Write::Put(HOLD_ENTRY, record, secs.max(KV_MIN_TTL_SECS)));
            }
            // Callers see the hold as it is (a server's `Retry-After` capped), from the first one.
            shown = held_error(&err, until, done);
            cx.state.hold_down.set(until, err);
        }
        match cx.state.memory.usable(done) {
            Some(stale) => {
                (cx.log)(&log::token_stale(stale.expires_at().saturating_sub(done)));
                cx.report.event(Metric::Stale, done);
                Ok(stale.clone())
            }
            None => Err(shown),
        }
    }

    /// Counts a failed token request at `done` that holds the endpoint down for `secs`, with
    /// what the endpoint's last answer said.
    fn report_failure(&self, err: &Error, secs: u64, done: u64, cx: &mut Context<'_>) {
        let (status, latency) = match &self.stage {
            Stage::Endpoint(acquisition) => acquisition.last_answer(),
            _ => (None, 0),
        };
        cx.report.failure(err, status, latency, secs, done);
    }
}
