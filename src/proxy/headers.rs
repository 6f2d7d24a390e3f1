//! The proxy's header policy: which of a caller's headers never reach the upstream, by class,
//! and which an operator may let through on purpose (`PROXY_FORWARD_HEADERS`). The edge's
//! JavaScript that builds the upstream request applies these same tables
//! (`src/edge/outbound.rs`); docs/security.md's "Header policy" table describes them.

/// Headers the proxy owns: never taken from the caller, whatever `PROXY_FORWARD_HEADERS` says.
///
/// Hop-by-hop headers (RFC 9110 §7.6.1) belong to one connection (names listed in the caller's
/// `Connection` are dropped too). `authorization` and `dpop` are replaced by ours, so a caller's
/// own credentials never reach the upstream; `host` comes from `UPSTREAM_ORIGIN`.
pub(crate) const NEVER_FORWARDED: &[&str] = &[
    "authorization",
    "dpop",
    "host",
    "proxy-authorization",
    "proxy-authenticate",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whole classes of headers that would let a caller speak for someone else, dropped by prefix:
/// an upstream that trusts them (it sits behind a gateway that sets them) would take a caller's
/// claim next to our token for the gateway's word.
pub(crate) const DROPPED_PREFIXES: &[&str] = &[
    // Forwarding: client address, host, protocol, and identity (`X-Forwarded-User`, `-Email`,
    // `-Access-Token`, `-Groups`, `-Client-Cert`, ...), as proxies and oauth2-proxy set them.
    "x-forwarded-",
    "x-original-forwarded-",
    // Cloudflare's edge and Access: `CF-Connecting-IP`, `CF-IPCountry`, `CF-Visitor`, `CF-Ray`,
    // `Cf-Access-Jwt-Assertion`, `Cf-Access-Authenticated-User-Email`, `Cf-Access-Client-*`.
    "cf-",
    // Identity asserted by authenticating proxies: oauth2-proxy, AWS ALB, Google IAP, Azure App
    // Service, Pomerium, Kubernetes' authenticating proxy, Grafana-style web auth.
    "x-auth-request-",
    "x-amzn-oidc-",
    "x-goog-authenticated-user-",
    "x-goog-iap-",
    "x-ms-client-principal",
    "x-pomerium-",
    "x-remote-",
    "x-webauth-",
    // Client certificates as TLS-terminating proxies pass them on.
    "x-client-cert",
    "x-ssl-client",
    "ssl-client-",
    // Envoy trusts its own `x-envoy-*` headers from internal callers only.
    "x-envoy-",
    // More identity asserted by gateways: authentik (`X-authentik-username`, `-groups`, ...),
    // Kong and APISIX consumers (`X-Consumer-ID`, `-Username`, `-Custom-ID`, `-Groups`), Azure
    // Easy Auth's tokens (`X-MS-TOKEN-AAD-ACCESS-TOKEN`, `-ID-TOKEN`, ...), Authelia's `Remote-*`
    // (`Remote-Groups`, `-Email`, `-Name`; `Remote-User` too).
    "x-authentik-",
    "x-consumer-",
    "x-ms-token-",
    "remote-",
    // Kong's consumer, credential and ACL headers (`X-Authenticated-Userid`, `-Scope`,
    // `-Groups`; `X-Anonymous-Consumer` below).
    "x-authenticated-",
];

/// Single names of the same classes: forwarding and rewriting, the client-IP family, the
/// caller's cookies, and identity and certificate headers without a common prefix.
pub(crate) const DROPPED_NAMES: &[&str] = &[
    "forwarded",
    "x-original-url",
    "x-rewrite-url",
    "x-original-host",
    "x-host",
    "x-real-ip",
    "true-client-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "client-ip",
    "fastly-client-ip",
    "cookie",
    "x-arr-clientcert",
    "x-client-verify",
    // Client addresses set by Azure Front Door and Fly.io.
    "x-azure-clientip",
    "x-azure-socketip",
    "fly-client-ip",
    // Identity and tokens set by Kong, APISIX and OIDC gateway plugins.
    "x-credential-identifier",
    "x-anonymous-consumer",
    "x-userinfo",
    "x-access-token",
    "x-id-token",
    // Method overrides: an upstream framework that honours them would run another method than
    // the one the proxy checked (a `TRACE` echoing the request shows our token to the caller).
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Whether the caller's header `name` (lower case, as `Headers` iterates) is kept from the
/// upstream: the proxy's own headers always; a dropped class, or any name with `_`, unless the
/// operator allowed the name (`allowed`, from `PROXY_FORWARD_HEADERS`).
///
/// Why every `_`: Rack/Puma, PHP, WSGI and other CGI-style servers read `X-Forwarded_For` as
/// `X-Forwarded-For` (`HTTP_X_FORWARDED_FOR`), so a table of dashed names would be one
/// spelling short for each entry. nginx (`underscores_in_headers off`) and Apache drop such
/// headers by default, and so does the proxy: no upstream then sees a spelling its own front
/// server would have refused. The JavaScript that builds the upstream request
/// (`src/edge/proxy/outbound.rs`) applies this same rule; the tests hold the two together.
#[cfg(test)]
pub(crate) fn header_dropped(name: &str, allowed: &[String]) -> bool {
    if NEVER_FORWARDED.contains(&name) {
        return true;
    }
    let in_class = name.contains('_')
        || DROPPED_NAMES.contains(&name)
        || DROPPED_PREFIXES.iter().any(|p| name.starts_with(p));
    in_class && !allowed.iter().any(|a| a == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_policy_drops_classes_and_allows_on_purpose() {
        let none: &[String] = &[];
        for name in [
            "authorization",
            "host",
            "transfer-encoding",
            "x-forwarded-for",
            "x-forwarded-user",
            "x-forwarded-email",
            "x-forwarded-access-token",
            "x-forwarded-client-cert",
            "x-forwarded-anything-new",
            "forwarded",
            "cf-connecting-ip",
            "cf-access-authenticated-user-email",
            "cf-access-jwt-assertion",
            "cf-ray",
            "x-auth-request-user",
            "x-auth-request-email",
            "x-auth-request-access-token",
            "x-amzn-oidc-identity",
            "x-goog-authenticated-user-email",
            "x-ms-client-principal-name",
            "x-real-ip",
            "true-client-ip",
            "x-client-ip",
            "cookie",
            "x-remote-user",
            "x-envoy-external-address",
            // Underscore spellings a CGI-style upstream reads as the dashed header.
            "x-forwarded_for",
            "remote_user",
            "x_auth_request_email",
            "x-http-method_override",
            "cf_connecting_ip",
            "x_consumer_username",
            "x_anything_new",
            // Kong.
            "x-authenticated-groups",
            "x-authenticated-userid",
            "x-anonymous-consumer",
        ] {
            assert!(header_dropped(name, none), "{name} passes");
        }
        for name in [
            "accept",
            "content-type",
            "content-length",
            "x-request-id",
            "traceparent",
            "x-api-version",
            "user-agent",
            "if-none-match",
        ] {
            assert!(!header_dropped(name, none), "{name} dropped");
        }
        let allowed = vec![
            "x-forwarded-user".to_owned(),
            "authorization".to_owned(),
            "x_custom_ok".to_owned(),
        ];
        assert!(!header_dropped("x-forwarded-user", &allowed));
        // An underscore name passes only exactly as listed.
        assert!(!header_dropped("x_custom_ok", &allowed));
        assert!(header_dropped("x-custom_ok", &allowed));
        assert!(header_dropped("x-forwarded-email", &allowed));
        // The proxy's own headers stay dropped even if a list somehow names them.
        assert!(header_dropped("authorization", &allowed));
    }

    #[test]
    fn policy_tables_are_lower_case() {
        for table in [NEVER_FORWARDED, DROPPED_NAMES, DROPPED_PREFIXES] {
            assert!(table
                .iter()
                .all(|h| h.bytes().all(|b| !b.is_ascii_uppercase())));
        }
    }
}
