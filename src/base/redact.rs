//! Keeping what we sent out of what the identity provider says back.
//!
//! A token endpoint's `error`, `error_description` and other text reach callers and logs, and
//! some servers echo request parameters into them. RFC 6749 §10.3 and §10.8 keep credentials and
//! tokens confidential, so every form in which a credential left the Worker is replaced before
//! the text goes anywhere: the client secret raw, form-encoded (RFC 6749 §2.3.1, upper- and
//! lower-case hex, `+` or `%20` for a space, with or without `!'()*` escaped), JSON-escaped, and
//! in base64 of every alphabet (standard, URL-safe, padded or not) alone or as the Basic
//! credentials; and each signed value sent (`private_key_jwt` client assertions, RFC 7523, and
//! DPoP proofs, RFC 9449), whole and by its signature.
//!
//! Server text is made printable *before* matching (a server cannot split an echo with control
//! characters, and secrets hold none: the configuration refuses them) and shortened only *after*
//! (a credential cut in half at the limit would escape the match).

use base64::Engine as _;

/// Shortest value worth matching: shorter ones would redact ordinary words.
const MIN_MATCH_LEN: usize = 4;

/// What replaces a credential in server text.
pub(crate) const REDACTED: &str = "[redacted]";

/// The forms of everything sent to the token endpoint that must not come back out.
#[derive(Clone, Debug, Default)]
#[allow(unreachable_pub)] // public for the fuzz targets (`crate::fuzzing`)
pub struct Redactor {
    /// Longest first, so a form that contains another is replaced whole.
    forms: Vec<String>,
}

impl Redactor {
    /// Adds a secret that was sent, in every form it may come back in: raw, form-encoded
    /// (RFC 6749 §2.3.1, every spelling), JSON-escaped, and in base64 of every alphabet.
    pub(crate) fn add_secret(&mut self, secret: &str) {
        self.add(secret);
        for encoded in percent_forms(secret) {
            self.add(&encoded);
        }
        self.add(&json_escaped(secret));
        self.add_base64(secret.as_bytes());
    }

    /// Adds a value exactly as it stands (no other forms), e.g. key text that is never sent.
    pub(crate) fn add_exact(&mut self, value: &str) {
        self.add(value);
    }

    /// Adds a signed value that was sent (a client assertion or a DPoP proof): the whole JWS and
    /// its signature, which is what makes it usable, raw and in base64.
    #[allow(unreachable_pub)] // public for the fuzz targets (`crate::fuzzing`)
    pub fn add_signed(&mut self, jws: &str) {
        self.add(jws);
        self.add_base64(jws.as_bytes());
        if let Some(signature) = jws.rsplit('.').next().filter(|s| s.len() >= 16) {
            self.add(signature);
        }
    }

    /// Adds `bytes` in base64 of every alphabet (standard, URL-safe, padded or not).
    pub(crate) fn add_base64(&mut self, bytes: &[u8]) {
        use base64::engine::general_purpose::{
            STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
        };
        for engine in [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD] {
            self.add(&engine.encode(bytes));
        }
    }

    fn add(&mut self, form: &str) {
        if form.chars().count() < MIN_MATCH_LEN || self.forms.iter().any(|f| f == form) {
            return;
        }
        let at = self.forms.partition_point(|f| f.len() >= form.len());
        self.forms.insert(at, form.to_owned());
    }

    /// Server text made safe to pass on: control characters removed, every form replaced with
    /// `[redacted]`, every base64 run that decodes to text holding a form replaced too (an echo
    /// of a whole request body in base64 holds the secret at an offset no fixed form matches),
    /// then at most `max_chars` characters kept.
    pub(crate) fn clean(&self, text: &str, max_chars: usize) -> String {
        let mut s: String = text.chars().filter(|c| !c.is_control()).collect();
        for form in &self.forms {
            if s.contains(form.as_str()) {
                s = s.replace(form.as_str(), REDACTED);
            }
        }
        if !self.forms.is_empty() {
            s = self.redact_base64_runs(&s);
        }
        match s.char_indices().nth(max_chars) {
            Some((cut, _)) => s[..cut].to_owned(),
            None => s,
        }
    }
}

impl Redactor {
    fn redact_base64_runs(&self, s: &str) -> String {
        let is_b64 = |c: char| c.is_ascii_alphanumeric() || "+/=-_".contains(c);
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(start) = rest.find(is_b64) {
            out.push_str(&rest[..start]);
            let run = &rest[start..];
            let len = run.find(|c: char| !is_b64(c)).unwrap_or(run.len());
            let (run, after) = run.split_at(len);
            // `=` is padding at the end, but text may run into base64 with one (`body=<b64>`):
            // each piece between them is tried too.
            let holds_a_form = run.len() >= 16
                && (self.decodes_to_a_form(run)
                    || run
                        .split('=')
                        .filter(|piece| piece.len() >= 16 && piece.len() < run.len())
                        .any(|piece| self.decodes_to_a_form(piece)));
            if holds_a_form {
                out.push_str(REDACTED);
            } else {
                out.push_str(run);
            }
            rest = after;
        }
        out.push_str(rest);
        out
    }

    fn decodes_to_a_form(&self, run: &str) -> bool {
        use base64::engine::general_purpose::STANDARD_NO_PAD;
        let normal: String = run
            .trim_end_matches('=')
            .chars()
            .map(|c| match c {
                '-' => '+',
                '_' => '/',
                c => c,
            })
            .collect();
        // A run may start or end mid-group (text before or after it): try the likely cuts.
        (0..4).any(|skip| {
            let Some(body) = normal.get(skip..) else {
                return false;
            };
            // Unpadded base64 never leaves one character over: drop it.
            let body = if body.len() % 4 == 1 {
                &body[..body.len() - 1]
            } else {
                body
            };
            STANDARD_NO_PAD.decode(body).is_ok_and(|bytes| {
                let text = String::from_utf8_lossy(&bytes);
                self.forms.iter().any(|f| text.contains(f.as_str()))
            })
        })
    }
}

/// The percent-encodings a client or server may use for `s`: `application/x-www-form-urlencoded`
/// (`+` for space, all but `*-._` escaped) and RFC 3986 component encoding (`%20`, `!'()*~`
/// left alone), each with upper- and lower-case hex (RFC 3986 §2.1 makes them equivalent).
fn percent_forms(s: &str) -> Vec<String> {
    let form: String = url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
    let mut component = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            component.push(b as char);
        } else {
            component.push_str(&format!("%{b:02X}"));
        }
    }
    let spaced = form.replace('+', "%20");
    let mut out = Vec::new();
    for v in [form, component, spaced] {
        out.push(lower_hex(&v));
        out.push(v);
    }
    out
}

/// `%2F` → `%2f`, leaving everything else as it is.
fn lower_hex(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let esc = rest.get(i..i + 3).unwrap_or(&rest[i..]);
        out.push_str(&esc.to_ascii_lowercase());
        rest = &rest[i + esc.len()..];
    }
    out.push_str(rest);
    out
}

/// `s` as it appears inside a JSON string (`"` and `\` escaped, `/` as a server may escape it).
fn json_escaped(s: &str) -> String {
    let quoted = serde_json::to_string(s).expect("a string serialises");
    quoted[1..quoted.len() - 1].replace('/', "\\/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::secret::ClientSecret;
    use crate::config::client::{ClientAuth, Config};
    use crate::oauth::token_request::redactor_for;

    fn config(auth: ClientAuth) -> Config {
        Config::for_tests("client id", auth)
    }

    const SECRET: &str = "s3cr%t+:/=& \"x\\y!*(é)";

    #[test]
    fn every_encoding_of_the_secret_is_redacted() {
        use base64::engine::general_purpose::{
            STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
        };
        let r = redactor_for(&config(ClientAuth::Basic(ClientSecret::new(SECRET))));
        let form: String = url::form_urlencoded::byte_serialize(SECRET.as_bytes()).collect();
        let basic = crate::oauth::token_request::basic_credentials("client id", SECRET);
        let b64 = basic.trim_start_matches("Basic ").to_owned();
        let joined = STANDARD.decode(&b64).unwrap();
        let mut echoes = vec![
            SECRET.to_owned(),
            form.clone(),
            lower_hex(&form),
            form.replace('+', "%20"),
            json_escaped(SECRET),
            basic.clone(),
            b64.clone(),
        ];
        for engine in [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD] {
            echoes.push(engine.encode(&joined));
            echoes.push(engine.encode(SECRET));
            echoes.push(engine.encode(format!("client id:{SECRET}")));
        }
        // encodeURIComponent, as a JavaScript server would write it.
        echoes.push("s3cr%25t%2B%3A%2F%3D%26%20%22x%5Cy!*(%C3%A9)".into());
        echoes.push("s3cr%25t%2b%3a%2f%3d%26%20%22x%5cy!*(%c3%a9)".into());
        for echo in echoes {
            let text = format!("bad credentials <{echo}> sent");
            let clean = r.clean(&text, 10_000);
            assert!(clean.contains(REDACTED), "{echo} -> {clean}");
            assert!(!clean.contains(SECRET) && !clean.contains(&form), "{clean}");
            assert!(!clean.contains(&echo), "{echo} survived: {clean}");
        }
    }

    #[test]
    fn control_characters_cannot_split_an_echo_and_cutting_comes_last() {
        let r = redactor_for(&config(ClientAuth::Post(ClientSecret::new(
            "hunter2hunter2",
        ))));
        assert_eq!(r.clean("x hunter2\u{0}hunter2\n y", 100), "x [redacted] y");
        // The limit falls inside the secret: it is redacted first, then cut.
        let text = format!("{}hunter2hunter2", "a".repeat(95));
        let clean = r.clean(&text, 100);
        assert!(!clean.contains("hunter2"), "{clean}");
        assert_eq!(clean.chars().count(), 100);
    }

    #[test]
    fn signed_values_are_redacted_whole_and_by_signature() {
        let mut r = redactor_for(&config(ClientAuth::Post(ClientSecret::new(
            "hunter2hunter2",
        ))));
        let jws = "eyJhbGciOiJFUzI1NiJ9.eyJqdGkiOiIxIn0.c2lnbmF0dXJlLW9mLXRoZS1hc3NlcnRpb24";
        r.add_signed(jws);
        assert_eq!(r.clean(&format!("got {jws}"), 1000), "got [redacted]");
        assert_eq!(
            r.clean("sig c2lnbmF0dXJlLW9mLXRoZS1hc3NlcnRpb24 end", 1000),
            "sig [redacted] end"
        );
        // The header alone is not secret and stays readable.
        assert!(r.clean("eyJhbGciOiJFUzI1NiJ9", 1000).contains("eyJhbGci"));
    }

    #[test]
    fn base64_of_a_whole_request_body_is_redacted() {
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        let r = redactor_for(&config(ClientAuth::Post(ClientSecret::new(SECRET))));
        let form: String = url::form_urlencoded::byte_serialize(SECRET.as_bytes()).collect();
        let body = format!("grant_type=client_credentials&client_id=c&client_secret={form}");
        for encoded in [STANDARD.encode(&body), URL_SAFE_NO_PAD.encode(&body)] {
            let clean = r.clean(&format!("you sent {encoded} | ok"), 10_000);
            assert_eq!(clean, "you sent [redacted] | ok");
            // Run into by a `key=` with no space between.
            let clean = r.clean(&format!("bad request body={encoded}"), 10_000);
            assert_eq!(clean, "bad request [redacted]");
        }
        // Ordinary base64-looking words that hold nothing of ours stay.
        let text = "request id Zm9vYmFyYmF6cXV4cXV1eA and more";
        assert_eq!(r.clean(text, 1000), text);
    }

    #[test]
    fn short_values_are_not_matched() {
        let r = redactor_for(&config(ClientAuth::Basic(ClientSecret::new("abc"))));
        assert_eq!(r.clean("abc def", 100), "abc def");
    }
}
