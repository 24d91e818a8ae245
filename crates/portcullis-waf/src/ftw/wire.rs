//! Builds a test's request bytes exactly as go-ftw sends them, and reads raw request bytes
//! back into the parts the engine sees (as the HTTP server in front of the WAF would).

use super::model::Input;
use base64::Engine as _;

/// The request go-ftw would put on the wire for this input.
pub fn build(input: &Input) -> Result<Vec<u8>, String> {
    if let Some(enc) = &input.encoded_request {
        let compact: String = enc.chars().filter(|c| !c.is_whitespace()).collect();
        return base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map_err(|e| format!("encoded_request is not base64: {e}"));
    }
    let method = input.method.as_ref().map_or_else(|| "GET".to_string(), |m| m.text());
    let uri = input.uri.as_ref().map_or_else(|| "/".to_string(), |u| u.text());
    let version = input.version.as_ref().map_or_else(|| "HTTP/1.1".to_string(), |v| v.text());
    let mut headers: Vec<(String, String)> = input.headers.iter().map(|(k, v)| (k.clone(), v.text())).collect();
    let mut data = input.data.as_ref().map(|d| expand_repeat(&d.text())).unwrap_or_default().into_bytes();
    let autocomplete = input.autocomplete_headers.unwrap_or(true);
    if autocomplete && !data.is_empty() {
        let ct = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-type")).map(|(_, v)| v.clone());
        match ct.as_deref() {
            None => {
                headers.push(("Content-Type".into(), "application/x-www-form-urlencoded".into()));
                data = reencode_form(data);
            }
            Some("application/x-www-form-urlencoded") => data = reencode_form(data),
            Some(ct) if ct.starts_with("multipart/form-data") => data = crlf(&data),
            Some(_) => {}
        }
    }
    if autocomplete {
        headers.push(("Content-Length".into(), data.len().to_string()));
        headers.push(("Connection".into(), "close".into()));
    }
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = format!("{method} {uri} {version}\r\n").into_bytes();
    for (k, v) in headers {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&data);
    Ok(out)
}

/// `{{ "x" | repeat N }}` as go-ftw's template expands it.
fn expand_repeat(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let Some(end) = rest[start..].find("}}").map(|e| start + e) else { break };
        out.push_str(&rest[..start]);
        let inner = rest[start + 2..end].trim();
        let expanded = inner.split_once('|').and_then(|(lit, f)| {
            let lit = lit.trim().strip_prefix('"')?.strip_suffix('"')?;
            let n: usize = f.trim().strip_prefix("repeat")?.trim().parse().ok()?;
            Some(lit.repeat(n))
        });
        match expanded {
            Some(e) => out.push_str(&e),
            None => out.push_str(&rest[start..end + 2]),
        }
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

/// go-ftw re-encodes a form body that holds no escapes: parse, then encode with keys sorted.
fn reencode_form(data: Vec<u8>) -> Vec<u8> {
    if data.contains(&b'%') || data.contains(&b'+') || data.contains(&b';') {
        return data;
    }
    let text = String::from_utf8_lossy(&data).into_owned();
    let mut pairs: Vec<(String, String)> = text
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (p.to_string(), String::new()),
        })
        .collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v)))
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes()
}

/// Go's `url.QueryEscape`.
fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

fn crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 16);
    for (i, &b) in data.iter().enumerate() {
        if b == b'\n' && (i == 0 || data.get(i - 1) != Some(&b'\r')) {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// A request read off the wire.
#[derive(Debug, Default)]
pub struct Parsed {
    pub method: Vec<u8>,
    pub uri: Vec<u8>,
    pub version: Vec<u8>,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Parsed {
    /// The engine's view of this request, from a loopback client.
    pub fn request(&self) -> crate::Request<'_> {
        crate::Request {
            method: &self.method,
            uri: &self.uri,
            protocol: &self.version,
            headers: self.headers.iter().map(|(k, v)| (k.as_slice(), v.as_slice())).collect(),
            body: &self.body,
            remote_addr: "127.0.0.1",
            remote_port: 40000,
            server_port: 80,
            unique_id: "aaaaaaaaaaaaaaaaaaaaaaaaaaa0",
        }
    }
}

/// Reads a request as Portcullis's HTTP/1 server does (httparse, as hyper uses it); `Err` is
/// what the server answers 400 to.
pub fn parse(raw: &[u8]) -> Result<Parsed, String> {
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut req = httparse::Request::new(&mut headers);
    let consumed = match req.parse(raw).map_err(|e| format!("bad request: {e}"))? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Err("request head not complete".into()),
    };
    let version = match req.version {
        Some(0) => b"HTTP/1.0".to_vec(),
        _ => b"HTTP/1.1".to_vec(),
    };
    let mut p = Parsed {
        method: req.method.unwrap_or_default().as_bytes().to_vec(),
        uri: req.path.unwrap_or_default().as_bytes().to_vec(),
        version,
        headers: req.headers.iter().map(|h| (h.name.as_bytes().to_vec(), h.value.to_vec())).collect(),
        ..Parsed::default()
    };
    let rest = raw.get(consumed..).unwrap_or_default();
    let header = |n: &str| p.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n.as_bytes())).map(|(_, v)| v.clone());
    let chunked = header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case(b"chunked"));
    if chunked {
        if header("content-length").is_some() {
            return Err("both Content-Length and Transfer-Encoding".into());
        }
        p.body = dechunk(rest)?;
    } else if let Some(cl) = header("content-length") {
        let n: usize = std::str::from_utf8(&cl).ok().and_then(|s| s.parse().ok()).ok_or("bad Content-Length")?;
        p.body = rest.get(..n.min(rest.len())).unwrap_or_default().to_vec();
    }
    Ok(p)
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let end = rest.windows(2).position(|w| w == b"\r\n").ok_or("bad chunk")?;
        let size_text = std::str::from_utf8(rest.get(..end).unwrap_or_default()).map_err(|_| "bad chunk size")?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        rest = rest.get(end + 2..).unwrap_or_default();
        if size == 0 {
            return Ok(body);
        }
        let chunk = rest.get(..size).ok_or("short chunk")?;
        body.extend_from_slice(chunk);
        rest = rest.get(size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_like_go_ftw() {
        let input: Input = serde_saphyr::from_str(
            "method: POST\nuri: /post\nheaders:\n  User-Agent: x\n  Host: localhost\ndata: \"var=1234 OR 1=1\"\n",
        )
        .unwrap();
        let raw = String::from_utf8(build(&input).unwrap()).unwrap();
        assert_eq!(
            raw,
            "POST /post HTTP/1.1\r\nConnection: close\r\nContent-Length: 17\r\nContent-Type: application/x-www-form-urlencoded\r\nHost: localhost\r\nUser-Agent: x\r\n\r\nvar=1234+OR+1%3D1"
        );
        let p = parse(raw.as_bytes()).unwrap();
        assert_eq!(p.body, b"var=1234+OR+1%3D1");
        assert_eq!(expand_repeat("a{{ \"ab\" | repeat 3 }}c"), "aabababc");
    }

    #[test]
    fn chunked_bodies() {
        let p =
            parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nHi \r\n3\r\nCRS\r\n0\r\n\r\n").unwrap();
        assert_eq!(p.body, b"Hi CRS");
        assert!(parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n").is_err());
    }
}
