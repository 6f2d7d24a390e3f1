//! What an upstream's verdict on a token does to its source: a rejection (RFC 6750 §3.1)
//! evicts it, at most once per eviction window ([`crate::source::evictions`]); an acceptance
//! ends a backoff of that window. The rest of the source is [`crate::source::token_source`].

use crate::base::log;
use crate::oauth::token::Token;
use crate::oauth::transport::HttpClient;
use crate::source::driver::entry_holds;
use crate::source::metric::Metric;
use crate::source::records::TOKEN_ENTRY;
use crate::source::runtime::Runtime;
use crate::source::store::TokenStore;
use crate::source::token_source::TokenSource;

impl<H: HttpClient + 'static, S: TokenStore + 'static, R: Runtime + 'static> TokenSource<H, S, R> {
    /// The upstream rejected `used` at `now` (RFC 6750 §3.1 `invalid_token`, e.g. a revoked
    /// token): forget it in memory and KV so the next [`TokenSource::token`] fetches a new one.
    ///
    /// Returns whether a new token is worth fetching. Only the first of many concurrent
    /// rejections of the same token evicts anything, and evictions happen at most once per
    /// eviction window, at most [`EVICTIONS_PER_HOUR`](crate::EVICTIONS_PER_HOUR) an hour. The window starts at
    /// [`EVICT_WINDOW_MIN_SECS`](crate::EVICT_WINDOW_MIN_SECS): a replacement that a lagging
    /// upstream rejects too is evicted again within seconds. It doubles, up to
    /// [`EVICT_WINDOW_MAX_SECS`](crate::EVICT_WINDOW_MAX_SECS), while each new token is
    /// rejected again: an upstream that rejects every token (wrong audience, its own outage)
    /// costs about one token an hour, not one per request. Within the window the upstream's
    /// answer is passed through. (`OAUTH_HOLDDOWN_SECS` is the token endpoint's, not this.)
    pub async fn invalidate(&self, used: &Token, now: u64) -> bool {
        let inner = &self.inner;
        let log = &inner.ports.log;
        let window = {
            let mut state = inner.state.borrow_mut();
            if !state.memory.holds(used) {
                // Another caller already evicted it, or a refresh replaced it: a newer token is
                // there or on its way.
                return state.memory.fresh(now).is_some() || state.memory.is_revoked(used);
            }
            if state.evictions.too_soon(now) {
                let window_secs = state.evictions.window();
                let skipped = Metric::Eviction {
                    skipped: true,
                    window_secs,
                };
                inner.report.event(skipped, now);
                log(&log::cache_event(
                    "evict_skipped",
                    "upstream rejected a fresh token again; passing its answer through",
                ));
                return false;
            }
            state.evictions.evict(now, used.issued_at());
            state.memory.evict(used);
            state.evictions.window()
        };
        let evicted = Metric::Eviction {
            skipped: false,
            window_secs: window,
        };
        inner.report.event(evicted, now);
        log(&log::cache_event(
            "evicted",
            "upstream rejected the token; fetching a new one",
        ));
        // With a coordinator, it is the only writer of KV: it hears of the rejection in the next
        // ask. Without one, delete the KV copy only if it is still the rejected token.
        if inner.ports.coordinator.borrow().is_some() {
            return true;
        }
        let store = &inner.ports.store;
        let config = inner.config.borrow().clone();
        if entry_holds(&config, store, used).await {
            if let Err(e) = store.delete(TOKEN_ENTRY).await {
                log(&log::cache_event("delete_error", &e));
            }
        }
        true
    }

    /// An upstream accepted `used` at `now` (any answer but a rejection, RFC 6750 §3.1): when
    /// `used` is the token held, the eviction window goes back to
    /// [`EVICT_WINDOW_MIN_SECS`](crate::EVICT_WINDOW_MIN_SECS), so a later revocation is acted
    /// on at once. Cheap (a flag, then one comparison of tokens): a caller reports every answer
    /// while [`Self::backing_off`], and need not report any otherwise.
    pub fn accepted(&self, used: &Token, now: u64) {
        let mut state = self.inner.state.borrow_mut();
        if !state.evictions.backing_off() || !state.memory.holds(used) {
            return;
        }
        if state.evictions.accepted(now) {
            drop(state);
            (self.inner.ports.log)(&log::cache_event(
                "evict_backoff_reset",
                "upstream accepted the token; rejections evict again without waiting",
            ));
        }
    }

    /// Whether evictions are backing off: the eviction window is above
    /// [`EVICT_WINDOW_MIN_SECS`](crate::EVICT_WINDOW_MIN_SECS) because tokens were rejected
    /// again soon after they were minted. Only then is an acceptance worth reporting
    /// ([`Self::accepted`]).
    pub fn backing_off(&self) -> bool {
        self.inner.state.borrow().evictions.backing_off()
    }
}
