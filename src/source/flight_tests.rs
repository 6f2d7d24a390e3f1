//! The flight's rules as plain synchronous tests: events in, actions out, no executor, no
//! clock. Each test is a script of what the ports answered and when.

use std::rc::Rc;

use crate::base::error::Error;
use crate::config::client::{ClientAuth, Config, Dpop};
use crate::keys::dpop_key::{DpopKey, TEST_JWK};
use crate::keys::private_key::parse_key;
use crate::oauth::token::{Scheme, Token};
use crate::oauth::transport::{HttpResponse, TransportError};
use crate::source::context::{Context, Moment};
use crate::source::coordinator::Answer;
use crate::source::flight::{Action, Event, Finished, Flight, Purpose};
use crate::source::metric::Metric;
use crate::source::records::{encode_hold, encode_record, HOLD_ENTRY};
use crate::source::report::Report;
use crate::source::runtime::LogSink;
use crate::source::state::State;
use crate::source::store::Write;
use crate::{AccessToken, ClientSecret};

const NOW: u64 = 1_700_000_000;
const EC_JWK: &str = r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","d":"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI","kid":"ec-1","alg":"ES256"}"#;
const TOKEN: &str = r#"{"access_token":"tok","token_type":"Bearer","expires_in":3600}"#;

/// One flight under test, with the source's state and settings it works on.
struct Script {
    flight: Flight,
    state: State,
    config: Config,
    coordinated: bool,
    current: bool,
    log: LogSink,
    lines: Rc<std::cell::RefCell<Vec<String>>>,
    report: Report,
    metrics: Rc<std::cell::RefCell<Vec<Metric>>>,
}

impl Script {
    fn new(config: Config, purpose: Purpose) -> Self {
        let lines: Rc<std::cell::RefCell<Vec<String>>> = Rc::default();
        let sink = lines.clone();
        let metrics: Rc<std::cell::RefCell<Vec<Metric>>> = Rc::default();
        let seen = metrics.clone();
        Self {
            report: Report::new(
                Some(Rc::new(move |m: &Metric| seen.borrow_mut().push(m.clone()))),
                60,
            ),
            metrics,
            flight: Flight::new(purpose, NOW),
            state: State::default(),
            config,
            coordinated: false,
            current: true,
            log: Rc::new(move |l: &str| sink.borrow_mut().push(l.to_owned())),
            lines,
        }
    }

    fn basic() -> Self {
        Self::new(
            Config::for_tests("client", ClientAuth::Basic(ClientSecret::new("s"))),
            Purpose::Token,
        )
    }

    /// Hands `event` to the flight `ms` milliseconds after it started.
    fn at(&mut self, ms: u64, event: Event) -> Action {
        let random = || 0.5;
        let mut cx = Context {
            config: &self.config,
            state: &mut self.state,
            log: &self.log,
            report: &self.report,
            random: &random,
            current: self.current,
            coordinated: self.coordinated,
        };
        let at = Moment {
            secs: NOW + ms.div_ceil(1000),
            ms,
        };
        self.flight.handle(event, at, &mut cx)
    }

    /// Starts the flight and answers the KV reads with nothing.
    fn past_kv(&mut self) -> Action {
        assert!(matches!(self.at(0, Event::Started), Action::ReadKv));
        self.at(
            10,
            Event::KvRead {
                token: Ok(None),
                hold: Ok(None),
            },
        )
    }

    fn logged(&self, outcome: &str) -> usize {
        let needle = format!(r#""outcome":"{outcome}""#);
        self.lines
            .borrow()
            .iter()
            .filter(|l| l.contains(&needle))
            .count()
    }
}

fn answer(status: u16, body: &str) -> Event {
    answer_with(status, body, &[])
}

fn answer_with(status: u16, body: &str, headers: &[(&str, &str)]) -> Event {
    Event::HttpAnswered(Ok(HttpResponse {
        status,
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        body: body.as_bytes().to_vec(),
        elapsed_ms: 100,
    }))
}

fn endpoint() -> Event {
    Event::EndpointFound {
        url: Ok("https://idp.example/token".into()),
        spent_ms: 0,
    }
}

fn done(action: Action) -> Finished {
    match action {
        Action::Done(finished) => finished,
        other => panic!("expected the end, got {other:?}"),
    }
}

fn token(name: &str, issued: u64) -> Token {
    Token::new(
        AccessToken::new(name),
        Scheme::Bearer,
        issued,
        issued + 3600,
        60,
    )
}

#[test]
fn a_fresh_token_in_kv_ends_the_flight_without_a_token_request() {
    let mut s = Script::basic();
    assert!(matches!(s.at(0, Event::Started), Action::ReadKv));
    let record = encode_record(&token("from-kv", NOW - 60));
    let end = done(s.at(
        10,
        Event::KvRead {
            token: Ok(Some(record)),
            hold: Ok(None),
        },
    ));
    assert_eq!(end.result.unwrap().access_token().expose(), "from-kv");
    assert!(end.writes.is_empty(), "nothing to write back");
    assert!(s.state.memory.fresh(NOW).is_some(), "taken into memory");
}

#[test]
fn a_kv_miss_makes_one_token_request_and_leaves_the_token_to_write() {
    let mut s = Script::basic();
    assert!(matches!(s.past_kv(), Action::FindEndpoint));
    let Action::Send(request) = s.at(20, endpoint()) else {
        panic!("the token request")
    };
    assert_eq!(request.url, "https://idp.example/token");
    // The budget counts from when the flight went to the endpoint (after KV, at 10 ms).
    assert_eq!(
        request.timeout_ms,
        1000 - (20 - 10),
        "what is left of the budget"
    );
    let end = done(s.at(150, answer(200, TOKEN)));
    assert_eq!(end.result.unwrap().access_token().expose(), "tok");
    assert!(matches!(end.writes.as_slice(), [Write::Token(_, ttl)] if *ttl > 3000));
    assert!(!end.forget_endpoint);
}

#[test]
fn a_hold_another_isolate_shared_is_the_answer_without_a_token_request() {
    let mut s = Script::basic();
    s.at(0, Event::Started);
    let refused = Error::Refused {
        status: 401,
        code: crate::ErrorCode::InvalidClient,
        description: None,
    };
    let end = done(s.at(
        10,
        Event::KvRead {
            token: Ok(None),
            hold: Ok(Some(encode_hold(NOW + 30, &refused, 0).unwrap())),
        },
    ));
    assert!(matches!(end.result, Err(Error::Refused { .. })));
    assert!(s.state.hold_down.active(NOW).is_some(), "held here too");
    assert_eq!(s.logged("hold"), 1);
}

#[test]
fn the_coordinator_is_asked_after_kv_and_its_answers_decide() {
    // (what the coordinator answers, whether the flight goes on to the endpoint)
    let held = Answer::Held {
        error: Error::Unavailable {
            reason: "HTTP 503".into(),
            retry_after: None,
        },
        until: NOW + 20,
    };
    let expired = Answer::Token(token("old", NOW - 3598));
    for (answer, to_endpoint) in [
        (Ok(Answer::Token(token("fleet", NOW))), false),
        (Ok(held), false),
        (Ok(expired), true),
        (Err("coordinator answered 500".to_owned()), true),
    ] {
        let mut s = Script::basic();
        s.coordinated = true;
        let Action::AskCoordinator(ask) = s.past_kv() else {
            panic!("the coordinator is asked")
        };
        assert!(!ask.refresh && ask.have.is_none() && ask.rejected.is_none());
        let next = s.at(50, Event::CoordinatorAnswered(answer));
        assert_eq!(
            matches!(next, Action::FindEndpoint),
            to_endpoint,
            "{next:?}"
        );
    }
}

#[test]
fn a_refresh_asks_the_coordinator_for_a_newer_token_than_the_one_held() {
    let mut s = Script::new(
        Config::for_tests("client", ClientAuth::Basic(ClientSecret::new("s"))),
        Purpose::Refresh,
    );
    s.coordinated = true;
    s.state.memory.adopt(token("held", NOW - 3300));
    let Action::AskCoordinator(ask) = s.past_kv() else {
        panic!("the coordinator is asked")
    };
    assert!(ask.refresh);
    assert_eq!(ask.have, Some(NOW - 3300));
}

#[test]
fn unavailability_is_retried_with_backoff_within_the_budget_then_held() {
    let mut s = Script::basic();
    s.past_kv();
    assert!(matches!(s.at(20, endpoint()), Action::Send(_)));
    let Action::Sleep(first) = s.at(100, answer(503, "")) else {
        panic!("a pause")
    };
    assert!(first > 0 && first < 1000, "{first}");
    let Action::Send(again) = s.at(100 + first, Event::TimerFired) else {
        panic!("a second attempt")
    };
    assert!(again.timeout_ms <= 1000 - 100 - first);
    // The budget (OAUTH_TIMEOUT_MS, 1000 here) is spent: no third attempt.
    let end = done(s.at(990, answer(503, "")));
    assert!(matches!(end.result, Err(Error::Unavailable { .. })));
    assert!(
        s.state.hold_down.active(NOW + 1).is_some(),
        "held down after failing"
    );
    assert_eq!(s.logged("error"), 2);
}

#[test]
fn refusals_are_not_retried_and_their_hold_is_shared() {
    let mut s = Script::basic();
    s.past_kv();
    s.at(20, endpoint());
    let end = done(s.at(100, answer(401, r#"{"error":"invalid_client"}"#)));
    assert!(matches!(end.result, Err(Error::Refused { .. })));
    assert!(
        end.writes
            .iter()
            .any(|w| matches!(w, Write::Put(name, _, _) if *name == HOLD_ENTRY)),
        "{:?}",
        end.writes
    );
}

#[test]
fn a_discovered_endpoint_that_is_gone_is_forgotten() {
    let mut s = Script::basic();
    s.past_kv();
    s.at(20, endpoint());
    let end = done(s.at(100, answer(404, "not found")));
    assert!(end.forget_endpoint);
    let mut s = Script::basic();
    s.past_kv();
    s.at(20, endpoint());
    let unreachable = Event::HttpAnswered(Err(TransportError {
        reason: "connection refused".into(),
        elapsed_ms: 5,
    }));
    // Retried first (an unavailability), then forgotten when the budget is spent.
    assert!(matches!(s.at(10, unreachable), Action::Sleep(_)));
    let again = Event::HttpAnswered(Err(TransportError {
        reason: "connection refused".into(),
        elapsed_ms: 5,
    }));
    s.at(500, Event::TimerFired);
    assert!(done(s.at(995, again)).forget_endpoint);
}

#[test]
fn a_dpop_nonce_challenge_costs_one_retry_with_the_nonce_and_only_one() {
    let mut config = Config::for_tests("client", ClientAuth::Basic(ClientSecret::new("s")));
    let key = Rc::new(DpopKey::from_jwk("OAUTH_DPOP_KEY", TEST_JWK).unwrap());
    config.dpop = Dpop::Key(key.clone());
    let mut s = Script::new(config, Purpose::Token);
    s.past_kv();
    assert!(matches!(s.at(20, endpoint()), Action::MakeDpopKey));
    let Action::SignProof(first) = s.at(5, Event::DpopKeyReady(Ok(key.clone()))) else {
        panic!("a proof")
    };
    assert_eq!(
        (first.htu.as_str(), first.nonce.as_deref()),
        ("https://idp.example/token", None)
    );
    let Action::Send(request) = s.at(6, Event::Signed(Ok("proof-1".into()))) else {
        panic!("the token request")
    };
    assert!(request
        .headers
        .iter()
        .any(|(k, v)| k == "dpop" && v == "proof-1"));
    let challenge = || {
        answer_with(
            400,
            r#"{"error":"use_dpop_nonce"}"#,
            &[("dpop-nonce", "n-1")],
        )
    };
    let Action::SignProof(second) = s.at(100, challenge()) else {
        panic!("the retry's proof")
    };
    assert_eq!(
        second.nonce.as_deref(),
        Some("n-1"),
        "with the server's nonce"
    );
    assert!(matches!(
        s.at(101, Event::Signed(Ok("proof-2".into()))),
        Action::Send(_)
    ));
    // A second challenge in the same flight is an error, not a loop.
    let end = done(s.at(200, challenge()));
    assert!(matches!(end.result, Err(Error::Refused { .. })));
    assert_eq!(s.logged("dpop_nonce"), 1);
}

#[test]
fn a_bearer_answer_to_a_dpop_request_is_refused() {
    let mut config = Config::for_tests("client", ClientAuth::Basic(ClientSecret::new("s")));
    config.dpop = Dpop::GeneratedKey;
    let mut s = Script::new(config, Purpose::Token);
    s.past_kv();
    s.at(20, endpoint());
    let key = Rc::new(DpopKey::from_jwk("OAUTH_DPOP_KEY", TEST_JWK).unwrap());
    s.at(1, Event::DpopKeyReady(Ok(key)));
    s.at(2, Event::Signed(Ok("proof".into())));
    let end = done(s.at(100, answer(200, TOKEN)));
    assert!(matches!(end.result, Err(Error::InvalidResponse { .. })));
}

#[test]
fn private_key_jwt_signs_an_assertion_for_each_attempt_at_its_send_time() {
    let key = parse_key("OAUTH_PRIVATE_KEY", EC_JWK, None).unwrap();
    let mut s = Script::new(
        Config::for_tests("client", ClientAuth::PrivateKeyJwt(key)),
        Purpose::Token,
    );
    s.past_kv();
    let Action::SignAssertion { at, audience } = s.at(20, endpoint()) else {
        panic!("an assertion")
    };
    assert_eq!((at, audience.as_str()), (NOW, "https://idp.example/token"));
    assert!(matches!(
        s.at(1, Event::Signed(Ok("a.b.c".into()))),
        Action::Send(_)
    ));
    let Action::Sleep(pause) = s.at(300, answer(503, "")) else {
        panic!("a pause")
    };
    let Action::SignAssertion { at, .. } = s.at(300 + pause, Event::TimerFired) else {
        panic!("a fresh assertion for the retry")
    };
    assert_eq!(at, NOW + (400 + pause) / 1000, "sent after what was spent");
}

#[test]
fn a_replaced_flight_answers_its_waiters_but_leaves_memory_and_kv_alone() {
    let mut s = Script::basic();
    s.current = false;
    s.past_kv();
    s.at(20, endpoint());
    let end = done(s.at(100, answer(200, TOKEN)));
    assert!(end.result.is_ok());
    assert!(end.writes.is_empty());
    assert!(s.state.memory.token().is_none());
}

#[test]
fn an_event_out_of_order_ends_the_flight_with_an_error_not_a_trap() {
    let mut s = Script::basic();
    let end = done(s.at(0, Event::TimerFired));
    assert!(matches!(end.result, Err(Error::Other(_))));
}

#[test]
fn in_an_outage_each_flight_makes_one_attempt_and_pauses_longer_until_a_token_comes() {
    let mut s = Script::basic();
    let mut pauses = Vec::new();
    for flight in 0..5 {
        s.flight = Flight::new(Purpose::Token, NOW);
        s.past_kv();
        assert!(matches!(s.at(20, endpoint()), Action::Send(_)));
        let mut next = s.at(120, answer(503, ""));
        if flight == 0 {
            // The first flight retries within its budget, as for a blip.
            assert!(matches!(next, Action::Sleep(_)), "{next:?}");
            next = s.at(990, Event::TimerFired);
            assert!(matches!(next, Action::Send(_)));
            next = s.at(995, answer(503, ""));
        } else {
            assert!(matches!(next, Action::Done(_)), "one attempt: {next:?}");
        }
        let end = done(next);
        assert!(end.result.is_err());
        let hold = s.state.hold_down.active(NOW).expect("held").clone();
        pauses.push(hold.until - NOW - 1);
        assert!(
            end.writes
                .iter()
                .any(|w| matches!(w, Write::Put(name, _, _) if *name == HOLD_ENTRY)),
            "a 503 is the endpoint's state: shared, with the schedule's step"
        );
    }
    // The jitter here is 0.5: three quarters to all of 5, 10, 20, 40, 80 s.
    assert_eq!(pauses, [5, 9, 18, 35, 70]);
    // A token resets the schedule.
    s.flight = Flight::new(Purpose::Token, NOW);
    s.past_kv();
    s.at(20, endpoint());
    assert!(done(s.at(120, answer(200, TOKEN))).result.is_ok());
    assert_eq!(s.state.hold_down.failed_flights(), 0);
}

#[test]
fn a_flight_reports_a_fallback_a_refusal_and_a_token_from_kv() {
    use crate::base::log::Source;
    use crate::source::metric::Fallback;
    let mut s = Script::basic();
    s.coordinated = true;
    s.past_kv();
    s.at(
        40,
        Event::CoordinatorAnswered(Err("coordinator answered 500".into())),
    );
    s.at(50, endpoint());
    done(s.at(150, answer(401, r#"{"error":"invalid_client"}"#)));
    // The answer came at 150 ms: in the second after NOW.
    let hold = s.state.hold_down.active(NOW).expect("held down").until - (NOW + 1);
    assert_eq!(
        *s.metrics.borrow(),
        vec![
            Metric::Fallback(Fallback::Unreachable),
            Metric::Failure {
                code: "invalid_client".into(),
                status: Some(401),
                latency_ms: 100,
                held_secs: hold,
            },
        ]
    );
    let events = s.report.events();
    assert_eq!(
        (events.fallbacks, events.failures, events.token_requests),
        (1, 1, 0)
    );
    assert_eq!(s.report.last_error().unwrap().status, Some(401));

    // A token from KV reports where it came from and how long the flight took to find it.
    let mut s = Script::basic();
    s.at(0, Event::Started);
    let record = encode_record(&token("from-kv", NOW - 60));
    done(s.at(
        10,
        Event::KvRead {
            token: Ok(Some(record)),
            hold: Ok(None),
        },
    ));
    assert_eq!(
        *s.metrics.borrow(),
        vec![Metric::Token {
            source: Source::Kv,
            latency_ms: 10,
            // Read at 10 ms: judged in the second after NOW, when 3539 s are left.
            expires_in: 3539,
        }]
    );
}
