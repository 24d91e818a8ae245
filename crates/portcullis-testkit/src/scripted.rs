//! A raw TCP upstream that answers each request with scripted bytes: for misbehaving
//! backends (bad framing, junk after a response, closing pooled connections, early answers).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What to do with one request.
#[derive(Debug, Clone)]
pub struct Step {
    /// Bytes written back.
    pub reply: Vec<u8>,
    /// Close the connection after writing.
    pub close: bool,
    /// Answer as soon as the head arrived, without reading the body.
    pub early: bool,
}

impl Step {
    /// Writes `reply` and keeps the connection.
    pub fn reply(bytes: &[u8]) -> Step {
        Step { reply: bytes.to_vec(), close: false, early: false }
    }

    /// Writes `reply` and closes.
    pub fn reply_and_close(bytes: &[u8]) -> Step {
        Step { close: true, ..Step::reply(bytes) }
    }
}

/// The scripted upstream. Request `n` (counted over all connections) gets
/// `script(n, head)`. Stops when dropped.
pub struct ScriptedUpstream {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

type Script = Arc<dyn Fn(usize, &str) -> Step + Send + Sync>;

fn content_length(head: &str) -> usize {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

impl ScriptedUpstream {
    /// Starts on 127.0.0.1:0.
    pub async fn start(script: impl Fn(usize, &str) -> Step + Send + Sync + 'static) -> ScriptedUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let heads = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let script: Script = Arc::new(script);
        let (h, c) = (heads.clone(), connections.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let (h, script) = (h.clone(), script.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    loop {
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        let n = {
                            let mut all = h.lock().unwrap();
                            all.push(head.clone());
                            all.len() - 1
                        };
                        let step = script(n, &head);
                        let want = end + 4 + if step.early { 0 } else { content_length(&head) };
                        while !step.early && buf.len() < want {
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(k) => buf.extend_from_slice(&chunk[..k]),
                            }
                        }
                        buf.drain(..want.min(buf.len()));
                        if s.write_all(&step.reply).await.is_err() || step.close {
                            return;
                        }
                    }
                });
            }
        });
        ScriptedUpstream { addr, heads, connections, task }
    }

    /// `http://127.0.0.1:port`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Request heads received, in order.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }

    /// Connections accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for ScriptedUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}
