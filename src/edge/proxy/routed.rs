//! Where a proxied request goes, from what the JavaScript entry read of it (`[path, pinned]`,
//! see `scripts/intake.mjs`): the configurations, the profile, the path and query for the
//! upstream; and, on the way back, a redirect kept inside that route (see
//! [`crate::proxy::redirect`]).

use std::rc::Rc;

use wasm_bindgen::JsValue;
use worker::Env;

use crate::base::error::Error;
use crate::edge::assembly::profiles::configs;
use crate::edge::isolate::Configs;
use crate::proxy::config::ProxyConfig;
use crate::proxy::redirect::{relocate, Relocation};
use crate::proxy::route::{route_asked, unknown_profile, Asked};

/// The header a cross-origin `Location` is moved to (see [`crate::proxy::redirect`]).
const UPSTREAM_LOCATION: &str = "x-upstream-location";

/// What the entry recorded for one request, `[path, pinned]`: `url.pathname + url.search` of
/// its http(s) URL (the entry's one parse) and its caller's pin, decoded once.
pub(crate) struct Intake {
    path: String,
    pinned: Option<String>,
}

impl Intake {
    /// Decodes the entry's record; `None` when it is not one (no string path).
    pub(crate) fn from_js(record: &js_sys::Array) -> Option<Self> {
        Some(Self {
            path: record.get(0).as_string()?,
            pinned: record.get(1).as_string(),
        })
    }

    /// What the caller asked for, as the pure routing takes it.
    pub(crate) fn asked(&self) -> Asked<'_> {
        Asked {
            path_and_query: &self.path,
            pinned: self.pinned.as_deref(),
        }
    }
}

/// Where a request goes: the Worker's configurations, the profile (pinned by the caller's
/// binding, or named by the first path segment with `M2M_PROFILES`), and the path and query to
/// send upstream.
pub(crate) struct Route<'u> {
    pub(crate) configs: Rc<Configs>,
    pub(crate) profile: Option<&'u str>,
    pub(crate) path_and_query: &'u str,
    /// Whether the profile came from the path (see [`Self::profile_segment`]).
    by_path: bool,
}

impl Route<'_> {
    /// The proxy settings of the routed profile.
    pub(crate) fn proxy(&self, env: &Env) -> Result<Rc<ProxyConfig>, Error> {
        self.configs.proxy(env, self.profile)
    }

    /// The profile as a path segment names it, when that is how this request chose it: what a
    /// redirect within the upstream must name again to come back to the same profile.
    pub(crate) fn profile_segment(&self) -> Option<&str> {
        self.profile.filter(|_| self.by_path)
    }
}

/// Routes what a caller `asked` (see [`route_asked`]): pinned, to its pin; with profiles, to
/// the one the first path segment names. A profile that is not configured is a 404 that costs
/// no token (a configuration error for a pin, which the caller's deployer chose).
pub(crate) fn route<'u>(env: &Env, asked: Asked<'u>) -> Result<Route<'u>, Error> {
    let configs = configs(env)?;
    let routed = route_asked(asked, configs.profiled())?;
    if let Some(profile) = routed.profile {
        if !configs.has(profile) {
            return Err(match asked.pinned {
                Some(_) => Error::config(
                    "props.profile",
                    "the caller's binding pins a profile that M2M_PROFILES does not list",
                ),
                None => unknown_profile(),
            });
        }
    }
    Ok(Route {
        configs,
        profile: routed.profile,
        path_and_query: routed.path_and_query,
        by_path: routed.by_path,
    })
}

/// `resp` with its `Location` made safe to follow through the caller's binding (see
/// [`crate::proxy::redirect`]): a redirect within the upstream stays in the profile, one
/// elsewhere comes back as `X-Upstream-Location` only. Anything but a redirect, untouched. An
/// error (the response could not be rebuilt) is to be answered instead: never the upstream's
/// `Location` unchecked.
pub(crate) fn relocated(
    resp: web_sys::Response,
    target: &str,
    profile_segment: Option<&str>,
) -> Result<web_sys::Response, Error> {
    if !(300..400).contains(&resp.status()) {
        return Ok(resp);
    }
    let Some(location) = resp.headers().get("location").ok().flatten() else {
        return Ok(resp);
    };
    let rebuilt = || -> Result<web_sys::Response, JsValue> {
        // A fetched response's headers are immutable: a new response around the same body.
        let headers = web_sys::Headers::new_with_headers(&resp.headers())?;
        match relocate(&location, target, profile_segment) {
            Relocation::Location(path) => headers.set("location", &path)?,
            Relocation::Moved => {
                headers.delete("location")?;
                headers.set(UPSTREAM_LOCATION, &location)?;
            }
        }
        let init = web_sys::ResponseInit::new();
        init.set_status(resp.status());
        init.set_status_text(&resp.status_text());
        init.set_headers(&headers);
        web_sys::Response::new_with_opt_readable_stream_and_init(resp.body().as_ref(), &init)
    };
    rebuilt().map_err(|e| {
        Error::Upstream(format!(
            "upstream redirect could not be rewritten: {}",
            crate::edge::platform::js::js_error_text(&e)
        ))
    })
}
