//! Portcullis: a secure-by-default API gateway.
//!
//! Start with [`pipeline`]: it lists the request phases in order. Configuration flows
//! file → [`config::load`] → [`config::compile`] → an immutable [`config::Runtime`] swapped
//! atomically on reload ([`state::Gateway::reload`]). [`server`] accepts connections and runs
//! the pipeline per request; [`proxy`] talks to upstreams.

pub mod admin;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod error;
pub mod headers;
pub mod keys;
pub mod lint;
pub mod observe;
pub mod outbound;
pub mod phases;
pub mod pipeline;
pub mod proxy;
pub mod reload;
pub mod server;
pub mod state;
pub mod store;
pub mod tls;
pub mod waf_cli;

use std::path::Path;
use std::sync::Arc;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid (each line is `file:line: message`).
    #[error("{0}")]
    Config(#[from] config::ConfigErrors),
    /// A socket could not be bound, or a thread not started.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Loads `config`, binds everything and starts serving. With `watch`, file changes trigger
/// reloads (SIGHUP handling is the caller's choice: see [`reload::take_sighup`]).
pub async fn start(
    config: &Path,
    watch: bool,
) -> Result<(server::Running, Vec<tokio::task::JoinHandle<()>>), StartError> {
    let rt = config::load_runtime(config, None)?;
    let gw = state::Gateway::new(rt)?;
    let mut tasks = Vec::new();
    // A full Arc, not a guard: the block below awaits.
    let rt = gw.runtime.load_full();
    if let Some(settings) = rt.store.as_ref().filter(|s| s.is_redis()) {
        let cluster = cluster::Cluster::connect(settings, &gw.metrics)
            .await
            .map_err(|e| std::io::Error::other(format!("state.store {}: {e}", store::redis::redact(&settings.url))))?;
        let cluster = Arc::new(cluster);
        tasks.push(cluster.spawn_health());
        tasks.push(cluster::events::spawn_listener(gw.clone(), cluster.clone()).await);
        let _ = gw.cluster.set(cluster);
    }
    let running = server::Running::start(gw.clone()).await?;
    if let Some(keys) = gw.keys.clone() {
        tasks.push(keys::spawn_sync(gw.clone(), keys));
    }
    if watch {
        match reload::watch_files(gw) {
            Ok(t) => tasks.push(t),
            Err(e) => tracing::warn!("file watching unavailable ({e}); reload with SIGHUP or the admin API"),
        }
    }
    Ok((running, tasks))
}
