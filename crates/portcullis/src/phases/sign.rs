//! Request signing: a backend can prove a request came through the gateway (and so passed
//! every check) instead of being sent to it directly.
//!
//! For upstreams with `sign`, the gateway adds `x-portcullis-timestamp` (Unix seconds),
//! `x-portcullis-content-sha256` (hex SHA-256 of the body, or `UNSIGNED-PAYLOAD`) and
//! `x-portcullis-signature: v1=<hex HMAC-SHA256>` over these lines joined by `\n`:
//!
//! ```text
//! v1
//! <method>
//! <path and query as the upstream receives them (with the target's base path)>
//! <timestamp>
//! <content-sha256>
//! <x-request-id>
//! <x-portcullis-principal>
//! <x-portcullis-key-id>
//! <x-portcullis-scopes>
//! <x-portcullis-tenant>
//! ```
//!
//! Absent headers are empty lines. Header values cannot contain newlines, so the string is
//! unambiguous. docs/backend-verification.md shows how to verify it.

use crate::error::GatewayError;
use crate::pipeline::{Flow, RequestCtx};
use crate::proxy::body::ReqBody;
use http::{HeaderName, HeaderValue};
use sha2::Digest;

/// `x-portcullis-timestamp`.
pub const TIMESTAMP: HeaderName = HeaderName::from_static("x-portcullis-timestamp");
/// `x-portcullis-content-sha256`.
pub const CONTENT_SHA256: HeaderName = HeaderName::from_static("x-portcullis-content-sha256");
/// `x-portcullis-signature`.
pub const SIGNATURE: HeaderName = HeaderName::from_static("x-portcullis-signature");

/// An upstream's signing key and body mode.
pub struct SignRt {
    key: ring::hmac::Key,
    /// The targets' common base path (`http://h/base` → `/base`), part of the signed path.
    pub base_path: String,
    /// Read the body and hash it (else `UNSIGNED-PAYLOAD`).
    pub hash_body: bool,
}

impl std::fmt::Debug for SignRt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignRt").field("hash_body", &self.hash_body).finish_non_exhaustive()
    }
}

impl SignRt {
    /// A signer with this secret.
    pub fn new(secret: &[u8], hash_body: bool, base_path: String) -> SignRt {
        SignRt { key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret), hash_body, base_path }
    }

    /// `v1=<hex>` over the canonical string.
    pub fn sign(&self, canonical: &str) -> String {
        format!("v1={}", hex::encode(ring::hmac::sign(&self.key, canonical.as_bytes()).as_ref()))
    }
}

/// The phase (after `upstream_request`, so it signs exactly what is sent).
pub async fn sign(ctx: &mut RequestCtx) -> Result<Flow, GatewayError> {
    let Some(signer) = ctx.route.as_ref().and_then(|r| r.sign.clone()) else { return Ok(Flow::Continue) };
    let content = if signer.hash_body {
        let bytes = match ctx.upstream_body.take() {
            Some(body) => crate::proxy::read_all(body).await?,
            None => bytes::Bytes::new(),
        };
        let digest = hex::encode(sha2::Sha256::digest(&bytes));
        ctx.upstream_body = Some(if bytes.is_empty() { ReqBody::Empty } else { ReqBody::Full(Some(bytes)) });
        digest
    } else {
        "UNSIGNED-PAYLOAD".to_string()
    };
    let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let names = &ctx.rt.identity;
    let h = &ctx.parts.headers;
    let value = |n: &HeaderName| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let path = format!("{}{}", signer.base_path, std::str::from_utf8(&ctx.upstream_path).unwrap_or_default());
    let canonical = [
        "v1",
        ctx.parts.method.as_str(),
        &path,
        &ts.to_string(),
        &content,
        value(&crate::headers::X_REQUEST_ID),
        value(&names.principal),
        value(&names.key_id),
        value(&names.scopes),
        value(&names.tenant),
    ]
    .join("\n");
    let signature = signer.sign(&canonical);
    let headers = &mut ctx.parts.headers;
    headers.insert(TIMESTAMP, HeaderValue::from(ts));
    headers.insert(CONTENT_SHA256, HeaderValue::from_str(&content).unwrap_or(HeaderValue::from_static("")));
    headers.insert(SIGNATURE, HeaderValue::from_str(&signature).unwrap_or(HeaderValue::from_static("")));
    Ok(Flow::Continue)
}
