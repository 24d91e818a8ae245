//! Phase `upstream`: send the prepared request to a target of the route's upstream.
//!
//! In order: take an in-flight slot (none free → 503 `upstream.saturated`, never a queue);
//! pick a target round-robin, skipping ejected ones; reuse a warm connection or open one
//! (connect failures are retried on another target for idempotent methods); send and wait
//! for the response head within `timeout` (→ 504); stream the body back.
//!
//! The HTTP/1.1 exchange is done by this request's own task on a connection it owns
//! ([`h1`]); there is no per-connection task and no channel between them.
//!
//! A pooled connection the upstream closed while it was idle shows up as a `Stale` error
//! before any response byte: the request is sent again on a new connection when that is
//! safe, i.e. its body is still in hand and the method is idempotent. Requests that could
//! not be sent again check the pooled connection first.

pub mod body;
pub mod h1;
pub mod h1_body;
pub mod upio;
pub mod upstream;

use crate::error::{ErrorKind, GatewayError};
use crate::pipeline::{Flow, RequestCtx};
use body::{BodyErrorKind, Lease, ReqBody, RespBody};
use h1::{Framing, SendError};
use h1_body::UpstreamBody;
use http::Method;
use hyper_util::rt::TokioIo;
use std::time::Instant;
use upstream::Inflight;

fn idempotent(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE)
}

/// Reads a whole (limited) request body into memory.
pub async fn read_all(body: ReqBody) -> Result<bytes::Bytes, GatewayError> {
    use http_body_util::BodyExt as _;
    body.collect().await.map(|c| c.to_bytes()).map_err(|e| body_error(e.kind))
}

/// Reads up to `max` bytes of a request body; returns them and the body to forward.
pub async fn read_prefix(body: ReqBody, max: usize) -> Result<(bytes::Bytes, ReqBody), GatewayError> {
    body.read_prefix(max).await.map_err(|e| body_error(e.kind))
}

pub(crate) fn body_error(kind: BodyErrorKind) -> GatewayError {
    match kind {
        BodyErrorKind::TooLarge => GatewayError::new(ErrorKind::TooLarge),
        BodyErrorKind::Timeout => GatewayError::new(ErrorKind::BodyTimeout),
        BodyErrorKind::Aborted => GatewayError::new(ErrorKind::BadRequest).with_detail("client aborted the body"),
    }
}

fn replayable(body: &ReqBody) -> bool {
    matches!(body, ReqBody::Empty | ReqBody::Full(_))
}

/// The phase.
pub async fn forward(ctx: &mut RequestCtx) -> Result<Flow, GatewayError> {
    let route = ctx.route.clone().ok_or_else(|| GatewayError::internal("upstream phase without a route"))?;
    let up = route.upstream.clone();
    let slot = up.try_acquire().ok_or_else(|| GatewayError::new(ErrorKind::UpstreamSaturated))?;
    let settings = &up.settings;
    let method = ctx.parts.method.clone();
    let retry_connect = idempotent(&method);
    let mut body = ctx.upstream_body.take().unwrap_or(ReqBody::Empty);
    let mut tried: Vec<usize> = Vec::new();
    let mut retries_left = settings.retries;
    let mut target_buf = Vec::new();

    loop {
        let Some(ti) = up.pick(&tried) else {
            return Err(GatewayError::new(ErrorKind::UpstreamUnavailable).with_detail("no targets"));
        };
        let target = up.targets.get(ti).ok_or_else(|| GatewayError::internal("target index"))?;
        let pooled = if ctx.upgrade { None } else { target.take_idle(settings.idle_timeout) };
        let conn = match pooled {
            Some(mut c) => {
                // A request we could not send again must not go out on a dead connection.
                if (!replayable(&body) || !retry_connect) && !c.probe_alive() {
                    continue;
                }
                c
            }
            None => match target.open(settings.connect_timeout).await {
                Ok(c) => c,
                Err(e) => {
                    up.record_failure(ti);
                    tried.push(ti);
                    if retry_connect && retries_left > 0 && tried.len() < up.targets.len() {
                        retries_left -= 1;
                        continue;
                    }
                    return Err(GatewayError::new(ErrorKind::UpstreamUnavailable).with_detail(format!("connect: {e}")));
                }
            },
        };
        let reused = conn.reused;
        let path = if target.base_path.is_empty() {
            &ctx.upstream_path[..]
        } else {
            target_buf.clear();
            target_buf.extend_from_slice(target.base_path.as_bytes());
            target_buf.extend_from_slice(&ctx.upstream_path);
            &target_buf[..]
        };

        let sent_at = Instant::now();
        let (conn, head) = match h1::send(conn, &method, path, &ctx.parts.headers, body, settings.timeout).await {
            Ok(done) => done,
            Err(SendError::Stale { body: Some(b), error }) if reused && retry_connect => {
                // The pooled connection had been closed by the upstream: nothing was
                // processed, send again on a fresh one.
                tracing::debug!(upstream = %up.name, "stale pooled connection ({error}), retrying");
                body = b;
                continue;
            }
            Err(SendError::Body(kind)) => return Err(body_error(kind)),
            Err(e) => {
                up.record_failure(ti);
                let (kind, detail) = match e {
                    SendError::Timeout => (ErrorKind::UpstreamTimeout, String::new()),
                    SendError::BadResponse(why) => (ErrorKind::UpstreamBadResponse, why.to_string()),
                    SendError::Stale { error, .. } | SendError::Io(error) => {
                        (ErrorKind::UpstreamUnavailable, error.to_string())
                    }
                    SendError::Body(_) => (ErrorKind::Internal, String::new()),
                };
                return Err(GatewayError::new(kind).with_detail(detail));
            }
        };
        let elapsed = sent_at.elapsed();
        ctx.upstream_time = Some(elapsed);
        ctx.gw.metrics.observe_upstream(&up.name, elapsed);
        if matches!(head.status.as_u16(), 502..=504) {
            up.record_failure(ti);
        } else {
            up.record_success(ti);
        }

        let mut resp = http::Response::new(RespBody::empty());
        *resp.status_mut() = head.status;
        *resp.headers_mut() = head.headers;
        if head.framing == Framing::Upgrade {
            if !ctx.upgrade {
                return Err(
                    GatewayError::new(ErrorKind::UpstreamBadResponse).with_detail("101 without an upgrade request")
                );
            }
            let client = ctx.parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
            tokio::spawn(tunnel(client, conn, slot));
            return Ok(Flow::Respond(resp));
        }
        let body = UpstreamBody::new(conn, head.framing, head.keep_alive && !ctx.upgrade);
        *resp.body_mut() = RespBody::upstream(body, settings.timeout, Lease { upstream: up.clone(), target: ti, slot });
        return Ok(Flow::Respond(resp));
    }
}

/// Copies bytes both ways after a protocol switch, holding the in-flight slot meanwhile.
async fn tunnel(client: Option<hyper::upgrade::OnUpgrade>, upstream: h1::UpConn, _slot: Inflight) {
    use tokio::io::AsyncWriteExt;
    let Some(client) = client else { return };
    let Ok(c) = client.await else { return };
    let mut c = TokioIo::new(c);
    let (mut s, early) = upstream.into_parts();
    // Bytes the upstream sent right after its 101 belong to the new protocol.
    if !early.is_empty() && c.write_all(&early).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut c, &mut s).await;
}
