//! One token acquisition: the token endpoint (configured or discovered), client authentication
//! (RFC 6749 §2.3, RFC 7523), a DPoP proof (RFC 9449), retries with backoff within
//! `OAUTH_TIMEOUT_MS`, and every answer parsed and redacted. Caching, single flight, hold-downs
//! and the coordinator are the token source's business ([`crate::source::token_source`]); this only asks.
//!
//! Like golang/oauth2's `clientcredentials.go`: it builds and sends the request, nothing more.

use std::rc::Rc;

use crate::base::error::{Error, Result};
use crate::base::log::{self, Source};
use crate::base::redact::Redactor;
use crate::base::secret::ClientSecret;
use crate::config::client::{ClientAuth, Config};
use crate::keys::dpop_key::DpopKey;
use crate::oauth::backoff::retry_delay;
use crate::oauth::dpop::{htu, token_endpoint_wants_nonce};
use crate::oauth::token::Token;
use crate::oauth::token_request::{build_token_request, redact_credential, redactor_for};
use crate::oauth::transport::{HttpRequest, HttpResponse, TransportError};
use crate::source::answer::{
    arrived_too_late, client_refused, endpoint_gone, read, AnswerTo, Answered,
};
use crate::source::context::{Context, Moment};
use crate::source::metric::Metric;
/// What an acquisition needs done before it can go on.
#[derive(Debug)]
pub(super) enum Need {
    /// The token endpoint's URL: configured, or discovered (see [`crate::source::discovery`]).
    Endpoint,
    /// The DPoP key for this acquisition's token (one key for the whole acquisition: the token
    /// that comes back is bound to it).
    DpopKey,
    /// A client assertion for a request sent at `at` to `audience` (RFC 7523 §3).
    Assertion { at: u64, audience: String },
    /// A DPoP proof for the token request (RFC 9449 §4.2).
    Proof(ProofOrder),
    /// The token request, ready to send.
    Send(HttpRequest),
    /// A pause before the next attempt, in milliseconds.
    Sleep(u64),
    /// The client credential read again from the Secrets Store (the endpoint refused it).
    Credentials,
}

/// A DPoP proof to sign for the token request.
#[derive(Debug)]
pub(super) struct ProofOrder {
    pub(super) key: Rc<DpopKey>,
    pub(super) htu: String,
    pub(super) at: u64,
    pub(super) nonce: Option<String>,
}

/// Where an acquisition goes from here.
#[derive(Debug)]
pub(super) enum Step {
    /// It needs this done, then [`Acquisition`] is told what came of it.
    Need(Need),
    /// It is over. With `endpoint_gone`, the (discovered) token endpoint could not be reached or
    /// is gone, and is worth discovering again.
    Done {
        result: Result<Token>,
        endpoint_gone: bool,
    },
}

/// What the acquisition waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    Endpoint,
    Key,
    Assertion,
    Proof,
    Answer,
    Pause(u64),
    Credentials,
}

/// One token acquisition in progress: requests until one succeeds, one is refused, or the
/// budget (`OAUTH_TIMEOUT_MS`) is spent. The budget counts from the acquisition's start by the
/// flight's clock, and at least what each attempt and each pause reported taking.
pub(super) struct Acquisition {
    waiting: Waiting,
    /// Everything sent is kept from what comes back: secret forms now, signed values as made.
    redactor: Redactor,
    /// The flight's start, Unix seconds: send times count from it.
    start_secs: u64,
    /// [`Moment::ms`] at this acquisition's start.
    started_ms: u64,
    /// What the network and pauses reported taking, in milliseconds.
    reported: u64,
    failures: u32,
    /// Whether a failed attempt may be retried within the budget (not in an outage).
    retries: bool,
    nonce_retried: bool,
    token_url: String,
    key: Option<Rc<DpopKey>>,
    /// The request being made, once built, and when it is sent (Unix seconds).
    request: Option<HttpRequest>,
    sent_at: u64,
    /// Whether the credential was read again after a refusal (once per acquisition), and the
    /// refusal waiting on that read.
    rechecked: bool,
    refused: Option<(Error, Option<u16>, u64)>,
    /// The client credential the last request was built with: a refusal of it is explained by
    /// a rotation when the configuration holds another one now, whoever took the new one in.
    sent_credential: Option<ClientSecret>,
    /// The last answer's HTTP status (none: not reached) and how long it took, for metrics.
    last_status: Option<u16>,
    last_latency: u64,
}

impl Acquisition {
    /// Starts an acquisition for `config` at `at`, in a flight that started at `start_secs`;
    /// with `retries`, a failed attempt is retried with backoff within the budget.
    pub(super) fn start(
        config: &Config,
        start_secs: u64,
        retries: bool,
        at: Moment,
    ) -> (Self, Step) {
        let acquisition = Self {
            waiting: Waiting::Endpoint,
            redactor: redactor_for(config),
            start_secs,
            started_ms: at.ms,
            reported: 0,
            failures: 0,
            retries,
            nonce_retried: false,
            token_url: String::new(),
            key: None,
            request: None,
            sent_at: start_secs,
            rechecked: false,
            refused: None,
            sent_credential: None,
            last_status: None,
            last_latency: 0,
        };
        (acquisition, Step::Need(Need::Endpoint))
    }

    /// Milliseconds spent of the budget at `at`.
    fn spent(&self, at: Moment) -> u64 {
        self.reported.max(at.ms.saturating_sub(self.started_ms))
    }

    /// The endpoint is known (`spent_ms`: what finding it took on the network).
    pub(super) fn endpoint(
        &mut self,
        found: Result<String>,
        spent_ms: u64,
        at: Moment,
        cx: &mut Context<'_>,
    ) -> Step {
        debug_assert_eq!(self.waiting, Waiting::Endpoint);
        self.reported += spent_ms;
        match found {
            Ok(url) => self.token_url = url,
            Err(e) => {
                let e = e.redact(&self.redactor);
                (cx.log)(&log::token_error(None, None, &e));
                return self.done(Err(e), false);
            }
        }
        if cx.config.dpop.is_on() {
            self.waiting = Waiting::Key;
            return Step::Need(Need::DpopKey);
        }
        self.attempt(at, cx)
    }

    /// The DPoP key is ready.
    pub(super) fn dpop_key(
        &mut self,
        key: Result<Rc<DpopKey>>,
        at: Moment,
        cx: &mut Context<'_>,
    ) -> Step {
        debug_assert_eq!(self.waiting, Waiting::Key);
        match key {
            Ok(key) => self.key = Some(key),
            Err(e) => return self.done(Err(e), false),
        }
        self.attempt(at, cx)
    }

    /// One attempt: an assertion to sign, a proof to sign, or the request to send.
    fn attempt(&mut self, at: Moment, cx: &mut Context<'_>) -> Step {
        self.sent_at = self.start_secs + self.spent(at) / 1000;
        if let ClientAuth::PrivateKeyJwt(_) = cx.config.auth {
            self.waiting = Waiting::Assertion;
            return Step::Need(Need::Assertion {
                at: self.sent_at,
                audience: self.token_url.clone(),
            });
        }
        self.build(None, at, cx)
    }

    /// What a signer made: the client assertion or the DPoP proof this acquisition asked for.
    pub(super) fn signed(
        &mut self,
        signed: Result<String>,
        at: Moment,
        cx: &mut Context<'_>,
    ) -> Step {
        let value = match signed {
            Ok(value) => value,
            Err(e) => return self.done(Err(e), false),
        };
        self.redactor.add_signed(&value);
        match self.waiting {
            Waiting::Assertion => self.build(Some(&value), at, cx),
            Waiting::Proof => match self.request.take() {
                Some(mut request) => {
                    request.headers.push(("dpop".into(), value));
                    self.send(request)
                }
                None => out_of_order(),
            },
            _ => out_of_order(),
        }
    }

    fn build(&mut self, assertion: Option<&str>, at: Moment, cx: &mut Context<'_>) -> Step {
        // The configuration may have taken a rotated credential since the last attempt: what
        // is sent is kept from what comes back, whichever it is.
        if self.sent_credential.as_ref().map(ClientSecret::expose)
            != Some(cx.config.auth.credential())
        {
            redact_credential(&mut self.redactor, cx.config);
            self.sent_credential = Some(ClientSecret::new(cx.config.auth.credential()));
        }
        let mut request = build_token_request(cx.config, &self.token_url, assertion);
        request.timeout_ms = cx.config.timeout_ms.saturating_sub(self.spent(at)).max(1);
        let Some(key) = self.key.clone() else {
            return self.send(request);
        };
        self.request = Some(request);
        self.waiting = Waiting::Proof;
        Step::Need(Need::Proof(ProofOrder {
            key,
            htu: htu(&self.token_url).to_owned(),
            at: self.sent_at,
            nonce: cx
                .state
                .token_nonces
                .get(&self.token_url)
                .map(str::to_owned),
        }))
    }

    fn send(&mut self, request: HttpRequest) -> Step {
        self.waiting = Waiting::Answer;
        Step::Need(Need::Send(request))
    }

    /// The token endpoint answered, or could not be reached.
    pub(super) fn answered(
        &mut self,
        answer: std::result::Result<HttpResponse, TransportError>,
        at: Moment,
        cx: &mut Context<'_>,
    ) -> Step {
        debug_assert_eq!(self.waiting, Waiting::Answer);
        let Answered {
            result,
            status,
            latency,
            got_nonce,
        } = read(
            answer,
            AnswerTo {
                key: self.key.as_ref(),
                token_url: &self.token_url,
                sent_at: self.sent_at,
                redactor: &self.redactor,
            },
            cx,
        );
        self.reported += latency;
        (self.last_status, self.last_latency) = (status, latency);
        let err = match result {
            // Counted from when it was sent; checked against when it arrived.
            Ok(token) if token.usable_at(at.secs) => {
                let expires_in = token.expires_at().saturating_sub(self.sent_at);
                (cx.log)(&log::token_ok(
                    Source::Network,
                    status,
                    Some(latency),
                    expires_in,
                ));
                cx.report.event(
                    Metric::Token {
                        source: Source::Network,
                        latency_ms: latency,
                        expires_in,
                    },
                    at.secs,
                );
                return self.done(Ok(token), false);
            }
            Ok(late) => arrived_too_late(&late, at.secs, self.spent(at)),
            Err(e) => e.redact(&self.redactor),
        };
        // RFC 9449 §8: the server wants a nonce and sent one; the retry with it is part of the
        // same token request, at once and only once. Expected on every cold isolate, so it is
        // logged as what it is, not as an error.
        if got_nonce && !self.nonce_retried && token_endpoint_wants_nonce(&err) {
            self.nonce_retried = true;
            (cx.log)(&log::cache_event(
                "dpop_nonce",
                "token endpoint asked for a DPoP nonce; retrying with it",
            ));
            return self.attempt(at, cx);
        }
        // The credential may just have been rotated in the Secrets Store: read it again, once,
        // before the refusal counts (and is held down).
        if !self.rechecked && cx.config.credential_from_store.is_some() && client_refused(&err) {
            self.rechecked = true;
            (cx.log)(&log::cache_event(
                "credential_recheck",
                "the token endpoint refused the client credential; reading it again from the \
                 Secrets Store",
            ));
            self.refused = Some((err, status, latency));
            self.waiting = Waiting::Credentials;
            return Step::Need(Need::Credentials);
        }
        self.failed(err, status, latency, at, cx)
    }

    /// The credential was read again after a refusal: when the configuration now holds another
    /// one than the refused request carried (read just now, or taken in by another caller
    /// meanwhile), the request goes again at once; otherwise the refusal stands.
    pub(super) fn reread(&mut self, at: Moment, cx: &mut Context<'_>) -> Step {
        let (Waiting::Credentials, Some((err, status, latency))) =
            (self.waiting, self.refused.take())
        else {
            return out_of_order();
        };
        let sent = self.sent_credential.as_ref().map(ClientSecret::expose);
        if sent != Some(cx.config.auth.credential()) {
            (cx.log)(&log::cache_event(
                "credential_rotated",
                "the Secrets Store holds a new client credential; requesting with it",
            ));
            return self.attempt(at, cx);
        }
        self.failed(err, status, latency, at, cx)
    }

    /// An attempt failed with `err`: retried after a pause when it is worth it and the budget
    /// allows, else the acquisition is over.
    fn failed(
        &mut self,
        err: Error,
        status: Option<u16>,
        latency: u64,
        at: Moment,
        cx: &mut Context<'_>,
    ) -> Step {
        (cx.log)(&log::token_error(status, Some(latency), &err));
        self.failures += 1;
        let delay = match &err {
            // A token was issued, only too slowly: another request would cost another token
            // and, from here, likely be as slow.
            _ if status.is_some_and(|s| (200..300).contains(&s)) => None,
            _ if !self.retries => None,
            Error::Unavailable { retry_after, .. } => retry_delay(
                self.failures,
                *retry_after,
                cx.config.timeout_ms.saturating_sub(self.spent(at)),
                (cx.random)(),
            ),
            _ => None, // refusals and nonsense are not retried
        };
        match delay {
            Some(ms) => {
                self.waiting = Waiting::Pause(ms);
                Step::Need(Need::Sleep(ms))
            }
            None => {
                let gone = endpoint_gone(&err);
                self.done(Err(err), gone)
            }
        }
    }

    /// The last answer's HTTP status (none: the endpoint was not reached) and latency.
    pub(super) fn last_answer(&self) -> (Option<u16>, u64) {
        (self.last_status, self.last_latency)
    }

    /// The pause before the next attempt is over.
    pub(super) fn slept(&mut self, at: Moment, cx: &mut Context<'_>) -> Step {
        let Waiting::Pause(ms) = self.waiting else {
            return out_of_order();
        };
        self.reported += ms;
        self.attempt(at, cx)
    }

    fn done(&mut self, result: Result<Token>, endpoint_gone: bool) -> Step {
        Step::Done {
            result,
            endpoint_gone,
        }
    }
}

/// An event the acquisition did not ask for: a driver bug, answered as an error rather than a
/// trap (which would cost the isolate its module).
pub(super) fn out_of_order() -> Step {
    Step::Done {
        result: Err(Error::Other("token path: an event out of order".into())),
        endpoint_gone: false,
    }
}
