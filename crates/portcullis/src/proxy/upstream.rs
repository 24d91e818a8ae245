//! A named upstream at run time: its targets (round-robin, passive ejection), its in-flight
//! cap, and per-target pools of idle keep-alive connections.
//!
//! An `Upstream` survives a config reload when its settings did not change, so in-flight
//! counts, ejections and warm connections are not reset by a reload.

use super::h1::UpConn;
use crate::config::model;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// TLS towards an upstream's `https://` targets.
#[derive(Clone)]
pub struct UpstreamTlsRt {
    /// Client settings (trusted CAs, client certificate).
    pub config: Arc<rustls::ClientConfig>,
    /// Name to verify instead of the target host.
    pub server_name: Option<String>,
    /// SHA-256 over the files it was made from: a reload with changed files rebuilds.
    pub fingerprint: [u8; 32],
}

impl std::fmt::Debug for UpstreamTlsRt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTlsRt").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

/// Effective settings (config values with defaults applied).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Time to the response head, and the longest pause while the body streams.
    pub timeout: Duration,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Requests in flight at once.
    pub max_concurrency: u32,
    /// Extra attempts on connect failure (idempotent methods).
    pub retries: u32,
    /// Consecutive failures that eject a target.
    pub eject_failures: u32,
    /// How long an ejected target is skipped.
    pub eject_for: Duration,
    /// Idle connections kept per target.
    pub max_idle: usize,
    /// Idle connections older than this are closed.
    pub idle_timeout: Duration,
}

impl Settings {
    /// Applies defaults (documented in docs/config.md).
    pub fn from_model(u: &model::Upstream) -> Settings {
        let eject = u.eject.as_ref();
        let pool = u.pool.as_ref();
        Settings {
            timeout: u.timeout.map_or(Duration::from_secs(30), |d| d.0),
            connect_timeout: u.connect_timeout.map_or(Duration::from_secs(3), |d| d.0),
            max_concurrency: u.max_concurrency.unwrap_or(1024),
            retries: u.retries.unwrap_or(1),
            eject_failures: eject.map_or(5, |e| e.consecutive_failures),
            eject_for: eject.map_or(Duration::from_secs(10), |e| e.duration.0),
            max_idle: pool.and_then(|p| p.max_idle).map_or(256, |n| n as usize),
            idle_timeout: pool.and_then(|p| p.idle_timeout).map_or(Duration::from_secs(60), |d| d.0),
        }
    }
}

/// One backend address.
#[derive(Debug)]
pub struct Target {
    host: String,
    port: u16,
    ip: Option<IpAddr>,
    /// Path prefix from the target URL (`http://h:1/base` → `/base`), without trailing '/'.
    pub base_path: String,
    /// TLS client settings and the name to verify, for `https://` targets.
    tls: Option<(Arc<rustls::ClientConfig>, rustls_pki_types::ServerName<'static>)>,
    failures: AtomicU32,
    /// Monotonic nanoseconds until which the target is skipped (0: healthy).
    ejected_until: AtomicU64,
    idle: Mutex<VecDeque<Idle>>,
}

#[derive(Debug)]
struct Idle {
    conn: UpConn,
    since: Instant,
}

fn mono_nanos() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX).saturating_add(1)
}

/// A parsed target URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetUrl {
    /// Host name or IP (no brackets).
    pub host: String,
    /// Port (80 or 443 by default).
    pub port: u16,
    /// Path prefix without a trailing '/'.
    pub base: String,
    /// `https://`.
    pub https: bool,
}

/// Parses `http[s]://host:port[/base]`. Errors are one-line messages for the config.
pub fn parse_target(url: &str) -> Result<TargetUrl, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("target {url:?} is not a URL: {e}"))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(format!("target {url:?} must start with http:// or https://")),
    };
    let auth = uri.authority().ok_or_else(|| format!("target {url:?} has no host"))?;
    if auth.as_str().contains('@') {
        return Err(format!("target {url:?}: credentials in the URL are not allowed"));
    }
    if uri.query().is_some() {
        return Err(format!("target {url:?}: a query string is not allowed"));
    }
    let host = auth.host().trim_start_matches('[').trim_end_matches(']').to_string();
    if host.is_empty() {
        return Err(format!("target {url:?} has no host"));
    }
    let base = uri.path().trim_end_matches('/').to_string();
    Ok(TargetUrl { host, port: auth.port_u16().unwrap_or(if https { 443 } else { 80 }), base, https })
}

impl Target {
    fn new(url: &str, tls: Option<&UpstreamTlsRt>) -> Result<Target, String> {
        let TargetUrl { host, port, base, https } = parse_target(url)?;
        let tls = match (https, tls) {
            (false, _) => None,
            (true, None) => return Err(format!("target {url:?}: https targets need TLS settings")),
            (true, Some(t)) => {
                let name = t.server_name.clone().unwrap_or_else(|| host.clone());
                let name = rustls_pki_types::ServerName::try_from(name)
                    .map_err(|e| format!("target {url:?}: {e} is not a name to verify"))?;
                Some((t.config.clone(), name))
            }
        };
        Ok(Target {
            ip: host.parse().ok(),
            host,
            port,
            base_path: base,
            tls,
            failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            idle: Mutex::new(VecDeque::new()),
        })
    }

    fn ejected(&self, now: u64) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now
    }

    /// A warm connection, newest first; expired ones are dropped on the way. A connection
    /// the upstream closed meanwhile is detected when it is used (see `proxy::forward`).
    pub fn take_idle(&self, idle_timeout: Duration) -> Option<UpConn> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(i) = idle.pop_back() {
            if i.since.elapsed() < idle_timeout {
                let mut conn = i.conn;
                conn.reused = true;
                return Some(conn);
            }
        }
        None
    }

    /// Returns a connection whose last exchange completed cleanly.
    pub fn put_idle(&self, conn: UpConn, settings: &Settings) {
        let Ok(mut idle) = self.idle.lock() else { return };
        while idle.front().is_some_and(|i| i.since.elapsed() >= settings.idle_timeout) {
            idle.pop_front();
        }
        if idle.len() < settings.max_idle {
            idle.push_back(Idle { conn, since: Instant::now() });
        }
    }

    /// Opens a connection (TCP, then the TLS handshake for `https://` targets), all
    /// within `connect_timeout`.
    pub async fn open(&self, connect_timeout: Duration) -> std::io::Result<UpConn> {
        let open = async {
            let tcp = self.connect().await?;
            match &self.tls {
                None => Ok(UpConn::new(tcp)),
                Some((config, name)) => {
                    let tls = tokio_rustls::TlsConnector::from(config.clone()).connect(name.clone(), tcp).await?;
                    Ok(UpConn::new(super::upio::UpIo::Tls(Box::new(tls))))
                }
            }
        };
        tokio::time::timeout(connect_timeout, open)
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))?
    }
    async fn connect(&self) -> std::io::Result<TcpStream> {
        let addrs: Vec<SocketAddr> = match self.ip {
            Some(ip) => vec![SocketAddr::new(ip, self.port)],
            None => tokio::net::lookup_host((self.host.as_str(), self.port)).await?.collect(),
        };
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address for upstream host");
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    s.set_nodelay(true)?;
                    return Ok(s);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

/// A named upstream.
#[derive(Debug)]
pub struct Upstream {
    /// Config name (the only thing about an upstream that reaches logs and metrics).
    pub name: Arc<str>,
    spec: model::Upstream,
    tls_fingerprint: Option<[u8; 32]>,
    /// Effective settings.
    pub settings: Settings,
    /// Targets in config order.
    pub targets: Vec<Target>,
    next: AtomicUsize,
    inflight: AtomicU32,
}

/// One in-flight slot; freed on drop.
#[derive(Debug)]
pub struct Inflight(Arc<Upstream>);

impl Drop for Inflight {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Upstream {
    /// Builds an upstream, or reuses `previous` when its settings are unchanged.
    pub fn build(
        name: &str,
        spec: &model::Upstream,
        previous: Option<&Arc<Upstream>>,
        tls: Option<&UpstreamTlsRt>,
    ) -> Result<Arc<Upstream>, String> {
        let tls_fingerprint = tls.map(|t| t.fingerprint);
        if let Some(prev) = previous.filter(|p| p.spec == *spec && p.tls_fingerprint == tls_fingerprint) {
            return Ok(prev.clone());
        }
        let targets = spec.targets.iter().map(|t| Target::new(t, tls)).collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new(Upstream {
            name: Arc::from(name),
            spec: spec.clone(),
            tls_fingerprint,
            settings: Settings::from_model(spec),
            targets,
            next: AtomicUsize::new(0),
            inflight: AtomicU32::new(0),
        }))
    }

    /// Takes an in-flight slot, or `None` at `max_concurrency`.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Inflight> {
        let prev = self.inflight.fetch_add(1, Ordering::AcqRel);
        let slot = Inflight(self.clone());
        if prev >= self.settings.max_concurrency {
            return None; // `slot` drops and gives the count back
        }
        Some(slot)
    }

    /// Requests in flight now.
    pub fn inflight(&self) -> u32 {
        self.inflight.load(Ordering::Relaxed)
    }

    /// Next target round-robin, skipping ejected ones and those in `tried`. When every
    /// candidate is ejected, the one ejected longest ago is used (better than refusing all).
    pub fn pick(&self, tried: &[usize]) -> Option<usize> {
        let n = self.targets.len();
        if n == 0 {
            return None;
        }
        let now = mono_nanos();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let candidates = (0..n).map(|k| (start + k) % n).filter(|i| !tried.contains(i));
        let mut fallback: Option<(u64, usize)> = None;
        for (i, t) in candidates.filter_map(|i| self.targets.get(i).map(|t| (i, t))) {
            if !t.ejected(now) {
                return Some(i);
            }
            let until = t.ejected_until.load(Ordering::Relaxed);
            if fallback.is_none_or(|(u, _)| until < u) {
                fallback = Some((until, i));
            }
        }
        fallback.map(|(_, i)| i)
    }

    /// Records a failure (connect error, timeout, 502/503/504) and ejects the target after
    /// `eject_failures` in a row. Returns true when this call ejected it.
    pub fn record_failure(&self, target: usize) -> bool {
        let Some(t) = self.targets.get(target) else {
            return false;
        };
        let n = t.failures.fetch_add(1, Ordering::AcqRel) + 1;
        if n >= self.settings.eject_failures.max(1) {
            t.failures.store(0, Ordering::Release);
            let until =
                mono_nanos().saturating_add(u64::try_from(self.settings.eject_for.as_nanos()).unwrap_or(u64::MAX));
            t.ejected_until.store(until, Ordering::Release);
            tracing::warn!(upstream = %self.name, target, "upstream target ejected after {n} consecutive failures");
            return true;
        }
        false
    }

    /// Records a success: the failure streak ends and an ejected target is back.
    pub fn record_success(&self, target: usize) {
        if let Some(t) = self.targets.get(target) {
            if t.failures.load(Ordering::Relaxed) != 0 {
                t.failures.store(0, Ordering::Release);
            }
            if t.ejected_until.load(Ordering::Relaxed) != 0 {
                t.ejected_until.store(0, Ordering::Release);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(targets: &[&str], max: u32) -> Arc<Upstream> {
        let spec = model::Upstream {
            targets: targets.iter().map(|t| t.to_string()).collect(),
            timeout: None,
            connect_timeout: None,
            max_concurrency: Some(max),
            retries: None,
            eject: Some(model::Eject {
                consecutive_failures: 2,
                duration: crate::config::units::Dur(Duration::from_secs(60)),
            }),
            pool: None,
            sign: None,
            tls: None,
        };
        Upstream::build("u", &spec, None, None).unwrap()
    }

    #[test]
    fn targets_parse() {
        let t = |host: &str, port, base: &str, https| TargetUrl { host: host.into(), port, base: base.into(), https };
        assert_eq!(parse_target("http://127.0.0.1:9001").unwrap(), t("127.0.0.1", 9001, "", false));
        assert_eq!(parse_target("http://[::1]:80/base/").unwrap(), t("::1", 80, "/base", false));
        assert_eq!(parse_target("http://svc").unwrap().port, 80);
        assert_eq!(parse_target("https://svc/v2").unwrap(), t("svc", 443, "/v2", true));
        assert!(Target::new("https://svc", None).unwrap_err().contains("need TLS settings"));
        assert!(parse_target("ftp://x").is_err());
        assert!(parse_target("http://u:p@x").is_err());
        assert!(parse_target("http://x/?q=1").is_err());
        assert!(parse_target("nonsense").is_err());
    }

    #[test]
    fn round_robin_skips_ejected_and_tried() {
        let u = upstream(&["http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3"], 10);
        let picks: Vec<usize> = (0..6).map(|_| u.pick(&[]).unwrap()).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
        assert!(!u.record_failure(1));
        assert!(u.record_failure(1));
        let picks: Vec<usize> = (0..4).map(|_| u.pick(&[]).unwrap()).collect();
        assert!(!picks.contains(&1), "{picks:?}");
        assert_eq!(u.pick(&[0, 2]), Some(1), "all others tried: use the ejected one");
        u.record_success(1);
        assert!((0..3).any(|_| u.pick(&[]) == Some(1)));
    }

    #[test]
    fn concurrency_cap_is_exact() {
        let u = upstream(&["http://127.0.0.1:1"], 2);
        let a = u.try_acquire();
        let b = u.try_acquire();
        assert!(a.is_some() && b.is_some());
        assert!(u.try_acquire().is_none());
        assert_eq!(u.inflight(), 2);
        drop(a);
        assert!(u.try_acquire().is_some());
        drop(b);
        assert_eq!(u.inflight(), 0);
    }
}
