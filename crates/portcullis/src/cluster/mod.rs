//! Cluster mode: what gateway nodes sharing one Redis do beyond the store itself — shared
//! rate limits ([`lease`]), the health of the Redis connection with `state.on_failure`, the
//! count of live nodes, and admin actions broadcast to every node ([`events`]).
//!
//! Redis health: a request-path call that fails or takes longer than `state.timeout` marks
//! Redis down at once (one ERROR, `portcullis_store_up` 0); from then on no request waits on
//! Redis until the health task's PING (every 250 ms while down) succeeds again.

pub mod events;
pub mod lease;

use crate::config::model::OnFailure;
use crate::store::StoreSettings;
use crate::store::redis::Names;
use crate::store::redis_conn::{AsyncConn, Target};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// How often a node says it is alive (and counts the others).
const HEARTBEAT: Duration = Duration::from_secs(1);
/// A node not heard from for this long no longer counts.
const NODE_EXPIRY_MS: u64 = 5_000;
/// How often a down Redis is tried again.
const RETRY: Duration = Duration::from_millis(250);

/// One node's view of the cluster.
pub struct Cluster {
    target: Target,
    conn: AsyncConn,
    /// Redis names.
    pub names: Names,
    /// This node's random id (in the node set and on the events it sends).
    pub node_id: String,
    timeout: Duration,
    /// What shared limits do while Redis is down.
    pub on_failure: OnFailure,
    up: AtomicBool,
    outages: AtomicU64,
    nodes: AtomicUsize,
    store_up: Gauge,
    degraded: Counter,
    /// Token leases of the shared limits.
    pub leases: lease::Leases,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("node_id", &self.node_id).field("up", &self.is_up()).finish()
    }
}

/// `state.on_failure` as written in config.
pub fn on_failure_name(m: OnFailure) -> &'static str {
    match m {
        OnFailure::Local => "local",
        OnFailure::Open => "open",
        OnFailure::Closed => "closed",
    }
}

impl Cluster {
    /// Connects (Redis must answer at start: a node that starts blind would enforce nothing
    /// it could not see).
    pub async fn connect(
        settings: &StoreSettings,
        metrics: &crate::observe::metrics::Metrics,
    ) -> Result<Cluster, redis::RedisError> {
        let target = Target::parse(&settings.url, settings.timeout, settings.tls.as_ref())?;
        let conn = target.connect_async(settings.timeout, RETRY).await?;
        use rand::RngExt;
        let node_id: String = hex::encode(rand::rng().random::<[u8; 8]>());
        metrics.store_up.set(1);
        Ok(Cluster {
            target,
            conn,
            names: Names::new(&settings.prefix),
            node_id,
            timeout: settings.timeout,
            on_failure: settings.on_failure,
            up: AtomicBool::new(true),
            outages: AtomicU64::new(0),
            nodes: AtomicUsize::new(1),
            store_up: metrics.store_up.clone(),
            degraded: metrics.store_degraded_counter(on_failure_name(settings.on_failure)),
            leases: lease::Leases::new(),
        })
    }

    /// True while Redis answers.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// How many times Redis went down since start.
    pub fn outages(&self) -> u64 {
        self.outages.load(Ordering::Acquire)
    }

    /// Live nodes last counted (at least 1: this one).
    pub fn nodes(&self) -> usize {
        self.nodes.load(Ordering::Relaxed).max(1)
    }

    /// Counts a decision made without Redis.
    fn degraded_decision(&self) {
        self.degraded.inc();
    }

    /// Records a failed Redis call; the first one after a healthy period logs the transition.
    pub fn mark_down(&self, what: &str, err: &dyn std::fmt::Display) {
        if self.up.swap(false, Ordering::AcqRel) {
            self.store_up.set(0);
            self.outages.fetch_add(1, Ordering::AcqRel);
            tracing::error!(
                mode = on_failure_name(self.on_failure),
                "Redis store unreachable ({what}: {err}): shared limits now follow state.on_failure, quotas count \
                 locally until it is back"
            );
        }
    }

    fn mark_up(&self) {
        if !self.up.swap(true, Ordering::AcqRel) {
            self.store_up.set(1);
            tracing::error!("Redis store reachable again: shared limits and quota counts are shared again");
        }
    }

    /// A connection handle for one call (multiplexed; reconnects by itself).
    pub fn conn(&self) -> AsyncConn {
        self.conn.clone()
    }

    /// Runs one Redis call under the request-path timeout; a failure marks Redis down.
    pub async fn call<T>(&self, what: &str, f: impl std::future::Future<Output = redis::RedisResult<T>>) -> Option<T> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                self.mark_down(what, &e);
                None
            }
            Err(_) => {
                self.mark_down(what, &format_args!("no answer within {:?}", self.timeout));
                None
            }
        }
    }

    /// One heartbeat: this node's entry in the node set, expired entries dropped, the rest
    /// counted. Also the health probe while Redis is down.
    async fn heartbeat(&self) {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let key = format!("{}:nodes", self.names.prefix);
        let mut conn = self.conn();
        let mut pipe = redis::pipe();
        pipe.zadd(&key, &self.node_id, now_ms)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(now_ms.saturating_sub(NODE_EXPIRY_MS))
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(NODE_EXPIRY_MS * 2)
            .ignore()
            .zcard(&key);
        let counted: Option<(usize,)> = self.call("heartbeat", pipe.query_async(&mut conn)).await;
        if let Some((n,)) = counted {
            self.nodes.store(n.max(1), Ordering::Relaxed);
            self.mark_up();
        }
    }

    /// Runs the heartbeat / health loop until the task is aborted.
    pub fn spawn_health(self: &std::sync::Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                me.heartbeat().await;
                tokio::time::sleep(if me.is_up() { HEARTBEAT } else { RETRY }).await;
            }
        })
    }

    /// Where pub/sub subscriptions are tried, in order.
    fn pubsub_clients(&self) -> Vec<redis::Client> {
        self.target.pubsub_clients()
    }
}
