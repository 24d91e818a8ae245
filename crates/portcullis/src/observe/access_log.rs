//! JSON access log, one object per line. Lines are formatted and written by a dedicated
//! thread so the request path never waits on the disk; if the writer falls behind by more
//! than the queue holds, lines are dropped and counted (`portcullis_access_log_dropped`).
//!
//! Never logged: query strings, header values, bodies, keys or tokens.

use crate::config::runtime::AccessTarget;
use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use std::io::Write;
use std::net::IpAddr;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

const QUEUE: usize = 65_536;

/// One access-log line.
#[derive(Debug, Serialize)]
pub struct Record {
    /// RFC 3339 UTC with milliseconds.
    pub ts: String,
    /// Request id.
    pub request_id: String,
    /// Client address.
    pub client_ip: IpAddr,
    /// Method.
    pub method: String,
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
    /// Authenticated principal (none yet in this version).
    pub principal: Option<String>,
    /// API key id (none yet in this version).
    pub key_id: Option<String>,
    /// `allow` (forwarded), `reject` (refused by a check), `error` (could not be served).
    pub decision: &'static str,
    /// Stable code of what ended or cut the request short.
    pub reason: Option<&'static str>,
    /// WAF rules that matched (none yet in this version).
    pub waf_rules: Vec<String>,
    /// Listener name.
    pub listener: Arc<str>,
    /// Upstream name.
    pub upstream: Option<Arc<str>>,
}

enum Msg {
    Line(Box<Record>),
    Reopen(AccessTarget),
}

/// Handle to the writer thread.
#[derive(Debug, Clone)]
pub struct AccessLog {
    tx: Option<SyncSender<Msg>>,
    target: Arc<Mutex<AccessTarget>>,
    dropped: Counter,
}

impl AccessLog {
    /// Starts the writer for `target`.
    pub fn start(target: AccessTarget, dropped: Counter) -> std::io::Result<AccessLog> {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let sink = open(&target)?;
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || writer(rx, sink))?;
        Ok(AccessLog {
            tx: Some(tx),
            target: Arc::new(Mutex::new(target)),
            dropped,
        })
    }

    /// Queues a line; never blocks.
    pub fn log(&self, record: Record) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(Msg::Line(Box::new(record))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.inc();
            }
        }
    }

    /// Reopens the destination (after a reload: new target, or a rotated file).
    pub fn reopen(&self, target: AccessTarget) {
        if let Ok(mut t) = self.target.lock() {
            *t = target.clone();
        }
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Reopen(target));
        }
    }

    /// True when lines are written somewhere.
    pub fn enabled(&self) -> bool {
        self.target
            .lock()
            .map(|t| *t != AccessTarget::Off)
            .unwrap_or(false)
    }
}

type Sink = Option<Box<dyn Write + Send>>;

fn open(target: &AccessTarget) -> std::io::Result<Sink> {
    Ok(match target {
        AccessTarget::Off => None,
        AccessTarget::Stdout => Some(Box::new(std::io::BufWriter::new(std::io::stdout()))),
        AccessTarget::Stderr => Some(Box::new(std::io::BufWriter::new(std::io::stderr()))),
        AccessTarget::File(p) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?;
            Some(Box::new(std::io::BufWriter::new(f)))
        }
    })
}

fn writer(rx: Receiver<Msg>, mut sink: Sink) {
    let mut buf = Vec::with_capacity(512);
    loop {
        // Flush whenever the queue runs dry, so lines appear promptly under light load and
        // in large writes under heavy load.
        let msg = match rx.try_recv() {
            Ok(m) => m,
            Err(_) => {
                if let Some(s) = sink.as_mut() {
                    let _ = s.flush();
                }
                match rx.recv_timeout(Duration::from_secs(1)) {
                    Ok(m) => m,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        };
        match msg {
            Msg::Line(record) => {
                let Some(s) = sink.as_mut() else { continue };
                buf.clear();
                if serde_json::to_writer(&mut buf, &record).is_ok() {
                    buf.push(b'\n');
                    let _ = s.write_all(&buf);
                }
            }
            Msg::Reopen(target) => {
                if let Some(s) = sink.as_mut() {
                    let _ = s.flush();
                }
                match open(&target) {
                    Ok(new) => sink = new,
                    Err(e) => tracing::error!(
                        "cannot open access log {target:?}: {e}; keeping the old destination"
                    ),
                }
            }
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
}
