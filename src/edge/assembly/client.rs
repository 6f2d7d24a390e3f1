//! [`TokenClient`]: the library API for Rust Workers.

use wasm_bindgen_futures::JsFuture;
use worker::{Context, Env, Request, Response};

use crate::base::error::{Error, Result};
use crate::base::lru::LastUse;
use crate::config::client::Config;
use crate::edge::assembly::registry;
use crate::edge::isolate::{Configs, EdgeSource, Registered};
use crate::edge::platform::kv::KvNamespace;
use crate::edge::platform::runtime::FlightHandle;
use crate::edge::platform::secrets;
use crate::oauth::dpop::htu;
use crate::oauth::token::Token;
use crate::source::status::with_fields;

/// Gets client credentials tokens (RFC 6749 §4.4) and signs requests with them (RFC 6750 §2.1).
///
/// Cheap to create on every request: the token cache lives in the isolate, not in the client.
#[derive(Clone)]
pub struct TokenClient {
    pub(super) source: EdgeSource,
    /// Marks the source used, for the isolate's least-recently-used bound.
    used: LastUse,
}

impl From<Registered> for TokenClient {
    fn from(r: Registered) -> Self {
        Self {
            source: r.source,
            used: r.used,
        }
    }
}

impl TokenClient {
    /// Reads the settings of the configuration contract from the Worker's vars and secrets, and
    /// the `TOKEN_CACHE` KV binding when there is one (memory-only otherwise, said once in the log).
    ///
    /// With `M2M_PROFILES` set every configuration is a profile: this is then a configuration
    /// error, and [`Self::for_profile`] picks one.
    pub fn from_env(env: &Env) -> Result<Self> {
        Self::of(&*crate::edge::assembly::profiles::configs(env)?, env, None)
    }

    /// The client of the profile `profile`, one of those `M2M_PROFILES` lists: its settings
    /// are read with the profile's prefix (`BILLING_OAUTH_CLIENT_ID` for `billing`; see
    /// docs/configuration.md's "Several APIs"). Each profile has its own tokens, KV entries, coordinator object
    /// and hold-down: one profile's failure never touches another.
    pub fn for_profile(env: &Env, profile: &str) -> Result<Self> {
        Self::of(
            &*crate::edge::assembly::profiles::configs(env)?,
            env,
            Some(profile),
        )
    }

    /// Like [`Self::from_env`], first reading the Secrets Store secrets that credential
    /// settings name (`OAUTH_CLIENT_SECRET = "secrets-store:BINDING"`), at most once a
    /// minute per isolate; [`Self::from_env`] uses the values last read, and before the first
    /// read such a setting is a configuration error.
    pub async fn load(env: &Env) -> Result<Self> {
        secrets::refresh_due(env).await;
        Self::from_env(env)
    }

    /// Like [`Self::for_profile`], first reading the Secrets Store secrets (see [`Self::load`]).
    pub async fn load_profile(env: &Env, profile: &str) -> Result<Self> {
        secrets::refresh_due(env).await;
        Self::for_profile(env, profile)
    }

    /// A client for an explicit configuration and optional KV namespace. It asks no
    /// coordinator: the coordinator reads its configuration from the Worker's own settings, so
    /// only [`Self::from_env`] can share it.
    pub fn new(config: Config, kv: Option<KvNamespace>) -> Self {
        Self::from(registry::source(config, kv, None))
    }

    /// The client of `profile` among `configs`, the configurations of `env`.
    pub(crate) fn of(configs: &Configs, env: &Env, profile: Option<&str>) -> Result<Self> {
        configs.source(env, profile).map(Self::from)
    }

    /// The current access token: from memory, else KV, else one token request shared by every
    /// concurrent caller in the isolate.
    ///
    /// A DPoP token (`OAUTH_DPOP=true`, [`Token::dpop_key`]) is refused by its API without a
    /// proof for each request: send with [`Self::fetch`], or sign with [`Self::sign`] or
    /// [`Self::proof_for`].
    pub async fn token(&self) -> Result<Token> {
        registry::touch(&self.used);
        self.source
            .token(crate::edge::platform::js::now_secs())
            .await
    }

    /// Like [`Self::token`], and when the token is in its refresh window, refreshes it in the
    /// background under `ctx.waitUntil` (so no request ever waits for a token while a valid one
    /// exists). Without a `Context` a background task could be cancelled with the request.
    pub async fn token_with(&self, ctx: &Context) -> Result<Token> {
        // Every token request this call starts runs under waitUntil: it finishes (and lands in
        // memory and KV) even if this request is cancelled, instead of dying with it.
        registry::touch(&self.used);
        let keep_alive = |flight: &FlightHandle| {
            let promise = flight.promise.clone();
            ctx.wait_until(async move {
                let _ = JsFuture::from(promise).await;
            });
        };
        self.source
            .token_ahead(crate::edge::platform::js::now_secs(), Some(&keep_alive))
            .await
    }

    /// The status view of this client's configuration, as JSON text: the token's timings and
    /// where it came from, the hold-down and its cause, the last error, this isolate's counts
    /// since it made the source, and with a coordinator its view of the fleet (`coordinator`).
    /// Never a token or a credential. Obtains nothing: a client that has not needed a token
    /// yet shows none.
    pub async fn status(&self) -> String {
        let now = crate::edge::platform::js::now_secs();
        let status = self.source.status(now);
        let profile = match &self.source.config().profile {
            Some(p) => format!("\"{}\"", p.name()),
            None => "null".to_owned(),
        };
        let coordinator = match self.source.coordinator_status().await {
            None => "null".to_owned(),
            // The object's own view, JSON it wrote (see `TokenCoordinator`).
            Some(Ok(view)) if view.starts_with('{') && view.ends_with('}') => view,
            Some(Ok(_)) => r#"{"error":"the coordinator's status view is not JSON"}"#.to_owned(),
            Some(Err(e)) => format!(r#"{{"error":{}}}"#, serde_json::Value::from(e)),
        };
        with_fields(
            &format!(r#""profile":{profile},"coordinator":{coordinator}"#),
            &status,
        )
    }

    /// Whether a request may ever be sent twice: after a rejected token (`OAUTH_RETRY_STATUSES`
    /// not `off`) or a DPoP nonce challenge. Callers skip keeping a copy of the body otherwise.
    pub fn replays_enabled(&self) -> bool {
        let config = self.source.config();
        !config.retry_statuses.is_empty() || config.dpop.is_on()
    }

    /// The `DPoP` header value for a request with `token` (RFC 9449 §7.1): a proof for `method`
    /// and `url` with the token's `ath` and the server's latest nonce. `None` for a Bearer token.
    pub async fn proof_for(
        &self,
        token: &Token,
        method: &str,
        url: &str,
    ) -> Result<Option<String>> {
        let Some(key) = token.dpop_key() else {
            return Ok(None);
        };
        let ath = crate::edge::signers::dpop::ath(token.access_token()).await?;
        let nonce = self.source.dpop_nonce(url);
        crate::edge::signers::dpop::proof(
            key,
            method,
            htu(url),
            crate::edge::platform::js::now_secs(),
            Some(&ath),
            nonce.as_deref(),
        )
        .await
        .map(Some)
    }

    /// The token in memory when a request can be signed with it at `now` with nothing else to
    /// do (see [`crate::TokenSource::ready`]).
    #[cfg(feature = "proxy")]
    pub(crate) fn ready(&self, now: u64) -> Option<Token> {
        registry::touch(&self.used);
        self.source.ready(now)
    }

    /// Counts a request the hot path served with the token [`Self::ready`] gave.
    #[cfg(feature = "proxy")]
    pub(crate) fn served_from_memory(&self, now: u64) {
        self.source.served_from_memory(now);
    }

    /// Remembers the DPoP nonce an API's answer to `url` carried (RFC 9449 §9); whether it was
    /// a usable one.
    #[cfg(feature = "proxy")]
    pub(crate) fn remember_dpop_nonce(&self, url: &str, nonce: &str) -> bool {
        self.source.remember_dpop_nonce(url, nonce)
    }

    /// The token this client's source handed out lately under `authorization` (see
    /// [`TokenSource::handed_out`](crate::TokenSource::handed_out)).
    #[cfg(feature = "proxy")]
    pub(crate) fn handed_out(&self, authorization: &str) -> Option<Token> {
        self.source.handed_out(authorization)
    }

    /// An upstream accepted `token` (it answered below 400): a backoff of evictions ends (see
    /// [`TokenSource::accepted`](crate::TokenSource::accepted)).
    pub(crate) fn accepted(&self, token: &Token) {
        // Every answer of the full path comes here: no clock read unless it matters.
        if self.source.backing_off() {
            self.source
                .accepted(token, crate::edge::platform::js::now_secs());
        }
    }

    /// Whether evictions are backing off, so acceptances are worth reporting (see
    /// [`TokenSource::backing_off`](crate::TokenSource::backing_off)).
    #[cfg(feature = "proxy")]
    pub(crate) fn backing_off(&self) -> bool {
        self.source.backing_off()
    }

    /// The API's latest DPoP nonce for `url` that this isolate knows.
    #[cfg(feature = "proxy")]
    pub(crate) fn dpop_nonce(&self, url: &str) -> Option<String> {
        self.source.dpop_nonce(url)
    }

    pub(crate) async fn current(&self, ctx: Option<&Context>) -> Result<Token> {
        match ctx {
            Some(ctx) => self.token_with(ctx).await,
            None => self.token().await,
        }
    }

    /// A new request like `request` (method, URL, headers, body, redirect mode) with
    /// `Authorization: <scheme> <token>`, and for a DPoP token a fresh `DPoP` proof (with the
    /// API's latest nonce this isolate knows); the caller's own `Authorization` and `DPoP` are
    /// replaced. Who sends it sees the answer: nonce challenges and rejected tokens are theirs
    /// to handle. [`Self::fetch`] handles both.
    pub async fn sign(&self, request: Request) -> Result<Request> {
        let token = self.token().await?;
        self.sign_raw(&token, request.inner())
            .await
            .map(Request::from)
    }

    /// Signs `request` and sends it with the platform `fetch`, replaying it once with a fresh
    /// token when the upstream answers a status in `OAUTH_RETRY_STATUSES`, or with a DPoP nonce
    /// when the upstream asks for one (see [`Self::send`]).
    pub async fn fetch(&self, request: Request) -> Result<Response> {
        // `Clone::clone` copies the handle; the inherent `clone` would be JS `Request.clone()`.
        self.send(<web_sys::Request as Clone>::clone(request.inner()), None)
            .await
            .map(Response::from)
    }

    /// Like [`Self::fetch`], refreshing the token ahead of expiry under `ctx` (see
    /// [`Self::token_with`]). Prefer this in a fetch handler.
    pub async fn fetch_with(&self, request: Request, ctx: &Context) -> Result<Response> {
        self.send(
            <web_sys::Request as Clone>::clone(request.inner()),
            Some(ctx),
        )
        .await
        .map(Response::from)
    }

    /// Forgets `token` because an upstream rejected it (RFC 6750 §3.1); whether a new token is
    /// worth fetching (see [`TokenSource::invalidate`](crate::TokenSource::invalidate)).
    pub async fn invalidate(&self, token: &Token) -> bool {
        self.source
            .invalidate(token, crate::edge::platform::js::now_secs())
            .await
    }

    /// `new Request(req, { headers })`: the same request with our `Authorization` and, for a
    /// DPoP token, a new proof for it.
    pub(super) async fn sign_raw(
        &self,
        token: &Token,
        req: &web_sys::Request,
    ) -> Result<web_sys::Request> {
        let proof = match token.dpop_key() {
            Some(_) => self.proof_for(token, &req.method(), &req.url()).await?,
            None => None,
        };
        build_signed(token, req, proof.as_deref())
    }
}

fn build_signed(
    token: &Token,
    req: &web_sys::Request,
    proof: Option<&str>,
) -> Result<web_sys::Request> {
    let js = |e: wasm_bindgen::JsValue| Error::Other(crate::edge::platform::js::js_error_text(&e));
    let headers = web_sys::Headers::new_with_headers(&req.headers()).map_err(js)?;
    headers
        .set("authorization", token.authorization().expose())
        .map_err(js)?;
    // A caller's own proof is for its own token, never for ours.
    match proof {
        Some(p) => headers.set("dpop", p).map_err(js)?,
        None => headers.delete("dpop").map_err(js)?,
    }
    let init = web_sys::RequestInit::new();
    init.set_headers_headers(&headers);
    // Never follow a redirect with our token attached: the caller sees the 3xx instead.
    init.set_redirect(web_sys::RequestRedirect::Manual);
    web_sys::Request::new_with_request_and_init(req, &init).map_err(js)
}

/// Signs `request` with a Bearer `token`. Requests are immutable in Workers, so this builds a
/// new one. A DPoP token needs a new proof for every request: sign with [`TokenClient::sign`].
pub fn sign_with(token: &Token, request: Request) -> Result<Request> {
    if token.dpop_key().is_some() {
        return Err(Error::Other(
            "a DPoP token needs a proof per request: use TokenClient::sign or fetch".into(),
        ));
    }
    build_signed(token, request.inner(), None).map(Request::from)
}
