//! Parsing a token endpoint's answer (RFC 6749 §5.1 success, §5.2 error), with no I/O.
//!
//! Strict where leniency would hide a broken server (a 200 carrying `error`, a missing or
//! header-unsafe `access_token`), lenient where real servers differ harmlessly (`bearer` in lower
//! case, `expires_in` as a numeric string).

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::base::error::{Error, ErrorCode, Result, MAX_DESCRIPTION_CHARS};
use crate::base::redact::Redactor;
use crate::base::secret::AccessToken;
use crate::oauth::token::{Scheme, Token};
use crate::oauth::transport::{HttpResponse, MAX_TOKEN_RESPONSE_BYTES};

/// Lifetime assumed for a token that has neither `expires_in` nor a JWT `exp` claim.
/// Short enough that a token the server expires sooner is not replayed for long, long enough
/// to spare a per-token-billed provider: at most 12 token requests an hour.
pub(crate) const DEFAULT_LIFETIME_SECS: u64 = 300;

/// Shortest usable token lifetime: a token that lives shorter cannot be cached (no token is
/// handed out with under [`crate::oauth::token::MIN_REMAINING_SECS`] left), and every request would
/// cost a token request.
#[allow(unreachable_pub)] // public for the fuzz targets (`crate::fuzzing`)
pub const MIN_LIFETIME_SECS: u64 = 10;

/// Longest `expires_in` taken at face value (one year); larger values are treated as malformed.
const MAX_LIFETIME_SECS: u64 = 365 * 86_400;

/// Longest `error` code kept from a response.
const MAX_CODE_CHARS: usize = 64;

/// Turns the token endpoint's response to a request sent at `sent_at` (Unix seconds) into a
/// token, or the error that explains why not. `margin` is `OAUTH_EXPIRY_MARGIN_SECS`. Every
/// text taken from the response passes through `redactor` first: no error this returns carries
/// anything that was sent.
#[allow(unreachable_pub)] // public for the fuzz targets (`crate::fuzzing`)
pub fn parse_token_response(
    resp: &HttpResponse,
    sent_at: u64,
    margin: u64,
    redactor: &Redactor,
) -> Result<Token> {
    let status = resp.status;
    let invalid = |reason: &str| Error::InvalidResponse {
        status,
        reason: reason.to_owned(),
    };
    if status == 429 || status >= 500 {
        return Err(Error::Unavailable {
            reason: format!("HTTP {status}"),
            retry_after: resp.header("retry-after").and_then(parse_retry_after),
        });
    }
    if resp.body.len() > MAX_TOKEN_RESPONSE_BYTES {
        return Err(invalid(&format!(
            "body exceeds {MAX_TOKEN_RESPONSE_BYTES} bytes"
        )));
    }
    // A member whose value is `null` is treated as absent (`"error": null` is no error).
    let json = match serde_json::from_slice::<Value>(&resp.body) {
        Ok(Value::Object(mut map)) => {
            map.retain(|_, v| !v.is_null());
            Some(map)
        }
        _ => None,
    };
    let Some(json) = json else {
        let what = describe_non_json(&resp.body);
        return Err(if (200..300).contains(&status) {
            invalid(&format!("body is {what}, not a JSON object"))
        } else {
            invalid(&format!(
                "refused with a body that is {what}, not an RFC 6749 error object"
            ))
        });
    };
    if let Some(code) = json.get("error") {
        let code = code
            .as_str()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| invalid("`error` is not a string"))?;
        return Err(Error::Refused {
            status,
            code: ErrorCode::parse(&redactor.clean(code, MAX_CODE_CHARS)),
            description: json
                .get("error_description")
                .and_then(Value::as_str)
                .map(|d| redactor.clean(d, MAX_DESCRIPTION_CHARS)),
        });
    }
    if !(200..300).contains(&status) {
        return Err(invalid("refused without an `error` member"));
    }
    parse_success(&json, sent_at, margin, redactor).map_err(|reason| invalid(&reason))
}

fn parse_success(
    json: &Map<String, Value>,
    sent_at: u64,
    margin: u64,
    redactor: &Redactor,
) -> std::result::Result<Token, String> {
    let access_token = match json.get("access_token") {
        Some(Value::String(s)) if !s.is_empty() => s,
        Some(Value::String(_)) => return Err("`access_token` is empty".into()),
        Some(_) => return Err("`access_token` is not a string".into()),
        None => return Err("`access_token` is missing".into()),
    };
    // RFC 6750 §2.1 b64token is visible ASCII; anything else could split or smuggle a header.
    if !access_token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("`access_token` holds characters not allowed in an HTTP header".into());
    }
    // RFC 6749 §5.1 makes token_type required; servers that omit it mean Bearer.
    let scheme = match json.get("token_type") {
        None => Scheme::Bearer,
        Some(Value::String(t)) => Scheme::parse(t)
            .ok_or_else(|| format!("unsupported `token_type` {:?}", redactor.clean(t, 32)))?,
        Some(_) => return Err("`token_type` is not a string".into()),
    };
    // An `exp` already past (clock skew) or absurdly far would make every request fetch a
    // token, or keep one forever: outside (0, one year] it is ignored.
    let exp =
        jwt_exp(access_token).filter(|exp| *exp > sent_at && exp - sent_at <= MAX_LIFETIME_SECS);
    let expires_at = match (json.get("expires_in"), exp) {
        // Both: the earlier wins. A server whose `expires_in` outlives the token's own `exp`
        // would otherwise have it used past the moment the API starts refusing it.
        (Some(v), exp) => {
            let by_expires_in = sent_at + parse_expires_in(v)?;
            exp.map_or(by_expires_in, |exp| exp.min(by_expires_in))
        }
        (None, Some(exp)) => exp,
        (None, None) => sent_at + DEFAULT_LIFETIME_SECS,
    };
    if expires_at - sent_at < MIN_LIFETIME_SECS {
        return Err(format!(
            "the token's `exp` leaves {} s, too short to use (minimum {MIN_LIFETIME_SECS} s)",
            expires_at - sent_at
        ));
    }
    // Entra ID's `refresh_in` (MSAL honours it): when to refresh, in seconds after issue. A
    // value that is not a sensible number is ignored, not an error: the token is fine.
    let refresh_in = json
        .get("refresh_in")
        .and_then(|v| parse_expires_in(v).ok())
        .filter(|secs| *secs > 0);
    Ok(Token::new(
        AccessToken::new(access_token.clone()),
        scheme,
        sent_at,
        expires_at,
        margin,
    )
    .with_refresh(None, refresh_in))
}

/// `expires_in` (RFC 6749 §5.1): a number of seconds; some servers send it as a string.
fn parse_expires_in(v: &Value) -> std::result::Result<u64, String> {
    let secs = match v {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    let secs = secs
        .filter(|s| *s <= MAX_LIFETIME_SECS)
        .ok_or_else(|| "`expires_in` is not a non-negative number of seconds".to_owned())?;
    if secs < MIN_LIFETIME_SECS {
        return Err(format!(
            "`expires_in` of {secs} s is too short to use (minimum {MIN_LIFETIME_SECS} s)"
        ));
    }
    Ok(secs)
}

/// The `exp` claim (RFC 7519 §4.1.4) of a token that is a JWS compact JWT, unverified: it only
/// decides when to fetch the next token, never whether to trust this one.
pub(crate) fn jwt_exp(token: &str) -> Option<u64> {
    let mut parts = token.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_u64()
}

/// `Retry-After` in delta-seconds (RFC 9110 §10.2.3); HTTP-dates are rare from token endpoints
/// and fall back to the default.
pub(crate) fn parse_retry_after(v: &str) -> Option<u64> {
    v.trim().parse::<u64>().ok()
}

fn describe_non_json(body: &[u8]) -> &'static str {
    let text = String::from_utf8_lossy(body);
    let start = text.trim_start();
    if body.is_empty() {
        "empty"
    } else if start.starts_with('<') {
        "HTML or XML"
    } else if start.starts_with('{') || start.starts_with('[') {
        "malformed or truncated JSON"
    } else {
        "not JSON"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn resp(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![("retry-after".into(), "7".into())],
            body: body.as_bytes().to_vec(),
            elapsed_ms: 1,
        }
    }

    fn jwt(exp: u64) -> String {
        let b = |s: String| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!(
            "{}.{}.sig",
            b(r#"{"alg":"none"}"#.into()),
            b(format!(r#"{{"exp":{exp}}}"#))
        )
    }

    #[test]
    fn a_servers_refresh_in_opens_the_refresh_window_and_nonsense_is_ignored() {
        let parse = |body: &str| {
            parse_token_response(&resp(200, body), NOW, 60, &Redactor::default()).unwrap()
        };
        let t = parse(r#"{"access_token":"a","expires_in":3600,"refresh_in":1800}"#);
        assert_eq!((t.refresh_at(), t.refresh_in()), (NOW + 1800, Some(1800)));
        for body in [
            r#"{"access_token":"a","expires_in":3600,"refresh_in":"soon"}"#,
            r#"{"access_token":"a","expires_in":3600,"refresh_in":0}"#,
            r#"{"access_token":"a","expires_in":3600}"#,
        ] {
            let t = parse(body);
            assert_eq!(
                (t.refresh_at(), t.refresh_in()),
                (NOW + 3240, None),
                "{body}"
            );
        }
    }

    #[test]
    fn token_responses_give_the_expiry_from_expires_in_or_the_jwt_exp() {
        let j = jwt(NOW + 900);
        let body_jwt = format!(r#"{{"access_token":"{j}","token_type":"Bearer"}}"#);
        let body_jwt_longer = format!(r#"{{"access_token":"{j}","expires_in":3600}}"#);
        let body_jwt_shorter = format!(r#"{{"access_token":"{j}","expires_in":600}}"#);
        // (body, expected expires_at)
        let cases: Vec<(&str, u64)> = vec![
            (
                r#"{"access_token":"abc","token_type":"Bearer","expires_in":3600,"scope":"customScope"}"#,
                NOW + 3600,
            ),
            (
                r#"{"access_token":"abc","token_type":"bearer","expires_in":"120"}"#,
                NOW + 120,
            ),
            (
                r#"{"access_token":"abc","token_type":"BEARER","expires_in":59.9}"#,
                NOW + 59,
            ),
            (
                r#"{"access_token":"abc","token_type":"Bearer"}"#,
                NOW + DEFAULT_LIFETIME_SECS,
            ),
            (&body_jwt, NOW + 900),
            // Both: the earlier of `expires_in` and the JWT's own `exp`.
            (&body_jwt_longer, NOW + 900),
            (&body_jwt_shorter, NOW + 600),
            (
                r#"{"access_token":"abc","token_type":null,"expires_in":null,"error":null}"#,
                NOW + DEFAULT_LIFETIME_SECS,
            ),
        ];
        for (body, expires_at) in cases {
            let t = parse_token_response(&resp(200, body), NOW, 60, &Redactor::default())
                .unwrap_or_else(|e| panic!("{body}: {e}"));
            assert_eq!(t.expires_at(), expires_at, "{body}");
            assert_eq!(t.scheme(), Scheme::Bearer);
            assert!(t.authorization().expose().starts_with("Bearer "));
        }
    }

    #[test]
    fn unusable_token_responses_are_errors_with_an_honest_status() {
        let huge = format!(
            r#"{{"access_token":"{}"}}"#,
            "a".repeat(MAX_TOKEN_RESPONSE_BYTES)
        );
        let short_exp = format!(r#"{{"access_token":"{}","expires_in":3600}}"#, jwt(NOW + 3));
        // (status, body, error status, text the error must contain)
        let cases: Vec<(u16, &str, u16, &str)> = vec![
            (
                200,
                r#"{"token_type":"Bearer"}"#,
                502,
                "`access_token` is missing",
            ),
            (
                200,
                r#"{"access_token":""}"#,
                502,
                "`access_token` is empty",
            ),
            (200, r#"{"access_token":42}"#, 502, "not a string"),
            (
                200,
                "{\"access_token\":\"a\\r\\nX-Evil: 1\"}",
                502,
                "not allowed in an HTTP header",
            ),
            (
                200,
                r#"{"access_token":"a b"}"#,
                502,
                "not allowed in an HTTP header",
            ),
            (
                200,
                r#"{"access_token":"abc","token_type":"mac"}"#,
                502,
                "unsupported `token_type`",
            ),
            (
                200,
                r#"{"access_token":"abc","expires_in":-5}"#,
                502,
                "`expires_in`",
            ),
            (
                200,
                r#"{"access_token":"abc","expires_in":"soon"}"#,
                502,
                "`expires_in`",
            ),
            (
                200,
                r#"{"access_token":"abc","expires_in":0}"#,
                502,
                "too short",
            ),
            (
                200,
                r#"{"access_token":"abc","expires_in":9}"#,
                502,
                "too short",
            ),
            (
                200,
                r#"{"access_token":"abc","expires_in":"NaN"}"#,
                502,
                "`expires_in`",
            ),
            (
                200,
                r#"{"access_token":"abc","expires_in":1e308}"#,
                502,
                "`expires_in`",
            ),
            (
                200,
                r#"{"access_token":"abc","expires_in":-1e308}"#,
                502,
                "`expires_in`",
            ),
            (
                200,
                r#"{"access_token":"abc","expires_in":true}"#,
                502,
                "`expires_in`",
            ),
            (
                200,
                r#"{"access_token":"tök"}"#,
                502,
                "not allowed in an HTTP header",
            ),
            (200, &short_exp, 502, "`exp` leaves 3 s"),
            (
                200,
                r#"{"access_token":"abc","expires_in":99999999999}"#,
                502,
                "`expires_in`",
            ),
            (
                200,
                r#"{"error":"invalid_scope","error_description":"no such scope"}"#,
                502,
                "invalid_scope: no such scope",
            ),
            (200, "<html><body>Login</body></html>", 502, "HTML"),
            (
                200,
                r#"{"access_token":"abc","token_"#,
                502,
                "truncated JSON",
            ),
            (200, "", 502, "empty"),
            (200, "[1]", 502, "not a JSON object"),
            (200, &huge, 502, "exceeds"),
            (
                401,
                r#"{"error":"invalid_client","error_description":"client authentication failed"}"#,
                502,
                "invalid_client",
            ),
            (
                400,
                r#"{"error":"invalid_request"}"#,
                502,
                "invalid_request",
            ),
            (403, "Forbidden", 502, "not an RFC 6749 error object"),
            (
                404,
                r#"{"message":"not found"}"#,
                502,
                "without an `error` member",
            ),
            (500, r#"{"error":"server_error"}"#, 503, "HTTP 500"),
            (503, "<html>down</html>", 503, "HTTP 503"),
            (429, "slow down", 503, "HTTP 429"),
        ];
        for (status, body, http, want) in cases {
            let err = parse_token_response(&resp(status, body), NOW, 60, &Redactor::default())
                .unwrap_err();
            assert_eq!(err.http_status(), http, "{status} {body}: {err}");
            assert!(err.to_string().contains(want), "{status} {body}: got {err}");
        }
    }

    #[test]
    fn refusals_keep_code_and_retry_after() {
        let err = parse_token_response(
            &resp(401, r#"{"error":"invalid_client"}"#),
            NOW,
            60,
            &Redactor::default(),
        )
        .unwrap_err();
        assert_eq!(err.code(), "invalid_client");
        let err = parse_token_response(&resp(503, ""), NOW, 60, &Redactor::default()).unwrap_err();
        assert_eq!(err.retry_after(), Some(7));
    }

    #[test]
    fn jwt_exp_outside_sane_bounds_falls_back_to_the_default() {
        for exp in [NOW - 10, NOW, NOW + MAX_LIFETIME_SECS + 1] {
            let body = format!(r#"{{"access_token":"{}"}}"#, jwt(exp));
            let t = parse_token_response(&resp(200, &body), NOW, 60, &Redactor::default()).unwrap();
            assert_eq!(t.expires_at(), NOW + DEFAULT_LIFETIME_SECS, "exp {exp}");
        }
    }

    #[test]
    fn jwt_exp_only_for_jwts() {
        assert_eq!(jwt_exp(&jwt(123)), Some(123));
        for not in ["abc", "a.b", "a.!!.c", "a.b.c.d", ""] {
            assert_eq!(jwt_exp(not), None, "{not}");
        }
    }
}
