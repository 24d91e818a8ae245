//! Header names and values used on every request, built at compile time so the hot path
//! never parses a header name.

use http::header::{HeaderName, HeaderValue};

/// `x-request-id`
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `x-forwarded-for`
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `x-forwarded-proto`
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `x-forwarded-host`
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// `x-forwarded-port`
pub const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
/// `x-real-ip`
pub const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
/// `keep-alive`
pub const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
/// `proxy-connection`
pub const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
/// `ratelimit-policy` (IETF draft)
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `ratelimit` (IETF draft)
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// `http`
pub const HTTP: HeaderValue = HeaderValue::from_static("http");
/// `https`
pub const HTTPS: HeaderValue = HeaderValue::from_static("https");
/// `upgrade`
pub const UPGRADE: HeaderValue = HeaderValue::from_static("upgrade");
/// `close`
pub const CLOSE: HeaderValue = HeaderValue::from_static("close");

/// A fresh request id: 128 random bits as 32 lowercase hex digits.
pub fn new_request_id() -> HeaderValue {
    use rand::RngExt;
    let n: u128 = rand::rng().random();
    let mut buf = [0u8; 32];
    for (i, b) in buf.iter_mut().enumerate() {
        let nibble = (n >> (124 - 4 * i)) & 0xf;
        *b = b"0123456789abcdef".get(nibble as usize).copied().unwrap_or(b'0');
    }
    HeaderValue::from_bytes(&buf).unwrap_or(HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_ids_are_unique_hex() {
        let a = super::new_request_id();
        assert_eq!(a.len(), 32);
        assert!(a.as_bytes().iter().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(a, super::new_request_id());
    }
}
