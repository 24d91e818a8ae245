//! JSON access log, one object per line.
//!
//! The request path only pushes a [`Record`] of raw fields into a shared buffer; a dedicated
//! thread swaps the buffer out every [`FLUSH_EVERY`] (or sooner when it fills up), formats
//! the lines and writes them in one go. No syscall, no thread wake-up and no formatting
//! happen on the request path. If the writer falls behind by more than [`MAX_PENDING`]
//! lines, new lines are dropped and counted (`portcullis_access_log_dropped_total`).
//!
//! Never logged: query strings, header values, bodies, keys or tokens.

use crate::config::runtime::AccessTarget;
use http::Method;
use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use std::io::Write;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime};

/// How often the writer drains the buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Lines buffered at most; beyond, lines are dropped and counted.
pub const MAX_PENDING: usize = 65_536;
/// A buffer this full wakes the writer early.
const WAKE_AT: usize = 8_192;

/// One access-log line, as raw fields (formatted by the writer thread).
#[derive(Debug)]
pub struct Record {
    /// When the request head arrived.
    pub ts: SystemTime,
    /// Request id.
    pub request_id: http::HeaderValue,
    /// Client address.
    pub client_ip: IpAddr,
    /// Method.
    pub method: Method,
    /// Normalized path (no query string).
    pub path: String,
    /// Route name, if one matched.
    pub route: Option<Arc<str>>,
    /// Status sent.
    pub status: u16,
    /// Body bytes sent.
    pub bytes_out: u64,
    /// Head to last byte, milliseconds.
    pub duration_ms: f64,
    /// Upstream response-head latency, milliseconds.
    pub upstream_ms: Option<f64>,
    /// `allow` (forwarded), `reject` (refused by a check), `error` (could not be served).
    pub decision: &'static str,
    /// Stable code of what ended or cut the request short.
    pub reason: Option<&'static str>,
    /// The authenticated principal.
    pub principal: Option<String>,
    /// Public id of the caller's API key.
    pub key_id: Option<Arc<str>>,
    /// Listener name.
    pub listener: Arc<str>,
    /// Upstream name.
    pub upstream: Option<Arc<str>>,
    /// Ids of the WAF rules that matched (block or detect mode).
    pub waf_rules: Vec<u32>,
}

/// The line as written (field order and names are the documented contract).
#[derive(Serialize)]
struct Line<'a> {
    ts: String,
    request_id: &'a str,
    client_ip: IpAddr,
    method: &'a str,
    path: &'a str,
    route: Option<&'a str>,
    status: u16,
    bytes_out: u64,
    duration_ms: f64,
    upstream_ms: Option<f64>,
    principal: Option<&'a str>,
    key_id: Option<&'a str>,
    decision: &'a str,
    reason: Option<&'a str>,
    waf_rules: &'a [u32],
    listener: &'a str,
    upstream: Option<&'a str>,
}

impl Record {
    fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        let line = Line {
            ts: rfc3339(self.ts),
            request_id: self.request_id.to_str().unwrap_or_default(),
            client_ip: self.client_ip,
            method: self.method.as_str(),
            path: &self.path,
            route: self.route.as_deref(),
            status: self.status,
            bytes_out: self.bytes_out,
            duration_ms: self.duration_ms,
            upstream_ms: self.upstream_ms,
            principal: self.principal.as_deref(),
            key_id: self.key_id.as_deref(),
            decision: self.decision,
            reason: self.reason,
            waf_rules: &self.waf_rules,
            listener: &self.listener,
            upstream: self.upstream.as_deref(),
        };
        serde_json::to_writer(&mut *out, &line)?;
        out.push(b'\n');
        Ok(())
    }
}

#[derive(Default)]
struct Shared {
    pending: Mutex<Vec<Record>>,
    wake: Condvar,
    reopen: Mutex<Option<AccessTarget>>,
}

/// Handle to the writer thread.
#[derive(Clone)]
pub struct AccessLog {
    shared: Arc<Shared>,
    enabled: Arc<AtomicBool>,
    dropped: Counter,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog").field("enabled", &self.enabled()).finish()
    }
}

impl AccessLog {
    /// Starts the writer for `target`.
    pub fn start(target: AccessTarget, dropped: Counter) -> std::io::Result<AccessLog> {
        let shared = Arc::new(Shared::default());
        let sink = open(&target)?;
        let enabled = Arc::new(AtomicBool::new(sink.is_some()));
        let (s, e) = (shared.clone(), enabled.clone());
        std::thread::Builder::new().name("access-log".into()).spawn(move || writer(s, e, sink))?;
        Ok(AccessLog { shared, enabled, dropped })
    }

    /// True when lines are written somewhere (callers skip building records otherwise).
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Queues a line; never blocks on I/O.
    pub fn log(&self, record: Record) {
        let Ok(mut pending) = self.shared.pending.lock() else { return };
        if pending.len() >= MAX_PENDING {
            drop(pending);
            self.dropped.inc();
            return;
        }
        pending.push(record);
        if pending.len() == WAKE_AT {
            self.shared.wake.notify_one();
        }
    }

    /// Reopens the destination (after a reload: a new target, or a rotated file).
    pub fn reopen(&self, target: AccessTarget) {
        if let Ok(mut r) = self.shared.reopen.lock() {
            *r = Some(target);
        }
        self.shared.wake.notify_one();
    }
}

type Sink = Option<Box<dyn Write + Send>>;

fn open(target: &AccessTarget) -> std::io::Result<Sink> {
    Ok(match target {
        AccessTarget::Off => None,
        AccessTarget::Stdout => Some(Box::new(std::io::stdout())),
        AccessTarget::Stderr => Some(Box::new(std::io::stderr())),
        AccessTarget::File(p) => Some(Box::new(std::fs::OpenOptions::new().create(true).append(true).open(p)?)),
    })
}

fn writer(shared: Arc<Shared>, enabled: Arc<AtomicBool>, mut sink: Sink) {
    let mut batch: Vec<Record> = Vec::new();
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    // Runs until every AccessLog handle is gone (the Arc count drops to this thread's own).
    while Arc::strong_count(&shared) > 1 {
        if let Ok(guard) = shared.pending.lock() {
            let (mut guard, _) = match shared.wake.wait_timeout(guard, FLUSH_EVERY) {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            std::mem::swap(&mut *guard, &mut batch);
        }
        if let Some(target) = shared.reopen.lock().ok().and_then(|mut r| r.take()) {
            match open(&target) {
                Ok(new) => {
                    enabled.store(new.is_some(), Ordering::Relaxed);
                    sink = new;
                }
                Err(e) => tracing::error!("cannot open access log {target:?}: {e}; keeping the old destination"),
            }
        }
        let Some(s) = sink.as_mut() else {
            batch.clear();
            continue;
        };
        buf.clear();
        for record in batch.drain(..) {
            let _ = record.write_json(&mut buf);
        }
        if !buf.is_empty() {
            let _ = s.write_all(&buf).and_then(|()| s.flush());
        }
    }
}

/// RFC 3339 UTC timestamp with milliseconds (`2026-11-23T20:14:41.123Z`).
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // civil-from-days (Howard Hinnant's algorithm), days since 1970-01-01
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_465_481_123);
        assert_eq!(rfc3339(t), "2026-11-23T20:24:41.123Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn lines_are_written_in_batches_to_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let log = AccessLog::start(AccessTarget::File(path.clone()), Counter::default()).unwrap();
        for i in 0..3 {
            log.log(Record {
                ts: SystemTime::UNIX_EPOCH,
                request_id: http::HeaderValue::from_str(&format!("r{i}")).unwrap(),
                client_ip: "127.0.0.1".parse().unwrap(),
                method: Method::GET,
                path: "/x".into(),
                route: None,
                status: 200,
                bytes_out: 1,
                duration_ms: 0.5,
                upstream_ms: None,
                decision: "allow",
                reason: None,
                principal: None,
                key_id: None,
                listener: Arc::from("l"),
                upstream: None,
                waf_rules: if i == 1 { vec![942100, 949110] } else { Vec::new() },
            });
        }
        std::thread::sleep(FLUSH_EVERY * 3);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        let v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(v["request_id"], "r0");
        assert_eq!(v["waf_rules"], serde_json::json!([]));
        let v: serde_json::Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
        assert_eq!(v["waf_rules"], serde_json::json!([942100, 949110]));
    }
}
