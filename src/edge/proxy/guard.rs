//! The proxy's door for callers who must show `PROXY_SHARED_SECRET`: the check itself (SHA-256
//! digests compared in constant time), and what a request that could not be routed answers to a
//! caller who showed no secret (the same 401 everywhere, so nothing about the profiles or their
//! settings is told before the secret is shown).

use worker::Env;

use crate::base::error::Error;
use crate::base::log;
use crate::base::secret::SharedSecret;
use crate::edge::isolate;
use crate::edge::platform::crypto::sha256;
use crate::edge::platform::env::env_string;
use crate::proxy::admission::{constant_time_eq, presented_proxy_secret};
use crate::proxy::config::ProxyConfig;
use crate::settings::profile::{Profile, PROFILES_SETTING};
use crate::settings::secrets::binding_in;

/// Refuses a caller without the proxy's `PROXY_SHARED_SECRET`, when it has one.
pub(crate) async fn check_shared_secret(
    proxy: &ProxyConfig,
    presented: Option<&str>,
) -> Result<(), Error> {
    match &proxy.shared_secret {
        Some(secret) if !presents(secret, presented).await => Err(unauthorized()),
        _ => Ok(()),
    }
}

/// Whether the caller's `Proxy-Authorization` carries `secret`. Digests first: equal lengths,
/// so the comparison time says nothing about the secret. The configured secret's digest is made
/// once per isolate, the caller's per request.
async fn presents(secret: &SharedSecret, presented: Option<&str>) -> bool {
    // Nothing presented never matches, whatever the configured value (an empty one is refused
    // when read, but this must not depend on that).
    let Some(presented) = presented_proxy_secret(presented).filter(|p| !p.is_empty()) else {
        return false;
    };
    let (want, got) = (
        shared_secret_digest(secret).await,
        sha256(presented.as_bytes()).await,
    );
    matches!((want, got), (Ok(w), Ok(g)) if constant_time_eq(&w, &g))
}

fn unauthorized() -> Error {
    Error::rejected(
        401,
        "unauthorized",
        "this proxy requires Proxy-Authorization: Bearer <PROXY_SHARED_SECRET>",
    )
}

/// What a request that could not be routed or configured answers. When the Worker has any
/// `PROXY_SHARED_SECRET` (its own or a profile's) and the caller presents none of them, the same
/// 401 as everywhere else: an unauthenticated client must not tell a known profile from an
/// unknown one, nor read a broken profile's setting names.
pub(crate) async fn unrouted(env: &Env, err: Error, presented: Option<&str>) -> Error {
    let mut names = vec!["PROXY_SHARED_SECRET".to_owned()];
    // Read leniently: a broken `M2M_PROFILES` is itself one of the errors to hide.
    let listed = env_string(env, PROFILES_SETTING).unwrap_or_default();
    for profile in listed
        .split(',')
        .filter_map(|n| Profile::new(n.trim()).ok())
    {
        names.push(format!("{}PROXY_SHARED_SECRET", profile.prefix()));
    }
    // A secret named in the Secrets Store counts by its value (as this isolate last read it);
    // one that cannot be read cannot be presented either.
    let mut configured = false;
    let mut secrets = Vec::new();
    for name in &names {
        let Some(raw) = env_string(env, name) else {
            continue;
        };
        configured = true;
        match binding_in(name, &raw) {
            Ok(None) => secrets.push(raw),
            Ok(Some(binding)) => {
                secrets.extend(crate::edge::platform::secrets::cached(&binding).ok())
            }
            Err(_) => {}
        }
    }
    if !configured {
        return err;
    }
    // The Worker's own shared secret, broken (blank, short, empty in the store): every path
    // would answer this same error, so it tells no profile apart, and the operator sees it.
    if matches!(&err, Error::Config { setting, .. } if setting == "PROXY_SHARED_SECRET") {
        return err;
    }
    for secret in secrets {
        if presents(&SharedSecret::new(secret), presented).await {
            return err;
        }
    }
    // Hidden from the caller, not from the operator.
    if let Error::Config { .. } = &err {
        crate::edge::platform::js::log_line(&log::proxy_error(err.http_status(), &err));
    }
    unauthorized()
}

/// SHA-256 of a `PROXY_SHARED_SECRET`, computed once per isolate (per secret value).
async fn shared_secret_digest(secret: &SharedSecret) -> Result<Vec<u8>, String> {
    let cached = isolate::with(|i| {
        let digests = i.secret_digests.borrow();
        digests.find(|s| s.same_as(secret)).cloned()
    });
    if let Some(digest) = cached {
        return Ok(digest);
    }
    let digest = sha256(secret.expose().as_bytes()).await?;
    isolate::with(|i| {
        let mut digests = i.secret_digests.borrow_mut();
        digests.insert(secret.clone(), digest.clone());
    });
    Ok(digest)
}
