//! Listeners and connections: bind, accept under connection caps, TLS handshake (bounded by
//! the header timeout), HTTP/1.1 or HTTP/2 (ALPN on TLS, prior knowledge on plaintext), the
//! request service, and graceful shutdown.

use crate::config::runtime::{Limits, ListenerRt};
use crate::pipeline;
use crate::proxy::body::RespBody;
use crate::state::{ConnGuard, Gateway};
use crate::tls::TlsInfo;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// What a request knows about its connection.
#[derive(Debug)]
pub struct ConnInfo {
    /// Process-unique connection number.
    pub id: u64,
    /// Listener name.
    pub listener: Arc<str>,
    /// Peer socket address.
    pub peer: SocketAddr,
    /// Peer IP (IPv4-mapped IPv6 shown as IPv4).
    pub peer_ip: std::net::IpAddr,
    /// The peer IP as a header value (for `X-Forwarded-For`), made once per connection.
    pub peer_ip_value: http::HeaderValue,
    /// Local socket address.
    pub local: SocketAddr,
    /// TLS details, on TLS listeners.
    pub tls: Option<TlsInfo>,
}

impl ConnInfo {
    /// Describes a connection.
    pub fn new(id: u64, listener: Arc<str>, peer: SocketAddr, local: SocketAddr, tls: Option<TlsInfo>) -> ConnInfo {
        let peer_ip = peer.ip().to_canonical();
        let peer_ip_value =
            http::HeaderValue::from_str(&peer_ip.to_string()).unwrap_or(http::HeaderValue::from_static("unknown"));
        ConnInfo { id, listener, peer, peer_ip, peer_ip_value, local, tls }
    }
}

static CONN_IDS: AtomicU64 = AtomicU64::new(1);

/// A running gateway: its bound addresses and the handle to stop it.
#[derive(Debug)]
pub struct Running {
    /// Shared state (config snapshot, metrics, …).
    pub gateway: Arc<Gateway>,
    /// Bound client listeners, by name, in config order.
    pub listeners: Vec<(Arc<str>, SocketAddr)>,
    /// Bound admin address.
    pub admin: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

fn bind_socket(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    TcpListener::from_std(socket.into())
}

impl Running {
    /// Binds every listener and the admin API and starts serving.
    pub async fn start(gateway: Arc<Gateway>) -> std::io::Result<Running> {
        let rt = gateway.runtime.load_full();
        gateway.warm_auth();
        let (stop, _) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut listeners = Vec::new();
        let mut bound = Vec::new();
        for spec in &rt.listeners {
            let l = bind_socket(spec.bind).map_err(|e| {
                std::io::Error::new(e.kind(), format!("listener {} cannot bind {}: {e}", spec.name, spec.bind))
            })?;
            listeners.push((spec.name.clone(), l.local_addr()?));
            bound.push((spec.clone(), l));
        }
        let admin = match &rt.admin {
            Some(a) => {
                let l = bind_socket(a.bind)
                    .map_err(|e| std::io::Error::new(e.kind(), format!("admin cannot bind {}: {e}", a.bind)))?;
                let addr = l.local_addr()?;
                tasks.spawn(crate::admin::serve(gateway.clone(), l, stop.subscribe()));
                Some(addr)
            }
            None => None,
        };
        for (spec, l) in bound {
            tasks.spawn(accept_loop(gateway.clone(), l, spec, stop.subscribe()));
        }
        for (name, addr) in &listeners {
            tracing::info!(listener = %name, %addr, "listening");
        }
        Ok(Running { gateway, listeners, admin, stop, tasks })
    }

    /// The bound address of a listener.
    pub fn addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners.iter().find(|(n, _)| &**n == name).map(|(_, a)| *a)
    }

    /// Stops accepting, lets in-flight requests finish within `limits.shutdown_timeout`,
    /// then closes what is left.
    pub async fn shutdown(mut self) {
        self.gateway.shutting_down.store(true, Ordering::Release);
        let _ = self.stop.send(true);
        let grace = self.gateway.runtime.load().limits.shutdown_timeout;
        // Accept loops end at once and every connection is told to finish its in-flight
        // requests and close; the admin API serves until the end so readiness reports it.
        let deadline = tokio::time::Instant::now() + grace;
        while self.gateway.conns.total() > 0 {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    "shutdown grace period of {grace:?} ended with {} connections open",
                    self.gateway.conns.total()
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        if let Some(keys) = self.gateway.keys.clone() {
            match tokio::task::spawn_blocking(move || crate::keys::flush_quotas(&keys)).await {
                Ok(Err(e)) => tracing::error!("final quota flush failed: {e}"),
                Err(e) => tracing::error!("final quota flush failed: {e}"),
                Ok(Ok(_)) => {}
            }
        }
        tracing::info!("stopped");
    }
}

async fn accept_loop(gw: Arc<Gateway>, listener: TcpListener, spec: ListenerRt, mut stop: watch::Receiver<bool>) {
    let gauge = gw.metrics.connections(&spec.name);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(listener = %spec.name, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let rt = gw.runtime.load();
        let guard = match gw.conns.try_acquire(peer.ip(), rt.limits.max_conns_per_ip, rt.limits.max_conns) {
            Ok(g) => g,
            Err(reason) => {
                gw.metrics.connection_refused(reason);
                continue; // dropping the stream closes it
            }
        };
        let tls = rt.listeners.iter().find(|l| l.name == spec.name).map_or(spec.tls.clone(), |l| l.tls.clone());
        let limits = rt.limits.clone();
        drop(rt);
        let _ = stream.set_nodelay(true);
        let conn = Conn { gw: gw.clone(), spec: spec.clone(), peer, limits, stop: stop.clone(), _guard: guard };
        let gauge = gauge.clone();
        tokio::spawn(async move {
            gauge.inc();
            conn.serve(stream, tls).await;
            gauge.dec();
        });
    }
}

struct Conn {
    gw: Arc<Gateway>,
    spec: ListenerRt,
    peer: SocketAddr,
    limits: Limits,
    stop: watch::Receiver<bool>,
    _guard: ConnGuard,
}

/// Runs a hyper connection; when `stop` turns true it is told to shut down gracefully (idle
/// keep-alive connections close at once, in-flight requests finish). A macro because the
/// HTTP/1 and HTTP/2 connection types share `graceful_shutdown` but no trait.
macro_rules! drive {
    ($conn:expr, $stop:expr) => {{
        let mut stop: watch::Receiver<bool> = $stop;
        let mut conn = std::pin::pin!($conn);
        let mut finished = None;
        if !*stop.borrow_and_update() {
            tokio::select! {
                out = conn.as_mut() => finished = Some(out),
                _ = stop.wait_for(|s| *s) => {}
            }
        }
        match finished {
            Some(out) => out,
            None => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    }};
}

enum Proto {
    H1,
    H2,
}

impl Conn {
    async fn serve(self, stream: TcpStream, tls: Option<Arc<rustls::ServerConfig>>) {
        let local = stream.local_addr().unwrap_or(self.peer);
        let id = CONN_IDS.fetch_add(1, Ordering::Relaxed);
        let Some(tls) = tls else {
            let proto = if self.spec.http2 {
                match sniff_preface(&stream, self.limits.header_timeout).await {
                    Some(p) => p,
                    None => return,
                }
            } else {
                Proto::H1
            };
            let info = ConnInfo::new(id, self.spec.name.clone(), self.peer, local, None);
            return self.http(TokioIo::new(stream), info, proto).await;
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let stream = match tokio::time::timeout(self.limits.header_timeout, acceptor.accept(stream)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(peer = %self.peer, "TLS handshake failed: {e}");
                self.gw.metrics.connection_refused("tls_handshake");
                return;
            }
            Err(_) => {
                self.gw.metrics.connection_refused("tls_handshake_timeout");
                return;
            }
        };
        let info = TlsInfo::from_connection(stream.get_ref().1);
        let proto = if info.alpn.as_deref() == Some("h2") { Proto::H2 } else { Proto::H1 };
        let info = ConnInfo::new(id, self.spec.name.clone(), self.peer, local, Some(info));
        self.http(TokioIo::new(stream), info, proto).await;
    }

    async fn http<I>(self, io: TokioIo<I>, info: ConnInfo, proto: Proto)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let gw = self.gw.clone();
        let info = Arc::new(info);
        let service = service_fn(move |req: http::Request<Incoming>| {
            let gw = gw.clone();
            let info = info.clone();
            async move { Ok::<http::Response<RespBody>, Infallible>(pipeline::handle(gw, info, req).await) }
        });
        let l = &self.limits;
        let result = match proto {
            Proto::H1 => {
                let mut b = hyper::server::conn::http1::Builder::new();
                b.timer(TokioTimer::new())
                    .header_read_timeout(l.header_timeout)
                    // Head and small bodies in one flat buffer: fewer instructions than queuing
                    // iovecs, and still one write per response (measured with strace).
                    .writev(false)
                    .max_headers(l.max_headers)
                    .max_header_size(l.max_header_bytes + l.max_uri_bytes + 1024);
                drive!(b.serve_connection(io, service).with_upgrades(), self.stop.clone())
            }
            Proto::H2 => {
                let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                b.timer(TokioTimer::new())
                    .max_concurrent_streams(l.h2_max_concurrent_streams)
                    .max_header_list_size(
                        u32::try_from(l.max_header_bytes + l.max_uri_bytes + 32 * l.max_headers).unwrap_or(u32::MAX),
                    )
                    .max_pending_accept_reset_streams(l.h2_max_pending_resets)
                    .max_local_error_reset_streams(1024)
                    .keep_alive_interval(Duration::from_secs(30))
                    .keep_alive_timeout(Duration::from_secs(10));
                drive!(b.serve_connection(io, service), self.stop.clone())
            }
        };
        if let Err(e) = result {
            tracing::debug!(peer = %self.peer, "connection ended: {e}");
        }
        drop(self);
    }
}

/// Decides HTTP/1 or HTTP/2 prior knowledge by peeking at the first bytes (no copy, no
/// wrapper on the hot path). `None`: the client sent nothing in time or closed.
async fn sniff_preface(stream: &TcpStream, timeout: Duration) -> Option<Proto> {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = [0u8; 24];
    loop {
        let n = tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await.ok()?.ok()?;
        let seen = buf.get(..n)?;
        if n == 0 {
            return None;
        }
        if !PREFACE.starts_with(seen) {
            return Some(Proto::H1);
        }
        if n >= PREFACE.len() {
            return Some(Proto::H2);
        }
        // A partial preface: wait briefly for the rest (rare; clients send it in one write).
        tokio::time::sleep(Duration::from_millis(2)).await;
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
    }
}
