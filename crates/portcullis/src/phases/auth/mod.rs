//! Phase `authenticate`: the methods a route accepts (`api_key`, `jwt`, `mtls`, `external`), combined
//! with `require: all` (every one must pass, the default) or `any` (one is enough), then the
//! route's required scopes and claims. Fails closed: a route that names methods never lets a
//! request through without one passing.
//!
//! Codes: nothing presented → 401 `auth.missing`; a bad token → 401 `auth.invalid_token`; an
//! expired one → 401 `auth.expired`; a bad API key → 403 `auth.invalid_key`; valid but
//! lacking scopes or claims, or denied by the authorizer → 403 `auth.forbidden`; authorizer
//! unreachable → 503 `auth.unavailable`. Bodies are uniform; only the code differs.
//! Routes with a `jwt` method answer 401 and 403 with an RFC 6750 `WWW-Authenticate`.

pub mod api_key;
pub mod external;
pub mod jwt;
pub mod keys;
pub mod provider;

use crate::config::model::Require;
use crate::error::{ErrorKind, GatewayError};
use crate::pipeline::{Flow, RequestCtx};
use http::HeaderValue;
use provider::JwtProvider;
use serde_json::Value;
use std::sync::Arc;

/// What verified credentials say about a caller. Made once per token (remembered with it) or
/// per authorizer decision, and shared by the requests that present them, header values
/// included, so a request copies nothing.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// Subject: the token's principal claim, the certificate's CN (or first SAN), the key id.
    pub subject: Option<String>,
    /// Scopes held.
    pub scopes: Vec<String>,
    /// Tenant, when the token names one.
    pub tenant: Option<String>,
    /// The token's claims (or the authorizer's context), for claim requirements.
    pub claims: Arc<serde_json::Map<String, Value>>,
    /// `subject`, `scopes` (space-separated) and `tenant` as header values, when valid ones.
    pub values: [Option<HeaderValue>; 3],
}

impl Identity {
    /// An identity; header values are made here, once.
    pub fn new(
        subject: Option<String>,
        scopes: Vec<String>,
        tenant: Option<String>,
        claims: Arc<serde_json::Map<String, Value>>,
    ) -> Identity {
        let value = |s: Option<&str>| s.and_then(|s| HeaderValue::from_str(s).ok());
        let joined = (!scopes.is_empty()).then(|| scopes.join(" "));
        let values = [value(subject.as_deref()), value(joined.as_deref()), value(tenant.as_deref())];
        Identity { subject, scopes, tenant, claims, values }
    }

    /// False when the subject or tenant is present but cannot be a header value (control
    /// characters): such an identity could not reach the backend and is refused.
    pub fn names_fit_headers(&self) -> bool {
        let [subject, _, tenant] = &self.values;
        self.subject.is_some() == subject.is_some() && self.tenant.is_some() == tenant.is_some()
    }
}

/// Who the caller is, as far as the methods that passed can tell.
#[derive(Debug, Clone, Default)]
pub struct Principal {
    /// The method that named the principal: `jwt`, `external`, `mtls` or `api_key`.
    pub method: &'static str,
    /// What the method verified.
    pub id: Arc<Identity>,
}

impl Principal {
    fn of(method: &'static str, subject: Option<String>) -> Principal {
        Principal { method, id: Arc::new(Identity::new(subject, Vec::new(), None, Arc::default())) }
    }
}

/// A route's compiled requirements.
#[derive(Debug)]
pub struct RouteAuthRt {
    /// Require an API key.
    pub api_key: bool,
    /// Require a bearer token from this provider.
    pub jwt: Option<Arc<JwtProvider>>,
    /// Require a verified client certificate.
    pub mtls: bool,
    /// Require an allow from this authorizer.
    pub external: Option<Arc<external::Authorizer>>,
    /// All or any of the methods.
    pub require: Require,
    /// Scopes the caller must hold.
    pub scopes: Vec<String>,
    /// Claims the caller's token must carry.
    pub claims: Vec<(String, Value)>,
}

/// The phase.
pub async fn authenticate(ctx: &mut RequestCtx) -> Result<Flow, GatewayError> {
    let Some(route) = ctx.route.clone() else { return Ok(Flow::Continue) };
    let Some(auth) = route.auth.as_ref() else { return Ok(Flow::Continue) };
    let challenge = auth.jwt.is_some();
    let principal = methods(ctx, auth).await;
    if auth.api_key && ctx.key.is_none() {
        // `any` passed on another method: the key still never reaches the backend.
        ctx.parts.headers.remove(&ctx.rt.key_header);
    }
    let principal = principal.map_err(|e| with_challenge(e, challenge))?;
    if let Err(why) = requirements(auth, &principal) {
        return Err(with_challenge(GatewayError::new(ErrorKind::AuthForbidden).with_detail(why), challenge));
    }
    ctx.principal = Some(principal);
    Ok(Flow::Continue)
}

/// Runs the methods (cheapest first) and merges what passed.
async fn methods(ctx: &mut RequestCtx, auth: &RouteAuthRt) -> Result<Principal, GatewayError> {
    let mut passed: Vec<Principal> = Vec::new();
    let mut failure: Option<GatewayError> = None;
    for method in [Method::Mtls, Method::ApiKey, Method::Jwt, Method::External] {
        let result = match method {
            Method::Mtls if auth.mtls => mtls(ctx),
            Method::ApiKey if auth.api_key => api_key::check(ctx),
            Method::Jwt => match &auth.jwt {
                Some(provider) => bearer(ctx, provider).await,
                None => continue,
            },
            Method::External => match &auth.external {
                Some(authorizer) => ask(ctx, authorizer).await,
                None => continue,
            },
            _ => continue,
        };
        match result {
            Ok(p) => {
                passed.push(p);
                if auth.require == Require::Any {
                    break;
                }
            }
            Err(e) if auth.require == Require::All => return Err(e),
            // `any`: remember the most telling failure (a bad credential beats a missing one).
            Err(e) => {
                if failure.as_ref().is_none_or(|f| f.kind == ErrorKind::AuthMissing) {
                    failure = Some(e);
                }
            }
        }
    }
    if passed.is_empty() {
        return Err(failure.unwrap_or_else(|| GatewayError::new(ErrorKind::AuthMissing)));
    }
    Ok(merge(passed))
}

#[derive(Clone, Copy)]
enum Method {
    Mtls,
    ApiKey,
    Jwt,
    External,
}

/// One principal from several: the token's view first (it carries scopes and claims), then
/// the certificate's, then the key's.
fn merge(mut passed: Vec<Principal>) -> Principal {
    passed.sort_by_key(|p| match p.method {
        "jwt" => 0,
        "external" => 1,
        "mtls" => 2,
        _ => 3,
    });
    let mut out = passed.remove(0);
    if passed.is_empty() {
        return out;
    }
    let mut id = (*out.id).clone();
    for p in passed {
        if id.subject.is_none() {
            id.subject = p.id.subject.clone();
        }
        for s in &p.id.scopes {
            if !id.scopes.contains(s) {
                id.scopes.push(s.clone());
            }
        }
    }
    out.id = Arc::new(Identity::new(id.subject, id.scopes, id.tenant, id.claims));
    out
}

fn requirements(auth: &RouteAuthRt, p: &Principal) -> Result<(), String> {
    if let Some(missing) = auth.scopes.iter().find(|s| !p.id.scopes.contains(s)) {
        return Err(format!("scope {missing:?} not held"));
    }
    for (name, want) in &auth.claims {
        let have = p.id.claims.get(name);
        let ok = match have {
            Some(Value::Array(list)) => list.contains(want),
            Some(v) => v == want,
            None => false,
        };
        if !ok {
            return Err(format!("claim {name:?} does not match"));
        }
    }
    Ok(())
}

fn mtls(ctx: &RequestCtx) -> Result<Principal, GatewayError> {
    let cert = ctx.conn.tls.as_ref().and_then(|t| t.client_cert.as_ref());
    let Some(cert) = cert else {
        return Err(GatewayError::new(ErrorKind::AuthMissing).with_detail("no verified client certificate"));
    };
    let subject = cert.common_name.clone().or_else(|| cert.sans.first().cloned());
    Ok(Principal::of("mtls", subject))
}

/// The one `Authorization: Bearer <token>` value.
fn bearer_token(ctx: &RequestCtx) -> Result<&str, GatewayError> {
    let mut values = ctx.parts.headers.get_all(http::header::AUTHORIZATION).iter();
    let Some(value) = values.next() else { return Err(GatewayError::new(ErrorKind::AuthMissing)) };
    let invalid = |why: &str| GatewayError::new(ErrorKind::AuthInvalidToken).with_detail(why.to_string());
    if values.next().is_some() {
        return Err(invalid("Authorization sent more than once"));
    }
    let value = value.to_str().map_err(|_| invalid("Authorization is not ASCII"))?;
    let (scheme, token) = value.split_once(' ').ok_or_else(|| invalid("Authorization is not `Bearer <token>`"))?;
    let token = token.trim_start_matches(' ');
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
        return Err(invalid("Authorization is not `Bearer <token>`"));
    }
    Ok(token)
}

async fn bearer(ctx: &RequestCtx, provider: &JwtProvider) -> Result<Principal, GatewayError> {
    let token = bearer_token(ctx)?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    match provider.verify(&ctx.gw, token, now).await {
        Ok(claims) => Ok(Principal { method: "jwt", id: claims.id.clone() }),
        Err(jwt::TokenError::Expired) => Err(GatewayError::new(ErrorKind::AuthExpired)),
        Err(jwt::TokenError::Invalid(why)) => {
            Err(GatewayError::new(ErrorKind::AuthInvalidToken).with_detail(format!("{}: {why}", provider.name)))
        }
        Err(jwt::TokenError::UnknownKid(kid)) => Err(GatewayError::new(ErrorKind::AuthInvalidToken)
            .with_detail(format!("{}: kid {kid:?} is not in the key set", provider.name))),
    }
}

/// Asks the external authorizer.
async fn ask(ctx: &RequestCtx, authorizer: &external::Authorizer) -> Result<Principal, GatewayError> {
    match authorizer.decide(ctx).await {
        Ok(d) => Ok(Principal { method: "external", id: d.id.clone() }),
        Err(external::AuthzError::Missing) => Err(GatewayError::new(ErrorKind::AuthMissing)),
        Err(external::AuthzError::Denied) => Err(GatewayError::new(ErrorKind::AuthForbidden)
            .with_detail(format!("authorizer {} denied the request", authorizer.name))),
        Err(external::AuthzError::Unavailable(why)) => {
            Err(GatewayError::new(ErrorKind::AuthUnavailable)
                .with_detail(format!("authorizer {}: {why}", authorizer.name)))
        }
    }
}

/// RFC 6750 §3 challenges for routes that take bearer tokens.
fn with_challenge(e: GatewayError, bearer: bool) -> GatewayError {
    if !bearer {
        return e;
    }
    let value = match e.kind {
        ErrorKind::AuthMissing => "Bearer realm=\"portcullis\"",
        ErrorKind::AuthInvalidToken | ErrorKind::AuthExpired => "Bearer realm=\"portcullis\", error=\"invalid_token\"",
        ErrorKind::AuthForbidden => "Bearer realm=\"portcullis\", error=\"insufficient_scope\"",
        _ => return e,
    };
    e.with_challenge(HeaderValue::from_static(value))
}
