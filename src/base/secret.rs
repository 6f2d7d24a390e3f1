//! Redacting newtypes for credentials and tokens.
//!
//! RFC 6749 §10.3 and §10.8 require access tokens and client credentials to stay confidential.
//! Every secret this crate handles lives in one of these types, whose `Debug` and `Display`
//! print `[redacted]`, so a stray `{:?}` in a log line or an error message cannot leak one.

use std::fmt;

macro_rules! secret_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        // `Rc<str>`: a token is cloned for every request that uses it; this makes that a
        // reference count, not a copy of a kilobyte-long JWT.
        #[derive(Clone, PartialEq, Eq, Hash)]
        pub struct $name(std::rc::Rc<str>);

        impl $name {
            /// Wraps a secret value.
            pub fn new(value: impl Into<String>) -> Self {
                Self(std::rc::Rc::from(value.into()))
            }

            /// The secret itself. Every call site is a place the secret leaves this type:
            /// keep them few and never send the result to a log or an error message.
            pub fn expose(&self) -> &str {
                &self.0
            }

            /// True when both hold the very same allocation (a clone of one value): a pointer
            /// comparison, for hot paths that would otherwise compare kilobytes.
            pub fn same_as(&self, other: &Self) -> bool {
                std::rc::Rc::ptr_eq(&self.0, &other.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("[redacted]")
            }
        }
    };
}

secret_type!(
    /// An OAuth client secret (RFC 6749 §2.3.1).
    ClientSecret
);
secret_type!(
    /// An OAuth access token (RFC 6749 §1.4).
    AccessToken
);
secret_type!(
    /// Key material for sealing the KV cache (`TOKEN_CACHE_KEY`), or a proxy's shared secret
    /// (`PROXY_SHARED_SECRET`).
    SharedSecret
);
secret_type!(
    /// A ready `Authorization` header value, `<scheme> <token>` (RFC 6750 §2.1).
    AuthorizationValue
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = ClientSecret::new("hunter2");
        let t = AccessToken::new("eyJtoken");
        let a = AuthorizationValue::new("Bearer eyJtoken");
        for shown in [
            format!("{s:?} {s}"),
            format!("{t:?} {t}"),
            format!("{a:?} {a}"),
        ] {
            assert!(
                !shown.contains("hunter2") && !shown.contains("eyJ"),
                "{shown}"
            );
            assert!(shown.contains("[redacted]"));
        }
        assert_eq!(s.expose(), "hunter2");
    }
}
