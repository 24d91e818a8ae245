//! Compiles `auth` (JWT providers, identity prefix), route `auth` and resource policies.
//! Fetched JWKS keys survive a reload that keeps the provider's JWKS settings.

use super::compile::Ctx;
use super::model::{self, JwtProvider as JwtModel, Require, RouteAuthSpec};
use super::runtime::Runtime;
use crate::outbound::{self, Target};
use crate::phases::auth::RouteAuthRt;
use crate::phases::auth::external::{Authorizer, ExternalSettings};
use crate::phases::auth::jwt::{Family, KeySet, Rules, family, parse_alg};
use crate::phases::auth::keys::{Jwks, JwksSettings, from_pem, from_secret};
use crate::phases::auth::provider::{JwtProvider, KeySource};
use crate::phases::cors::CorsRt;
use crate::phases::identity::IdentityNames;
use crate::phases::policy::PolicyRt;
use crate::phases::sign::SignRt;
use crate::proxy::upstream::UpstreamTlsRt;
use sha2::Digest;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Compiled `auth` section.
#[derive(Debug)]
pub struct AuthRt {
    /// JWT providers by name.
    pub jwt: BTreeMap<String, Arc<JwtProvider>>,
    /// External authorizers by name.
    pub external: BTreeMap<String, Arc<Authorizer>>,
}

/// The `auth` section and the identity header names.
pub(super) fn auth(cx: &mut Ctx, cfg: &model::Config, previous: Option<&Runtime>) -> (AuthRt, IdentityNames) {
    let mut jwt = BTreeMap::new();
    for (name, p) in &cfg.auth.jwt {
        let path = format!("auth.jwt.{name}");
        let prev = previous.and_then(|r| r.auth.jwt.get(name));
        if let Some(provider) = jwt_provider(cx, &path, name, p, prev) {
            jwt.insert(name.clone(), Arc::new(provider));
        }
    }
    let prefix = cfg.auth.identity_prefix.as_deref().unwrap_or("x-portcullis-").to_ascii_lowercase();
    let identity = match IdentityNames::new(&prefix) {
        Ok(n) if prefix.len() >= 3 => n,
        _ => {
            cx.err(
                "auth.identity_prefix",
                format!("auth.identity_prefix {prefix:?} must be a header-name prefix of at least 3 characters"),
            );
            IdentityNames::default()
        }
    };
    let mut external = BTreeMap::new();
    for (name, a) in &cfg.auth.external {
        let prev = previous.and_then(|r| r.auth.external.get(name));
        if let Some(authz) = authorizer(cx, &format!("auth.external.{name}"), name, a, prev) {
            external.insert(name.clone(), authz);
        }
    }
    (AuthRt { jwt, external }, identity)
}

fn dur(d: Option<super::units::Dur>, default: Duration) -> Duration {
    d.map_or(default, |d| d.0)
}

fn jwt_provider(
    cx: &mut Ctx,
    path: &str,
    name: &str,
    p: &JwtModel,
    prev: Option<&Arc<JwtProvider>>,
) -> Option<JwtProvider> {
    let errors_before = cx.error_count();
    if p.issuer.is_empty() {
        cx.err(&format!("{path}.issuer"), format!("{path}.issuer must not be empty"));
    }
    if p.audiences.is_empty() {
        cx.err(
            path,
            format!("{path}.audiences must name at least one audience (tokens the issuer made for other services must not pass)"),
        );
    }
    let mut algorithms = Vec::new();
    for (i, a) in p.algorithms.iter().enumerate() {
        match parse_alg(a) {
            Some(alg) => algorithms.push(alg),
            None if a.eq_ignore_ascii_case("none") => {
                cx.err(&format!("{path}.algorithms[{i}]"), "alg none is never accepted: unsigned tokens prove nothing")
            }
            None => cx.err(
                &format!("{path}.algorithms[{i}]"),
                format!("{a:?} is not one of HS256 HS384 HS512 RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA"),
            ),
        }
    }
    if p.algorithms.is_empty() {
        cx.err(path, format!("{path}.algorithms must list the accepted algorithms, e.g. [RS256]"));
    }
    let hmac = algorithms.iter().any(|a| family(*a) == Family::Hmac);
    let asymmetric = algorithms.iter().any(|a| family(*a) != Family::Hmac);
    if hmac && asymmetric {
        cx.err(
            &format!("{path}.algorithms"),
            "HS* cannot be allowed together with RS/PS/ES/EdDSA: a public key could then be used as an HMAC secret",
        );
    }
    let sources = [p.jwks_url.is_some(), p.public_key.is_some(), p.secret_file.is_some(), p.secret_env.is_some()];
    if sources.iter().filter(|s| **s).count() != 1 {
        cx.err(path, format!("{path} needs exactly one of jwks_url, public_key, secret_file, secret_env"));
    }
    if hmac && (p.jwks_url.is_some() || p.public_key.is_some()) {
        cx.err(path, format!("{path}: HS* algorithms take their key from secret_file or secret_env"));
    }
    if asymmetric && (p.secret_file.is_some() || p.secret_env.is_some()) {
        cx.err(path, format!("{path}: RS/PS/ES/EdDSA take their keys from jwks_url or public_key"));
    }
    let leeway = dur(p.leeway, Duration::from_secs(30));
    if leeway > Duration::from_secs(300) {
        cx.err(&format!("{path}.leeway"), "leeway must be at most 5m");
    }
    let max_token_bytes = p.max_token_bytes.map_or(8 * 1024, |s| s.as_usize());
    if !(256..=64 * 1024).contains(&max_token_bytes) {
        cx.err(&format!("{path}.max_token_bytes"), "max_token_bytes must be between 256 and 64KiB");
    }
    let rules = Rules {
        issuer: p.issuer.clone(),
        audiences: p.audiences.clone(),
        algorithms: algorithms.clone(),
        leeway_secs: leeway.as_secs(),
        max_token_bytes,
        principal_claim: p.principal_claim.clone().unwrap_or_else(|| "sub".into()),
        tenant_claim: p.tenant_claim.clone().unwrap_or_else(|| "tenant".into()),
    };
    let source = key_source(cx, path, name, p, &algorithms, prev)?;
    let cache_entries = p.cache_entries.unwrap_or(10_000);
    (cx.error_count() == errors_before).then(|| JwtProvider::new(name, rules, source, cache_entries))
}

fn key_source(
    cx: &mut Ctx,
    path: &str,
    name: &str,
    p: &JwtModel,
    algorithms: &[jsonwebtoken::Algorithm],
    prev: Option<&Arc<JwtProvider>>,
) -> Option<KeySource> {
    if let Some(url) = &p.jwks_url {
        let target = Target::parse(url).map_err(|e| cx.err(&format!("{path}.jwks_url"), e)).ok()?;
        let settings = JwksSettings {
            url: url.clone(),
            target,
            ca: p.jwks_ca.as_ref().map(|c| cx.resolve(c)),
            timeout: dur(p.jwks_timeout, Duration::from_secs(5)),
            refresh: dur(p.jwks_refresh, Duration::from_secs(600)),
            min_refetch: dur(p.jwks_min_refetch, Duration::from_secs(30)),
        };
        let checks = [
            (
                "jwks_timeout",
                (Duration::from_millis(100)..=Duration::from_secs(60)).contains(&settings.timeout),
                "between 100ms and 60s",
            ),
            ("jwks_refresh", settings.refresh >= Duration::from_secs(10), "at least 10s"),
            ("jwks_min_refetch", settings.min_refetch >= Duration::from_secs(1), "at least 1s"),
        ];
        cx.require(path, &checks);
        if let Some(KeySource::Jwks(old)) = prev.map(|p| &p.source)
            && old.settings == settings
        {
            return Some(KeySource::Jwks(old.clone()));
        }
        return match Jwks::new(name, settings) {
            Ok(j) => Some(KeySource::Jwks(Arc::new(j))),
            Err(e) => {
                cx.err(&format!("{path}.jwks_ca"), e);
                None
            }
        };
    }
    let key = if let Some(file) = &p.public_key {
        let file = cx.resolve(file);
        let pem = std::fs::read(&file)
            .map_err(|e| cx.err(&format!("{path}.public_key"), format!("cannot read {}: {e}", file.display())))
            .ok()?;
        from_pem(&pem, algorithms)
            .map_err(|e| cx.err(&format!("{path}.public_key"), format!("{}: {e}", file.display())))
            .ok()?
    } else {
        from_secret(&read_secret(cx, path, p.secret_file.as_deref(), p.secret_env.as_deref())?)
    };
    Some(KeySource::Fixed(Arc::new(KeySet { keys: vec![key] })))
}

fn authorizer(
    cx: &mut Ctx,
    path: &str,
    name: &str,
    a: &model::ExternalAuthorizer,
    prev: Option<&Arc<Authorizer>>,
) -> Option<Arc<Authorizer>> {
    let target = Target::parse(&a.url).map_err(|e| cx.err(&format!("{path}.url"), e)).ok()?;
    let mut send_headers = Vec::new();
    let names = if a.send_headers.is_empty() { vec!["authorization".to_string()] } else { a.send_headers.clone() };
    for (i, h) in names.iter().enumerate() {
        match http::HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()) {
            Ok(n) => send_headers.push(n),
            Err(_) => cx.err(&format!("{path}.send_headers[{i}]"), format!("{h:?} is not a header name")),
        }
    }
    for (i, part) in a.send.iter().enumerate() {
        if !["method", "path", "query", "client_ip"].contains(&part.as_str()) {
            cx.err(&format!("{path}.send[{i}]"), format!("{part:?}: send lists method, path, query, client_ip"));
        }
    }
    let sends = |p: &str| a.send.iter().any(|x| x == p);
    let settings = ExternalSettings {
        target,
        ca: a.ca.as_ref().map(|c| cx.resolve(c)),
        timeout: dur(a.timeout, Duration::from_millis(200)),
        send_headers,
        send_method: sends("method"),
        send_path: sends("path"),
        send_query: sends("query"),
        send_client_ip: sends("client_ip"),
        cache_ttl: dur(a.cache_ttl, Duration::from_secs(60)),
        negative_ttl: dur(a.negative_ttl, Duration::from_secs(5)),
        cache_entries: a.cache_entries.unwrap_or(100_000),
        on_error: a.on_error.unwrap_or_default(),
    };
    let s = &settings;
    let checks = [
        ("timeout", (Duration::from_millis(1)..=Duration::from_secs(30)).contains(&s.timeout), "between 1ms and 30s"),
        ("cache_ttl", s.cache_ttl <= Duration::from_secs(3600), "at most 1h"),
        ("negative_ttl", s.negative_ttl <= s.cache_ttl || s.cache_ttl.is_zero(), "at most cache_ttl"),
        ("cache_entries", s.cache_entries >= 1, "at least 1"),
    ];
    cx.require(path, &checks);
    if let Some(p) = prev.filter(|p| p.settings == settings) {
        return Some(p.clone());
    }
    Authorizer::new(name, settings).map(Arc::new).map_err(|e| cx.err(&format!("{path}.ca"), e)).ok()
}

/// TLS settings for an upstream's `https://` targets: `None` when it has none.
pub(super) fn upstream_tls(cx: &mut Ctx, path: &str, u: &model::Upstream) -> Option<UpstreamTlsRt> {
    let https = u.targets.iter().any(|t| t.starts_with("https://"));
    let Some(t) = u.tls.as_ref() else {
        // https targets without a tls block: the system roots, no client certificate.
        return https
            .then(|| outbound::tls_client(None, None).map_err(|e| cx.err(path, e)).ok())
            .flatten()
            .map(|config| UpstreamTlsRt { config, server_name: None, fingerprint: [0; 32] });
    };
    if !https {
        cx.err(&format!("{path}.tls"), "tls applies to https:// targets; this upstream has none");
        return None;
    }
    if t.cert.is_some() != t.key.is_some() {
        cx.err(&format!("{path}.tls"), "tls.cert and tls.key go together");
        return None;
    }
    let ca = t.ca.as_ref().map(|p| cx.resolve(p));
    let identity = t.cert.as_ref().zip(t.key.as_ref()).map(|(c, k)| (cx.resolve(c), cx.resolve(k)));
    let mut hasher = sha2::Sha256::new();
    for file in ca.iter().chain(identity.iter().flat_map(|(c, k)| [c, k])) {
        hasher.update(std::fs::read(file).unwrap_or_default());
    }
    let config = outbound::tls_client(ca.as_deref(), identity.as_ref().map(|(c, k)| (c.as_path(), k.as_path())))
        .map_err(|e| cx.err(&format!("{path}.tls"), e))
        .ok()?;
    Some(UpstreamTlsRt { config, server_name: t.server_name.clone(), fingerprint: hasher.finalize().into() })
}

/// An HMAC secret from `secret_file` (one trailing newline trimmed) or `secret_env`; at least
/// 32 bytes.
fn read_secret(cx: &mut Ctx, path: &str, file: Option<&std::path::Path>, env: Option<&str>) -> Option<Vec<u8>> {
    let (field, secret) = if let Some(file) = file {
        let file = cx.resolve(file);
        let mut bytes = std::fs::read(&file)
            .map_err(|e| cx.err(&format!("{path}.secret_file"), format!("cannot read {}: {e}", file.display())))
            .ok()?;
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
        }
        ("secret_file", bytes)
    } else {
        let var = env.unwrap_or_default();
        let bytes = std::env::var_os(var)
            .map(|v| v.into_encoded_bytes())
            .ok_or_else(|| cx.err(&format!("{path}.secret_env"), format!("environment variable {var:?} is not set")))
            .ok()?;
        ("secret_env", bytes)
    };
    if secret.len() < 32 {
        cx.err(&format!("{path}.{field}"), "an HMAC secret must be at least 32 bytes (256 bits)");
        return None;
    }
    Some(secret)
}

/// Request signers by upstream name. Secrets are read on every compile, so a reload
/// rotates them.
pub(super) fn signers(cx: &mut Ctx, cfg: &model::Config) -> BTreeMap<String, Arc<SignRt>> {
    let mut out = BTreeMap::new();
    for (name, u) in &cfg.upstreams {
        let Some(s) = &u.sign else { continue };
        let path = format!("upstreams.{name}.sign");
        if usize::from(s.secret_file.is_some()) + usize::from(s.secret_env.is_some()) != 1 {
            cx.err(&path, format!("{path} needs exactly one of secret_file, secret_env"));
            continue;
        }
        let bases: Vec<String> =
            u.targets.iter().filter_map(|t| crate::proxy::upstream::parse_target(t).ok().map(|t| t.base)).collect();
        if bases.windows(2).any(|w| w.first() != w.last()) {
            cx.err(&format!("upstreams.{name}.targets"), "signed upstreams need the same base path on every target");
        }
        let Some(secret) = read_secret(cx, &path, s.secret_file.as_deref(), s.secret_env.as_deref()) else { continue };
        let hash_body = s.body.unwrap_or_default() == model::SignBody::Hash;
        out.insert(name.clone(), Arc::new(SignRt::new(&secret, hash_body, bases.first().cloned().unwrap_or_default())));
    }
    out
}

/// A route's `auth`: the compiled requirements (none for `auth: none` or no `auth`) and the
/// extra headers to strip (lowercase, `-` spelling).
pub(super) fn route_auth(
    cx: &mut Ctx,
    p: &str,
    spec: Option<&RouteAuthSpec>,
    auth: &AuthRt,
    cfg: &model::AuthProviders,
) -> (Option<RouteAuthRt>, Vec<String>) {
    let Some(a) = spec.and_then(RouteAuthSpec::required) else { return (None, Vec::new()) };
    let mut strip = Vec::new();
    for (i, h) in a.strip_headers.iter().enumerate() {
        let n = h.to_ascii_lowercase().replace('_', "-");
        if http::HeaderName::from_bytes(n.as_bytes()).is_err() {
            cx.err(&format!("{p}.auth.strip_headers[{i}]"), format!("{h:?} is not a header name"));
        }
        strip.push(n);
    }
    let jwt = a.jwt.as_ref().and_then(|name| match auth.jwt.get(name) {
        Some(p) => Some(p.clone()),
        None => {
            if !cfg.jwt.contains_key(name) {
                cx.err(&format!("{p}.auth.jwt"), format!("JWT provider {name:?} is not defined under auth.jwt"));
            }
            None
        }
    });
    let external = a.external.as_ref().and_then(|name| match auth.external.get(name) {
        Some(x) => Some(x.clone()),
        None => {
            if !cfg.external.contains_key(name) {
                cx.err(
                    &format!("{p}.auth.external"),
                    format!("authorizer {name:?} is not defined under auth.external"),
                );
            }
            None
        }
    });
    let api_key = a.api_key.unwrap_or(false);
    let mtls = a.mtls.unwrap_or(false);
    if !api_key && !mtls && a.jwt.is_none() && a.external.is_none() {
        cx.err(
            &format!("{p}.auth"),
            "auth must name a method (api_key: true, jwt: <provider>, mtls: true, external: <authorizer>) or be `none`",
        );
    }
    if (!a.scopes.is_empty() || !a.claims.is_empty()) && a.jwt.is_none() && a.external.is_none() {
        cx.err(
            &format!("{p}.auth"),
            "scopes and claims come from a token or an authorizer: the route needs a jwt or external method",
        );
    }
    if (a.jwt.is_some() && jwt.is_none()) || (a.external.is_some() && external.is_none()) {
        return (None, strip);
    }
    let rt = RouteAuthRt {
        api_key,
        jwt,
        mtls,
        external,
        require: a.require.unwrap_or(Require::All),
        scopes: a.scopes.clone(),
        claims: a.claims.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    };
    (Some(rt), strip)
}

/// A resource policy.
pub(super) fn policy(cx: &mut Ctx, path: &str, name: &str, p: Option<&model::Policy>) -> Option<PolicyRt> {
    let p = p?;
    if p.allow_ips.is_empty() && p.deny_ips.is_empty() {
        cx.err(path, format!("{path} lists neither allow_ips nor deny_ips"));
    }
    Some(PolicyRt {
        name: Arc::from(name),
        allow: p.allow_ips.clone(),
        deny: p.deny_ips.clone(),
        dry_run: p.dry_run.unwrap_or(false),
    })
}

/// A route's CORS policy.
pub(super) fn cors(cx: &mut Ctx, path: &str, c: Option<&model::Cors>, route_methods: &[String]) -> Option<CorsRt> {
    let c = c?;
    let mut origins = Vec::new();
    let any_origin = c.origins.iter().any(|o| o == "*");
    for (i, o) in c.origins.iter().enumerate() {
        let ok = o == "*"
            || o.parse::<http::Uri>().is_ok_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https"))
                    && u.host().is_some()
                    && u.path_and_query().is_none_or(|p| p.as_str().is_empty() || p.as_str() == "/")
                    && !o.ends_with('/')
            });
        if !ok {
            cx.err(
                &format!("{path}.origins[{i}]"),
                format!("{o:?} is not an origin like https://app.example.com (or \"*\")"),
            );
        }
        origins.push(o.to_ascii_lowercase());
    }
    if c.origins.is_empty() {
        cx.err(path, format!("{path}.origins must list at least one origin"));
    }
    let credentials = c.credentials.unwrap_or(false);
    if any_origin && credentials {
        cx.err(path, "origins [\"*\"] cannot be combined with credentials: true (any site could act as the user)");
    }
    let names = if !c.methods.is_empty() {
        c.methods.clone()
    } else if !route_methods.is_empty() {
        route_methods.to_vec()
    } else {
        vec!["GET".into(), "HEAD".into(), "POST".into()]
    };
    let methods: Vec<http::Method> =
        names.iter().filter_map(|m| http::Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok()).collect();
    if methods.len() != names.len() {
        cx.err(&format!("{path}.methods"), "methods must be HTTP methods");
    }
    let list =
        |items: Vec<String>| (!items.is_empty()).then(|| http::HeaderValue::from_str(&items.join(", ")).ok()).flatten();
    let headers: Vec<String> = c.headers.iter().map(|h| h.to_ascii_lowercase()).collect();
    for (field, items) in [("headers", &c.headers), ("expose_headers", &c.expose_headers)] {
        if items.iter().any(|h| http::HeaderName::from_bytes(h.as_bytes()).is_err()) {
            cx.err(&format!("{path}.{field}"), format!("{field} must be header names"));
        }
    }
    let max_age = dur(c.max_age, Duration::from_secs(600));
    if max_age > Duration::from_secs(86_400) {
        cx.err(&format!("{path}.max_age"), "max_age must be at most 24h");
    }
    Some(CorsRt {
        origins,
        any_origin,
        methods_value: list(methods.iter().map(|m| m.to_string()).collect())
            .unwrap_or(http::HeaderValue::from_static("GET")),
        methods,
        headers_value: list(headers.clone()),
        headers,
        expose_value: list(c.expose_headers.iter().map(|h| h.to_ascii_lowercase()).collect()),
        credentials,
        max_age_value: http::HeaderValue::from(max_age.as_secs()),
    })
}
