//! Small JavaScript helpers every adapter uses: the clock, the console, a JS error as text.

/// Unix seconds now, from `Date.now()` (`SystemTime::now()` panics on wasm32-unknown-unknown).
pub(crate) fn now_secs() -> u64 {
    (js_sys::Date::now() / 1000.0) as u64
}

/// Prints one log line with `console.log`, which Workers Logs and `wrangler tail` collect.
pub(crate) fn log_line(line: &str) {
    web_sys::console::log_1(&line.into());
}

/// The log sink of a source for `config`: its lines name the profile, when there is one.
pub(crate) fn log_sink(config: &crate::config::client::Config) -> crate::source::runtime::LogSink {
    match &config.profile {
        Some(p) => {
            let name = p.name().to_owned();
            std::rc::Rc::new(move |line: &str| log_line(&crate::base::log::tagged(line, &name)))
        }
        None => std::rc::Rc::new(log_line),
    }
}

/// A JS exception as text, for error messages. Platform errors carry no secrets of ours: request
/// headers and bodies are never part of a `TypeError` from `fetch` or KV.
pub(crate) fn js_error_text(e: &wasm_bindgen::JsValue) -> String {
    use wasm_bindgen::JsCast;
    if let Some(err) = e.dyn_ref::<js_sys::Error>() {
        return String::from(err.message());
    }
    e.as_string()
        .unwrap_or_else(|| "unknown JavaScript error".into())
}

/// Lets a Worker's handler use `?` on this crate's results: the error's text (which names
/// settings and fields, never a secret) becomes a `worker::Error::RustError`.
impl From<crate::Error> for worker::Error {
    fn from(err: crate::Error) -> Self {
        worker::Error::RustError(err.to_string())
    }
}

/// Awaits a promise-returning platform call (which may also throw at once), with either
/// failure as text (see [`js_error_text`]).
pub(crate) async fn settle(
    promise: Result<js_sys::Promise, wasm_bindgen::JsValue>,
) -> Result<wasm_bindgen::JsValue, String> {
    let text = |e: wasm_bindgen::JsValue| js_error_text(&e);
    wasm_bindgen_futures::JsFuture::from(promise.map_err(text)?)
        .await
        .map_err(text)
}
