//! WebCrypto, native in workerd and Node: smaller and faster than a Rust crypto crate in wasm.

use js_sys::{ArrayBuffer, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(thread_local_v2, js_namespace = crypto, js_name = subtle)]
    static SUBTLE: web_sys::SubtleCrypto;
}

/// SHA-256 (FIPS 180-4) of `data`.
pub async fn sha256(data: &[u8]) -> Result<Vec<u8>, String> {
    let promise = SUBTLE
        .with(|s| s.digest_with_str_and_u8_array("SHA-256", data))
        .map_err(|e| super::js_error_text(&e))?;
    let buf = JsFuture::from(promise)
        .await
        .map_err(|e| super::js_error_text(&e))?;
    Ok(Uint8Array::new(&buf.unchecked_into::<ArrayBuffer>()).to_vec())
}
