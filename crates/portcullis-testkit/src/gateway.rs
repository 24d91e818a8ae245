//! The gateway under test, in-process or as a child process.

use portcullis::server::Running;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A gateway running inside the test process.
pub struct TestGateway {
    running: Option<Running>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl TestGateway {
    /// Writes `yaml` to `<tmp>/gateway.yaml` (`{dir}` in it is replaced by the temp dir) and
    /// starts the gateway without file watching.
    pub async fn start(yaml: &str) -> TestGateway {
        Self::start_with(yaml, false).await
    }

    /// Like [`TestGateway::start`], optionally watching the config file for changes.
    pub async fn start_with(yaml: &str, watch: bool) -> TestGateway {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, yaml, watch).await.unwrap_or_else(|e| panic!("gateway did not start: {e}"))
    }

    /// Starts in a given directory; errors are returned (for tests about refused configs).
    pub async fn start_in(
        dir: tempfile::TempDir,
        yaml: &str,
        watch: bool,
    ) -> Result<TestGateway, portcullis::StartError> {
        let config = dir.path().join("gateway.yaml");
        std::fs::write(&config, yaml.replace("{dir}", &dir.path().display().to_string())).expect("write config");
        let (running, tasks) = portcullis::start(&config, watch).await?;
        Ok(TestGateway { running: Some(running), tasks, dir, config })
    }

    fn running(&self) -> &Running {
        self.running.as_ref().expect("gateway stopped")
    }

    /// Address of the first listener.
    pub fn addr(&self) -> SocketAddr {
        self.running().listeners.first().map(|(_, a)| *a).expect("a listener")
    }

    /// Address of a named listener.
    pub fn listener(&self, name: &str) -> SocketAddr {
        self.running().addr(name).expect("listener")
    }

    /// Admin address.
    pub fn admin(&self) -> SocketAddr {
        self.running().admin.expect("admin listener")
    }

    /// `http://<first listener><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr(), path)
    }

    /// The temp dir (config, logs, certificates).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The config file.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Shared state.
    pub fn gateway(&self) -> &std::sync::Arc<portcullis::state::Gateway> {
        &self.running().gateway
    }

    /// Rewrites the config file (`{dir}` replaced as at start).
    pub fn write_config(&self, yaml: &str) {
        let tmp = self.dir.path().join(".gateway.yaml.tmp");
        std::fs::write(&tmp, yaml.replace("{dir}", &self.dir.path().display().to_string())).expect("write");
        std::fs::rename(&tmp, &self.config).expect("rename");
    }

    /// Reloads now, as SIGHUP would.
    pub async fn reload(&self) -> Result<u64, portcullis::config::ConfigErrors> {
        self.gateway().reload().await
    }

    /// Graceful shutdown.
    pub async fn shutdown(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
        for t in &self.tasks {
            t.abort();
        }
    }

    /// Lines of the access log file at `<dir>/access.log`, parsed as JSON.
    pub fn access_log(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The `portcullis` binary running as a child process (killed on drop).
pub struct GatewayProcess {
    /// The child.
    pub child: Child,
    /// Its temp dir (config written there).
    pub dir: tempfile::TempDir,
}

impl GatewayProcess {
    /// Runs `<bin> run -c <dir>/gateway.yaml`; `{dir}` in the YAML is replaced.
    pub fn spawn(bin: &str, yaml: &str) -> GatewayProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("gateway.yaml");
        std::fs::write(&config, yaml.replace("{dir}", &dir.path().display().to_string())).expect("write config");
        let child = Command::new(bin)
            .args(["run", "-c"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn gateway");
        GatewayProcess { child, dir }
    }

    /// Waits until `addr` accepts connections.
    pub async fn wait_ready(&self, addr: SocketAddr) {
        for _ in 0..500 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("gateway process never listened on {addr}");
    }

    /// Sends a signal by PID.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill").args([&format!("-{sig}"), &self.child.id().to_string()]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{sig} failed");
    }

    /// Peak resident memory (VmHWM) in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; for configs that need a fixed port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}
