//! Client side of tests: HTTP/1.1, HTTP/2 (prior knowledge or ALPN), TLS with or without a
//! client certificate, and raw TCP for malformed requests.

use bytes::Bytes;
use http::{HeaderMap, Request, Version};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Request body type used by the helpers.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// A response, fully read.
#[derive(Debug, Clone)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
    /// Version.
    pub version: Version,
}

impl Resp {
    /// A header as a string.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A body from bytes.
pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// An empty body.
pub fn empty() -> Body {
    full(Bytes::new())
}

/// `total` bytes generated in `chunk`-sized pieces as they are sent (never all in memory).
/// With `pause`, waits between chunks.
pub fn generated(total: u64, chunk: usize, pause: Option<Duration>) -> Body {
    let piece = Bytes::from(vec![b'x'; chunk]);
    let stream = futures_util::stream::unfold(0u64, move |sent| {
        let piece = piece.clone();
        async move {
            if sent >= total {
                return None;
            }
            if let (Some(p), true) = (pause, sent > 0) {
                tokio::time::sleep(p).await;
            }
            let n = (total - sent).min(piece.len() as u64) as usize;
            Some((Ok::<_, std::io::Error>(Frame::data(piece.slice(..n))), sent + n as u64))
        }
    });
    StreamBody::new(stream).boxed()
}

/// How to connect.
#[derive(Clone, Default)]
pub struct Opts {
    /// TLS client config (server name `localhost`).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// HTTP/2 with prior knowledge on plaintext.
    pub h2c: bool,
}

/// Sends one request on a new connection and reads the whole response.
pub async fn send(addr: SocketAddr, opts: &Opts, req: Request<Body>) -> Result<Resp, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).ok();
    match &opts.tls {
        Some(cfg) => {
            let connector = tokio_rustls::TlsConnector::from(cfg.clone());
            let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
            let tls = connector.connect(name, stream).await.map_err(|e| format!("tls: {e}"))?;
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            exchange(TokioIo::new(tls), h2, req).await
        }
        None => exchange(TokioIo::new(stream), opts.h2c, req).await,
    }
}

async fn exchange<I>(io: TokioIo<I>, h2: bool, req: Request<Body>) -> Result<Resp, String>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let resp = if h2 {
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await.map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        send.send_request(req).await.map_err(|e| e.to_string())?
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        send.send_request(req).await.map_err(|e| e.to_string())?
    };
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Resp { status: parts.status.as_u16(), headers: parts.headers, body, version: parts.version })
}

/// A request builder with `Host: localhost`.
pub fn req(method: &str, path: &str) -> http::request::Builder {
    Request::builder().method(method).uri(path).header("host", "localhost")
}

/// GET on a new HTTP/1.1 connection.
pub async fn get(addr: SocketAddr, path: &str) -> Resp {
    send(addr, &Opts::default(), req("GET", path).body(empty()).unwrap())
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// A keep-alive HTTP/1.1 connection for many requests.
pub struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Body>,
}

impl Conn {
    /// Opens the connection.
    pub async fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).ok();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
        tokio::spawn(conn);
        Conn { sender }
    }

    /// Sends a request and reads the response.
    pub async fn send(&mut self, req: Request<Body>) -> Result<Resp, String> {
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let resp = self.sender.send_request(req).await.map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Resp { status: parts.status.as_u16(), headers: parts.headers, body, version: parts.version })
    }
}

/// Writes `bytes` on a new connection, then reads until the peer closes or `timeout` passes.
pub async fn raw(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    read_until_close(&mut s, timeout).await
}

/// Reads until EOF or `timeout`.
pub async fn read_until_close(s: &mut TcpStream, timeout: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return out,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// The status codes of every HTTP/1 response in a byte stream, in order.
pub fn statuses(bytes: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(bytes);
    text.match_indices("HTTP/1.1 ").filter_map(|(i, _)| text.get(i + 9..i + 12).and_then(|s| s.parse().ok())).collect()
}

/// GETs `path` every 30 ms until it answers `status` or `timeout` passes (for changes that
/// take effect asynchronously, like a reload). True when it did.
pub async fn until_status(addr: SocketAddr, path: &str, status: u16, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let r = send(addr, &Opts::default(), req("GET", path).body(empty()).expect("request")).await;
        if r.is_ok_and(|r| r.status == status) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

/// The admin bearer token test configs use.
pub const ADMIN_TOKEN: &str = "admin-t0ken";

/// `admin.token_sha256` for [`ADMIN_TOKEN`].
pub fn admin_token_sha256() -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(ADMIN_TOKEN.as_bytes()))
}

/// An admin API call with [`ADMIN_TOKEN`] and an optional JSON body.
pub async fn admin(addr: SocketAddr, method: &str, path: &str, body: Option<serde_json::Value>) -> Resp {
    let b = req(method, path)
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .header("content-type", "application/json");
    let body = body.map_or_else(empty, |v| full(v.to_string()));
    send(addr, &Opts::default(), b.body(body).unwrap()).await.unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}
