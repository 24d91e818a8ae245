//! Phase `upstream`: send the prepared request to a target of the route's upstream.
//!
//! In order: take an in-flight slot (none free → 503 `upstream.saturated`, never a queue);
//! pick a target round-robin, skipping ejected ones; reuse a warm connection or open one
//! (connect failures are retried on another target for idempotent methods); wait for the
//! response head within `timeout` (→ 504); stream the body back. A pooled connection that
//! turns out closed before the request was written is replaced transparently, whatever the
//! method, because nothing was sent.

pub mod body;
pub mod upstream;

use crate::error::{ErrorKind, GatewayError};
use crate::pipeline::{Flow, RequestCtx};
use body::{BodyError, BodyErrorKind, Lease, ReqBody, RespBody};
use http::{Method, Request, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;
use std::time::Instant;
use upstream::Inflight;

fn idempotent(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE)
}

fn body_error(kind: BodyErrorKind) -> GatewayError {
    match kind {
        BodyErrorKind::TooLarge => GatewayError::new(ErrorKind::TooLarge),
        BodyErrorKind::Timeout => GatewayError::new(ErrorKind::BodyTimeout),
        BodyErrorKind::Aborted => GatewayError::new(ErrorKind::BadRequest).with_detail("client aborted the body"),
    }
}

/// The phase.
pub async fn forward(ctx: &mut RequestCtx) -> Result<Flow, GatewayError> {
    let route = ctx.route.clone().ok_or_else(|| GatewayError::internal("upstream phase without a route"))?;
    let up = route.upstream.clone();
    let slot = up.try_acquire().ok_or_else(|| GatewayError::new(ErrorKind::UpstreamSaturated))?;
    let settings = up.settings.clone();
    let retry_connect = idempotent(&ctx.parts.method);

    let mut builder = Request::builder().method(ctx.parts.method.clone()).version(Version::HTTP_11);
    if let Some(h) = builder.headers_mut() {
        *h = std::mem::take(&mut ctx.parts.headers);
    }
    let body = ctx.upstream_body.take().unwrap_or(ReqBody::Empty);
    let mut pending = Some(builder.body(body).map_err(|e| GatewayError::internal(e.to_string()))?);
    let mut tried: Vec<usize> = Vec::new();
    let mut retries_left = settings.retries;

    loop {
        let Some(ti) = up.pick(&tried) else {
            return Err(GatewayError::new(ErrorKind::UpstreamUnavailable).with_detail("no targets"));
        };
        let target = up.targets.get(ti).ok_or_else(|| GatewayError::internal("target index"))?;
        let mut req = pending.take().ok_or_else(|| GatewayError::internal("request already sent"))?;
        *req.uri_mut() = target_uri(&target.base_path, &ctx.upstream_path)?;

        let pooled = if ctx.upgrade { None } else { target.take_idle(settings.idle_timeout) };
        let fresh = pooled.is_none();
        let mut conn = match pooled {
            Some(mut c) => match c.ready().await {
                Ok(()) => c,
                Err(_) => {
                    pending = Some(req); // a dead idle connection: try the next one
                    continue;
                }
            },
            None => match target.open(settings.connect_timeout, ctx.upgrade).await {
                Ok(c) => c,
                Err(e) => {
                    up.record_failure(ti);
                    tried.push(ti);
                    pending = Some(req);
                    if retry_connect && retries_left > 0 && tried.len() < up.targets.len() {
                        retries_left -= 1;
                        continue;
                    }
                    return Err(GatewayError::new(ErrorKind::UpstreamUnavailable).with_detail(format!("connect: {e}")));
                }
            },
        };

        let sent_at = Instant::now();
        let result = tokio::time::timeout(settings.timeout, conn.try_send_request(req)).await;
        let mut resp = match result {
            Err(_) => {
                up.record_failure(ti);
                return Err(GatewayError::new(ErrorKind::UpstreamTimeout));
            }
            Ok(Err(mut e)) => {
                if let Some(req) = e.take_message() {
                    // Never written. A stale pooled connection is simply replaced.
                    pending = Some(req);
                    if !fresh {
                        continue;
                    }
                    up.record_failure(ti);
                    tried.push(ti);
                    if retry_connect && retries_left > 0 && tried.len() < up.targets.len() {
                        retries_left -= 1;
                        continue;
                    }
                    return Err(GatewayError::new(ErrorKind::UpstreamUnavailable)
                        .with_detail("connection closed before sending"));
                }
                let err = e.into_error();
                if let Some(kind) = BodyError::find(&err) {
                    return Err(body_error(kind));
                }
                up.record_failure(ti);
                let kind = if err.is_parse() { ErrorKind::UpstreamBadResponse } else { ErrorKind::UpstreamUnavailable };
                return Err(GatewayError::new(kind).with_detail(err.to_string()));
            }
            Ok(Ok(resp)) => resp,
        };
        let elapsed = sent_at.elapsed();
        ctx.upstream_time = Some(elapsed);
        ctx.gw.metrics.observe_upstream(&up.name, elapsed);
        let status = resp.status();
        if matches!(status.as_u16(), 502..=504) {
            up.record_failure(ti);
        } else {
            up.record_success(ti);
        }

        if status == StatusCode::SWITCHING_PROTOCOLS && ctx.upgrade {
            let client = ctx.parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
            let server = hyper::upgrade::on(&mut resp);
            tokio::spawn(tunnel(client, server, slot));
            let (parts, _) = resp.into_parts();
            return Ok(Flow::Respond(http::Response::from_parts(parts, RespBody::empty())));
        }

        let (parts, incoming) = resp.into_parts();
        let lease = Lease { upstream: up.clone(), target: ti, conn: (!ctx.upgrade).then_some(conn), slot };
        return Ok(Flow::Respond(http::Response::from_parts(
            parts,
            RespBody::upstream(incoming, settings.timeout, lease),
        )));
    }
}

/// `base_path` + the request's path and query, as an origin-form URI (no copy without a
/// base path).
fn target_uri(base_path: &str, path: &bytes::Bytes) -> Result<Uri, GatewayError> {
    let bytes = if base_path.is_empty() {
        path.clone()
    } else {
        let mut b = Vec::with_capacity(base_path.len() + path.len());
        b.extend_from_slice(base_path.as_bytes());
        b.extend_from_slice(path);
        bytes::Bytes::from(b)
    };
    Uri::from_maybe_shared(bytes).map_err(|e| GatewayError::internal(format!("upstream uri: {e}")))
}

/// Copies bytes both ways after a protocol switch, holding the in-flight slot meanwhile.
async fn tunnel(client: Option<hyper::upgrade::OnUpgrade>, server: hyper::upgrade::OnUpgrade, _slot: Inflight) {
    let Some(client) = client else { return };
    let (Ok(c), Ok(s)) = (client.await, server.await) else {
        return;
    };
    let mut c = TokioIo::new(c);
    let mut s = TokioIo::new(s);
    let _ = tokio::io::copy_bidirectional(&mut c, &mut s).await;
}
