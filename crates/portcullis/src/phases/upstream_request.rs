//! Phase `upstream_request`: turn the client's request head into the upstream's.
//!
//! - hop-by-hop headers and every header the client named in `Connection` are removed, so a
//!   client cannot make the gateway drop the headers it adds (`Connection: X-Forwarded-For`);
//! - forwarding headers from untrusted peers are removed and replaced with ours; a trusted
//!   proxy's `X-Forwarded-For` is extended with its address;
//! - `Expect` is answered by the gateway itself and not forwarded;
//! - identity headers a client sent are removed and the verified ones set (`identity.rs`);
//! - the path sent is the normalized one, minus `strip_prefix`.

use crate::error::GatewayError;
use crate::headers as h;
use crate::pipeline::{Flow, RequestCtx};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that describe one connection, never the message (RFC 9110 §7.6.1), plus the
/// proxy-only ones.
pub const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    h::KEEP_ALIVE,
    h::PROXY_CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Headers a client may not name in `Connection` to have them removed: message framing and
/// routing depend on them.
fn protected(name: &str) -> bool {
    name.eq_ignore_ascii_case("host") || name.eq_ignore_ascii_case("content-length")
}

/// Removes hop-by-hop headers and those named in `Connection`. Returns whether the message
/// asked for an upgrade (`Connection: upgrade` with an `Upgrade` header).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) -> Option<HeaderValue> {
    // One pass over the names (cheap comparisons for standard headers) finds which are
    // present; only those are removed (each removal costs a hash).
    let mut present = 0u16;
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return None;
    }
    let mut named: Vec<HeaderName> = Vec::new();
    let mut wants_upgrade = false;
    for v in headers.get_all(header::CONNECTION) {
        for token in v.to_str().unwrap_or("").split(',') {
            let token = token.trim();
            if token.eq_ignore_ascii_case("upgrade") {
                wants_upgrade = true;
            } else if !token.is_empty()
                && !token.eq_ignore_ascii_case("close")
                && !token.eq_ignore_ascii_case("keep-alive")
                && !protected(token)
                && let Ok(n) = HeaderName::from_bytes(token.as_bytes())
            {
                named.push(n);
            }
        }
    }
    let upgrade = if wants_upgrade { headers.get(header::UPGRADE).cloned() } else { None };
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
    for name in &named {
        headers.remove(name);
    }
    upgrade
}
/// Forwarding headers a client could forge. From an untrusted peer they are all replaced.
const FORWARDING: [HeaderName; 6] = [
    h::X_FORWARDED_FOR,
    h::X_FORWARDED_PROTO,
    h::X_FORWARDED_HOST,
    h::X_FORWARDED_PORT,
    header::FORWARDED,
    h::X_REAL_IP,
];

/// The phase.
pub fn prepare(ctx: &mut RequestCtx) -> Result<Flow, GatewayError> {
    let headers = &mut ctx.parts.headers;
    headers.reserve(6); // the forwarding headers and request id below, without regrowing
    let upgrade = strip_hop_by_hop(headers);
    headers.remove(header::EXPECT);
    if let Some(proto) = upgrade.filter(|_| ctx.parts.version == http::Version::HTTP_11) {
        headers.insert(header::CONNECTION, h::UPGRADE);
        headers.insert(header::UPGRADE, proto);
        ctx.upgrade = true;
    }

    if ctx.rt.is_trusted(ctx.conn.peer_ip) {
        // A trusted proxy's forwarding headers stay; we add ourselves to the chain.
        let mut xff = String::new();
        for v in headers.get_all(&h::X_FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok()) {
            xff.push_str(v);
            xff.push_str(", ");
        }
        xff.push_str(ctx.conn.peer_ip_value.to_str().unwrap_or_default());
        if let Ok(v) = HeaderValue::from_str(&xff) {
            headers.insert(h::X_FORWARDED_FOR, v);
        }
    } else {
        for name in &FORWARDING {
            headers.remove(name);
        }
        headers.insert(h::X_FORWARDED_FOR, ctx.conn.peer_ip_value.clone());
    }
    if !headers.contains_key(&h::X_FORWARDED_PROTO) {
        headers.insert(h::X_FORWARDED_PROTO, if ctx.conn.tls.is_some() { h::HTTPS } else { h::HTTP });
    }
    if let Some(host) = &ctx.host_header {
        if !headers.contains_key(&h::X_FORWARDED_HOST) {
            headers.insert(h::X_FORWARDED_HOST, host.clone());
        }
        headers.insert(header::HOST, host.clone());
    }
    headers.insert(h::X_REQUEST_ID, ctx.request_id.clone());
    crate::phases::identity::apply(ctx);

    let path = match ctx.route.as_ref().and_then(|r| r.strip_prefix.as_deref()) {
        Some(prefix) => match ctx.path.strip_prefix(prefix) {
            Some("") => "/",
            Some(rest) if rest.starts_with('/') => rest,
            _ => ctx.path.as_str(),
        },
        None => ctx.path.as_str(),
    };
    let query = ctx.parts.uri.query();
    let mut target = Vec::with_capacity(path.len() + query.map_or(0, |q| q.len() + 1));
    target.extend_from_slice(path.as_bytes());
    if let Some(q) = query {
        target.push(b'?');
        target.extend_from_slice(q.as_bytes());
    }
    ctx.upstream_path = bytes::Bytes::from(target);
    Ok(Flow::Continue)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_named_headers_go_but_framing_stays() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Forwarded-For, x-secret, Host, Content-Length"),
        );
        h.insert("x-forwarded-for", HeaderValue::from_static("1.1.1.1"));
        h.insert("x-secret", HeaderValue::from_static("s"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::HOST, HeaderValue::from_static("example.com"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        assert!(strip_hop_by_hop(&mut h).is_none());
        assert!(h.get("x-forwarded-for").is_none());
        assert!(h.get("x-secret").is_none());
        assert!(h.get("keep-alive").is_none());
        assert!(h.get(header::TE).is_none());
        assert!(h.get(header::CONNECTION).is_none());
        assert_eq!(h.get(header::HOST).unwrap(), "example.com");
        assert_eq!(h.get(header::CONTENT_LENGTH).unwrap(), "3");
    }

    #[test]
    fn upgrade_is_detected() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert_eq!(strip_hop_by_hop(&mut h).unwrap(), "websocket");
        assert!(h.get(header::UPGRADE).is_none());
    }
}
