//! Phase `response`: what the client receives, for upstream answers and gateway errors
//! alike: hop-by-hop headers removed, the request id, CORS headers, and the `RateLimit`
//! fields.

use super::upstream_request::strip_hop_by_hop;
use crate::error::GatewayError;
use crate::headers as h;
use crate::pipeline::RequestCtx;
use crate::proxy::body::RespBody;
use http::{HeaderValue, StatusCode, header};
use http_body::Body;

/// The phase.
pub fn finish(ctx: &mut RequestCtx, resp: &mut http::Response<RespBody>, error: Option<&GatewayError>) {
    // The status line is ours, whatever HTTP version the upstream spoke.
    *resp.version_mut() = ctx.parts.version;
    if error.is_none() {
        let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        let headers = resp.headers_mut();
        let upgrade = strip_hop_by_hop(headers);
        if let (true, Some(proto)) = (switching, upgrade) {
            headers.insert(header::CONNECTION, h::UPGRADE);
            headers.insert(header::UPGRADE, proto);
        }
    }
    let headers = resp.headers_mut();
    headers.insert(h::X_REQUEST_ID, ctx.request_id.clone());
    super::cors::respond(ctx, headers);
    let hidden = ctx.route.as_ref().is_some_and(|r| r.hide_headers);
    if let Some(rate) = ctx.rate.as_ref().filter(|_| !hidden) {
        headers.insert(h::RATELIMIT_POLICY, rate.policy.clone());
        if let Some(v) = ratelimit_value(rate.name, rate.remaining, rate.reset_secs) {
            headers.insert(h::RATELIMIT, v);
        }
    }
    let body_unread = ctx.body.as_ref().is_some_and(|b| !b.is_end_stream())
        || ctx.upstream_body.as_ref().is_some_and(|b| !b.is_end_stream());
    if error.is_some() && body_unread && ctx.parts.version <= http::Version::HTTP_11 {
        // Refused without reading the body: the connection cannot be reused safely.
        headers.insert(header::CONNECTION, h::CLOSE);
    }
}

/// `"route";r=12;t=0` (IETF RateLimit header fields, draft 11).
fn ratelimit_value(name: &str, remaining: u32, reset: u64) -> Option<HeaderValue> {
    let mut n = itoa::Buffer::new();
    let mut v = Vec::with_capacity(name.len() + 32);
    v.push(b'"');
    v.extend_from_slice(name.as_bytes());
    v.extend_from_slice(b"\";r=");
    v.extend_from_slice(n.format(remaining).as_bytes());
    v.extend_from_slice(b";t=");
    v.extend_from_slice(n.format(reset).as_bytes());
    HeaderValue::from_maybe_shared(bytes::Bytes::from(v)).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ratelimit_field_shape() {
        assert_eq!(super::ratelimit_value("route", 7, 0).unwrap(), "\"route\";r=7;t=0");
    }
}
