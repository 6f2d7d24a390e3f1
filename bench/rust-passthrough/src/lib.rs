//! A bare pass-through Worker in Rust: the floor for any Rust Worker that proxies a request.

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use worker::{event, Context, Env, Result};

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = fetch)]
    fn global_fetch(request: &web_sys::Request) -> js_sys::Promise;
}

#[event(fetch)]
async fn fetch(req: web_sys::Request, env: Env, _ctx: Context) -> Result<web_sys::Response> {
    let origin = env.var("UPSTREAM_ORIGIN")?.to_string();
    let url = req.url();
    let after_scheme = url.split_once("://").map_or("", |(_, r)| r);
    let path = after_scheme.find('/').map_or("/", |i| &after_scheme[i..]);
    let init = web_sys::RequestInit::new();
    init.set_method(&req.method());
    init.set_headers_headers(&req.headers());
    init.set_body_opt_readable_stream(req.body().as_ref());
    init.set_redirect(web_sys::RequestRedirect::Manual);
    let out = web_sys::Request::new_with_str_and_init(&format!("{origin}{path}"), &init)?;
    Ok(JsFuture::from(global_fetch(&out)).await?.unchecked_into())
}
