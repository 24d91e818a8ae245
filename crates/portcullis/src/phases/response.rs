//! Phase `response`: what the client receives, for upstream answers and gateway errors
//! alike: hop-by-hop headers removed, the request id, and the `RateLimit` fields.

use super::upstream_request::strip_hop_by_hop;
use crate::error::GatewayError;
use crate::pipeline::RequestCtx;
use crate::proxy::body::RespBody;
use http::{HeaderValue, StatusCode, header};
use http_body::Body;

/// The phase.
pub fn finish(
    ctx: &mut RequestCtx,
    resp: &mut http::Response<RespBody>,
    error: Option<&GatewayError>,
) {
    // The status line is ours, whatever HTTP version the upstream spoke.
    *resp.version_mut() = ctx.parts.version;
    if error.is_none() {
        let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        let headers = resp.headers_mut();
        let upgrade = strip_hop_by_hop(headers);
        if let (true, Some(proto)) = (switching, upgrade) {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, proto);
        }
    }
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
        headers.insert(crate::phases::hygiene::REQUEST_ID, v);
    }
    if let Some(rate) = &ctx.rate {
        headers.insert("ratelimit-policy", rate.limit.policy.clone());
        let value = format!(
            "\"{}\";r={};t={}",
            rate.limit.policy_name, rate.remaining, rate.reset_secs
        );
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert("ratelimit", v);
        }
    }
    let body_unread = ctx.body.as_ref().is_some_and(|b| !b.is_end_stream())
        || ctx
            .upstream_body
            .as_ref()
            .is_some_and(|b| !b.is_end_stream());
    if error.is_some() && body_unread && ctx.parts.version <= http::Version::HTTP_11 {
        // Refused without reading the body: the connection cannot be reused safely.
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
}
