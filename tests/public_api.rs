//! The crate as a user outside it sees it: only the root's re-exports. The I/O-free core runs
//! on any platform given an HTTP client (a closure will do), a store and a runtime.
#![cfg(not(target_arch = "wasm32"))]

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;

use futures_executor::block_on;
use futures_util::future::{FutureExt, LocalBoxFuture, Shared};
use worker_m2m::{
    Config, Error, HttpRequest, HttpResponse, LogSink, NoStore, Profile, Runtime, Scheme, Signers,
    TokenSource, TransportError,
};

/// A runtime for a single-threaded executor: a flight is a shared future every waiter polls.
struct Local;

impl Runtime for Local {
    type Handle = Shared<LocalBoxFuture<'static, ()>>;
    fn start(&self, work: LocalBoxFuture<'static, LocalBoxFuture<'static, ()>>) -> Self::Handle {
        async move { work.await.await }.boxed_local().shared()
    }
    fn wait(&self, handle: &Self::Handle) -> LocalBoxFuture<'static, ()> {
        handle.clone().boxed_local()
    }
    fn sleep(&self, _ms: u64) -> impl Future<Output = ()> {
        std::future::ready(())
    }
    fn random(&self) -> f64 {
        0.5
    }
    fn now_ms(&self) -> u64 {
        0
    }
}

fn settings() -> HashMap<&'static str, &'static str> {
    HashMap::from([
        ("M2M_PROFILES", "billing"),
        ("BILLING_OAUTH_TOKEN_URL", "https://idp.example/token"),
        ("BILLING_OAUTH_CLIENT_ID", "billing-client"),
        ("BILLING_OAUTH_CLIENT_SECRET", "s3cret"),
        ("BILLING_OAUTH_SCOPE", "invoices:read"),
    ])
}

#[test]
fn a_profiles_token_from_a_closure_http_client() {
    let vars = settings();
    let profile = Profile::new("billing").unwrap();
    let config = Config::for_profile(|name| vars.get(name).map(|v| v.to_string()), &profile)
        .expect("valid settings");
    let seen: Rc<RefCell<Vec<HttpRequest>>> = Rc::default();
    let requests = seen.clone();
    let http = move |req: &HttpRequest| -> Result<HttpResponse, TransportError> {
        requests.borrow_mut().push(req.clone());
        Ok(HttpResponse {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: br#"{"access_token":"at-1","token_type":"Bearer","expires_in":3600}"#.to_vec(),
            elapsed_ms: 3,
        })
    };
    let signers = Signers::for_config(
        &config,
        |_| unreachable!("client_secret_basic signs nothing"),
        |_| unreachable!("no DPoP"),
    );
    let lines = Rc::new(Cell::new(0));
    let counted = lines.clone();
    let log: LogSink = Rc::new(move |_line: &str| counted.set(counted.get() + 1));
    let source = TokenSource::new(config, http, signers, NoStore, Local, log);

    let now = 1_700_000_000;
    let token = block_on(source.token(now)).unwrap();
    let again = block_on(source.token(now + 60)).unwrap();
    assert_eq!(token.scheme(), Scheme::Bearer);
    assert_eq!(token.authorization().expose(), "Bearer at-1");
    assert_eq!(again.access_token(), token.access_token());
    let seen = seen.borrow();
    assert_eq!(seen.len(), 1, "the second call is served from memory");
    assert_eq!(seen[0].url, "https://idp.example/token");
    let body = String::from_utf8(seen[0].body.clone()).unwrap();
    assert!(
        body.contains("grant_type=client_credentials") && body.contains("scope=invoices%3Aread")
    );
    assert!(lines.get() >= 1, "the token request was logged");
}

#[test]
fn setting_errors_name_the_profiles_setting() {
    let mut vars = settings();
    vars.remove("BILLING_OAUTH_CLIENT_SECRET");
    let profile = Profile::new("billing").unwrap();
    let err =
        Config::for_profile(|name| vars.get(name).map(|v| v.to_string()), &profile).unwrap_err();
    assert!(
        matches!(&err, Error::Config { setting, .. } if setting == "BILLING_OAUTH_CLIENT_SECRET")
    );
    assert_eq!(err.http_status(), 500);
    assert!(Profile::new("Billing").is_err());
}
