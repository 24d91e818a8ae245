//! Phases `waf_headers` and `waf_body`: the WAF's IP lists, then its rules over the request
//! line, headers and cookies (phase 1) and, once the body is read, over the body (phase 2;
//! for a request without a body, right after phase 1). The transaction then waits in the
//! request context for `waf_response` (phases 3 to 5) when the rules have any.
//!
//! In `block` mode a disruptive match (CRS: the anomaly score reaching the threshold) ends
//! the request with 403 `waf.blocked`; in `detect` mode matches are only logged. Every
//! logged match is a WAF log line, a `portcullis_waf_matches_total{rule}` count and an id in
//! the access log's `waf_rules`. The answer never names a rule.

use crate::config::model::{WafBodyLimit, WafMode};
use crate::error::{ErrorKind, GatewayError};
use crate::pipeline::{Flow, RequestCtx};
use crate::proxy::body::ReqBody;
use portcullis_waf::actions::EngineMode;
use portcullis_waf::engine::Suspended;
use portcullis_waf::iplist::IpAction;
use portcullis_waf::{BodyLimits, Interruption, Match, Request, RuleSet, Transaction};

/// A WAF transaction between its phases.
#[derive(Debug)]
pub struct Pending {
    /// Its variables and state.
    pub tx: Suspended,
    /// Phase 2 has run (a request without a body runs it with phase 1).
    pub body_done: bool,
    /// The target the rules see ([`checked_uri`]), made once in `waf_headers`.
    pub uri: String,
    /// The client's address as the rules and the WAF log see it.
    pub client: String,
}

/// What to keep of the transaction after a request phase: nothing when it ended the request
/// or nothing is left to run.
fn keep(rules: &RuleSet, tx: Transaction<'_, '_>, body_done: bool) -> Option<Suspended> {
    let later = !body_done || rules.inspects_responses();
    (later && tx.interruption().is_none()).then(|| tx.suspend())
}

pub(super) fn protocol(v: http::Version) -> &'static [u8] {
    match v {
        http::Version::HTTP_10 => b"HTTP/1.0",
        http::Version::HTTP_2 => b"HTTP/2.0",
        http::Version::HTTP_3 => b"HTTP/3.0",
        _ => b"HTTP/1.1",
    }
}

/// The target the rules see: the normalized path (the one routed and forwarded, DESIGN §3)
/// and the query as received.
fn checked_uri(ctx: &RequestCtx) -> String {
    let path = if ctx.path.is_empty() { ctx.parts.uri.path() } else { ctx.path.as_str() };
    match ctx.parts.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    }
}

/// The engine's view of the request; no copies of header names or values.
pub(super) fn view<'a>(ctx: &'a RequestCtx, uri: &'a str, body: &'a [u8]) -> Request<'a> {
    let mut headers: Vec<(&[u8], &[u8])> =
        ctx.parts.headers.iter().map(|(k, v)| (k.as_str().as_bytes(), v.as_bytes())).collect();
    // HTTP/2 carries the host in :authority, which is not a header; rules expect Host.
    if !ctx.parts.headers.contains_key(http::header::HOST)
        && let Some(h) = &ctx.host_header
    {
        headers.push((b"host", h.as_bytes()));
    }
    Request {
        method: ctx.parts.method.as_str().as_bytes(),
        uri: uri.as_bytes(),
        protocol: protocol(ctx.parts.version),
        headers,
        body,
        remote_addr: "",
        remote_port: ctx.conn.peer.port(),
        server_port: ctx.conn.local.port(),
        unique_id: ctx.request_id.to_str().unwrap_or_default(),
    }
}

/// Logs, counts and remembers new matches; `Err` of `kind` when the engine interrupted.
pub(super) fn finish(
    ctx: &mut RequestCtx,
    fresh: &[Match],
    interruption: Option<Interruption>,
    (client, uri): (&str, &str),
    kind: ErrorKind,
) -> Result<Flow, GatewayError> {
    if !ctx.rt.waf.log.is_off() {
        let id = ctx.request_id.to_str().unwrap_or_default();
        let mut lines = String::with_capacity(fresh.len() * portcullis_waf::log::LINE_CAPACITY);
        for m in fresh {
            portcullis_waf::log::append(m, client, uri, id, &mut lines);
            lines.push('\n');
        }
        ctx.rt.waf.log.write(lines.as_bytes());
    }
    for m in fresh {
        ctx.gw.metrics.waf_match(m.rule.id);
        ctx.waf_rules.push(m.rule.id);
    }
    match interruption {
        Some(i) => Err(GatewayError::new(kind).with_detail(format!("rule {}", i.rule_id))),
        None => Ok(Flow::Continue),
    }
}

/// Phase `waf_headers`.
pub fn headers(ctx: &mut RequestCtx) -> Result<Flow, GatewayError> {
    let rt = ctx.rt.clone();
    match rt.waf.ips.lookup(ctx.client_ip) {
        Some(IpAction::Deny) => return Err(GatewayError::new(ErrorKind::WafIpDenied)),
        Some(IpAction::Allow) => return Ok(Flow::Continue),
        None => {}
    }
    let (Some(rules), Some(route)) = (rt.waf.rules.as_deref(), ctx.route.clone()) else { return Ok(Flow::Continue) };
    if route.waf.mode == WafMode::Off {
        return Ok(Flow::Continue);
    }
    let uri = checked_uri(ctx);
    let client = ctx.client_ip.to_string();
    let mut req = view(ctx, &uri, &[]);
    req.remote_addr = &client;
    let mut tx = Transaction::new(rules, req, BodyLimits::default());
    if route.waf.mode == WafMode::Detect {
        tx.set_mode(EngineMode::DetectionOnly);
    }
    for r in &route.waf.remove {
        tx.remove_rules(r.clone());
    }
    for (r, t) in &route.waf.remove_targets {
        tx.remove_targets(r.clone(), t.clone());
    }
    tx.request_headers();
    // Without a body, phase 2 runs now on the same transaction (its value cache intact);
    // `waf_body` then has nothing left to do.
    let bodiless = ctx.body.as_ref().is_none_or(http_body::Body::is_end_stream);
    if bodiless && tx.interruption().is_none() {
        tx.request_body();
    }
    let fresh = tx.matches().to_vec();
    let interruption = tx.interruption();
    let kept = keep(rules, tx, bodiless);
    let flow = finish(ctx, &fresh, interruption, (&client, &uri), ErrorKind::WafBlocked);
    ctx.waf = kept.map(|tx| Pending { tx, body_done: bodiless, uri, client });
    flow
}

/// Phase `waf_body`: reads the body (within the route's limit), inspects at most
/// `waf.body_limit` bytes of it, and hands the same bytes on to the upstream.
pub async fn body(ctx: &mut RequestCtx) -> Result<Flow, GatewayError> {
    let Some(pending) = ctx.waf.take() else { return Ok(Flow::Continue) };
    if pending.body_done {
        ctx.waf = Some(pending);
        return Ok(Flow::Continue);
    }
    let rt = ctx.rt.clone();
    let Some(rules) = rt.waf.rules.as_deref() else { return Ok(Flow::Continue) };
    let limit = rt.waf.body_limit;
    // Detect mode never refuses: an oversized body is inspected up to the limit and passes.
    let detect = ctx.route.as_ref().is_some_and(|r| r.waf.mode == WafMode::Detect);
    let reject = rt.waf.on_body_limit == WafBodyLimit::Reject && !detect;
    let declared =
        ctx.parts.headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if reject && declared.is_some_and(|n| n > limit) {
        return Err(GatewayError::new(ErrorKind::WafBodyTooLarge).with_detail(format!("body over {limit} bytes")));
    }
    // One byte more than the limit tells a body over it from one exactly at it.
    let max = usize::try_from(limit).unwrap_or(usize::MAX).saturating_add(1);
    let (prefix, forward) = match ctx.upstream_body.take() {
        Some(body) => crate::proxy::read_prefix(body, max).await?,
        None => (bytes::Bytes::new(), ReqBody::Empty),
    };
    ctx.upstream_body = Some(forward);
    if reject && prefix.len() as u64 > limit {
        return Err(GatewayError::new(ErrorKind::WafBodyTooLarge).with_detail(format!("body over {limit} bytes")));
    }
    let inspected = prefix.get(..prefix.len().min(max - 1)).unwrap_or_default();
    let Pending { tx, uri, client, .. } = pending;
    let (fresh, interruption, kept) = {
        let mut req = view(ctx, &uri, inspected);
        req.remote_addr = &client;
        let mut tx = Transaction::resume(rules, req, tx);
        tx.set_body_partial(prefix.len() > inspected.len());
        let before = tx.matches().len();
        tx.request_body();
        let fresh: Vec<_> = tx.matches().iter().skip(before).cloned().collect();
        let interruption = tx.interruption();
        (fresh, interruption, keep(rules, tx, true))
    };
    let flow = finish(ctx, &fresh, interruption, (&client, &uri), ErrorKind::WafBlocked);
    ctx.waf = kept.map(|tx| Pending { tx, body_done: true, uri, client });
    flow
}
