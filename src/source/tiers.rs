//! The token path below isolate memory, tier by tier: KV, the coordinator, the token endpoint
//! (see [`crate::source::acquire`]), each a function with one job; then what a flight leaves to write.
//! The token source ([`crate::source::token_source`]) calls [`acquire`] from its single flight.

use futures_util::future::join;

use crate::base::error::{Error, Result};
use crate::base::log::{self, Source};
use crate::config::client::{Config, Dpop};
use crate::oauth::holddown::{decode_hold, encode_hold, held_error, hold_secs, shared, HOLD_ENTRY};
use crate::oauth::token::Token;
use crate::oauth::transport::HttpClient;
use crate::source::acquire::arrived_too_late;
use crate::source::coordinator::{Answer, Ask};
use crate::source::runtime::{Clock, Runtime};
use crate::source::store::{
    decode_record, encode_record, TokenStore, Write, KV_MIN_TTL_SECS, TOKEN_ENTRY,
};
use crate::source::token_source::Inner;

/// Clears the in-flight slot if it still holds flight `generation`; the next miss starts anew.
pub(crate) fn end_flight<H, S, R: Runtime>(inner: &Inner<H, S, R>, generation: u64) {
    let mut slot = inner.flight.borrow_mut();
    if slot.as_ref().is_some_and(|f| f.generation == generation) {
        slot.take();
    }
}

/// Writes what a flight decided, after its waiters were released; failures are logged, never
/// fatal (the store is an optimisation).
pub(crate) async fn persist<H, S: TokenStore, R: Runtime>(
    inner: &Inner<H, S, R>,
    writes: Vec<Write>,
) {
    for write in writes {
        let (outcome, result) = match write {
            // The answer went out before this write: an upstream may have rejected the token
            // meanwhile, and `invalidate` found nothing in KV to delete. So a token rejected
            // before or while it was written is not left behind for other isolates.
            Write::Token(token, _) if is_revoked(inner, &token) => continue,
            Write::Token(token, ttl) => {
                let written = inner
                    .store
                    .put(TOKEN_ENTRY, encode_record(&token), ttl)
                    .await;
                if written.is_ok() && is_revoked(inner, &token) {
                    // Only while the entry still holds it: a newer token may be there by now.
                    let margin = inner.config.expiry_margin_secs;
                    let still = match inner.store.get(TOKEN_ENTRY).await {
                        Ok(Some(raw)) => decode_record(&raw, margin)
                            .is_some_and(|t| t.access_token() == token.access_token()),
                        _ => false,
                    };
                    if still {
                        ("delete_error", inner.store.delete(TOKEN_ENTRY).await)
                    } else {
                        continue;
                    }
                } else {
                    ("write_error", written)
                }
            }
            Write::Put(name, value, ttl) => {
                ("write_error", inner.store.put(name, value, ttl).await)
            }
            Write::Delete(name) => ("delete_error", inner.store.delete(name).await),
        };
        if let Err(e) = result {
            (inner.log)(&log::cache_event(outcome, &e));
        }
    }
}

/// Takes `token` into memory, and remembers how new it is.
pub(crate) fn adopt<H, S, R: Runtime>(inner: &Inner<H, S, R>, token: Token) {
    let mut newest = inner.newest.borrow_mut();
    if newest
        .as_ref()
        .is_none_or(|(at, _)| token.issued_at() >= *at)
    {
        *newest = Some((token.issued_at(), token.access_token().clone()));
    }
    drop(newest);
    *inner.memory.borrow_mut() = Some(token);
}

/// While a hold-down lasts: the still-valid token if there is one, else the held error.
pub(crate) fn held_answer<H, S, R: Runtime>(
    inner: &Inner<H, S, R>,
    now: u64,
) -> Option<Result<Token>> {
    let held = inner.held.borrow();
    let (until, err) = held.as_ref().filter(|(until, _)| now < *until)?;
    Some(usable(inner, now).ok_or_else(|| held_error(err, *until, now)))
}

/// The token in memory if it still has [`crate::oauth::token::MIN_REMAINING_SECS`] to live (it may be
/// past its margin): the request that uses it still has to travel.
pub(crate) fn usable<H, S, R: Runtime>(inner: &Inner<H, S, R>, now: u64) -> Option<Token> {
    inner
        .memory
        .borrow()
        .as_ref()
        .filter(|t| t.usable_at(now))
        .cloned()
}

/// Whether a cached token suits the configuration: DPoP-bound exactly when DPoP is on, and to
/// the configured key when there is one (the cache key says so too; this guards a stale entry).
pub(crate) fn fits(config: &Config, t: &Token) -> bool {
    match (&config.dpop, t.dpop_key()) {
        (Dpop::Off, None) | (Dpop::GeneratedKey, Some(_)) => true,
        (Dpop::Key(want), Some(have)) => want == have,
        _ => false,
    }
}

/// Whether `t` is older than the newest token this source has held (see `Inner::newest`).
pub(crate) fn is_older<H, S, R: Runtime>(inner: &Inner<H, S, R>, t: &Token) -> bool {
    inner.newest.borrow().as_ref().is_some_and(|(at, token)| {
        t.issued_at() < *at || (t.issued_at() == *at && t.access_token() != token)
    })
}

pub(crate) fn is_revoked<H, S, R: Runtime>(inner: &Inner<H, S, R>, t: &Token) -> bool {
    inner
        .revoked
        .borrow()
        .as_ref()
        .is_some_and(|r| r.access_token() == t.access_token())
}

/// True unless a newer flight has replaced flight `generation` (presumed dead, it may yet
/// finish): a replaced flight answers its own waiters but leaves memory and KV to the newer one.
pub(crate) fn is_current<H, S, R: Runtime>(inner: &Inner<H, S, R>, generation: u64) -> bool {
    inner
        .flight
        .borrow()
        .as_ref()
        .is_none_or(|f| f.generation == generation)
}

/// Gets a token: from KV when a usable one is there, else from the token endpoint. A background
/// refresh (`refresh`) takes a KV token only if it is not itself due for refresh. Whatever it
/// returns has [`crate::oauth::token::MIN_REMAINING_SECS`] left when the answer is ready. Store
/// writes it decides on go to `writes`, for after its waiters have the answer.
pub(crate) async fn acquire<H: HttpClient, S: TokenStore, R: Runtime>(
    inner: &Inner<H, S, R>,
    now: u64,
    refresh: bool,
    generation: u64,
    writes: &mut Vec<Write>,
) -> Result<Token> {
    let clock = Clock::new(&inner.runtime, now);
    if let Some(answer) = from_kv(inner, &clock, refresh).await {
        return answer;
    }
    if let Some(answer) = ask_coordinator(inner, &clock, refresh, generation).await {
        return answer;
    }

    let result = inner
        .acquirer
        .token(&inner.runtime, &inner.log, &clock, &inner.store, writes)
        .await;
    let done = clock.now();
    if !is_current(inner, generation) {
        // Replaced: answer its own waiters, as any flight would (a capped `Retry-After`).
        return match result {
            Ok(t) if t.usable_at(done) => Ok(t),
            Ok(late) => Err(arrived_too_late(&late, done, clock.elapsed_ms())),
            Err(e) => match hold_secs(&e, inner.config.holddown_secs) {
                0 => Err(e),
                secs => Err(held_error(&e, done + secs, done)),
            },
        };
    }
    match result {
        Ok(token) if token.usable_at(done) => {
            inner.held.borrow_mut().take();
            adopt(inner, token.clone());
            let ttl = token.fresh_until().saturating_sub(done);
            if ttl >= KV_MIN_TTL_SECS {
                writes.push(Write::Token(token.clone(), ttl));
            }
            Ok(token)
        }
        Ok(late) => {
            let err = arrived_too_late(&late, done, clock.elapsed_ms());
            (inner.log)(&log::token_error(None, Some(clock.elapsed_ms()), &err));
            fail(inner, err, done, writes)
        }
        Err(err) => fail(inner, err, done, writes),
    }
}

/// The KV tier: a fresh token from KV (not one due for refresh, on a refresh), or the hold-down
/// another isolate shared; `None` to go on. A KV token past its margin but still usable is kept
/// in memory for the case the endpoint fails.
async fn from_kv<H, S: TokenStore, R: Runtime>(
    inner: &Inner<H, S, R>,
    clock: &Clock<'_, R>,
    refresh: bool,
) -> Option<Result<Token>> {
    let (token_entry, hold_entry) =
        join(inner.store.get(TOKEN_ENTRY), inner.store.get(HOLD_ENTRY)).await;
    // The reads may have taken a while: judge what they found at the time they found it.
    let read_at = clock.now();
    match token_entry {
        Ok(Some(raw)) => match decode_record(&raw, inner.config.expiry_margin_secs) {
            Some(t) if is_revoked(inner, &t) || !fits(&inner.config, &t) => {}
            Some(t) if is_older(inner, &t) => {
                (inner.log)(&log::cache_event(
                    "older_record",
                    "KV holds an older token than this isolate has seen; ignoring it",
                ));
            }
            Some(t) if t.is_fresh(read_at) && !(refresh && t.refresh_due(read_at)) => {
                (inner.log)(&log::token_ok(
                    Source::Kv,
                    None,
                    None,
                    t.expires_at().saturating_sub(read_at),
                ));
                adopt(inner, t.clone());
                return Some(Ok(t));
            }
            // Past its margin but not expired: better than nothing if the endpoint fails.
            Some(t) if t.usable_at(read_at) && usable(inner, read_at).is_none() => {
                adopt(inner, t);
            }
            Some(_) => {}
            None => (inner.log)(&log::cache_event(
                "corrupt",
                "cached value unreadable; refetching",
            )),
        },
        Ok(None) => {}
        Err(e) => (inner.log)(&log::cache_event("read_error", &e)),
    }
    match hold_entry {
        Ok(Some(raw)) => {
            if let Some((until, err)) = decode_hold(&raw).filter(|(until, _)| read_at < *until) {
                (inner.log)(&log::cache_event(
                    "hold",
                    "another isolate holds the token endpoint down",
                ));
                *inner.held.borrow_mut() = Some((until, err));
                return held_answer(inner, read_at);
            }
        }
        Ok(None) => {}
        Err(e) => (inner.log)(&log::cache_event("read_error", &e)),
    }

    None
}

/// The coordinator tier: its answer, or `None` to go on to the token endpoint (no coordinator,
/// or one that failed: logged, never fatal).
async fn ask_coordinator<H, S, R: Runtime>(
    inner: &Inner<H, S, R>,
    clock: &Clock<'_, R>,
    refresh: bool,
    generation: u64,
) -> Option<Result<Token>> {
    let coordinator = inner.coordinator.borrow().clone()?;
    let ask = Ask {
        refresh,
        have: inner.memory.borrow().as_ref().map(Token::issued_at),
        rejected: inner
            .revoked
            .borrow()
            .as_ref()
            .map(|t| (t.issued_at(), t.expires_at())),
    };
    let answer = coordinator.ask(ask).await;
    let at = clock.now();
    match answer {
        // A token this isolate saw rejected comes back only when the coordinator's eviction
        // hold-down keeps it (an upstream that rejects every token): used, as without one.
        Ok(Answer::Token(t)) if t.usable_at(at) && fits(&inner.config, &t) => {
            (inner.log)(&log::token_ok(
                Source::Coordinator,
                None,
                None,
                t.expires_at().saturating_sub(at),
            ));
            if is_current(inner, generation) {
                inner.held.borrow_mut().take();
                adopt(inner, t.clone());
            }
            Some(Ok(t))
        }
        Ok(Answer::Token(_)) => {
            (inner.log)(&log::cache_event(
                "coordinator_fallback",
                "the coordinator's token is expired, rejected or for another key",
            ));
            None
        }
        Ok(Answer::Held { error: err, until }) if at < until => {
            // The coordinator shared the hold in KV already; this isolate keeps it in memory.
            *inner.held.borrow_mut() = Some((until, err));
            held_answer(inner, at)
        }
        Ok(Answer::Held { .. }) => None,
        Err(reason) => {
            (inner.log)(&log::cache_event("coordinator_fallback", &reason));
            None
        }
    }
}

/// A failed token request at `done`: holds the endpoint down as the error calls for, and
/// answers with a token still usable if there is one.
fn fail<H, S, R: Runtime>(
    inner: &Inner<H, S, R>,
    err: Error,
    done: u64,
    writes: &mut Vec<Write>,
) -> Result<Token> {
    let secs = hold_secs(&err, inner.config.holddown_secs);
    let mut shown = err.clone();
    if secs > 0 {
        let until = done + secs;
        let server_said = shared(&err);
        if let Some(record) = encode_hold(until, &err).filter(|_| server_said) {
            writes.push(Write::Put(HOLD_ENTRY, record, secs.max(KV_MIN_TTL_SECS)));
        }
        // Callers see the hold as it is (a server's `Retry-After` capped), from the first one.
        shown = held_error(&err, until, done);
        *inner.held.borrow_mut() = Some((until, err));
    }
    match usable(inner, done) {
        Some(stale) => {
            (inner.log)(&log::token_stale(stale.expires_at().saturating_sub(done)));
            Ok(stale)
        }
        None => Err(shown),
    }
}
