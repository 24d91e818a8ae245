//! Phase `validate`: the route's body limit and the body's receive deadline.
//!
//! A declared Content-Length over the limit is refused before anything is read or sent
//! upstream (and before `100 Continue`). A chunked body is counted while it streams; the
//! first byte over the limit ends the upstream request and the client gets 413. The whole
//! body must arrive within `limits.body_timeout` (slow POST).

use crate::error::{ErrorKind, GatewayError};
use crate::pipeline::{Flow, RequestCtx};
use crate::proxy::body::ReqBody;
use http::header;
use http_body::Body;

/// The phase.
pub fn validate(ctx: &mut RequestCtx) -> Result<Flow, GatewayError> {
    let limit = ctx.route.as_ref().map_or(ctx.rt.limits.max_body_bytes, |r| r.max_body_bytes);
    let mut lengths = ctx.parts.headers.get_all(header::CONTENT_LENGTH).iter();
    if let Some(v) = lengths.next() {
        // hyper has already refused conflicting or malformed values on HTTP/1; HTTP/2 is
        // checked here.
        let n: u64 = v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| GatewayError::new(ErrorKind::BadRequest).with_detail("invalid Content-Length"))?;
        if lengths.any(|other| other != v) {
            return Err(GatewayError::new(ErrorKind::BadRequest).with_detail("conflicting Content-Length"));
        }
        if n > limit {
            return Err(GatewayError::new(ErrorKind::TooLarge).with_detail(format!("Content-Length {n} > {limit}")));
        }
    }
    ctx.upstream_body = match ctx.body.take() {
        Some(body) if !body.is_end_stream() => {
            let deadline = tokio::time::Instant::from_std(ctx.started) + ctx.rt.limits.body_timeout;
            Some(ReqBody::limited(body, limit, deadline))
        }
        _ => Some(ReqBody::Empty),
    };
    Ok(Flow::Continue)
}
