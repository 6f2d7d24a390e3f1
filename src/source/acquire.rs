//! One token acquisition: the token endpoint (configured or discovered), client authentication
//! (RFC 6749 §2.3, RFC 7523), a DPoP proof (RFC 9449), retries with backoff within
//! `OAUTH_TIMEOUT_MS`, and every answer parsed and redacted. Caching, single flight, hold-downs
//! and the coordinator are the token source's business ([`crate::source::token_source`]); this only asks.
//!
//! Like golang/oauth2's `clientcredentials.go`: it builds and sends the request, nothing more.

use std::cell::RefCell;
use std::rc::Rc;

use futures_util::future::LocalBoxFuture;

use crate::base::error::{Error, Result};
use crate::base::log::{self, Source};
use crate::config::client::{ClientAuth, Config, Dpop};
use crate::keys::dpop_key::DpopKey;
use crate::keys::private_key::PrivateKey;
use crate::oauth::backoff::retry_delay;
use crate::oauth::dpop::{htu, token_endpoint_wants_nonce, Nonces, Proofs};
use crate::oauth::token::{Scheme, Token};
use crate::oauth::token_request::{build_token_request, redactor_for};
use crate::oauth::token_response::parse_token_response;
use crate::oauth::transport::HttpClient;
use crate::source::discovery::Discovery;
use crate::source::runtime::{Clock, LogSink, Runtime};
use crate::source::store::{TokenStore, Write};

/// Signs client assertions for `private_key_jwt` (RFC 7523 §2.2); the edge does it with WebCrypto.
pub trait Assertions {
    /// A fresh signed client assertion (unique `jti`) for a token request sent at `now` to the
    /// token endpoint `audience`.
    fn assertion(&self, now: u64, audience: &str) -> LocalBoxFuture<'static, Result<String>>;
}

/// The signers a configuration needs: a client assertion signer for `private_key_jwt`, a DPoP key
/// and proof maker for `OAUTH_DPOP`. Made from factories when the source is made, and only by
/// [`Signers::for_config`]: a source that needs a signer cannot be built without one.
pub struct Signers {
    /// Present exactly when the configuration uses `private_key_jwt`.
    assertions: Option<Rc<dyn Assertions>>,
    /// Present exactly when DPoP is on.
    proofs: Option<Rc<dyn Proofs>>,
}

impl Signers {
    /// The signers `config` calls for: `assertions` is called with the `private_key_jwt` key,
    /// `proofs` with the configured DPoP key (`None`: a key per token); each only when the
    /// configuration uses it.
    pub fn for_config(
        config: &Config,
        assertions: impl FnOnce(&PrivateKey) -> Rc<dyn Assertions>,
        proofs: impl FnOnce(Option<&Rc<DpopKey>>) -> Rc<dyn Proofs>,
    ) -> Self {
        Self {
            assertions: match &config.auth {
                ClientAuth::PrivateKeyJwt(key) => Some(assertions(key)),
                ClientAuth::Basic(_) | ClientAuth::Post(_) => None,
            },
            proofs: match &config.dpop {
                Dpop::Off => None,
                Dpop::GeneratedKey => Some(proofs(None)),
                Dpop::Key(key) => Some(proofs(Some(key))),
            },
        }
    }
}

/// Gets tokens from the token endpoint for one configuration.
pub(crate) struct Acquirer<H> {
    pub(crate) config: Config,
    http: H,
    signers: Signers,
    /// The latest DPoP nonce of the token endpoint's origin (RFC 9449 §8.2).
    pub(crate) token_nonces: RefCell<Nonces>,
    discovery: Discovery,
}

impl<H: HttpClient> Acquirer<H> {
    pub(crate) fn new(config: Config, http: H, signers: Signers) -> Self {
        Self {
            config,
            http,
            signers,
            token_nonces: RefCell::default(),
            discovery: Discovery::default(),
        }
    }

    /// The DPoP maker and the key for a token request, when DPoP is on.
    async fn dpop_key(&self) -> Result<Option<(Rc<dyn Proofs>, Rc<DpopKey>)>> {
        match &self.signers.proofs {
            Some(proofs) => Ok(Some((proofs.clone(), proofs.key().await?))),
            None => Ok(None),
        }
    }

    /// Token requests until one succeeds, one is refused, or the budget (`OAUTH_TIMEOUT_MS`) is
    /// spent. The budget counts from the first request by the flight's clock, and at least what
    /// each attempt and each backoff reported taking.
    pub(crate) async fn token<S: TokenStore, R: Runtime>(
        &self,
        runtime: &R,
        log: &LogSink,
        clock: &Clock<'_, R>,
        store: &S,
        writes: &mut Vec<Write>,
    ) -> Result<Token> {
        let config = &self.config;
        // Everything sent is kept from what comes back: secret forms now, signed values as made.
        let mut redactor = redactor_for(config);
        let budget = config.timeout_ms;
        let started_ms = clock.elapsed_ms();
        let mut reported = 0u64;
        let spent = |reported: u64| reported.max(clock.elapsed_ms().saturating_sub(started_ms));
        let mut failures = 0u32;
        let token_url = match self
            .discovery
            .endpoint(
                config,
                &self.http,
                store,
                clock.now(),
                &mut reported,
                writes,
                log,
            )
            .await
        {
            Ok(url) => url,
            Err(e) => {
                let e = e.redact(&redactor);
                (log)(&log::token_error(None, None, &e));
                return Err(e);
            }
        };
        // One key for the whole flight: the token that comes back is bound to it.
        let dpop = self.dpop_key().await?;
        let mut nonce_retried = false;
        loop {
            let sent_at = clock.start_secs + spent(reported) / 1000;
            // Made with the source exactly when the configuration uses `private_key_jwt`.
            let assertion = match &self.signers.assertions {
                Some(signer) => {
                    let assertion = signer.assertion(sent_at, &token_url).await?;
                    redactor.add_signed(&assertion);
                    Some(assertion)
                }
                None => None,
            };
            let mut request = build_token_request(config, &token_url, assertion.as_deref());
            request.timeout_ms = budget.saturating_sub(spent(reported)).max(1);
            if let Some((proofs, key)) = &dpop {
                let nonce = self
                    .token_nonces
                    .borrow()
                    .get(&token_url)
                    .map(str::to_owned);
                let proof = proofs
                    .proof(
                        key,
                        "POST",
                        htu(&token_url),
                        sent_at,
                        None,
                        nonce.as_deref(),
                    )
                    .await?;
                redactor.add_signed(&proof);
                request.headers.push(("dpop".into(), proof));
            }
            let mut got_nonce = false;
            let (result, status, latency) = match self.http.execute(request).await {
                Ok(resp) => {
                    if let (Some(_), Some(nonce)) = (&dpop, resp.header("dpop-nonce")) {
                        got_nonce = self.token_nonces.borrow_mut().remember(&token_url, nonce);
                    }
                    let parsed =
                        parse_token_response(&resp, sent_at, config.expiry_margin_secs, &redactor)
                            .and_then(|t| bind(t, dpop.as_ref().map(|(_, k)| k), resp.status));
                    (parsed, Some(resp.status), resp.elapsed_ms)
                }
                Err(e) => (
                    Err(Error::Unavailable {
                        reason: format!("network error: {}", e.reason),
                        retry_after: None,
                    }),
                    None,
                    e.elapsed_ms,
                ),
            };
            reported += latency;
            let err = match result {
                // Counted from when it was sent; checked against when it arrived.
                Ok(token) if token.usable_at(clock.now()) => {
                    let expires_in = token.expires_at().saturating_sub(sent_at);
                    (log)(&log::token_ok(
                        Source::Network,
                        status,
                        Some(latency),
                        expires_in,
                    ));
                    return Ok(token);
                }
                Ok(late) => arrived_too_late(&late, clock.now(), spent(reported)),
                Err(e) => e.redact(&redactor),
            };
            // RFC 9449 §8: the server wants a nonce and sent one; the retry with it is part of the
            // same token request, at once and only once. Expected on every cold isolate, so it is
            // logged as what it is, not as an error.
            if got_nonce && !nonce_retried && token_endpoint_wants_nonce(&err) {
                nonce_retried = true;
                (log)(&log::cache_event(
                    "dpop_nonce",
                    "token endpoint asked for a DPoP nonce; retrying with it",
                ));
                continue;
            }
            (log)(&log::token_error(status, Some(latency), &err));
            failures += 1;
            let delay = match &err {
                // A token was issued, only too slowly: another request would cost another token
                // and, from here, likely be as slow.
                _ if status.is_some_and(|s| (200..300).contains(&s)) => None,
                Error::Unavailable { retry_after, .. } => retry_delay(
                    failures,
                    *retry_after,
                    budget.saturating_sub(spent(reported)),
                    runtime.random(),
                ),
                _ => None, // refusals and nonsense are not retried
            };
            match delay {
                Some(ms) => {
                    runtime.sleep(ms).await;
                    reported += ms;
                }
                None => {
                    self.discovery.forget(config, &err, writes);
                    return Err(err);
                }
            }
        }
    }
}

/// The error for a token that came back with too little life left to hand out.
///
/// It says the endpoint was too slow for the token's lifetime, as seen from this isolate: an
/// unavailability, held down here only (another isolate may reach the endpoint faster).
pub(crate) fn arrived_too_late(token: &Token, now: u64, elapsed_ms: u64) -> Error {
    Error::Unavailable {
        reason: format!(
            "the token had {} s left when it arrived, after {elapsed_ms} ms (tokens are used \
             only with more than {} s left)",
            token.expires_at().saturating_sub(now),
            crate::oauth::token::MIN_REMAINING_SECS
        ),
        retry_after: None,
    }
}

/// Checks the token type against what was asked for and binds a DPoP token to its key. A Bearer
/// token when DPoP was asked for means the server ignored the proof: using it as Bearer would
/// silently drop the protection the operator turned on (RFC 9449 §5).
fn bind(token: Token, key: Option<&Rc<DpopKey>>, status: u16) -> Result<Token> {
    let invalid = |reason: &str| Error::InvalidResponse {
        status,
        reason: reason.to_owned(),
    };
    match (token.scheme(), key) {
        (Scheme::DPoP, Some(key)) => Ok(token.with_dpop_key(key.clone())),
        (Scheme::Bearer, None) => Ok(token),
        (Scheme::Bearer, Some(_)) => Err(invalid(
            "`token_type` is Bearer, not DPoP: the server did not bind the token to the DPoP key",
        )),
        (Scheme::DPoP, None) => Err(invalid(
            "`token_type` is DPoP but OAUTH_DPOP is not true: the token needs proofs",
        )),
    }
}
