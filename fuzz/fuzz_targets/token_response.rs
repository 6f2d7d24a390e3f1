//! Any status and body from a token endpoint: never a panic; a token that comes out is always
//! safe in a header and lives at least the minimum lifetime; no error text carries the secret.
#![no_main]

use libfuzzer_sys::fuzz_target;
use worker_m2m::fuzzing::{parse_token_response, Redactor, MIN_LIFETIME_SECS};
use worker_m2m::HttpResponse;

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let status = u16::from_le_bytes([data[0], data[1]]) % 600;
    let margin = u64::from(data[2]);
    let resp = HttpResponse {
        status,
        headers: vec![("retry-after".into(), String::from_utf8_lossy(&data[3..data.len().min(8)]).into_owned())],
        body: data[3..].to_vec(),
        elapsed_ms: 0,
    };
    let now = 1_700_000_000;
    let mut redactor = Redactor::default();
    redactor.add_signed("eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJjIn0.fuzz-signature-0123456789");
    match parse_token_response(&resp, now, margin, &redactor) {
        Ok(token) => {
            assert!((200..300).contains(&status));
            assert!(token.access_token().expose().bytes().all(|b| b.is_ascii_graphic()));
            assert!(token.expires_at() >= now + MIN_LIFETIME_SECS);
            assert!(token.fresh_until() <= token.expires_at());
        }
        Err(e) => {
            let shown = format!("{} {} {}", e.http_status(), e.code(), e);
            assert!(!shown.contains("fuzz-signature-0123456789"), "{shown}");
        }
    }
});
