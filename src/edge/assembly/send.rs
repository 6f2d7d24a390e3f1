//! Sending a signed request and answering what comes back (RFC 6750 §3.1, RFC 9449 §9): the
//! copy kept to send it again, the one replay with a new token after the upstream rejected the
//! old one, and the one retry with the nonce a DPoP upstream asked for.

use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use worker::Context;

use crate::base::error::{Error, Result};
use crate::base::log;
use crate::edge::assembly::client::TokenClient;
use crate::edge::platform::fetch::global_fetch;
use crate::oauth::challenge::resource_wants_nonce;
use crate::oauth::challenge::{may_replay, token_rejected};
use crate::oauth::token::Token;
use crate::source::metric::Metric;

/// Largest request body kept (teed in memory) so the request can be replayed once after an
/// upstream rejects the token or asks for a DPoP nonce; larger or unknown-length bodies stream
/// without a copy and are not replayed.
pub const REPLAY_LIMIT_BYTES: u64 = 64 * 1024;

/// What went upstream, kept for its answer.
pub(crate) struct Sent {
    token: Token,
    /// The request's method, when a rejection may replay it (`OAUTH_RETRY_STATUSES` not off).
    method: Option<String>,
    /// For a DPoP request, its URL: where the answer's nonce belongs.
    url: Option<String>,
    /// A copy to send again (see [`TokenClient::spare_copy`]).
    spare: Option<web_sys::Request>,
}

impl TokenClient {
    /// Signs and sends `unsigned`. When the upstream answers a status in `OAUTH_RETRY_STATUSES`
    /// (default 401: the token was revoked or expired early), the token is evicted from memory
    /// and KV, one fresh token is fetched (shared with concurrent callers), and the request is
    /// replayed once if its body can be replayed: no body, or a `Content-Length` of at most
    /// [`REPLAY_LIMIT_BYTES`]. Otherwise, or if no new token can be had, the upstream's answer
    /// is returned untouched. With DPoP, a `401` asking for a nonce (RFC 9449 §9) is answered
    /// the same way: the request is sent once more, with the nonce, and the token is kept.
    /// Never more than one replay. With `ctx`, tokens are refreshed ahead.
    pub async fn send(
        &self,
        unsigned: web_sys::Request,
        ctx: Option<&Context>,
    ) -> Result<web_sys::Response> {
        let token = self.current(ctx).await?;
        let small = replayable(&unsigned);
        let spare = self.spare_copy(&unsigned, small)?;
        let signed = self.sign_raw(&token, &unsigned).await?;
        self.send_signed(token, signed, spare, ctx).await
    }

    /// What to keep of `request` to send it again after a rejected token or a nonce challenge:
    /// the same request when it has no body (nothing is consumed), a teed copy when its body is
    /// `small` (at most [`REPLAY_LIMIT_BYTES`]), nothing otherwise or with replays off.
    pub(crate) fn spare_copy(
        &self,
        request: &web_sys::Request,
        small: bool,
    ) -> Result<Option<web_sys::Request>> {
        if !self.replays_enabled() {
            return Ok(None);
        }
        if request.body().is_none() {
            // `Clone::clone` copies the handle; the inherent `clone` is JS `Request.clone()`.
            return Ok(Some(<web_sys::Request as Clone>::clone(request)));
        }
        if !small {
            return Ok(None);
        }
        // JS `Request.clone()`: tees the body so the spare can be sent later.
        let js =
            |e: wasm_bindgen::JsValue| Error::Other(crate::edge::platform::js::js_error_text(&e));
        request.clone().map(Some).map_err(js)
    }

    /// What `signed` (which carries `token`) leaves to know when its answer comes: the method
    /// (when a rejection may replay it) and, for DPoP, the URL its nonces belong to.
    pub(crate) fn sent(
        &self,
        token: Token,
        signed: &web_sys::Request,
        spare: Option<web_sys::Request>,
    ) -> Sent {
        // Read only when a replay may follow: this keeps the hot path (a status not in the
        // list) to one comparison after the fetch.
        let method = (!self.source.config().retry_statuses.is_empty()).then(|| signed.method());
        let url = token.dpop_key().map(|_| signed.url());
        Sent {
            token,
            method,
            url,
            spare,
        }
    }

    /// Sends `signed` (which carries `token`). On a DPoP nonce challenge, signs the `spare` copy
    /// again with the nonce and sends it once. On a status in `OAUTH_RETRY_STATUSES`, evicts the
    /// token and, when there is a spare and a new token, signs the spare with it and sends it once.
    pub(crate) async fn send_signed(
        &self,
        token: Token,
        signed: web_sys::Request,
        spare: Option<web_sys::Request>,
        ctx: Option<&Context>,
    ) -> Result<web_sys::Response> {
        let sent = self.sent(token, &signed, spare);
        let (resp, nonce_given) = self.send_noting(signed, sent.url.as_deref()).await?;
        self.answered(sent, resp, nonce_given, ctx).await
    }

    /// What to do with `resp`, the upstream's answer to what was `sent`: answer a DPoP nonce
    /// challenge (`nonce_given`: the answer carried a usable nonce), or evict a rejected token
    /// and send the spare once more (see [`Self::send_signed`]).
    pub(crate) async fn answered(
        &self,
        sent: Sent,
        resp: web_sys::Response,
        nonce_given: bool,
        ctx: Option<&Context>,
    ) -> Result<web_sys::Response> {
        let Sent {
            token,
            method,
            url,
            spare,
        } = sent;
        let retry_statuses = &self.source.config().retry_statuses;
        if resp.status() < 400 {
            self.accepted(&token);
        }
        // RFC 9449 §9: a 401 asking for a nonce is retried once with it, whether or not this
        // request used an older one (concurrent requests all get the challenge, and each needs
        // its retry). The server refused at authentication, so even a POST is safe to send
        // again, and the token is fine: it is not evicted.
        if nonce_given && resp.status() == 401 {
            let challenge = resp.headers().get("www-authenticate").ok().flatten();
            if resource_wants_nonce(401, challenge.as_deref()) {
                let Some(spare) = spare else {
                    crate::edge::platform::js::log_line(&log::cache_event(
                        "dpop_nonce_unanswered",
                        "upstream asked for a DPoP nonce; the body was not kept, so its 401 \
                         goes back; the next request carries the nonce",
                    ));
                    return Ok(resp);
                };
                crate::edge::platform::js::log_line(&log::cache_event(
                    "dpop_nonce",
                    "upstream asked for a DPoP nonce; sending the request again with it",
                ));
                if let Some(body) = resp.body() {
                    let _ = body.cancel();
                }
                let again = self.sign_raw(&token, &spare).await?;
                return Ok(self.send_noting(again, url.as_deref()).await?.0);
            }
        }
        if !retry_statuses.contains(&resp.status()) {
            return Ok(resp);
        }
        let challenge = resp.headers().get("www-authenticate").ok().flatten();
        if !token_rejected(resp.status(), challenge.as_deref(), retry_statuses) {
            return Ok(resp);
        }
        let worth_retrying = self.invalidate(&token).await;
        let replayable = method.is_some_and(|m| may_replay(&m, challenge.as_deref()));
        let Some(spare) = spare.filter(|_| worth_retrying && replayable) else {
            return Ok(resp);
        };
        let fresh = match self.current(ctx).await {
            Ok(fresh) if fresh.access_token() != token.access_token() => fresh,
            _ => return Ok(resp),
        };
        crate::edge::platform::js::log_line(&log::replay(resp.status()));
        self.replayed(resp.status());
        if let Some(body) = resp.body() {
            let _ = body.cancel();
        }
        let url = fresh.dpop_key().map(|_| spare.url());
        let again = self.sign_raw(&fresh, &spare).await?;
        Ok(self.send_noting(again, url.as_deref()).await?.0)
    }

    /// Sends `req`; for a DPoP request to `url`, remembers the nonce its answer carries (RFC 9449
    /// §9: any answer may announce the next one) and says whether there was a usable one.
    async fn send_noting(
        &self,
        req: web_sys::Request,
        url: Option<&str>,
    ) -> Result<(web_sys::Response, bool)> {
        let resp = send_raw(req).await?;
        let Some(url) = url else {
            return Ok((resp, false));
        };
        let nonce = resp.headers().get("dpop-nonce").ok().flatten();
        let usable = nonce.is_some_and(|n| self.source.remember_dpop_nonce(url, &n));
        Ok((resp, usable))
    }

    /// Counts a request sent again after its upstream answered `status` (a rejected token).
    fn replayed(&self, status: u16) {
        let now = crate::edge::platform::js::now_secs();
        self.source.record(Metric::Replay { status }, now);
    }
}

/// A request can be replayed when its body is absent or small enough to keep a copy of.
fn replayable(req: &web_sys::Request) -> bool {
    if req.body().is_none() {
        return true;
    }
    let len = req.headers().get("content-length").ok().flatten();
    len.and_then(|l| l.trim().parse::<u64>().ok())
        .is_some_and(|l| l <= REPLAY_LIMIT_BYTES)
}

async fn send_raw(req: web_sys::Request) -> Result<web_sys::Response> {
    let resp = JsFuture::from(global_fetch(&req))
        .await
        .map_err(|e| Error::Upstream(crate::edge::platform::js::js_error_text(&e)))?;
    resp.dyn_into()
        .map_err(|_| Error::Other("fetch returned a non-Response".into()))
}
