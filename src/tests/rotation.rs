//! A client credential kept in the Secrets Store, rotated while the source runs: a refusal
//! reads it again before anything is held down, a new value is taken in place (the token in
//! memory and the cache identity stay), and the status view shows what happened without a
//! token or a credential in it.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use futures_executor::block_on;
use futures_util::future::LocalBoxFuture;

use super::support::*;
use crate::base::secret::{ClientSecret, SharedSecret};
use crate::config::cache_key::cache_key_material;
use crate::config::client::{ClientAuth, Config};
use crate::oauth::token_request::basic_credentials;
use crate::source::credentials::{Credentials, Rotation};
use crate::source::metric::Metric;

const OLD: &str = "old-s3cret-value";
const NEW: &str = "new-s3cret-value";

/// The configuration with its client secret `secret`, read from the binding `M2M_SECRET`.
fn stored(secret: &str) -> Config {
    Config {
        auth: ClientAuth::Basic(ClientSecret::new(secret)),
        credential_from_store: Some("M2M_SECRET".into()),
        cache_key_secret: Some(SharedSecret::new("k".repeat(32))),
        ..config()
    }
}

/// The Secrets Store as the source's port reads it: whatever `value` holds now.
struct Store {
    value: Rc<RefCell<String>>,
    reads: Rc<Cell<u32>>,
}

impl Credentials for Store {
    fn reread(&self) -> LocalBoxFuture<'static, crate::Result<Rotation>> {
        self.reads.set(self.reads.get() + 1);
        let config = stored(&self.value.borrow());
        Box::pin(async move {
            Ok(Rotation {
                signers: no_signers(&config),
                config,
            })
        })
    }
}

fn rotating_source(ep: &Endpoint, value: &str) -> (Source, Rc<Cell<u32>>, Lines) {
    let (lines, log) = logs();
    let source = new_source(
        stored(OLD),
        ep.clone(),
        Kv::default(),
        TestRuntime::default(),
        log,
    );
    let reads = Rc::new(Cell::new(0));
    source.set_credentials(Rc::new(Store {
        value: Rc::new(RefCell::new(value.to_owned())),
        reads: reads.clone(),
    }));
    (source, reads, lines)
}

fn basic(secret: &str) -> String {
    basic_credentials("client", secret)
}

#[test]
fn a_refused_client_reads_its_credential_again_and_takes_the_rotated_one_without_a_hold() {
    let ep = Endpoint::script(vec![Reply::Http(401, REFUSED, vec![]), ok(GOOD)]);
    let (source, reads, lines) = rotating_source(&ep, NEW);
    let token = block_on(source.token(NOW)).expect("the rotated secret gets a token");
    assert_eq!(token.access_token().expose(), "tok-1");
    assert_eq!((ep.calls.get(), reads.get()), (2, 1));
    let authorization = |r: &crate::oauth::transport::HttpRequest| {
        r.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            .map(|(_, v)| v.clone())
    };
    let sent: Vec<_> = ep.requests.borrow().iter().map(authorization).collect();
    assert_eq!(sent, vec![Some(basic(OLD)), Some(basic(NEW))]);
    assert!(source.hold(NOW).is_none(), "nothing held down");
    assert_eq!(source.config().auth.credential(), NEW);
    assert_eq!(count(&lines, "credential_rotated"), 1);
    let status: serde_json::Value = serde_json::from_str(&source.status(NOW)).unwrap();
    let events = &status["events"];
    assert_eq!(
        (
            events["failures"].as_u64(),
            events["token_requests"].as_u64()
        ),
        (Some(0), Some(1))
    );
}

#[test]
fn an_unchanged_credential_leaves_the_refusal_to_be_held_down() {
    let ep = Endpoint::new(401, REFUSED);
    let (source, reads, _) = rotating_source(&ep, OLD);
    assert!(block_on(source.token(NOW)).is_err());
    assert_eq!((ep.calls.get(), reads.get()), (1, 1));
    assert!(source.hold(NOW).is_some(), "the refusal stands");
    // Held down: the next call asks nobody, and reads nothing.
    assert!(block_on(source.token(NOW + 1)).is_err());
    assert_eq!((ep.calls.get(), reads.get()), (1, 1));
}

#[test]
fn a_rotation_taken_in_place_keeps_the_token_and_the_cache_identity() {
    let ep = Endpoint::new(200, GOOD);
    let (source, _, _) = rotating_source(&ep, NEW);
    block_on(source.token(NOW)).unwrap();
    assert_eq!(
        cache_key_material(&stored(OLD)),
        cache_key_material(&stored(NEW))
    );
    assert!(stored(OLD).same_source(&stored(NEW)));
    let elsewhere = Config {
        credential_from_store: Some("OTHER".into()),
        ..stored(NEW)
    };
    assert!(!stored(OLD).same_source(&elsewhere));
    let rotation = |config: Config| Rotation {
        signers: no_signers(&config),
        config,
    };
    assert!(
        !source.rotate(rotation(elsewhere)),
        "another configuration, not a rotation"
    );
    assert!(!source.rotate(rotation(stored(OLD))), "the same value");
    assert!(source.rotate(rotation(stored(NEW))));
    assert_eq!(source.ready(NOW).unwrap().access_token().expose(), "tok-1");
    assert_eq!(
        ep.calls.get(),
        1,
        "the old secret's token is used until it expires"
    );
    // A value held in a setting is its own identity: another value, another source.
    assert!(!config().same_source(&Config {
        auth: ClientAuth::Basic(ClientSecret::new(NEW)),
        ..config()
    }));
}

#[test]
fn the_status_view_counts_calls_and_events_and_holds_no_token_or_credential() {
    let ep = Endpoint::script(vec![ok(GOOD)]);
    let (source, _, _) = rotating_source(&ep, NEW);
    block_on(source.token(NOW)).unwrap();
    block_on(source.token(NOW + 1)).unwrap();
    source.record(Metric::Replay { status: 401 }, NOW + 2);
    let status: serde_json::Value = serde_json::from_str(&source.status(NOW + 2)).unwrap();
    assert_eq!(status["requests"]["network"], 1);
    assert_eq!(status["requests"]["memory"], 1);
    assert_eq!(status["events"]["replays"], 1);
    assert_eq!(status["token"]["obtained_from"], "network");
    assert_eq!(status["last_token_request"], NOW);
    assert_eq!(status["token"]["expires_at"], NOW + 3600);
    let text = status.to_string();
    for secret in ["tok-1", OLD, NEW, &"k".repeat(32)] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
}

#[test]
fn a_rotation_taken_in_while_the_refused_request_was_out_still_sends_it_again() {
    // The request goes out with the old secret; before its refusal comes back, another caller
    // (the registry, the coordinator's own read) has taken the new one in. The read after the
    // refusal finds nothing newer than the configuration: the refused request is still resent.
    type Rotator = Rc<RefCell<Option<Box<dyn Fn()>>>>;
    let rotator: Rotator = Rc::default();
    let sent: Rc<RefCell<Vec<String>>> = Rc::default();
    let http = {
        let (rotator, sent) = (rotator.clone(), sent.clone());
        move |req: &crate::oauth::transport::HttpRequest| {
            let auth = req
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            sent.borrow_mut().push(auth.clone());
            if auth == basic(OLD) {
                (rotator.borrow().as_ref().expect("set"))();
                return Ok(crate::oauth::transport::HttpResponse {
                    status: 401,
                    headers: vec![],
                    body: REFUSED.as_bytes().to_vec(),
                    elapsed_ms: 5,
                });
            }
            Ok(crate::oauth::transport::HttpResponse {
                status: 200,
                headers: vec![],
                body: GOOD.as_bytes().to_vec(),
                elapsed_ms: 5,
            })
        }
    };
    let (_, log) = logs();
    let source = new_source(
        stored(OLD),
        http,
        Kv::default(),
        TestRuntime::default(),
        log,
    );
    source.set_credentials(Rc::new(Store {
        value: Rc::new(RefCell::new(NEW.to_owned())),
        reads: Rc::default(),
    }));
    let other = source.clone();
    *rotator.borrow_mut() = Some(Box::new(move || {
        let config = stored(NEW);
        assert!(other.rotate(Rotation {
            signers: no_signers(&config),
            config,
        }));
    }));
    let token = block_on(source.token(NOW)).expect("resent with the new secret");
    assert_eq!(token.access_token().expose(), "tok-1");
    assert_eq!(*sent.borrow(), vec![basic(OLD), basic(NEW)]);
    assert!(source.hold(NOW).is_none());
}
