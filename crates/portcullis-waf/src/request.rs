//! The request as the engine sees it: borrowed bytes from the gateway (no copies of what is
//! already in memory), and the collections ModSecurity derives from them.

use crate::actions::BodyProcessor;
use std::borrow::Cow;

pub type Bytes<'a> = Cow<'a, [u8]>;

/// A request handed to the engine. Everything is borrowed from the caller.
#[derive(Debug, Clone, Default)]
pub struct Request<'a> {
    pub method: &'a [u8],
    /// The request target exactly as received (path and query, or absolute form).
    pub uri: &'a [u8],
    /// `HTTP/1.1`, `HTTP/2.0`, ...
    pub protocol: &'a [u8],
    pub headers: Vec<(&'a [u8], &'a [u8])>,
    pub body: &'a [u8],
    pub remote_addr: &'a str,
    pub remote_port: u16,
    pub server_port: u16,
    /// A unique id for this transaction (the gateway's request id).
    pub unique_id: &'a str,
}

/// What a response looks like to phases 3 and 4.
#[derive(Debug, Clone, Default)]
pub struct Response<'a> {
    pub status: u16,
    pub protocol: &'a [u8],
    pub headers: Vec<(&'a [u8], &'a [u8])>,
    pub body: &'a [u8],
}

/// Collections derived from the request line and headers (phase 1) and the body (phase 2).
#[derive(Debug, Default)]
pub struct Parsed<'a> {
    pub args_get: Vec<(Bytes<'a>, Bytes<'a>)>,
    pub args_post: Vec<(Bytes<'a>, Bytes<'a>)>,
    pub cookies: Vec<(&'a [u8], &'a [u8])>,
    pub query: &'a [u8],
    pub filename: Bytes<'a>,
    pub basename: Bytes<'a>,
    pub uri: &'a [u8],
    pub request_line: Vec<u8>,
    pub files: Vec<(Bytes<'a>, Bytes<'a>)>,
    pub files_sizes: Vec<(Bytes<'a>, usize)>,
    pub part_headers: Vec<(Bytes<'a>, Bytes<'a>)>,
    pub xml_text: Vec<Vec<u8>>,
    pub xml_attrs: Vec<Vec<u8>>,
    pub processor: Option<BodyProcessor>,
    pub body_error: Option<String>,
    /// The part of the body the engine inspects (all of it unless a limit cut it).
    pub body: &'a [u8],
    pub body_parsed: bool,
    /// Whether REQUEST_BODY is populated.
    pub body_variable: bool,
}

/// Percent-decoding as ModSecurity applies it to arguments: `+` is a space, invalid escapes
/// stay as written. Borrows when there is nothing to decode.
pub fn url_decode(raw: &[u8]) -> Bytes<'_> {
    match crate::decode::url(raw, false) {
        Some(v) => Cow::Owned(v),
        None => Cow::Borrowed(raw),
    }
}

/// Percent-decoding for paths: `+` stays a plus.
fn path_decode(raw: &[u8]) -> Bytes<'_> {
    if memchr::memchr(b'%', raw).is_none() {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        let hex = |at: usize| raw.get(at).and_then(|c| (*c as char).to_digit(16));
        if b == b'%'
            && let (Some(h), Some(l)) = (hex(i + 1), hex(i + 2))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b);
        i += 1;
    }
    Cow::Owned(out)
}

/// Splits `a=1&b=2` into decoded pairs (empty pieces skipped; a piece without `=` is a name
/// with an empty value).
pub fn parse_query<'a>(raw: &'a [u8], out: &mut Vec<(Bytes<'a>, Bytes<'a>)>) {
    for piece in raw.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        match memchr::memchr(b'=', piece) {
            Some(eq) => {
                let (k, v) = piece.split_at(eq);
                out.push((url_decode(k), url_decode(v.get(1..).unwrap_or_default())));
            }
            None => out.push((url_decode(piece), Cow::Borrowed(&[]))),
        }
    }
}

impl<'a> Request<'a> {
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| *v)
    }

    /// The phase-1 collections.
    pub fn parse_head(&self) -> Parsed<'a> {
        let mut p = Parsed { uri: self.uri, ..Parsed::default() };
        // An absolute-form target keeps only its path for REQUEST_URI and the file name.
        let origin = strip_authority(self.uri);
        p.uri = origin;
        let (path, query) = match memchr::memchr(b'?', origin) {
            Some(q) => (origin.get(..q).unwrap_or_default(), origin.get(q + 1..).unwrap_or_default()),
            None => (origin, &[][..]),
        };
        p.query = query;
        parse_query(query, &mut p.args_get);
        p.filename = path_decode(path);
        p.basename = match &p.filename {
            Cow::Borrowed(f) => Cow::Borrowed(basename(f)),
            Cow::Owned(f) => Cow::Owned(basename(f).to_vec()),
        };
        p.request_line = [self.method, b" ", self.uri, b" ", self.protocol].concat();
        for (name, value) in &self.headers {
            if name.eq_ignore_ascii_case(b"cookie") {
                parse_cookies(value, &mut p.cookies);
            }
        }
        p.processor = self.header("content-type").and_then(default_processor);
        p
    }
}

fn basename(path: &[u8]) -> &[u8] {
    match memchr::memrchr2(b'/', b'\\', path) {
        Some(i) => path.get(i + 1..).unwrap_or_default(),
        None => path,
    }
}

fn strip_authority(uri: &[u8]) -> &[u8] {
    let lower_starts = |p: &[u8]| uri.len() >= p.len() && uri.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p));
    for scheme in [&b"http://"[..], b"https://"] {
        if lower_starts(scheme) {
            let rest = uri.get(scheme.len()..).unwrap_or_default();
            return match memchr::memchr2(b'/', b'?', rest) {
                Some(i) => rest.get(i..).unwrap_or_default(),
                None => b"/",
            };
        }
    }
    uri
}

/// `a=1; b=2` into pairs; cookie values are not decoded (as ModSecurity).
fn parse_cookies<'a>(header: &'a [u8], out: &mut Vec<(&'a [u8], &'a [u8])>) {
    for piece in header.split(|&b| b == b';') {
        let piece = piece.trim_ascii();
        if piece.is_empty() {
            continue;
        }
        match memchr::memchr(b'=', piece) {
            Some(eq) => out.push((piece.get(..eq).unwrap_or_default(), piece.get(eq + 1..).unwrap_or_default())),
            None => out.push((piece, &[])),
        }
    }
}

/// The body processor chosen from `Content-Type` before any rule runs: form and multipart as
/// ModSecurity; JSON and XML as the recommended ModSecurity configuration enables them.
fn default_processor(content_type: &[u8]) -> Option<BodyProcessor> {
    let ct = content_type.to_ascii_lowercase();
    let mime = ct.split(|&b| b == b';').next().unwrap_or_default().trim_ascii();
    if mime == b"application/x-www-form-urlencoded" {
        Some(BodyProcessor::UrlEncoded)
    } else if mime.starts_with(b"multipart/form-data") {
        Some(BodyProcessor::Multipart)
    } else if mime == b"application/json" || mime.ends_with(b"+json") {
        Some(BodyProcessor::Json)
    } else if mime == b"text/xml" || mime == b"application/xml" || mime.ends_with(b"+xml") {
        Some(BodyProcessor::Xml)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_collections() {
        let r = Request {
            method: b"GET",
            uri: b"http://example.com/a/b%2e.php?x=1+2&y=%27&z&&",
            protocol: b"HTTP/1.1",
            headers: vec![(b"Cookie", b"s=1; t=a=b;flag"), (b"Content-Type", b"application/json; charset=utf-8")],
            ..Request::default()
        };
        let p = r.parse_head();
        assert_eq!(p.uri, b"/a/b%2e.php?x=1+2&y=%27&z&&");
        assert_eq!(p.filename.as_ref(), b"/a/b..php");
        assert_eq!(p.basename.as_ref(), b"b..php");
        assert_eq!(p.query, b"x=1+2&y=%27&z&&");
        let args: Vec<(&[u8], &[u8])> = p.args_get.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect();
        assert_eq!(args, vec![(&b"x"[..], &b"1 2"[..]), (b"y", b"'"), (b"z", b"")]);
        assert_eq!(p.cookies, vec![(&b"s"[..], &b"1"[..]), (b"t", b"a=b"), (b"flag", b"")]);
        assert_eq!(p.processor, Some(BodyProcessor::Json));
        assert_eq!(p.request_line, b"GET http://example.com/a/b%2e.php?x=1+2&y=%27&z&& HTTP/1.1");
    }
}
