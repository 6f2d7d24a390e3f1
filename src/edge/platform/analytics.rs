//! Workers Analytics Engine: each [`Metric`] as one data point in the `M2M_METRICS` dataset,
//! indexed by profile. Writes are not awaited (the platform sends them after the response);
//! a write the platform refuses is dropped, said once per isolate in the log.

use std::rc::Rc;

use wasm_bindgen::prelude::*;
use worker::Env;

use crate::base::log;
use crate::edge::platform::bindings::METRICS_BINDING;
use crate::source::metric::{Metric, MetricSink, Place};

/// The index of the unprefixed configuration's points: not a valid profile name, so never one.
pub(crate) const UNPREFIXED_INDEX: &str = "(default)";

#[wasm_bindgen(inline_js = r#"
export function write_point(ds, index, kind, detail, place, held, count, latency, status, secs) {
  try {
    ds.writeDataPoint({
      indexes: [index],
      blobs: [kind, detail, place, held],
      doubles: [count, latency, status, secs],
    });
    return true;
  } catch (e) {
    return false;
  }
}
"#)]
extern "C" {
    /// One `writeDataPoint` call; false when the platform refused it (a limit).
    #[allow(clippy::too_many_arguments)]
    fn write_point(
        ds: &JsValue,
        index: &str,
        kind: &str,
        detail: &str,
        place: &str,
        held: &str,
        count: f64,
        latency: f64,
        status: f64,
        secs: f64,
    ) -> bool;
}

/// A sink writing to the `M2M_METRICS` dataset bound on `env`, for `profile`'s source at
/// `place`; `None` without the binding (metrics are then only counted, for the status view).
pub(crate) fn sink(env: &Env, profile: Option<&str>, place: Place) -> Option<MetricSink> {
    let dataset = js_sys::Reflect::get(env, &METRICS_BINDING.into()).ok()?;
    if !dataset.is_object() {
        return None;
    }
    let index = profile.unwrap_or(UNPREFIXED_INDEX).to_owned();
    Some(Rc::new(move |metric: &Metric| {
        let p = metric.point();
        let written = write_point(
            &dataset,
            &index,
            p.kind,
            p.detail,
            place.as_str(),
            p.held,
            p.count,
            p.latency_ms,
            p.status,
            p.secs,
        );
        if !written && !crate::edge::isolate::with(|i| i.said_metrics_refused.replace(true)) {
            crate::edge::platform::js::log_line(&log::cache_event(
                "metrics_refused",
                "the M2M_METRICS dataset refused a data point; metrics are incomplete",
            ));
        }
    }))
}
