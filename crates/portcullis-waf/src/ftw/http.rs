//! The HTTP mode of `portcullis waf test`: each request goes over a fresh TCP connection to a
//! running gateway; its verdict is read from the status line and the lines the gateway
//! appended to its WAF log meanwhile (requests are sent one at a time).

use super::Exchange;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

/// Sends `raw` to `addr`, reads the answer, and collects the WAF log lines written for it.
pub fn exchange(addr: SocketAddr, log: &Path, raw: &[u8]) -> Exchange {
    let start = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
    let answer = send(addr, raw);
    let lines = new_lines(log, start);
    let ids = lines.iter().filter_map(|l| rule_id(l)).collect();
    match answer {
        Some(status) => Exchange { error: false, status, log: lines, ids },
        None => Exchange { error: true, status: 0, log: lines, ids },
    }
}

/// The status of the answer, `None` when the exchange failed or the answer is not HTTP.
fn send(addr: SocketAddr, raw: &[u8]) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(5))).ok()?;
    // A server may answer (and close) before the whole request is written.
    let _ = s.write_all(raw);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while buf.len() < 64 * 1024 {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
        }
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let line = buf.split(|&b| b == b'\n').next()?;
    let text = std::str::from_utf8(line).ok()?;
    let mut parts = text.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

fn new_lines(log: &Path, from: u64) -> Vec<String> {
    let Ok(mut f) = std::fs::File::open(log) else { return Vec::new() };
    if f.seek(SeekFrom::Start(from)).is_err() {
        return Vec::new();
    }
    let mut text = String::new();
    let _ = f.read_to_string(&mut text);
    text.lines().map(str::to_string).collect()
}

/// The number in `[id "942100"]`.
pub fn rule_id(line: &str) -> Option<u32> {
    let at = line.find("[id \"")? + 5;
    let rest = line.get(at..)?;
    rest.get(..rest.find('"')?)?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_read_from_log_lines() {
        assert_eq!(super::rule_id(r#"x [file "a"] [line "3"] [id "942100"] [msg "m"]"#), Some(942100));
        assert_eq!(super::rule_id("no id"), None);
    }
}
