//! A real `redis-server` on a free loopback port, in its own temp dir, for cluster tests.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A `redis-server` child process (killed on drop). AOF is on with `appendfsync always`,
/// the settings docs/operations.md asks of operators, so a restart loses nothing.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    /// Arguments added to every start (password, TLS).
    extra: Vec<String>,
    tls: bool,
}

impl RedisServer {
    /// Starts one and waits until it answers PING. Panics with the install hint when the
    /// binary is missing (`.ci/run` installs it).
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// Starts one with extra `redis-server` arguments (e.g. `--requirepass`).
    pub fn start_with(extra: &[&str]) -> RedisServer {
        Self::launch(extra.iter().map(ToString::to_string).collect(), false)
    }

    /// Starts one that speaks TLS only, on [`RedisServer::url`]'s port (use `rediss://`),
    /// with this certificate and key and no client certificate required.
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path, ca: &std::path::Path) -> RedisServer {
        let extra = vec![
            "--tls-cert-file".into(),
            cert.display().to_string(),
            "--tls-key-file".into(),
            key.display().to_string(),
            "--tls-ca-cert-file".into(),
            ca.display().to_string(),
            "--tls-auth-clients".into(),
            "no".into(),
        ];
        Self::launch(extra, true)
    }

    fn launch(extra: Vec<String>, tls: bool) -> RedisServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut server = RedisServer { child: None, port: crate::free_port(), dir, extra, tls };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let port = self.port.to_string();
        let ports = if self.tls { vec!["--port", "0", "--tls-port", &port] } else { vec!["--port", &port] };
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"])
            .args(ports)
            .args(&self.extra)
            .args(["--appendfsync", "always", "--protected-mode", "yes", "--loglevel", "warning"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}): install it (apt-get install redis-server; .ci/run does)")
            });
        self.child = Some(child);
        for _ in 0..500 {
            // Any answer will do (`-NOAUTH` with a password) but `-LOADING`: after a restart
            // Redis answers that while it replays the AOF, and refuses commands until it is done.
            // A TLS port is ready when it accepts.
            let up = if self.tls {
                std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            } else {
                self.command("PING")
                    .is_some_and(|r| r.starts_with('+') || r.starts_with('-') && !r.starts_with("-LOADING"))
            };
            if up {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("redis-server never answered on port {}", self.port);
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The data directory (AOF files).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Sends one inline command and returns the raw reply (`None` if it cannot connect).
    pub fn command(&self, cmd: &str) -> Option<String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(format!("{cmd}\r\n").as_bytes()).ok()?;
        let mut buf = vec![0u8; 64 * 1024];
        let n = s.read(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Kills it with SIGKILL (no shutdown save) and waits for the exit.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and data directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

/// A Redis Cluster of three masters (no replicas) on free loopback ports, slots spread by
/// `redis-cli --cluster create`.
pub struct RedisCluster {
    /// The nodes.
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts the three nodes, joins them and waits until the cluster reports `ok`.
    pub fn start() -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| RedisServer::start_with(&["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"]))
            .collect();
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run redis-cli ({e}): install redis-tools (.ci/run does)"));
        assert!(out.status.success(), "cluster create failed: {}", String::from_utf8_lossy(&out.stdout));
        for _ in 0..500 {
            if nodes.iter().all(|n| n.command("CLUSTER INFO").is_some_and(|i| i.contains("cluster_state:ok"))) {
                return RedisCluster { nodes };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the Redis Cluster never reported cluster_state:ok");
    }

    /// `redis+cluster://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3`.
    pub fn url(&self) -> String {
        let addrs: Vec<String> = self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        format!("redis+cluster://{}", addrs.join(","))
    }

    /// Every key name on every node (`KEYS *` on each).
    pub fn keys(&self) -> Vec<Vec<String>> {
        self.nodes
            .iter()
            .map(|n| {
                let reply = n.command("KEYS *").unwrap_or_default();
                reply.lines().filter(|l| !l.starts_with('*') && !l.starts_with('$')).map(str::to_string).collect()
            })
            .collect()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
