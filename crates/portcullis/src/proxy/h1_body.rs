//! An upstream response body, read from the connection by whoever polls it.
//!
//! Frames are slices of the connection's read buffer (no copy). The decoder is strict: a
//! chunk-size line must be hex digits, optional extensions and CRLF; chunk data must be
//! followed by CRLF; the trailer section is bounded. Anything else ends the body with an
//! error and the connection is closed, never reused. A connection goes back to the pool only
//! when the body ended exactly where its framing said and nothing was read beyond it.

use super::h1::{Framing, UpConn};
use bytes::{Buf, Bytes};
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

/// Longest chunk-size line (with extensions).
const MAX_CHUNK_LINE: usize = 4096;
/// Largest trailer section.
const MAX_TRAILERS: usize = 16 * 1024;
/// Bytes read from the socket at a time.
const READ_SIZE: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Bytes left in a `Content-Length` body.
    Length(u64),
    /// Expecting a chunk-size line.
    ChunkSize,
    /// Bytes left in the current chunk.
    ChunkData(u64),
    /// Expecting the CRLF after chunk data.
    ChunkEnd,
    /// Reading the trailer section after the last chunk.
    Trailers,
    /// Until the peer closes.
    Close,
    /// Finished cleanly.
    Done,
    /// Failed; the connection is unusable.
    Failed,
}

/// A response body read from an upstream connection.
#[derive(Debug)]
pub struct UpstreamBody {
    conn: Option<UpConn>,
    state: State,
    keep_alive: bool,
}

fn bad(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl UpstreamBody {
    /// The body that follows a head with this framing.
    pub fn new(conn: UpConn, framing: Framing, keep_alive: bool) -> UpstreamBody {
        let state = match framing {
            Framing::Empty | Framing::Upgrade => State::Done,
            Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::ChunkSize,
            Framing::Close => State::Close,
        };
        UpstreamBody { conn: Some(conn), state, keep_alive }
    }

    /// The connection, if the body ended cleanly and the connection may carry another
    /// request (keep-alive, exact framing, nothing read beyond the body).
    pub fn reusable(&mut self) -> Option<UpConn> {
        if self.state != State::Done || !self.keep_alive {
            return None;
        }
        let conn = self.conn.take()?;
        conn.buf.is_empty().then_some(conn)
    }

    /// Reads more into the buffer: `Ok(0)` at EOF.
    fn fill(conn: &mut UpConn, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if conn.buf.capacity() - conn.buf.len() < 1024 {
            conn.buf.reserve(READ_SIZE);
        }
        conn.io.poll_read_into(cx, &mut conn.buf)
    }

    fn step(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        let Some(conn) = self.conn.as_mut() else { return Poll::Ready(None) };
        loop {
            match self.state {
                State::Done | State::Failed => return Poll::Ready(None),
                State::Length(left) | State::ChunkData(left) => {
                    if conn.buf.is_empty() && ready!(Self::fill(conn, cx))? == 0 {
                        return Poll::Ready(Some(Err(bad("upstream closed inside the body"))));
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(conn.buf.len());
                    let data = conn.buf.split_to(n).freeze();
                    let left = left - n as u64;
                    self.state = match self.state {
                        State::Length(_) if left == 0 => State::Done,
                        State::Length(_) => State::Length(left),
                        _ if left == 0 => State::ChunkEnd,
                        _ => State::ChunkData(left),
                    };
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                State::Close => {
                    if conn.buf.is_empty() && ready!(Self::fill(conn, cx))? == 0 {
                        self.state = State::Done;
                        self.keep_alive = false;
                        return Poll::Ready(None);
                    }
                    let data = conn.buf.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                State::ChunkSize => match parse_chunk_size(&conn.buf)? {
                    Some((consumed, size)) => {
                        conn.buf.advance(consumed);
                        self.state = if size == 0 { State::Trailers } else { State::ChunkData(size) };
                    }
                    None => {
                        if conn.buf.len() > MAX_CHUNK_LINE {
                            return Poll::Ready(Some(Err(bad("chunk-size line too long"))));
                        }
                        if ready!(Self::fill(conn, cx))? == 0 {
                            return Poll::Ready(Some(Err(bad("upstream closed inside a chunk-size line"))));
                        }
                    }
                },
                State::ChunkEnd => {
                    if conn.buf.len() < 2 {
                        if ready!(Self::fill(conn, cx))? == 0 {
                            return Poll::Ready(Some(Err(bad("upstream closed after chunk data"))));
                        }
                        continue;
                    }
                    if conn.buf.get(..2) != Some(&b"\r\n"[..]) {
                        return Poll::Ready(Some(Err(bad("chunk data not followed by CRLF"))));
                    }
                    conn.buf.advance(2);
                    self.state = State::ChunkSize;
                }
                State::Trailers => match parse_trailers(&conn.buf)? {
                    Some((consumed, trailers)) => {
                        conn.buf.advance(consumed);
                        self.state = State::Done;
                        return Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))));
                    }
                    None => {
                        if conn.buf.len() > MAX_TRAILERS {
                            return Poll::Ready(Some(Err(bad("trailer section too large"))));
                        }
                        if ready!(Self::fill(conn, cx))? == 0 {
                            return Poll::Ready(Some(Err(bad("upstream closed inside the trailers"))));
                        }
                    }
                },
            }
        }
    }
}

/// `1a;ext=1\r\n` → `(bytes consumed, 0x1a)`; `None` when the line is incomplete.
fn parse_chunk_size(buf: &[u8]) -> io::Result<Option<(usize, u64)>> {
    let Some(lf) = buf.iter().position(|b| *b == b'\n') else { return Ok(None) };
    let line = buf.get(..lf).unwrap_or_default();
    let line = line.strip_suffix(b"\r").ok_or_else(|| bad("chunk-size line without CR"))?;
    let (digits, ext) = match line.iter().position(|b| *b == b';') {
        Some(i) => line.split_at(i),
        None => (line, &b""[..]),
    };
    if digits.is_empty() || digits.len() > 16 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err(bad("invalid chunk size"));
    }
    if ext.iter().any(|b| (*b < 0x20 && *b != b'\t') || *b == 0x7f) {
        return Err(bad("invalid chunk extension"));
    }
    let size = digits.iter().fold(0u64, |acc, d| acc << 4 | u64::from((*d as char).to_digit(16).unwrap_or(0)));
    Ok(Some((lf + 1, size)))
}

/// The trailer section up to and including its blank line: `(consumed, trailers)`.
fn parse_trailers(buf: &[u8]) -> io::Result<Option<(usize, Option<HeaderMap>)>> {
    if buf.starts_with(b"\r\n") {
        return Ok(Some((2, None)));
    }
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { return Ok(None) };
    let mut map = HeaderMap::new();
    for line in buf.get(..end).unwrap_or_default().split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|b| *b == b':').ok_or_else(|| bad("malformed trailer"))?;
        let (name, value) = line.split_at(colon);
        let name = HeaderName::from_bytes(name).map_err(|_| bad("invalid trailer name"))?;
        let value = HeaderValue::from_bytes(value.get(1..).unwrap_or_default().trim_ascii())
            .map_err(|_| bad("invalid trailer value"))?;
        map.append(name, value);
    }
    Ok(Some((end + 4, Some(map))))
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        let polled = this.step(cx);
        if let Poll::Ready(Some(Err(_))) = polled {
            this.state = State::Failed;
            this.conn = None; // close: never reuse a connection we lost track of
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done | State::Failed)
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Length(n) => SizeHint::with_exact(n),
            State::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_size_lines() {
        assert_eq!(parse_chunk_size(b"1a\r\nrest").unwrap(), Some((4, 26)));
        assert_eq!(parse_chunk_size(b"0;name=value\r\n").unwrap(), Some((14, 0)));
        assert_eq!(parse_chunk_size(b"00000010\r\n").unwrap(), Some((10, 16)));
        assert_eq!(parse_chunk_size(b"1a").unwrap(), None);
        for bad in [
            &b"zz\r\n"[..],
            b"\r\n",
            b"1a\n",
            b" 1a\r\n",
            b"0x1a\r\n",
            b"11111111111111111\r\n",
            b"1;\x01\r\n",
            b"-1\r\n",
        ] {
            assert!(parse_chunk_size(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    /// Bodies chunked at random sizes and written in random pieces decode to the original,
    /// and the connection is reusable exactly when the framing ended cleanly.
    #[tokio::test]
    async fn chunked_bodies_survive_any_fragmentation() {
        use http_body_util::BodyExt;
        use tokio::io::AsyncWriteExt;
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rand = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n.max(1)
        };
        for round in 0..40 {
            let body: Vec<u8> = (0..rand(5000)).map(|i| (i % 251) as u8).collect();
            let mut wire = Vec::new();
            let mut rest = &body[..];
            while !rest.is_empty() {
                let n = (1 + rand(700) as usize).min(rest.len());
                wire.extend_from_slice(format!("{n:x}\r\n").as_bytes());
                wire.extend_from_slice(&rest[..n]);
                wire.extend_from_slice(b"\r\n");
                rest = &rest[n..];
            }
            wire.extend_from_slice(if round % 2 == 0 { b"0\r\n\r\n" } else { b"0\r\nx-t: 1\r\n\r\n" });
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let pieces: Vec<usize> = (0..64).map(|_| 1 + rand(300) as usize).collect();
            let writer = tokio::spawn(async move {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut w = &wire[..];
                for p in pieces.iter().cycle() {
                    if w.is_empty() {
                        break;
                    }
                    let n = (*p).min(w.len());
                    s.write_all(&w[..n]).await.unwrap();
                    s.flush().await.unwrap();
                    w = &w[n..];
                    tokio::task::yield_now().await;
                }
                s
            });
            let conn = UpConn::new(tokio::net::TcpStream::connect(addr).await.unwrap());
            let mut up = UpstreamBody::new(conn, Framing::Chunked, true);
            let mut got = Vec::new();
            let mut trailers = None;
            while let Some(frame) = up.frame().await {
                let frame = frame.unwrap();
                if let Some(d) = frame.data_ref() {
                    got.extend_from_slice(d);
                } else {
                    trailers = frame.into_trailers().ok();
                }
            }
            assert_eq!(got, body, "round {round}");
            assert_eq!(trailers.is_some(), round % 2 == 1);
            assert!(up.reusable().is_some(), "round {round}: clean end keeps the connection");
            drop(writer.await.unwrap());
        }
    }

    #[tokio::test]
    async fn truncated_bodies_are_errors_and_never_reused() {
        use http_body_util::BodyExt;
        use tokio::io::AsyncWriteExt;
        for (framing, wire) in [
            (Framing::Length(10), &b"short"[..]),
            (Framing::Chunked, b"a\r\nshort"),
            (Framing::Chunked, b"5\r\nhelloXX0\r\n\r\n"),
        ] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let wire = wire.to_vec();
            tokio::spawn(async move {
                let (mut s, _) = listener.accept().await.unwrap();
                s.write_all(&wire).await.unwrap();
            });
            let conn = UpConn::new(tokio::net::TcpStream::connect(addr).await.unwrap());
            let mut up = UpstreamBody::new(conn, framing, true);
            let mut failed = false;
            while let Some(frame) = up.frame().await {
                if frame.is_err() {
                    failed = true;
                    break;
                }
            }
            assert!(failed, "{framing:?}");
            assert!(up.reusable().is_none());
        }
    }

    #[test]
    fn trailer_sections() {
        assert_eq!(parse_trailers(b"\r\nNEXT").unwrap().map(|(n, t)| (n, t.is_none())), Some((2, true)));
        let (n, t) = parse_trailers(b"grpc-status: 0\r\nx-sum: abc\r\n\r\n").unwrap().unwrap();
        assert_eq!(n, 30);
        assert_eq!(t.unwrap().get("grpc-status").unwrap(), "0");
        assert!(parse_trailers(b"x-sum: abc\r\n").unwrap().is_none());
        assert!(parse_trailers(b"no colon here\r\n\r\n").is_err());
    }
}
