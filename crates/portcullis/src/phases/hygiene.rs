//! Phase `early_request`: request id, client IP, header and URI limits, Host, and the one
//! path normalization every later phase and the upstream see.
//!
//! HTTP/1 framing (CL+TE, conflicting Content-Length, non-final chunked, obs-fold, bad header
//! names) is enforced by hyper's parser before a request exists: those get a bare 400 and the
//! connection is closed. When both Content-Length and Transfer-Encoding arrive, hyper frames
//! the body by Transfer-Encoding alone, drops Content-Length and closes the connection after
//! the response (RFC 9112 §6.1), so nothing can be smuggled behind the body; the upstream
//! request is always re-framed by us.

use super::path;
use crate::config::model::ClientIpHeader;
use crate::error::{ErrorKind, GatewayError};
use crate::headers::{self as h, X_FORWARDED_FOR, X_REQUEST_ID};
use crate::pipeline::{Flow, RequestCtx};
use http::{HeaderMap, HeaderValue, Version, header};
use std::net::IpAddr;

fn valid_request_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty() && b.len() <= 128 && b.iter().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
}

/// The phase.
pub fn early_request(ctx: &mut RequestCtx) -> Result<Flow, GatewayError> {
    let peer = ctx.client_ip;
    let trusted = ctx.rt.is_trusted(peer);
    ctx.request_id = match ctx.parts.headers.get(&X_REQUEST_ID) {
        Some(id) if trusted && valid_request_id(id) => id.clone(),
        _ => h::new_request_id(),
    };
    if trusted {
        ctx.client_ip =
            client_ip_from_headers(&ctx.parts.headers, ctx.rt.client_ip_header, peer, |ip| ctx.rt.is_trusted(ip));
    }
    check_limits(ctx)?;
    host(ctx)?;
    let normalized = path::normalize(ctx.parts.uri.path())
        .map_err(|e| GatewayError::new(ErrorKind::BadPath).with_detail(e.as_str()))?;
    ctx.path = normalized.into_owned();
    Ok(Flow::Continue)
}

fn check_limits(ctx: &RequestCtx) -> Result<(), GatewayError> {
    let limits = &ctx.rt.limits;
    let uri_len = ctx.parts.uri.path_and_query().map_or(0, |p| p.as_str().len())
        + ctx.parts.uri.authority().map_or(0, |a| a.as_str().len());
    if uri_len > limits.max_uri_bytes {
        return Err(GatewayError::new(ErrorKind::UriTooLong).with_detail(format!("{uri_len} bytes")));
    }
    let headers = &ctx.parts.headers;
    if headers.len() > limits.max_headers {
        return Err(GatewayError::new(ErrorKind::HeadersTooLarge).with_detail(format!("{} headers", headers.len())));
    }
    let bytes: usize = headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum();
    if bytes > limits.max_header_bytes {
        return Err(GatewayError::new(ErrorKind::HeadersTooLarge).with_detail(format!("{bytes} header bytes")));
    }
    Ok(())
}

/// Host from the URI authority (absolute-form or HTTP/2 `:authority`), else the `Host`
/// header. HTTP/1.1 without a Host, more than one Host, or an invalid one → 400.
fn host(ctx: &mut RequestCtx) -> Result<(), GatewayError> {
    let bad = |d: &str| GatewayError::new(ErrorKind::BadHost).with_detail(d.to_string());
    let mut hosts = ctx.parts.headers.get_all(header::HOST).iter();
    let header_host = hosts.next().cloned();
    if hosts.next().is_some() {
        return Err(bad("more than one Host header"));
    }
    let value = match ctx.parts.uri.authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).map_err(|_| bad("invalid authority"))?,
        None => match header_host {
            Some(h) => h,
            None if ctx.parts.version == Version::HTTP_11 => {
                return Err(bad("HTTP/1.1 request without Host"));
            }
            None => return Ok(()),
        },
    };
    let text = value.to_str().map_err(|_| bad("Host is not ASCII"))?;
    ctx.host = Some(normalize_host(text).ok_or_else(|| bad("invalid Host"))?);
    ctx.host_header = Some(value);
    Ok(())
}

/// `Api.Example.com.:8080` → `api.example.com`; `[::1]:80` → `[::1]`. `None` if malformed.
pub fn normalize_host(text: &str) -> Option<String> {
    if text.is_empty() || text.contains('@') {
        return None;
    }
    let name = if let Some(rest) = text.strip_prefix('[') {
        let end = rest.find(']')?;
        let port = &rest[end + 1..];
        if !(port.is_empty() || port.strip_prefix(':').is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))) {
            return None;
        }
        rest[..end].parse::<std::net::Ipv6Addr>().ok()?;
        return Some(format!("[{}]", rest[..end].to_ascii_lowercase()));
    } else {
        match text.rsplit_once(':') {
            Some((n, port)) if port.bytes().all(|b| b.is_ascii_digit()) => n,
            Some(_) => return None,
            None => text,
        }
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    let ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    ok.then(|| name.to_ascii_lowercase())
}

/// Walks the forwarding header right to left, skipping trusted proxies; the first address
/// not trusted is the client. A malformed entry stops the walk: the last trusted hop that
/// reported it is then the best answer we have.
pub fn client_ip_from_headers(
    headers: &HeaderMap,
    which: ClientIpHeader,
    peer: IpAddr,
    trusted: impl Fn(IpAddr) -> bool,
) -> IpAddr {
    let entries: Vec<String> = match which {
        ClientIpHeader::XForwardedFor => headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|s| s.trim().to_string())
            .collect(),
        ClientIpHeader::Forwarded => headers
            .get_all(header::FORWARDED)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|elem| forwarded_for(elem).unwrap_or_default())
            .collect(),
    };
    let mut client = peer;
    for entry in entries.iter().rev() {
        let Some(ip) = parse_forwarded_ip(entry) else {
            return client;
        };
        client = ip;
        if !trusted(ip) {
            return ip;
        }
    }
    client
}

/// The `for=` parameter of one `Forwarded` element.
fn forwarded_for(elem: &str) -> Option<String> {
    elem.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.trim().eq_ignore_ascii_case("for").then(|| v.trim().trim_matches('"').to_string())
    })
}

/// `1.2.3.4`, `1.2.3.4:5`, `[2001:db8::1]:5`, `2001:db8::1`.
fn parse_forwarded_ip(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next()?.parse::<IpAddr>().ok().map(|ip| ip.to_canonical());
    }
    s.rsplit_once(':').and_then(|(ip, _)| ip.parse::<std::net::Ipv4Addr>().ok()).map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(name: &str, values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(http::HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn xff_is_walked_right_to_left_over_trusted_hops() {
        let trusted = |a: IpAddr| a.to_string().starts_with("10.");
        let h = headers("x-forwarded-for", &["6.6.6.6, 1.2.3.4", "10.0.0.2"]);
        assert_eq!(client_ip_from_headers(&h, ClientIpHeader::XForwardedFor, ip("10.0.0.1"), trusted), ip("1.2.3.4"));
        // a spoofed left-most entry never wins over the first untrusted hop
        let h = headers("x-forwarded-for", &["10.9.9.9, 7.7.7.7"]);
        assert_eq!(client_ip_from_headers(&h, ClientIpHeader::XForwardedFor, ip("10.0.0.1"), trusted), ip("7.7.7.7"));
        // garbage stops the walk at the last trusted hop
        let h = headers("x-forwarded-for", &["1.1.1.1, nonsense, 10.0.0.5"]);
        assert_eq!(client_ip_from_headers(&h, ClientIpHeader::XForwardedFor, ip("10.0.0.1"), trusted), ip("10.0.0.5"));
        // the other header kind is ignored
        let h = headers("forwarded", &["for=9.9.9.9"]);
        assert_eq!(client_ip_from_headers(&h, ClientIpHeader::XForwardedFor, ip("10.0.0.1"), trusted), ip("10.0.0.1"));
    }

    #[test]
    fn forwarded_header_is_parsed() {
        let trusted = |a: IpAddr| a.is_loopback();
        let h = headers("forwarded", &["for=192.0.2.60;proto=http, for=\"[2001:db8:cafe::17]:4711\""]);
        assert_eq!(
            client_ip_from_headers(&h, ClientIpHeader::Forwarded, ip("127.0.0.1"), trusted),
            ip("2001:db8:cafe::17")
        );
    }

    #[test]
    fn hosts_normalize() {
        assert_eq!(normalize_host("Api.Example.COM:8080").as_deref(), Some("api.example.com"));
        assert_eq!(normalize_host("example.com.").as_deref(), Some("example.com"));
        assert_eq!(normalize_host("[::1]:80").as_deref(), Some("[::1]"));
        assert_eq!(normalize_host("127.0.0.1").as_deref(), Some("127.0.0.1"));
        for bad in ["", "a b", "user@host", "host:port", "[::1", "[zz]", "exa/mple"] {
            assert_eq!(normalize_host(bad), None, "{bad}");
        }
    }

    #[test]
    fn incoming_request_ids_are_validated() {
        assert!(valid_request_id(&HeaderValue::from_static("abc-123")));
        assert!(!valid_request_id(&HeaderValue::from_static("a b")));
        assert!(!valid_request_id(&HeaderValue::from_static("")));
    }
}
