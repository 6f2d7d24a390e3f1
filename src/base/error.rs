//! The one error type of the crate.
//!
//! Token endpoint refusals carry the RFC 6749 §5.2 error code; everything else says which part
//! failed (configuration, transport, response) so the proxy can answer with an honest status.
//! No variant ever holds a secret: messages name settings and fields, never their values.

use std::borrow::Cow;
use std::fmt;

/// An RFC 6749 §5.2 error code, as returned by a token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `invalid_request`
    InvalidRequest,
    /// `invalid_client`: wrong client id or secret, or an unsupported authentication method.
    InvalidClient,
    /// `invalid_grant`
    InvalidGrant,
    /// `unauthorized_client`: the client may not use the client credentials grant.
    UnauthorizedClient,
    /// `unsupported_grant_type`
    UnsupportedGrantType,
    /// `invalid_scope`
    InvalidScope,
    /// Any other code (extensions such as `use_dpop_nonce` or `temporarily_unavailable`).
    Other(String),
}

impl ErrorCode {
    /// Maps the wire value to a code.
    pub fn parse(code: &str) -> Self {
        match code {
            "invalid_request" => Self::InvalidRequest,
            "invalid_client" => Self::InvalidClient,
            "invalid_grant" => Self::InvalidGrant,
            "unauthorized_client" => Self::UnauthorizedClient,
            "unsupported_grant_type" => Self::UnsupportedGrantType,
            "invalid_scope" => Self::InvalidScope,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The wire value.
    pub fn as_str(&self) -> &str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::Other(s) => s,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything that can go wrong between reading the settings and signing a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is missing or malformed. Names the setting, never its value.
    #[error("configuration error: {setting}: {reason}")]
    Config {
        /// The setting's full name as the Worker reads it, e.g. `OAUTH_TOKEN_URL`, or
        /// `BILLING_OAUTH_CLIENT_SECRET` for the profile `billing`.
        setting: Cow<'static, str>,
        /// What is wrong with it.
        reason: String,
    },
    /// The token endpoint refused the request with an RFC 6749 §5.2 error response.
    #[error("token endpoint refused the request ({status}): {code}{}", description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Refused {
        /// HTTP status of the refusal (200 when the server put `error` in a 200 body).
        status: u16,
        /// The §5.2 `error` code.
        code: ErrorCode,
        /// The §5.2 `error_description`, sanitised and shortened.
        description: Option<String>,
    },
    /// The token endpoint could not be reached, timed out, answered 5xx, or rate-limited us (429).
    /// Worth retrying later, after `retry_after` seconds when the server said so.
    #[error("token endpoint unavailable: {reason}")]
    Unavailable {
        /// What happened, e.g. `HTTP 503` or `network error: ...`.
        reason: String,
        /// Seconds the server asked us to wait (`Retry-After`), if any.
        retry_after: Option<u64>,
    },
    /// The token endpoint answered something that is not a usable RFC 6749 §5.1 response.
    #[error("unusable token response (HTTP {status}): {reason}")]
    InvalidResponse {
        /// HTTP status of the response.
        status: u16,
        /// What was wrong with it.
        reason: String,
    },
    /// The proxy will not serve this request as sent: a client error (RFC 9110 §15.5) such as
    /// 400 (malformed), 401 (missing proxy credential), 405 (method), 413 (body too large).
    #[error("request rejected ({status}): {reason}")]
    Rejected {
        /// The 4xx status to answer with.
        status: u16,
        /// The `error` member of the JSON body.
        code: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The upstream API could not be reached (RFC 9110 §15.6.3).
    #[error("upstream request failed: {0}")]
    Upstream(String),
    /// Anything else (a platform call that failed).
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// Shorthand for a configuration error.
    pub fn config(setting: impl Into<Cow<'static, str>>, reason: impl Into<String>) -> Self {
        Self::Config {
            setting: setting.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for a rejected proxy request.
    pub fn rejected(status: u16, code: &'static str, reason: impl Into<String>) -> Self {
        Self::Rejected {
            status,
            code,
            reason: reason.into(),
        }
    }

    /// The HTTP status a proxy should answer with: 500 for our own configuration, 502 when the
    /// identity provider refuses or answers nonsense, 503 when it is down or rate-limiting.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::Config { .. } | Self::Other(_) => 500,
            Self::Refused { .. } | Self::InvalidResponse { .. } | Self::Upstream(_) => 502,
            Self::Unavailable { .. } => 503,
            Self::Rejected { status, .. } => *status,
        }
    }

    /// The `error` member of the proxy's JSON error body.
    pub fn code(&self) -> &str {
        match self {
            Self::Config { .. } => "configuration_error",
            Self::Refused { code, .. } => code.as_str(),
            Self::Unavailable { .. } => "temporarily_unavailable",
            Self::InvalidResponse { .. } => "invalid_token_response",
            Self::Rejected { code, .. } => code,
            Self::Upstream(_) => "upstream_unreachable",
            Self::Other(_) => "server_error",
        }
    }

    /// Seconds a caller should wait before retrying, for errors worth retrying.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Unavailable { retry_after, .. } => {
                Some(retry_after.unwrap_or(DEFAULT_RETRY_AFTER_SECS))
            }
            _ => None,
        }
    }

    /// Passes every text in the error through `redactor` (see [`crate::base::redact`]): control
    /// characters out, every form of what was sent replaced, then shortened to
    /// [`MAX_DESCRIPTION_CHARS`]. Texts of ours (configuration, rejections) name no secret and
    /// are left alone.
    pub(crate) fn redact(self, redactor: &crate::base::redact::Redactor) -> Self {
        let clean = |s: String| redactor.clean(&s, MAX_DESCRIPTION_CHARS);
        match self {
            Self::Refused {
                status,
                code,
                description,
            } => Self::Refused {
                status,
                code: match code {
                    ErrorCode::Other(c) => ErrorCode::Other(clean(c)),
                    known => known,
                },
                description: description.map(clean),
            },
            Self::Unavailable {
                reason,
                retry_after,
            } => Self::Unavailable {
                reason: clean(reason),
                retry_after,
            },
            Self::InvalidResponse { status, reason } => Self::InvalidResponse {
                status,
                reason: clean(reason),
            },
            Self::Other(s) => Self::Other(clean(s)),
            Self::Upstream(s) => Self::Upstream(clean(s)),
            other @ (Self::Config { .. } | Self::Rejected { .. }) => other,
        }
    }
}

/// Longest server-supplied text (an `error_description`) passed on to callers and logs.
pub(crate) const MAX_DESCRIPTION_CHARS: usize = 200;

/// `Retry-After` the proxy sends when the token endpoint is unavailable and gave no hint.
pub(crate) const DEFAULT_RETRY_AFTER_SECS: u64 = 5;

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_who_is_at_fault() {
        assert_eq!(
            Error::config("OAUTH_TOKEN_URL", "is not set").http_status(),
            500
        );
        let refused = Error::Refused {
            status: 401,
            code: ErrorCode::parse("invalid_client"),
            description: None,
        };
        assert_eq!(
            (refused.http_status(), refused.code()),
            (502, "invalid_client")
        );
        let down = Error::Unavailable {
            reason: "HTTP 500".into(),
            retry_after: None,
        };
        assert_eq!(
            (down.http_status(), down.retry_after()),
            (503, Some(DEFAULT_RETRY_AFTER_SECS))
        );
    }

    #[test]
    fn redact_removes_what_was_sent_from_server_text() {
        let mut r = crate::base::redact::Redactor::default();
        r.add_signed("aaaa.bbbb.s3cr3t-signature-0123");
        let e = Error::Unavailable {
            reason: "network error: echo s3cr3t-signature-0123".into(),
            retry_after: None,
        }
        .redact(&r);
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
    }

    #[test]
    fn config_errors_name_the_setting() {
        let e = Error::config("OAUTH_CLIENT_ID", "is not set");
        assert_eq!(
            e.to_string(),
            "configuration error: OAUTH_CLIENT_ID: is not set"
        );
    }
}
