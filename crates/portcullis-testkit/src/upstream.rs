//! A mock backend that records every request it receives (parsed, and the raw bytes of each
//! connection), and answers as the test tells it to.

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Version};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Bytes of a body kept in [`Recorded::body`]; longer bodies are only counted.
pub const KEEP_BODY: usize = 1 << 20;

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Method.
    pub method: Method,
    /// Request target as received (origin-form).
    pub uri: String,
    /// HTTP version.
    pub version: Version,
    /// Headers.
    pub headers: HeaderMap,
    /// Body, up to [`KEEP_BODY`] bytes.
    pub body: Bytes,
    /// Body length in bytes.
    pub body_len: u64,
    /// Which connection it came on (0-based, in accept order).
    pub conn: usize,
}

impl Recorded {
    /// A header as a string.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
    }

    /// Every value of a header.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).map(str::to_string).collect()
    }
}

/// What the upstream answers.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Bytes,
    /// Wait before answering.
    pub delay: Duration,
    /// Send the body as this many chunks with this pause between them.
    pub chunks: Option<(usize, Duration)>,
    /// Answer 101 and echo raw bytes afterwards.
    pub upgrade: bool,
}

impl Reply {
    /// 200 with a body.
    pub fn ok(body: impl Into<Bytes>) -> Reply {
        Reply {
            status: 200,
            headers: Vec::new(),
            body: body.into(),
            delay: Duration::ZERO,
            chunks: None,
            upgrade: false,
        }
    }

    /// A status with an empty body.
    pub fn status(status: u16) -> Reply {
        Reply { status, ..Reply::ok(Bytes::new()) }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Waits before answering.
    pub fn delay(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }

    /// Sends the body in `n` chunks, `every` apart.
    pub fn chunked(mut self, n: usize, every: Duration) -> Reply {
        self.chunks = Some((n, every));
        self
    }

    /// Switches protocols and echoes whatever arrives.
    pub fn upgrade() -> Reply {
        Reply { status: 101, upgrade: true, ..Reply::ok(Bytes::new()) }
            .header("upgrade", "websocket")
            .header("connection", "upgrade")
    }
}

type Handler = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

struct State {
    requests: Mutex<Vec<Recorded>>,
    raw: Mutex<Vec<Arc<Mutex<Vec<u8>>>>>,
    handler: Handler,
    inflight: AtomicUsize,
    max_inflight: AtomicUsize,
}

/// The mock backend. Stops when dropped.
pub struct MockUpstream {
    addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl MockUpstream {
    /// Answers every request 200 with `{"method":..,"path":..}`.
    pub async fn start() -> MockUpstream {
        Self::with(|r| Reply::ok(format!("{{\"method\":\"{}\",\"path\":\"{}\"}}", r.method, r.uri))).await
    }

    /// Answers with `handler`.
    pub async fn with(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> MockUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind mock upstream");
        Self::serve(listener, Arc::new(handler))
    }

    /// Serves on a given listener (for a fixed port).
    pub fn serve(listener: TcpListener, handler: Handler) -> MockUpstream {
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(State {
            requests: Mutex::new(Vec::new()),
            raw: Mutex::new(Vec::new()),
            handler,
            inflight: AtomicUsize::new(0),
            max_inflight: AtomicUsize::new(0),
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let raw = Arc::new(Mutex::new(Vec::new()));
                let conn = {
                    let mut all = st.raw.lock().unwrap();
                    all.push(raw.clone());
                    all.len() - 1
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let io = TokioIo::new(Recording { inner: stream, raw });
                    let svc = service_fn(move |req| handle(st.clone(), conn, req));
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, svc).with_upgrades().await;
                });
            }
        });
        MockUpstream { addr, state, task }
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:port` for configs.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Number of requests received.
    pub fn count(&self) -> usize {
        self.state.requests.lock().unwrap().len()
    }

    /// Raw bytes received on each connection, in accept order.
    pub fn raw(&self) -> Vec<Vec<u8>> {
        self.state.raw.lock().unwrap().iter().map(|r| r.lock().unwrap().clone()).collect()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.raw.lock().unwrap().len()
    }

    /// Most requests in flight at once so far.
    pub fn max_inflight(&self) -> usize {
        self.state.max_inflight.load(Ordering::SeqCst)
    }
}

/// CRS's regression backend convention (its "albedo"): `POST /reflect` with a JSON body
/// `{"status": N, "headers": {..}, "body": ".."}` (or `"encodedBody"`, base64) is answered
/// with exactly that, and a body without a `Content-Type` gets the type Go's
/// `http.DetectContentType` gives the tests' bodies (HTML, XML, binary, else text). Anything
/// else: 200 with an empty body. For [`MockUpstream::with`].
pub fn reflect(r: &Recorded) -> Reply {
    use base64::Engine as _;
    if r.method != Method::POST || r.uri.split('?').next().map(|p| p.trim_end_matches('/')) != Some("/reflect") {
        return Reply::ok(Bytes::new());
    }
    let Ok(spec) = serde_json::from_slice::<serde_json::Value>(&r.body) else {
        return Reply { status: 400, ..Reply::ok("Invalid JSON in request body") };
    };
    let text = |k: &str| spec.get(k).and_then(serde_json::Value::as_str).filter(|s| !s.is_empty());
    let body = match (text("body"), text("encodedBody")) {
        (Some(b), _) => b.as_bytes().to_vec(),
        (None, Some(b64)) => base64::engine::general_purpose::STANDARD.decode(b64).unwrap_or_default(),
        (None, None) => Vec::new(),
    };
    let mut reply = Reply::ok(body);
    reply.status = spec.get("status").and_then(serde_json::Value::as_u64).map_or(200, |s| s as u16);
    let headers = spec.get("headers").and_then(serde_json::Value::as_object);
    for (k, v) in headers.into_iter().flatten() {
        reply = reply.header(k, v.as_str().unwrap_or_default());
    }
    if !reply.body.is_empty() && !reply.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
        let sniffed = sniff(&reply.body);
        reply = reply.header("content-type", sniffed);
    }
    reply
}

/// The content types of Go's sniffing that CRS's reflected bodies hit.
fn sniff(body: &[u8]) -> &'static str {
    let start = body.trim_ascii_start();
    let html =
        ["<!DOCTYPE HTML", "<HTML", "<HEAD", "<SCRIPT", "<IFRAME", "<H1", "<DIV", "<FONT", "<TABLE", "<A", "<STYLE"]
            .into_iter()
            .chain(["<TITLE", "<B", "<BODY", "<BR", "<P", "<!--"])
            .any(|tag| {
                start.get(..tag.len()).is_some_and(|s| s.eq_ignore_ascii_case(tag.as_bytes()))
                    && matches!(start.get(tag.len()), Some(b' ' | b'>'))
            });
    if html {
        "text/html; charset=utf-8"
    } else if start.starts_with(b"<?xml") {
        "text/xml; charset=utf-8"
    } else if body.iter().take(512).any(|&b| b < 0x20 && !b"\t\n\r\x0c\x1b".contains(&b)) {
        "application/octet-stream"
    } else {
        "text/plain; charset=utf-8"
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type RespBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

async fn handle(
    st: Arc<State>,
    conn: usize,
    mut req: http::Request<Incoming>,
) -> Result<http::Response<RespBody>, std::io::Error> {
    let now = st.inflight.fetch_add(1, Ordering::SeqCst) + 1;
    st.max_inflight.fetch_max(now, Ordering::SeqCst);
    let on_upgrade = hyper::upgrade::on(&mut req);
    let (parts, mut body) = req.into_parts();
    let mut kept = Vec::new();
    let mut len = 0u64;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Some(d) = frame.data_ref() {
            len += d.len() as u64;
            if kept.len() < KEEP_BODY {
                kept.extend_from_slice(&d[..d.len().min(KEEP_BODY - kept.len())]);
            }
        }
    }
    let rec = Recorded {
        method: parts.method,
        uri: parts.uri.to_string(),
        version: parts.version,
        headers: parts.headers,
        body: Bytes::from(kept),
        body_len: len,
        conn,
    };
    let reply = (st.handler)(&rec);
    st.requests.lock().unwrap().push(rec);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    st.inflight.fetch_sub(1, Ordering::SeqCst);
    let mut resp = http::Response::builder().status(StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK));
    for (k, v) in &reply.headers {
        resp = resp.header(k, v);
    }
    if reply.upgrade {
        tokio::spawn(async move {
            if let Ok(up) = on_upgrade.await {
                let mut io = TokioIo::new(up);
                let (mut r, mut w) = tokio::io::split(&mut io);
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        return Ok(resp.body(http_body_util::Empty::new().map_err(|never| match never {}).boxed()).unwrap());
    }
    let body: RespBody = match reply.chunks {
        None => http_body_util::Full::new(reply.body).map_err(|never| match never {}).boxed(),
        Some((n, every)) => {
            let size = reply.body.len().div_ceil(n.max(1)).max(1);
            let chunks: Vec<Bytes> = reply.body.chunks(size).map(Bytes::copy_from_slice).collect();
            let stream = futures_util::stream::unfold((chunks.into_iter(), true), move |(mut it, first)| async move {
                let chunk = it.next()?;
                if !first {
                    tokio::time::sleep(every).await;
                }
                Some((Ok::<_, std::io::Error>(Frame::data(chunk)), (it, false)))
            });
            StreamBody::new(stream).boxed()
        }
    };
    Ok(resp.body(body).unwrap())
}

/// Copies everything read into `raw`.
struct Recording {
    inner: TcpStream,
    raw: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for Recording {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            let new = &buf.filled()[before..];
            let mut raw = self.raw.lock().unwrap();
            if raw.len() < 4 << 20 {
                raw.extend_from_slice(new);
            }
        }
        res
    }
}

impl AsyncWrite for Recording {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
