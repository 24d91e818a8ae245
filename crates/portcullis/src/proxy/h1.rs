//! The upstream side of HTTP/1.1, owned by the request that uses it.
//!
//! A connection ([`UpConn`]) is a socket and its read buffer. [`send`] writes the request head
//! and body and reads the response head; the body is then read from the same socket by
//! [`super::h1_body::UpstreamBody`], which hands the connection back to the pool only after a
//! cleanly and exactly framed end. No task per connection, no channels: the request's own
//! task does the I/O.
//!
//! Responses are parsed strictly, because a response the gateway frames differently from the
//! upstream would desynchronise the connection for the next request: `Content-Length` and
//! `Transfer-Encoding` together, conflicting or malformed lengths, a `Transfer-Encoding`
//! other than a final `chunked` on a keep-alive response, oversized heads, too many headers,
//! and invalid header bytes are all refused (502 `upstream.bad_response`).

use super::body::{BodyError, BodyErrorKind, ReqBody};
use super::upio::UpIo;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version, header};
use http_body::Body;
use http_body_util::BodyExt;
use std::io;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest response head accepted.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most response headers accepted.
pub const MAX_HEADERS: usize = 128;
/// Most interim (1xx) responses skipped before the final one.
const MAX_INTERIM: usize = 8;

/// An upstream connection: the socket and what has been read but not yet consumed.
#[derive(Debug)]
pub struct UpConn {
    pub(crate) io: UpIo,
    pub(crate) buf: BytesMut,
    /// Reused for every request head written on this connection.
    wbuf: Vec<u8>,
    /// It served a request before (came from the pool).
    pub reused: bool,
}

impl UpConn {
    /// A fresh connection.
    pub fn new(io: impl Into<UpIo>) -> UpConn {
        UpConn { io: io.into(), buf: BytesMut::with_capacity(8 * 1024), wbuf: Vec::with_capacity(512), reused: false }
    }

    /// Checks, without blocking, that the peer has not closed an idle connection or sent
    /// something unasked. Costs one syscall; used only before a request that could not be
    /// replayed if the connection turned out dead.
    pub fn probe_alive(&mut self) -> bool {
        self.io.idle_and_open()
    }

    /// The socket and any bytes already read past the response head (for a protocol switch).
    pub fn into_parts(self) -> (UpIo, BytesMut) {
        (self.io, self.buf)
    }
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the upstream closes the connection.
    Close,
    /// 101: the connection now carries another protocol.
    Upgrade,
}

/// A parsed response head.
#[derive(Debug)]
pub struct Head {
    /// Status.
    pub status: StatusCode,
    /// Version the upstream spoke.
    pub version: Version,
    /// Headers, framing headers included (the response phase strips hop-by-hop ones).
    pub headers: HeaderMap,
    /// Body delimitation.
    pub framing: Framing,
    /// The connection may carry another request after this response.
    pub keep_alive: bool,
}

/// Why an exchange failed.
#[derive(Debug)]
pub enum SendError {
    /// The connection closed or reset before a single response byte arrived. `body` is the
    /// request body when none of it was consumed (so the request can be sent again).
    Stale { body: Option<ReqBody>, error: io::Error },
    /// Connecting, writing or reading failed.
    Io(io::Error),
    /// The response is not acceptable HTTP/1.1.
    BadResponse(&'static str),
    /// The client's body failed (too large, too slow, aborted).
    Body(BodyErrorKind),
    /// No answer (or no progress writing the body) within the upstream's `timeout`.
    Timeout,
}

/// How the request body is framed on the wire.
enum ReqFraming {
    None,
    Length(u64),
    Chunked,
}

fn request_framing(method: &Method, body: &ReqBody) -> ReqFraming {
    let hint = body.size_hint();
    match hint.exact() {
        Some(0) if matches!(*method, Method::POST | Method::PUT | Method::PATCH) => ReqFraming::Length(0),
        Some(0) => ReqFraming::None,
        Some(n) => ReqFraming::Length(n),
        None => ReqFraming::Chunked,
    }
}

/// Writes `METHOD target HTTP/1.1`, the headers (framing headers replaced by ours) and the
/// blank line.
fn encode_head(method: &Method, target: &[u8], headers: &HeaderMap, framing: &ReqFraming, out: &mut Vec<u8>) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        ReqFraming::None => {}
        ReqFraming::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        ReqFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// Sends a request and reads the response head. The connection comes back with the head
/// consumed and any body bytes already read left in its buffer.
pub async fn send(
    mut conn: UpConn,
    method: &Method,
    target: &[u8],
    headers: &HeaderMap,
    mut body: ReqBody,
    timeout: Duration,
) -> Result<(UpConn, Head), SendError> {
    let framing = request_framing(method, &body);
    let mut out = std::mem::take(&mut conn.wbuf);
    out.clear();
    encode_head(method, target, headers, &framing, &mut out);
    let in_memory = match &mut body {
        ReqBody::Empty => true,
        ReqBody::Full(b) => {
            if let Some(bytes) = b.as_ref() {
                out.extend_from_slice(bytes);
            }
            true
        }
        ReqBody::Stream(_) => false,
    };
    if in_memory {
        // The whole exchange up to the response head must fit in `timeout`.
        let exchange = async {
            if let Err(error) = conn.io.write_all(&out).await {
                return Err(SendError::Stale { body: None, error });
            }
            read_head(&mut conn, method).await
        };
        let result = tokio::time::timeout(timeout, exchange).await;
        if out.capacity() <= 64 * 1024 {
            conn.wbuf = out; // keep the buffer for the next request (not a large body's)
        }
        return match result {
            Err(_) => Err(SendError::Timeout),
            Ok(Ok(head)) => Ok((conn, head)),
            Ok(Err(SendError::Stale { error, .. })) => Err(SendError::Stale { body: Some(body), error }),
            Ok(Err(e)) => Err(e),
        };
    }
    match tokio::time::timeout(timeout, conn.io.write_all(&out)).await {
        Err(_) => return Err(SendError::Timeout),
        Ok(Err(error)) => return Err(SendError::Stale { body: Some(body), error }),
        Ok(Ok(())) => {}
    }
    // A streamed body: upload it while watching for an early response (an upstream may
    // answer 413 and stop reading; waiting for the upload to finish would then deadlock).
    // The upload takes as long as the client takes (bounded by `limits.body_timeout`); each
    // write to the upstream must progress within `timeout`, and the answer must come within
    // `timeout` of the last byte.
    let chunked = matches!(framing, ReqFraming::Chunked);
    let (result, uploaded) = {
        let UpConn { io, buf, .. } = &mut conn;
        match io {
            // Plain TCP splits without locking; TLS needs the generic (locked) halves.
            UpIo::Plain(s) => {
                let (rd, wr) = s.split();
                upload_and_read(rd, wr, buf, &mut body, chunked, method, timeout).await?
            }
            UpIo::Tls(s) => {
                let (rd, wr) = tokio::io::split(&mut **s);
                upload_and_read(rd, wr, buf, &mut body, chunked, method, timeout).await?
            }
        }
    };
    let mut head = match result {
        Err(SendError::Stale { error, .. }) => return Err(SendError::Stale { body: None, error }),
        other => other?,
    };
    if !uploaded {
        // An early answer: the rest of the request body was never sent, so this connection
        // cannot carry another request.
        head.keep_alive = false;
    }
    Ok((conn, head))
}

/// Uploads a streamed body while reading the response head. Returns the head (or why there
/// is none) and whether the whole body was sent.
async fn upload_and_read<R, W>(
    mut rd: R,
    mut wr: W,
    buf: &mut BytesMut,
    body: &mut ReqBody,
    chunked: bool,
    method: &Method,
    timeout: Duration,
) -> Result<(Result<Head, SendError>, bool), SendError>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let upload = write_body(&mut wr, body, chunked, timeout);
    let head = read_head_from(&mut rd, buf, method);
    let answer_deadline = tokio::time::sleep(timeout);
    tokio::pin!(upload, head, answer_deadline);
    let mut uploaded = false;
    let result = loop {
        tokio::select! {
            biased;
            h = &mut head => break h,
            w = &mut upload, if !uploaded => {
                match w {
                    Ok(()) => {}
                    Err(e @ (SendError::Body(_) | SendError::Timeout)) => return Err(e),
                    // The upstream stopped reading: it may still answer, so keep reading.
                    Err(_) => {}
                }
                uploaded = true;
                answer_deadline.as_mut().reset(tokio::time::Instant::now() + timeout);
            }
            _ = &mut answer_deadline, if uploaded => return Err(SendError::Timeout),
        }
    };
    Ok((result, uploaded))
}

async fn write_body<W: tokio::io::AsyncWrite + Unpin>(
    wr: &mut W,
    body: &mut ReqBody,
    chunked: bool,
    timeout: Duration,
) -> Result<(), SendError> {
    // Every write must make progress within `timeout`: an upstream that stopped reading and
    // never answers cannot hold the request forever.
    async fn put<W: tokio::io::AsyncWrite + Unpin>(
        wr: &mut W,
        bytes: &[u8],
        timeout: Duration,
    ) -> Result<(), SendError> {
        match tokio::time::timeout(timeout, wr.write_all(bytes)).await {
            Err(_) => Err(SendError::Timeout),
            Ok(r) => r.map_err(SendError::Io),
        }
    }
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e: BodyError| SendError::Body(e.kind))?;
        let Ok(data) = frame.into_data() else { continue };
        if data.is_empty() {
            continue;
        }
        if chunked {
            put(wr, format!("{:x}\r\n", data.len()).as_bytes(), timeout).await?;
            put(wr, &data, timeout).await?;
            put(wr, b"\r\n", timeout).await?;
        } else {
            put(wr, &data, timeout).await?;
        }
    }
    if chunked {
        put(wr, b"0\r\n\r\n", timeout).await?;
    }
    Ok(())
}
async fn read_head(conn: &mut UpConn, method: &Method) -> Result<Head, SendError> {
    let UpConn { io, buf, .. } = conn;
    read_head_from(io, buf, method).await
}

async fn read_head_from<R: tokio::io::AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    method: &Method,
) -> Result<Head, SendError> {
    let mut seen_any = !buf.is_empty();
    let mut interim = 0;
    loop {
        if !buf.is_empty() {
            match parse_head(buf, method)? {
                Some(head) if head.status.is_informational() && head.status != StatusCode::SWITCHING_PROTOCOLS => {
                    interim += 1;
                    if interim > MAX_INTERIM {
                        return Err(SendError::BadResponse("too many interim responses"));
                    }
                    continue;
                }
                Some(head) => return Ok(head),
                None => {}
            }
        }
        if buf.len() >= MAX_HEAD {
            return Err(SendError::BadResponse("response head too large"));
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(8 * 1024);
        }
        match rd.read_buf(buf).await {
            Ok(0) if !seen_any => {
                return Err(SendError::Stale { body: None, error: io::ErrorKind::UnexpectedEof.into() });
            }
            Ok(0) => return Err(SendError::BadResponse("connection closed inside the response head")),
            Ok(_) => seen_any = true,
            Err(e) if !seen_any && matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe) => {
                return Err(SendError::Stale { body: None, error: e });
            }
            Err(e) => return Err(SendError::Io(e)),
        }
    }
}

/// Parses a complete head from the front of `buf` (consuming it), or `None` if more bytes
/// are needed.
pub fn parse_head(buf: &mut BytesMut, method: &Method) -> Result<Option<Head>, SendError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut slots);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(SendError::BadResponse("too many response headers")),
        Err(_) => return Err(SendError::BadResponse("malformed response head")),
    };
    let code = resp.code.ok_or(SendError::BadResponse("no status"))?;
    let status = StatusCode::from_u16(code).map_err(|_| SendError::BadResponse("invalid status"))?;
    let version = if resp.version == Some(1) { Version::HTTP_11 } else { Version::HTTP_10 };
    // Header values become slices of the frozen head: no copy.
    let base = buf.as_ptr() as usize;
    let spans: Vec<(HeaderName, usize, usize)> = resp
        .headers
        .iter()
        .map(|h| {
            let name =
                HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| SendError::BadResponse("invalid header name"))?;
            let start = h.value.as_ptr() as usize - base;
            Ok((name, start, start + h.value.len()))
        })
        .collect::<Result<_, SendError>>()?;
    let head_bytes: Bytes = buf.split_to(len).freeze();
    // Room for what the response phase adds (request id, RateLimit fields) without regrowing.
    let mut headers = HeaderMap::with_capacity(spans.len() + 4);
    let mut facts = Facts::default();
    for (name, start, end) in spans {
        let value = HeaderValue::from_maybe_shared(head_bytes.slice(start..end))
            .map_err(|_| SendError::BadResponse("invalid header value"))?;
        facts.observe(&name, value.as_bytes())?;
        headers.append(name, value);
    }
    let (framing, keep_alive) = facts.framing(status, version, method)?;
    Ok(Some(Head { status, version, headers, framing, keep_alive }))
}

/// What the framing and connection headers said, gathered while the head is read (one pass,
/// no map lookups).
#[derive(Debug, Default)]
struct Facts {
    content_length: Option<u64>,
    transfer_encoding: bool,
    /// The last transfer-coding seen is `chunked`.
    chunked_last: bool,
    chunked_count: u32,
    close: bool,
    keep_alive: bool,
}

fn trimmed(part: &[u8]) -> &[u8] {
    part.trim_ascii()
}

impl Facts {
    fn observe(&mut self, name: &HeaderName, value: &[u8]) -> Result<(), SendError> {
        if *name == header::CONTENT_LENGTH {
            // Every value, and every element of a list, must be the same digits.
            for part in value.split(|b| *b == b',').map(trimmed) {
                if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
                    return Err(SendError::BadResponse("malformed Content-Length"));
                }
                let n = part.iter().fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
                if self.content_length.is_some_and(|f| f != n) {
                    return Err(SendError::BadResponse("conflicting Content-Length"));
                }
                self.content_length = Some(n);
            }
        } else if *name == header::TRANSFER_ENCODING {
            self.transfer_encoding = true;
            for coding in value.split(|b| *b == b',').map(trimmed) {
                let chunked = coding.eq_ignore_ascii_case(b"chunked");
                self.chunked_count += u32::from(chunked);
                self.chunked_last = chunked;
            }
        } else if *name == header::CONNECTION {
            for token in value.split(|b| *b == b',').map(trimmed) {
                self.close |= token.eq_ignore_ascii_case(b"close");
                self.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
        Ok(())
    }

    /// RFC 9112 §6.3, strictly; and whether the connection may be reused.
    fn framing(&self, status: StatusCode, version: Version, method: &Method) -> Result<(Framing, bool), SendError> {
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return Ok((Framing::Upgrade, false));
        }
        if self.transfer_encoding && self.content_length.is_some() {
            return Err(SendError::BadResponse("both Content-Length and Transfer-Encoding"));
        }
        let reusable = match version {
            Version::HTTP_11 => !self.close,
            _ => self.keep_alive && !self.close,
        };
        if *method == Method::HEAD
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            return Ok((Framing::Empty, reusable));
        }
        if self.transfer_encoding {
            if version != Version::HTTP_11 {
                return Err(SendError::BadResponse("Transfer-Encoding in an HTTP/1.0 response"));
            }
            if !self.chunked_last {
                // Not chunked last: the body runs until close (RFC 9112 §6.3 item 4).
                return Ok((Framing::Close, false));
            }
            if self.chunked_count > 1 {
                return Err(SendError::BadResponse("chunked applied twice"));
            }
            return Ok((Framing::Chunked, reusable));
        }
        match self.content_length {
            Some(0) => Ok((Framing::Empty, reusable)),
            Some(n) => Ok((Framing::Length(n), reusable)),
            None => Ok((Framing::Close, false)),
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str, method: Method) -> Result<Option<Head>, SendError> {
        let mut b = BytesMut::from(raw.as_bytes());
        parse_head(&mut b, &method)
    }

    fn head(raw: &str) -> Head {
        parse(raw, Method::GET).unwrap().unwrap()
    }

    #[test]
    fn framing_of_ordinary_responses() {
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::Length(5), true));
        let h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert_eq!(h.framing, Framing::Chunked);
        let h = head("HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::Close, false));
        let h = head("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(h.framing, Framing::Empty);
        let h = head("HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n");
        assert_eq!(h.framing, Framing::Empty);
        let h = parse("HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", Method::HEAD).unwrap().unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::Empty, true));
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n");
        assert_eq!(h.framing, Framing::Length(5));
        let h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::Close, false));
    }

    #[test]
    fn keep_alive_rules() {
        assert!(!head("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").keep_alive);
        assert!(!head("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive);
        assert!(head("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n").keep_alive);
        assert!(!head("HTTP/1.1 200 OK\r\nConnection: Upgrade, Close\r\nContent-Length: 1\r\n\r\n").keep_alive);
    }

    #[test]
    fn ambiguous_or_malformed_responses_are_refused() {
        for raw in [
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
            "HTTP/1.1 099 Too Low\r\n\r\n",
            "HTTP/2 200 OK\r\n\r\n",
            "garbage\r\n\r\n",
        ] {
            assert!(matches!(parse(raw, Method::GET), Err(SendError::BadResponse(_))), "{raw:?}");
        }
    }

    #[test]
    fn partial_heads_wait_and_values_are_kept() {
        assert!(parse("HTTP/1.1 200 OK\r\nContent-Le", Method::GET).unwrap().is_none());
        let mut b =
            BytesMut::from(&b"HTTP/1.1 201 Created\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 3\r\n\r\nabcNEXT"[..]);
        let h = parse_head(&mut b, &Method::POST).unwrap().unwrap();
        assert_eq!(h.status, StatusCode::CREATED);
        assert_eq!(h.headers.get_all("x-a").iter().collect::<Vec<_>>(), vec!["1", "2"]);
        assert_eq!(&b[..], b"abcNEXT", "body bytes stay in the buffer");
    }

    #[test]
    fn request_heads_are_reframed() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("example.com"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("999"));
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        let mut out = Vec::new();
        encode_head(&Method::POST, b"/a?b=1", &h, &ReqFraming::Length(3), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /a?b=1 HTTP/1.1\r\nhost: example.com\r\ncontent-length: 3\r\n\r\n"
        );
        let mut out = Vec::new();
        encode_head(&Method::GET, b"/", &HeaderMap::new(), &ReqFraming::None, &mut out);
        assert_eq!(out, b"GET / HTTP/1.1\r\n\r\n");
    }
}
