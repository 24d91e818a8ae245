//! The WAF log: one ModSecurity-style line per matched rule (`[id "942100"] [msg "..."]`), to
//! stderr, stdout or a file. A request's lines are written together, in one write under a lock:
//! concurrent requests never interleave inside a line, and a request that matches several
//! rules (a blocked attack matches three or four) costs one system call, not one per line.

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
    /// Whether lines go nowhere (so need not be formatted).
    pub fn is_off(&self) -> bool {
        matches!(self, WafLog::Off)
    }

    /// Writes a request's lines (each ending in a newline) in one write.
    pub fn write(&self, buf: &[u8]) {
        if buf.is_empty() {
            return;
        }
        // A failed write loses a log line, never the request.
        let _ = match self {
            WafLog::Off => Ok(()),
            WafLog::Stderr => std::io::stderr().lock().write_all(buf),
            WafLog::Stdout => std::io::stdout().lock().write_all(buf),
            WafLog::File(f) => match f.lock() {
                Ok(mut f) => f.write_all(buf),
                Err(_) => Ok(()),
            },
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_requests_lines_arrive_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let path = dir.path().join("waf.log");
        let file = std::fs::File::create(&path).unwrap_or_else(|e| panic!("create: {e}"));
        let log = WafLog::File(Mutex::new(file));
        log.write(b"[id \"942100\"] a\n[id \"949110\"] b\n");
        log.write(b"");
        log.write(b"c\n");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(text, "[id \"942100\"] a\n[id \"949110\"] b\nc\n");
        assert!(!log.is_off() && WafLog::Off.is_off());
    }
}
