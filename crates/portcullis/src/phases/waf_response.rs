//! Phase `waf_response`: the WAF's rules over the upstream's answer (CRS phases 3 and 4:
//! data leakage such as SQL errors, stack traces and source code, web shells, then the
//! outbound anomaly score) and its logging phase (5), on the transaction the request phases
//! left in the context.
//!
//! Status and headers are always inspected. A body is read ahead, up to
//! `waf.response.body_limit` bytes, when its media type is in `waf.response.mime_types` and
//! it is not compressed: nothing of it leaves before the rules have seen that prefix, and a
//! longer body streams on after it. In `block` mode a disruptive match answers 502
//! `waf.response_blocked` instead (the upstream's answer is dropped); in `detect` mode the
//! matches are only logged. Answers the gateway makes itself are not inspected.

use super::waf::{Pending, finish, protocol, view};
use crate::config::compile_waf::WafResponseRt;
use crate::error::{ErrorKind, GatewayError};
use crate::pipeline::RequestCtx;
use crate::proxy::body::RespBody;
use http::{StatusCode, header};
use http_body::Body;
use portcullis_waf::{Response, Transaction};

/// The phase: the answer to send on, or the error that replaces it.
pub async fn inspect(
    ctx: &mut RequestCtx,
    mut resp: http::Response<RespBody>,
) -> Result<http::Response<RespBody>, GatewayError> {
    let Some(Pending { tx, uri, client, .. }) = ctx.waf.take() else { return Ok(resp) };
    let rt = ctx.rt.clone();
    let Some(rules) = rt.waf.rules.as_deref() else { return Ok(resp) };
    let settings = &rt.waf.response;
    let prefix = match reads_body(settings, &resp) {
        true => resp.body_mut().read_prefix(settings.body_limit).await.map_err(body_cut)?,
        false => bytes::Bytes::new(),
    };
    let body = prefix.get(..settings.body_limit.min(prefix.len())).unwrap_or_default();
    let (fresh, interruption) = {
        let mut req = view(ctx, &uri, &[]);
        req.remote_addr = &client;
        let mut tx = Transaction::resume(rules, req, tx);
        let before = tx.matches().len();
        let headers = resp.headers().iter().map(|(k, v)| (k.as_str().as_bytes(), v.as_bytes())).collect();
        tx.response(Response { status: resp.status().as_u16(), protocol: protocol(resp.version()), headers, body });
        tx.logging();
        (tx.matches().get(before..).unwrap_or_default().to_vec(), tx.interruption())
    };
    finish(ctx, &fresh, interruption, (&client, &uri), ErrorKind::WafResponseBlocked)?;
    Ok(resp)
}

/// Whether the body is read ahead for the rules: a listed media type, not compressed (the
/// rules would see compressed bytes), and not a protocol switch or an empty body.
fn reads_body(settings: &WafResponseRt, resp: &http::Response<RespBody>) -> bool {
    let h = resp.headers();
    let encoded = h.get(header::CONTENT_ENCODING).is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    resp.status() != StatusCode::SWITCHING_PROTOCOLS
        && !resp.body().is_end_stream()
        && !encoded
        && h.get(header::CONTENT_TYPE).is_some_and(|ct| settings.inspects(ct.as_bytes()))
}

/// The upstream body ended badly while it was read ahead; nothing was sent yet.
fn body_cut(code: &'static str) -> GatewayError {
    match code {
        "upstream.timeout" => GatewayError::new(ErrorKind::UpstreamTimeout),
        _ => GatewayError::new(ErrorKind::UpstreamBadResponse),
    }
    .with_detail("the response body ended early while the WAF read it")
}
