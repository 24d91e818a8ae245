//! Process-wide state: the current config snapshot, metrics, access log, connection counts.

use crate::config::{self, ConfigErrors, Runtime};
use crate::observe::access_log::AccessLog;
use crate::observe::metrics::Metrics;
use arc_swap::ArcSwap;
use portcullis_limit::Clock;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// Shared by every connection and request of one gateway.
#[derive(Debug)]
pub struct Gateway {
    /// The snapshot new requests start on.
    pub runtime: ArcSwap<Runtime>,
    /// Metrics registry.
    pub metrics: Metrics,
    /// Access-log writer.
    pub access_log: AccessLog,
    /// Monotonic clock for limiters.
    pub clock: Clock,
    /// Open-connection counts.
    pub conns: Arc<ConnLimiter>,
    /// API keys and plans, when a store is configured.
    pub keys: Option<Arc<crate::keys::Keys>>,
    /// Cluster mode (a Redis store): shared limits, node health, events. Set once at start.
    pub cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
    /// The config file, re-read on reload.
    pub config_path: PathBuf,
    /// Set once shutdown starts (readiness goes to 503).
    pub shutting_down: AtomicBool,
    /// Wall-clock time at a known `clock` reading, to show clock times to people.
    wall_origin: (std::time::SystemTime, u64),
    reload_lock: tokio::sync::Mutex<()>,
}

impl Gateway {
    /// State for a compiled config.
    pub fn new(runtime: Runtime) -> std::io::Result<Arc<Gateway>> {
        let keys = match &runtime.store {
            Some(url) => {
                let base = runtime.loaded.path.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
                let store = crate::store::open(url, &base).map_err(|e| {
                    std::io::Error::other(format!("state.store {}: {e}", crate::store::redis::redact(&url.url)))
                })?;
                Some(Arc::new(crate::keys::Keys::load(store, &runtime).map_err(std::io::Error::other)?))
            }
            None => None,
        };
        let metrics = Metrics::new();
        let access_log = AccessLog::start(runtime.access_log.clone(), metrics.access_log_dropped.clone())?;
        metrics.config_generation.set(i64::try_from(runtime.generation).unwrap_or(i64::MAX));
        let clock = Clock::new();
        let wall_origin = (std::time::SystemTime::now(), clock.now());
        Ok(Arc::new(Gateway {
            wall_origin,
            config_path: runtime.loaded.path.clone(),
            runtime: ArcSwap::from_pointee(runtime),
            metrics,
            access_log,
            clock,
            conns: Arc::new(ConnLimiter::default()),
            keys,
            cluster: std::sync::OnceLock::new(),
            shutting_down: AtomicBool::new(false),
            reload_lock: tokio::sync::Mutex::new(()),
        }))
    }

    /// Starts fetching the JWKS of providers that have none yet (or are due a refresh), so
    /// the first tokens do not wait for it.
    pub fn warm_auth(self: &Arc<Self>) {
        for provider in self.runtime.load().auth.jwt.values() {
            provider.warm(self);
        }
    }

    /// The wall-clock time of a `clock` reading.
    pub fn wall_time(&self, clock_nanos: u64) -> std::time::SystemTime {
        let (wall, at) = self.wall_origin;
        if clock_nanos >= at {
            wall + std::time::Duration::from_nanos(clock_nanos - at)
        } else {
            wall - std::time::Duration::from_nanos(at - clock_nanos)
        }
    }

    /// Re-reads the config file. An invalid file changes nothing: the error (with
    /// `file:line`) is logged and returned, and the old snapshot keeps serving. Requests in
    /// flight finish on the snapshot they started with.
    pub async fn reload(self: &Arc<Self>) -> Result<u64, ConfigErrors> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let previous = self.runtime.load_full();
        let path = self.config_path.clone();
        let prev = previous.clone();
        let compiled =
            tokio::task::spawn_blocking(move || config::load_runtime(&path, Some(&prev))).await.unwrap_or_else(|e| {
                Err(ConfigErrors::one(&self.config_path.display().to_string(), 1, format!("reload task failed: {e}")))
            });
        match compiled {
            Ok(next) => {
                warn_static_changes(&previous, &next);
                if next.access_log != previous.access_log
                    || matches!(next.access_log, config::runtime::AccessTarget::File(_))
                {
                    self.access_log.reopen(next.access_log.clone());
                }
                let generation = next.generation;
                let next = Arc::new(next);
                self.runtime.store(next.clone());
                self.warm_auth();
                if let Some(keys) = self.keys.clone() {
                    // Plans come partly from the config: rebuild them (and pick up store changes).
                    keys.refresh_logged(next, "plans not rebuilt after the reload").await;
                }
                self.metrics.config_generation.set(i64::try_from(generation).unwrap_or(i64::MAX));
                self.metrics.reload("ok");
                tracing::info!(generation, "configuration reloaded");
                Ok(generation)
            }
            Err(e) => {
                self.metrics.reload("invalid");
                tracing::error!("configuration reload refused, still serving generation {}:\n{e}", previous.generation);
                Err(e)
            }
        }
    }
}

/// Listeners and the admin address are bound once; a reload cannot move them.
fn warn_static_changes(old: &Runtime, new: &Runtime) {
    let shape = |r: &Runtime| -> Vec<(String, std::net::SocketAddr, bool, bool)> {
        r.listeners.iter().map(|l| (l.name.to_string(), l.bind, l.tls.is_some(), l.http2)).collect()
    };
    if shape(old) != shape(new) {
        tracing::warn!(
            "listeners changed in the config: restart to apply (certificates and everything else were reloaded)"
        );
    }
    if old.admin.as_ref().map(|a| a.bind) != new.admin.as_ref().map(|a| a.bind) {
        tracing::warn!("admin.bind changed in the config: restart to apply");
    }
    if old.store != new.store {
        tracing::warn!("state changed in the config: restart to apply");
    }
}

/// Open connections per client and in all. IPv6 clients are counted per /64, since one
/// host usually controls a whole /64.
#[derive(Debug, Default)]
pub struct ConnLimiter {
    total: AtomicU32,
    per_ip: Mutex<HashMap<IpAddr, u32>>,
}

/// One counted connection; uncounted on drop.
#[derive(Debug)]
pub struct ConnGuard {
    limiter: Arc<ConnLimiter>,
    key: IpAddr,
}

fn conn_key(ip: IpAddr) -> IpAddr {
    crate::phases::ip_rules::aggregate(ip, 64)
}

impl ConnLimiter {
    /// Counts a new connection, or says which cap it hits.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr, per_ip: u32, total: u32) -> Result<ConnGuard, &'static str> {
        if self.total.fetch_add(1, Ordering::AcqRel) >= total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err("total_limit");
        }
        let key = conn_key(ip);
        let Ok(mut map) = self.per_ip.lock() else {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err("internal");
        };
        let n = map.entry(key).or_insert(0);
        if *n >= per_ip {
            drop(map);
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err("per_ip_limit");
        }
        *n += 1;
        Ok(ConnGuard { limiter: self.clone(), key })
    }

    /// Open connections now.
    pub fn total(&self) -> u32 {
        self.total.load(Ordering::Relaxed)
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if let Ok(mut map) = self.limiter.per_ip.lock()
            && let Some(n) = map.get_mut(&self.key)
        {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.key);
            }
        }
        self.limiter.total.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_and_total_caps() {
        let l = Arc::new(ConnLimiter::default());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let g1 = l.try_acquire(a, 2, 3).unwrap();
        let _g2 = l.try_acquire(a, 2, 3).unwrap();
        assert_eq!(l.try_acquire(a, 2, 3).unwrap_err(), "per_ip_limit");
        let _g3 = l.try_acquire(b, 2, 3).unwrap();
        assert_eq!(l.try_acquire(b, 2, 3).unwrap_err(), "total_limit");
        drop(g1);
        assert!(l.try_acquire(a, 2, 3).is_ok());
    }

    #[test]
    fn ipv6_counts_per_64() {
        let l = Arc::new(ConnLimiter::default());
        let _g = l.try_acquire("2001:db8::1".parse().unwrap(), 1, 10).unwrap();
        assert!(l.try_acquire("2001:db8::ffff".parse().unwrap(), 1, 10).is_err());
        assert!(l.try_acquire("2001:db8:0:1::1".parse().unwrap(), 1, 10).is_ok());
    }
}
