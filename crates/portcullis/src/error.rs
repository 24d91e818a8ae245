//! Every response the gateway makes itself is an RFC 9457 problem document with a stable
//! `code`. `ErrorKind` is the one place that maps a cause to status, code and title; the code
//! is also the metric label and the access-log `reason`.

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use std::time::Duration;

/// Who caused the error: the client, the upstream, or the gateway itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client's request was refused.
    Downstream,
    /// The upstream failed or was unavailable.
    Upstream,
    /// A bug or resource problem in the gateway.
    Internal,
}

/// The reasons a request can end at the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Malformed request (framing, headers).
    BadRequest,
    /// Path cannot be normalized safely (`%2f`, `%00`, `..` above root, bad encoding).
    BadPath,
    /// Missing, repeated or invalid `Host`.
    BadHost,
    /// Too many header bytes or header lines.
    HeadersTooLarge,
    /// Request target too long.
    UriTooLong,
    /// Request body over the limit.
    TooLarge,
    /// Request body not received in time.
    BodyTimeout,
    /// No route for host and path.
    RouteNotFound,
    /// TLS SNI and `Host` lead to different routes.
    Misdirected,
    /// A route has the path but not the method.
    MethodNotAllowed,
    /// The route's own bucket is empty.
    RouteLimit,
    /// The global ceiling is reached.
    GlobalLimit,
    /// A shared limit could not be checked because the store (Redis) is down and
    /// `state.on_failure` is `closed`.
    StoreUnavailable,
    /// The client IP is over a rate-based IP rule (403 by default, 429 if the rule says so).
    IpBlocked,
    /// The key's plan limit (over all routes, or for this route) is reached.
    PlanLimit,
    /// The key's quota for the period is used up.
    QuotaExceeded,
    /// The route requires an API key and none was sent.
    AuthMissing,
    /// The API key is unknown, revoked or disabled (one code: no hint which).
    InvalidKey,
    /// The bearer token is malformed, wrongly signed, or not for this gateway.
    AuthInvalidToken,
    /// The bearer token is past its `exp`.
    AuthExpired,
    /// Authenticated, but without the route's required scopes or claims.
    AuthForbidden,
    /// A resource policy refuses the client address.
    PolicyDenied,
    /// A CORS preflight from an origin, method or header the route does not allow.
    CorsRejected,
    /// The WAF blocked the request (the rules that matched are in the WAF log, never in
    /// the answer).
    WafBlocked,
    /// The client address is on the WAF's `ip_deny` list.
    WafIpDenied,
    /// The request body is larger than the WAF inspects and the WAF is set to refuse it.
    WafBodyTooLarge,
    /// The WAF's response phases refused the upstream's answer (CRS: the outbound anomaly
    /// score reached its threshold, e.g. a leaked SQL error or stack trace).
    WafResponseBlocked,
    /// The external authorizer could not be asked (and fails closed).
    AuthUnavailable,
    /// Could not connect to, or lost the connection to, every tried target.
    UpstreamUnavailable,
    /// The upstream answered something that is not valid HTTP.
    UpstreamBadResponse,
    /// The upstream is at `max_concurrency`.
    UpstreamSaturated,
    /// The upstream did not answer in time.
    UpstreamTimeout,
    /// A bug: the gateway could not handle the request.
    Internal,
}

impl ErrorKind {
    /// Every kind, for documentation checks and exhaustive tests.
    pub const ALL: [ErrorKind; 33] = {
        use ErrorKind::*;
        [
            BadRequest,
            BadPath,
            BadHost,
            HeadersTooLarge,
            UriTooLong,
            TooLarge,
            BodyTimeout,
            RouteNotFound,
            Misdirected,
            MethodNotAllowed,
            RouteLimit,
            GlobalLimit,
            StoreUnavailable,
            IpBlocked,
            PlanLimit,
            QuotaExceeded,
            AuthMissing,
            InvalidKey,
            AuthInvalidToken,
            AuthExpired,
            AuthForbidden,
            PolicyDenied,
            CorsRejected,
            WafBlocked,
            WafIpDenied,
            WafBodyTooLarge,
            WafResponseBlocked,
            AuthUnavailable,
            UpstreamUnavailable,
            UpstreamBadResponse,
            UpstreamSaturated,
            UpstreamTimeout,
            Internal,
        ]
    };

    /// HTTP status.
    pub fn status(self) -> StatusCode {
        use ErrorKind::*;
        match self {
            BadRequest | BadPath | BadHost => StatusCode::BAD_REQUEST,
            HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            UriTooLong => StatusCode::URI_TOO_LONG,
            TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            RouteNotFound => StatusCode::NOT_FOUND,
            Misdirected => StatusCode::MISDIRECTED_REQUEST,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            RouteLimit | GlobalLimit | StoreUnavailable => StatusCode::TOO_MANY_REQUESTS,
            IpBlocked | InvalidKey | AuthForbidden | PolicyDenied | CorsRejected | WafBlocked | WafIpDenied => {
                StatusCode::FORBIDDEN
            }
            WafBodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            PlanLimit | QuotaExceeded => StatusCode::TOO_MANY_REQUESTS,
            AuthMissing | AuthInvalidToken | AuthExpired => StatusCode::UNAUTHORIZED,
            UpstreamUnavailable | UpstreamBadResponse | WafResponseBlocked => StatusCode::BAD_GATEWAY,
            UpstreamSaturated | AuthUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable machine-readable code (API contract; also the metric `reason` label).
    pub fn code(self) -> &'static str {
        use ErrorKind::*;
        match self {
            BadRequest => "request.bad_request",
            BadPath => "request.bad_path",
            BadHost => "request.bad_host",
            HeadersTooLarge => "request.headers_too_large",
            UriTooLong => "request.uri_too_long",
            TooLarge => "request.too_large",
            BodyTimeout => "request.timeout",
            RouteNotFound => "route.not_found",
            Misdirected => "route.misdirected",
            MethodNotAllowed => "route.method_not_allowed",
            RouteLimit => "throttle.route_limit",
            GlobalLimit => "throttle.global_limit",
            StoreUnavailable => "throttle.store_unavailable",
            IpBlocked => "throttle.ip_blocked",
            PlanLimit => "throttle.plan_limit",
            QuotaExceeded => "throttle.quota_exceeded",
            AuthMissing => "auth.missing",
            InvalidKey => "auth.invalid_key",
            AuthInvalidToken => "auth.invalid_token",
            AuthExpired => "auth.expired",
            AuthForbidden => "auth.forbidden",
            PolicyDenied => "policy.denied",
            CorsRejected => "cors.rejected",
            WafBlocked => "waf.blocked",
            WafIpDenied => "waf.ip_denied",
            WafBodyTooLarge => "waf.body_too_large",
            WafResponseBlocked => "waf.response_blocked",
            AuthUnavailable => "auth.unavailable",
            UpstreamUnavailable => "upstream.unavailable",
            UpstreamBadResponse => "upstream.bad_response",
            UpstreamSaturated => "upstream.saturated",
            UpstreamTimeout => "upstream.timeout",
            Internal => "internal.error",
        }
    }

    /// Short human title.
    pub fn title(self) -> &'static str {
        use ErrorKind::*;
        match self {
            BadRequest => "Bad request",
            BadPath => "Request path cannot be accepted",
            BadHost => "Missing or invalid Host",
            HeadersTooLarge => "Request headers too large",
            UriTooLong => "Request target too long",
            TooLarge => "Request body too large",
            BodyTimeout => "Request body not received in time",
            RouteNotFound => "No route matches this request",
            Misdirected => "Request sent on a connection for another host",
            MethodNotAllowed => "Method not allowed on this route",
            RouteLimit => "Route rate limit exceeded",
            GlobalLimit => "Gateway rate limit exceeded",
            StoreUnavailable => "Rate limit could not be checked",
            IpBlocked => "Too many requests from this address",
            PlanLimit => "Plan rate limit exceeded",
            QuotaExceeded => "Quota exceeded",
            AuthMissing => "Credentials required",
            InvalidKey => "API key not accepted",
            AuthInvalidToken => "Credentials not accepted",
            AuthExpired => "Credentials expired",
            AuthForbidden => "Not allowed",
            PolicyDenied => "Not allowed from this address",
            CorsRejected => "Cross-origin request not allowed",
            WafBlocked => "Request blocked",
            WafIpDenied => "Not allowed from this address",
            WafBodyTooLarge => "Request body too large to inspect",
            WafResponseBlocked => "Upstream response blocked",
            AuthUnavailable => "Authorization service unavailable",
            UpstreamUnavailable => "Upstream unavailable",
            UpstreamBadResponse => "Upstream sent an invalid response",
            UpstreamSaturated => "Upstream at capacity",
            UpstreamTimeout => "Upstream timed out",
            Internal => "Internal gateway error",
        }
    }

    /// Who is responsible.
    pub fn side(self) -> Side {
        use ErrorKind::*;
        match self {
            UpstreamUnavailable | UpstreamBadResponse | UpstreamSaturated | UpstreamTimeout | AuthUnavailable => {
                Side::Upstream
            }
            Internal => Side::Internal,
            _ => Side::Downstream,
        }
    }
}

/// A request that ends at the gateway, with what the response needs and what the log needs.
#[derive(Debug)]
pub struct GatewayError {
    /// The reason.
    pub kind: ErrorKind,
    /// Detail for the log only; never sent to the client.
    pub detail: Option<String>,
    /// For 405: the methods the path allows.
    pub allow: Vec<Method>,
    /// For 429: when to retry.
    pub retry_after: Option<Duration>,
    /// A status other than the kind's usual one (an IP rule configured to answer 429).
    pub status: Option<StatusCode>,
    /// `WWW-Authenticate` for a 401 or 403.
    pub challenge: Option<HeaderValue>,
}

impl GatewayError {
    /// An error of this kind.
    pub fn new(kind: ErrorKind) -> GatewayError {
        GatewayError { kind, detail: None, allow: Vec::new(), retry_after: None, status: None, challenge: None }
    }

    /// An internal error with a log detail.
    pub fn internal(detail: impl Into<String>) -> GatewayError {
        GatewayError::new(ErrorKind::Internal).with_detail(detail)
    }

    /// Adds a detail for the log.
    pub fn with_detail(mut self, detail: impl Into<String>) -> GatewayError {
        self.detail = Some(detail.into());
        self
    }

    /// Sets `Allow` for a 405.
    pub fn with_allow(mut self, allow: Vec<Method>) -> GatewayError {
        self.allow = allow;
        self
    }

    /// Answers with `status` instead of the kind's usual one.
    pub fn with_status(mut self, status: StatusCode) -> GatewayError {
        self.status = Some(status);
        self
    }

    /// Sets `WWW-Authenticate`.
    pub fn with_challenge(mut self, challenge: HeaderValue) -> GatewayError {
        self.challenge = Some(challenge);
        self
    }

    /// The status sent.
    pub fn status(&self) -> StatusCode {
        self.status.unwrap_or(self.kind.status())
    }

    /// Sets `Retry-After` for a 429.
    pub fn with_retry_after(mut self, after: Duration) -> GatewayError {
        self.retry_after = Some(after);
        self
    }

    /// The problem+json body.
    pub fn body(&self, request_id: &HeaderValue) -> Bytes {
        problem_body_with(self.kind, self.status(), request_id.to_str().unwrap_or_default())
    }

    /// Status and headers for the problem response (body from [`GatewayError::body`]; the
    /// response phase adds `x-request-id`).
    pub fn head(&self) -> http::response::Parts {
        let (mut parts, ()) = http::Response::new(()).into_parts();
        parts.status = self.status();
        let h = &mut parts.headers;
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.kind == ErrorKind::MethodNotAllowed {
            let allow: Vec<&str> = self.allow.iter().map(Method::as_str).collect();
            if let Ok(v) = HeaderValue::from_str(&allow.join(", ")) {
                h.insert(header::ALLOW, v);
            }
        }
        if let Some(c) = &self.challenge {
            h.insert(header::WWW_AUTHENTICATE, c.clone());
        }
        if let Some(after) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs(after)));
        }
        parts
    }
}

/// Whole seconds to wait, rounded up, at least 1.
pub fn retry_after_secs(d: Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}

/// The RFC 9457 body for a code. `request_id` is generated by us or validated to
/// `[A-Za-z0-9._-]`, so it needs no escaping beyond what serde_json does anyway.
///
/// Refusals must stay cheap under a flood, so the body is two fixed fragments per kind
/// around the id, not a serialized document. Titles and codes are ASCII without quotes or
/// backslashes (checked by a test), and request ids are `[A-Za-z0-9._:-]`.
pub fn problem_body(kind: ErrorKind, request_id: &str) -> Bytes {
    problem_body_with(kind, kind.status(), request_id)
}

/// [`problem_body`] with a status other than the kind's usual one.
pub fn problem_body_with(kind: ErrorKind, status: StatusCode, request_id: &str) -> Bytes {
    let code = kind.code();
    let mut b = Vec::with_capacity(160 + request_id.len());
    b.extend_from_slice(b"{\"type\":\"urn:portcullis:problem:");
    b.extend_from_slice(code.as_bytes());
    b.extend_from_slice(b"\",\"title\":\"");
    b.extend_from_slice(kind.title().as_bytes());
    b.extend_from_slice(b"\",\"status\":");
    b.extend_from_slice(status.as_str().as_bytes());
    b.extend_from_slice(b",\"code\":\"");
    b.extend_from_slice(code.as_bytes());
    b.extend_from_slice(b"\",\"request_id\":\"");
    if request_id.bytes().all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(&c)) {
        b.extend_from_slice(request_id.as_bytes());
    }
    b.extend_from_slice(b"\"}");
    Bytes::from(b)
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.detail {
            Some(d) => write!(f, "{}: {d}", self.kind.code()),
            None => f.write_str(self.kind.code()),
        }
    }
}

impl std::error::Error for GatewayError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_document_has_the_contract_fields() {
        let body = problem_body(ErrorKind::RouteNotFound, "abc");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["status"], 404);
        assert_eq!(v["code"], "route.not_found");
        assert_eq!(v["request_id"], "abc");
        assert!(v["type"].as_str().unwrap().ends_with("route.not_found"));
        assert!(v["title"].is_string());
    }

    #[test]
    fn every_problem_body_is_valid_json() {
        for kind in ErrorKind::ALL {
            let v: serde_json::Value = serde_json::from_slice(&problem_body(kind, "id-1")).unwrap();
            assert_eq!(v["code"], kind.code());
            assert_eq!(v["status"], kind.status().as_u16());
            assert_eq!(v["title"], kind.title());
            assert_eq!(v["request_id"], "id-1");
        }
        let v: serde_json::Value = serde_json::from_slice(&problem_body(ErrorKind::BadRequest, "evil\"id")).unwrap();
        assert_eq!(v["request_id"], "", "an id that would need escaping is left out");
    }

    #[test]
    fn retry_after_rounds_up_to_at_least_one() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
