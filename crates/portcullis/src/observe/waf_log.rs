//! The WAF log: one ModSecurity-style line per matched rule (`[id "942100"] [msg "..."]`), to
//! stderr, stdout or a file. Lines are written whole under a lock, so concurrent requests never
//! interleave inside a line.

use std::io::Write;
use std::sync::Mutex;

/// Where WAF log lines go.
#[derive(Debug)]
pub enum WafLog {
    /// Nowhere.
    Off,
    /// Standard error (the default).
    Stderr,
    /// Standard output.
    Stdout,
    /// Appended to a file.
    File(Mutex<std::fs::File>),
}

impl WafLog {
    /// Writes one line (a newline is added).
    pub fn write(&self, line: &str) {
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        // A failed write loses a log line, never the request.
        let _ = match self {
            WafLog::Off => Ok(()),
            WafLog::Stderr => std::io::stderr().lock().write_all(&buf),
            WafLog::Stdout => std::io::stdout().lock().write_all(&buf),
            WafLog::File(f) => match f.lock() {
                Ok(mut f) => f.write_all(&buf),
                Err(_) => Ok(()),
            },
        };
    }
}
