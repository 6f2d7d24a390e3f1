//! The one HTTP trait the core needs, over plain data.
//!
//! No `Send` bound: JS futures are `!Send`, and a Worker isolate is single-threaded.
//! A test double is any closure `Fn(&HttpRequest) -> Result<HttpResponse, TransportError>`.

use std::fmt;
use std::future::Future;

/// Largest token-endpoint response body read, in bytes. Token responses are a few KB at most;
/// a larger body is refused rather than buffered.
pub(crate) const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

/// An HTTP request as plain data.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Method, e.g. `POST`.
    pub method: &'static str,
    /// Absolute URL.
    pub url: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
    /// The exchange, body included, is abandoned after this many milliseconds.
    pub timeout_ms: u64,
}

impl fmt::Debug for HttpRequest {
    // Headers and body carry client credentials; only the target is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// An HTTP response as plain data.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    /// Body bytes, at most `MAX_TOKEN_RESPONSE_BYTES` (64 KiB) + 1 (the extra byte tells "too large").
    pub body: Vec<u8>,
    /// How long the exchange took, measured by the transport, for logs.
    pub elapsed_ms: u64,
}

impl fmt::Debug for HttpResponse {
    // The body carries an access token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpResponse")
            .field("status", &self.status)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl HttpResponse {
    /// The first value of a header, by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The exchange failed before a response arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportError {
    /// What happened, e.g. `timed out after 1500 ms`.
    pub reason: String,
    /// How long it took to fail.
    pub elapsed_ms: u64,
}

/// Sends one HTTP request.
pub trait HttpClient {
    /// Sends `request` and reads the response body (capped at `MAX_TOKEN_RESPONSE_BYTES` (64 KiB) + 1).
    fn execute(
        &self,
        request: HttpRequest,
    ) -> impl Future<Output = Result<HttpResponse, TransportError>>;
}

impl<F> HttpClient for F
where
    F: Fn(&HttpRequest) -> Result<HttpResponse, TransportError>,
{
    fn execute(
        &self,
        request: HttpRequest,
    ) -> impl Future<Output = Result<HttpResponse, TransportError>> {
        std::future::ready(self(&request))
    }
}
