//! CORS per route, owned by the gateway.
//!
//! A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) for a path whose
//! route (for the requested method) sets `cors` is answered here, before authentication:
//! preflights carry no credentials. An allowed one gets 204 with the allow headers; one from
//! an origin, method or header the route does not allow gets 403 `cors.rejected`.
//!
//! On actual requests from an allowed origin, every response (the upstream's or ours)
//! carries `Access-Control-Allow-Origin` (the origin itself, or `*` for `origins: ["*"]`
//! without credentials), `Vary: Origin`, and the configured credentials and exposed headers.
//! The upstream's own `Access-Control-*` headers are dropped on such routes, so the
//! gateway's policy is the only one a browser sees.

use crate::error::{ErrorKind, GatewayError};
use crate::phases::route::Lookup;
use crate::pipeline::{Flow, RequestCtx};
use crate::proxy::body::RespBody;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};

/// A route's compiled CORS policy.
#[derive(Debug, Clone)]
pub struct CorsRt {
    /// Allowed origins, lowercase `scheme://host[:port]`.
    pub origins: Vec<String>,
    /// `origins: ["*"]`.
    pub any_origin: bool,
    /// Allowed methods.
    pub methods: Vec<Method>,
    /// `Access-Control-Allow-Methods`.
    pub methods_value: HeaderValue,
    /// Allowed request headers, lowercase.
    pub headers: Vec<String>,
    /// `Access-Control-Allow-Headers`, when any.
    pub headers_value: Option<HeaderValue>,
    /// `Access-Control-Expose-Headers`, when any.
    pub expose_value: Option<HeaderValue>,
    /// Cookies and credentials allowed.
    pub credentials: bool,
    /// `Access-Control-Max-Age`.
    pub max_age_value: HeaderValue,
}

impl CorsRt {
    /// True when `origin` may call.
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.any_origin || self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }

    fn allow_origin_value(&self, origin: &HeaderValue) -> HeaderValue {
        if self.any_origin && !self.credentials { HeaderValue::from_static("*") } else { origin.clone() }
    }
}

fn rejected(why: String) -> GatewayError {
    GatewayError::new(ErrorKind::CorsRejected).with_detail(why)
}

/// Answers a CORS preflight when the route for the requested method has `cors`. `None`: not
/// a preflight for such a route (route it normally).
pub fn preflight(ctx: &mut RequestCtx) -> Option<Result<Flow, GatewayError>> {
    if ctx.parts.method != Method::OPTIONS {
        return None;
    }
    let origin = ctx.parts.headers.get(header::ORIGIN)?.clone();
    let wanted = ctx.parts.headers.get(header::ACCESS_CONTROL_REQUEST_METHOD)?;
    let wanted = Method::from_bytes(wanted.as_bytes()).ok()?;
    let (id, params) = match ctx.rt.router.find(ctx.host.as_deref(), &ctx.path, &wanted) {
        Lookup::Found(id, params) => (id, params),
        // The path exists for other methods: if its route has CORS, the method is refused
        // by CORS (the browser learns nothing else); otherwise route normally.
        Lookup::MethodNotAllowed(allow) => match ctx.rt.router.find(ctx.host.as_deref(), &ctx.path, allow.first()?) {
            Lookup::Found(id, params) => (id, params),
            _ => return None,
        },
        Lookup::NotFound => return None,
    };
    let route = ctx.rt.routes.get(id)?.clone();
    let cors = route.cors.clone()?;
    ctx.route = Some(route);
    ctx.cors_preflight = true;
    ctx.params = params;
    Some(answer(ctx, &cors, &origin, &wanted))
}

fn answer(ctx: &RequestCtx, cors: &CorsRt, origin: &HeaderValue, wanted: &Method) -> Result<Flow, GatewayError> {
    let origin_str = origin.to_str().unwrap_or_default();
    if !cors.allows_origin(origin_str) {
        return Err(rejected(format!("origin {origin_str:?} is not allowed")));
    }
    if !cors.methods.contains(wanted) {
        return Err(rejected(format!("method {wanted} is not allowed")));
    }
    for v in ctx.parts.headers.get_all(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        for name in v.to_str().unwrap_or_default().split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if !cors.headers.iter().any(|h| h.eq_ignore_ascii_case(name)) {
                return Err(rejected(format!("header {name:?} is not allowed")));
            }
        }
    }
    let mut resp = http::Response::new(RespBody::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let h = resp.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, cors.allow_origin_value(origin));
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, cors.methods_value.clone());
    if let Some(v) = &cors.headers_value {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
    }
    if cors.credentials {
        h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    }
    h.insert(header::ACCESS_CONTROL_MAX_AGE, cors.max_age_value.clone());
    h.insert(
        header::VARY,
        HeaderValue::from_static("Origin, Access-Control-Request-Method, Access-Control-Request-Headers"),
    );
    Ok(Flow::Respond(resp))
}

const UPSTREAM_CORS: [HeaderName; 6] = [
    header::ACCESS_CONTROL_ALLOW_ORIGIN,
    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
    header::ACCESS_CONTROL_ALLOW_METHODS,
    header::ACCESS_CONTROL_ALLOW_HEADERS,
    header::ACCESS_CONTROL_EXPOSE_HEADERS,
    header::ACCESS_CONTROL_MAX_AGE,
];

/// Adds the actual-request CORS headers to a response (called by the response phase).
pub fn respond(ctx: &RequestCtx, headers: &mut HeaderMap) {
    let Some(cors) = ctx.route.as_ref().and_then(|r| r.cors.as_ref()) else { return };
    if ctx.cors_preflight {
        return;
    }
    for name in &UPSTREAM_CORS {
        headers.remove(name);
    }
    let Some(origin) = ctx.parts.headers.get(header::ORIGIN) else { return };
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    if !cors.allows_origin(origin.to_str().unwrap_or_default()) {
        return;
    }
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, cors.allow_origin_value(origin));
    if cors.credentials {
        headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    }
    if let Some(v) = &cors.expose_value {
        headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v.clone());
    }
}
