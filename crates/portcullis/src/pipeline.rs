//! The request pipeline: the one place that lists the phases in order (DESIGN §3).
//!
//! Cheap, identity-free checks run first so that floods are shed at the lowest cost:
//! hygiene (framing, limits, path) → per-IP rules → route → resource policy → authenticate
//! → throttle → validate (body limits) → build the upstream request (identity headers
//! included) → forward; then the phases over the upstream's answer (the WAF's response
//! rules). The response phase and logging always run, for errors too.

use crate::config::Runtime;
use crate::config::runtime::RouteRt;
use crate::error::GatewayError;
use crate::headers;
use crate::phases::{
    auth, hygiene, ip_rules, policy, response, route, sign, throttle, upstream_request, validate, waf, waf_response,
};
use crate::proxy::{self, body::ReqBody, body::RespBody};
use crate::server::ConnInfo;
use crate::state::Gateway;
use hyper::body::Incoming;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

/// What a phase decided.
// Not boxed: the upstream phase returns `Respond` on every proxied request, and a box
// would cost an allocation each time to save a few hundred bytes of stack.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Flow {
    /// Go on with the next phase.
    Continue,
    /// Answer with this response now (the upstream's, or one a phase made).
    Respond(http::Response<RespBody>),
}

/// The request phases, in order. `response` and `logging` run after any of them ends the
/// request (see [`handle`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Request id, client IP, limits, Host, path normalization.
    EarlyRequest,
    /// Per-IP rate rules not scoped to routes: shed floods before any route work.
    PreRouteGuard,
    /// Host → path → method.
    Route,
    /// Global and route resource policies on the client IP.
    Policy,
    /// WAF IP lists, then rules over the request line, headers and cookies (CRS phase 1).
    WafHeaders,
    /// The route's methods (mTLS, API key, JWT), scopes and claims → principal and plan.
    Authenticate,
    /// Route-scoped IP rules, the route's bucket, then the global ceiling.
    Throttle,
    /// Body size limit and receive deadline.
    Validate,
    /// WAF rules over the body (CRS phase 2): the body is read, inspected, then forwarded.
    WafBody,
    /// Hop-by-hop and spoofable identity headers out; forwarding and identity headers in.
    UpstreamRequest,
    /// HMAC signature for upstreams that verify the gateway sent the request.
    Sign,
    /// Pick a target, send, get the response head.
    Upstream,
}

/// The order. Reading this list is reading the gateway.
pub const PHASES: &[Phase] = &[
    Phase::EarlyRequest,
    Phase::PreRouteGuard,
    Phase::Route,
    Phase::Policy,
    Phase::WafHeaders,
    Phase::Authenticate,
    Phase::Throttle,
    Phase::Validate,
    Phase::WafBody,
    Phase::UpstreamRequest,
    Phase::Sign,
    Phase::Upstream,
];

/// The phases over an upstream's answer, after [`Phase::Upstream`]; answers a phase makes
/// itself skip them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponsePhase {
    /// WAF rules over status, headers and a bounded body prefix (CRS phases 3 to 5).
    WafResponse,
}

/// Their order.
pub const RESPONSE_PHASES: &[ResponsePhase] = &[ResponsePhase::WafResponse];

/// The rate-limit state reported in `RateLimit` headers: the tightest layer seen.
#[derive(Debug, Clone)]
pub struct RateReport {
    /// `RateLimit-Policy` of the layer.
    pub policy: http::HeaderValue,
    /// Its name in the `RateLimit` field.
    pub name: &'static str,
    /// Tokens left.
    pub remaining: u32,
    /// Seconds until a token is available (0 when some are left).
    pub reset_secs: u64,
}

/// Everything a request carries through the phases.
pub struct RequestCtx {
    /// Process-wide state.
    pub gw: Arc<Gateway>,
    /// The config snapshot this request runs on, start to end.
    pub rt: Arc<Runtime>,
    /// The client connection.
    pub conn: Arc<ConnInfo>,
    /// Method, URI, version, headers (rewritten in place for the upstream).
    pub parts: http::request::Parts,
    /// The client's body until `validate` wraps it.
    pub body: Option<Incoming>,
    /// The body to send upstream.
    pub upstream_body: Option<ReqBody>,
    /// When the request head arrived.
    pub started: Instant,
    /// Request id (ours, or a trusted proxy's).
    pub request_id: http::HeaderValue,
    /// Client address (socket, or from a trusted proxy's header).
    pub client_ip: IpAddr,
    /// Host as sent (with port), for forwarding.
    pub host_header: Option<http::HeaderValue>,
    /// Host for routing: lowercase, no port, no trailing dot.
    pub host: Option<String>,
    /// The normalized path: routed, checked and forwarded.
    pub path: String,
    /// Path and query as sent to the upstream (before the target's base path).
    pub upstream_path: bytes::Bytes,
    /// The matched route.
    pub route: Option<Arc<RouteRt>>,
    /// The caller's API key, once verified.
    pub key: Option<Arc<crate::keys::KeyEntry>>,
    /// The key's plan.
    pub plan: Option<Arc<crate::keys::plans::PlanRt>>,
    /// Who the caller is, once authenticated.
    pub principal: Option<auth::Principal>,
    /// Path parameters of the matched route.
    pub params: Vec<(String, String)>,
    /// For `RateLimit` headers.
    pub rate: Option<RateReport>,
    /// The request asks for a protocol switch (WebSocket).
    pub upgrade: bool,
    /// The request is a CORS preflight the gateway answers.
    pub cors_preflight: bool,
    /// Time the upstream took to send its response head.
    pub upstream_time: Option<std::time::Duration>,
    /// Ids of WAF rules that matched, for the access log.
    pub waf_rules: Vec<u32>,
    /// The WAF transaction between `waf_headers`, `waf_body` and `waf_response`.
    pub waf: Option<waf::Pending>,
}

impl RequestCtx {
    fn new(gw: Arc<Gateway>, conn: Arc<ConnInfo>, req: http::Request<Incoming>) -> RequestCtx {
        let (parts, body) = req.into_parts();
        RequestCtx {
            rt: gw.runtime.load_full(),
            gw,
            client_ip: conn.peer.ip().to_canonical(),
            conn,
            parts,
            body: Some(body),
            upstream_body: None,
            started: Instant::now(),
            request_id: http::HeaderValue::from_static(""),
            host_header: None,
            host: None,
            path: String::new(),
            upstream_path: bytes::Bytes::new(),
            route: None,
            key: None,
            plan: None,
            principal: None,
            params: Vec::new(),
            rate: None,
            upgrade: false,
            cors_preflight: false,
            upstream_time: None,
            waf_rules: Vec::new(),
            waf: None,
        }
    }
}

async fn run(ctx: &mut RequestCtx) -> Result<http::Response<RespBody>, GatewayError> {
    for phase in PHASES {
        let flow = match phase {
            Phase::EarlyRequest => hygiene::early_request(ctx)?,
            Phase::PreRouteGuard => ip_rules::pre_route(ctx)?,
            Phase::Route => route::route(ctx)?,
            Phase::Policy => policy::policy(ctx)?,
            Phase::WafHeaders => waf::headers(ctx)?,
            Phase::Authenticate => auth::authenticate(ctx).await?,
            Phase::Throttle => throttle::throttle(ctx).await?,
            Phase::Validate => validate::validate(ctx)?,
            Phase::WafBody => waf::body(ctx).await?,
            Phase::UpstreamRequest => upstream_request::prepare(ctx)?,
            Phase::Sign => sign::sign(ctx).await?,
            Phase::Upstream => proxy::forward(ctx).await?,
        };
        match flow {
            Flow::Respond(resp) if *phase == Phase::Upstream => return upstream_response(ctx, resp).await,
            Flow::Respond(resp) => return Ok(resp),
            Flow::Continue => {}
        }
    }
    Err(GatewayError::internal("the pipeline ended without a response"))
}

async fn upstream_response(
    ctx: &mut RequestCtx,
    mut resp: http::Response<RespBody>,
) -> Result<http::Response<RespBody>, GatewayError> {
    for phase in RESPONSE_PHASES {
        resp = match phase {
            ResponsePhase::WafResponse => waf_response::inspect(ctx, resp).await?,
        };
    }
    Ok(resp)
}

/// Handles one request: phases, then the response phase and logging, whatever happened.
pub async fn handle(gw: Arc<Gateway>, conn: Arc<ConnInfo>, req: http::Request<Incoming>) -> http::Response<RespBody> {
    let mut ctx = RequestCtx::new(gw, conn, req);
    let outcome = run(&mut ctx).await;
    let (mut resp, error) = match outcome {
        Ok(resp) => (resp, None),
        Err(e) => {
            if ctx.request_id.is_empty() {
                ctx.request_id = headers::new_request_id();
            }
            let parts = e.head();
            (http::Response::from_parts(parts, RespBody::full(e.body(&ctx.request_id))), Some(e))
        }
    };
    response::finish(&mut ctx, &mut resp, error.as_ref());
    crate::observe::attach(&mut ctx, &mut resp, error.as_ref());
    resp
}
