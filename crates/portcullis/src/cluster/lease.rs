//! Shared rate limits without a Redis call per request: token leases.
//!
//! Each limit (and each of its partitions: per IP, key or header value) is one GCRA bucket
//! in Redis, `P:rl:<hash>`, updated only by a Lua script that takes up to `want` tokens at
//! once on Redis's own clock. A node spends the tokens it was granted from memory and asks
//! for the next batch when half of it is gone, in the background, so a steady flow never
//! waits on Redis. When Redis has no token left it answers how long until a whole batch is
//! free; the node refuses locally until then. So:
//!
//! - nothing is admitted that Redis did not grant: across N nodes the limit holds exactly
//!   (tokens leased but never spent make the cluster admit slightly *less*, at most one batch
//!   per node);
//! - a batch is 100 ms of the limit's rate (at least 1, at most half the burst), so a hot
//!   partition costs about one Redis call per batch per node instead of one per request;
//! - `strict: true` takes one token per call: one atomic round trip per admitted request.
//!
//! While Redis is down the limit follows `state.on_failure` (see [`Leases::check`]).

use super::Cluster;
use crate::config::model::OnFailure;
use crate::config::runtime::{Buckets, LimitRt};
use arc_swap::ArcSwapOption;
use portcullis_limit::{Bucket, Decision, Rate};
use redis::Script;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Leases kept at most (one per limit partition seen recently); the least recently used go.
const MAX_LEASES: u64 = 100_000;
/// A lease nobody used for this long is dropped (with any tokens it still held).
const LEASE_IDLE: Duration = Duration::from_secs(120);
/// A batch is this much of the limit's rate.
const BATCH_SECS: f64 = 0.1;

/// `KEYS[1]` bucket; `ARGV`: token interval (µs), burst, tokens wanted. Returns
/// `{granted, wait_µs}`: `wait_µs` is how long until `want` tokens are free when none was.
const TAKE_LUA: &str = "
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local room = math.floor((now + burst * interval - tat) / interval)
local k = math.min(want, room)
if k < 1 then
  return {0, tat + want * interval - burst * interval - now}
end
tat = tat + k * interval
redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
return {k, 0}";

static TAKE: OnceLock<Script> = OnceLock::new();

/// The outcome of a shared check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shared {
    /// Decided (by Redis, by a lease, or by the local fallback).
    Decided(Decision),
    /// Redis is down and `on_failure: closed`.
    Unavailable,
}

/// One limit partition's lease on this node.
pub struct Lease {
    redis_key: String,
    tokens: AtomicI64,
    /// Clock nanos until which Redis said no.
    denied_until: AtomicU64,
    prefetching: AtomicBool,
    fetch: tokio::sync::Mutex<()>,
    /// `on_failure: local`: this node's share of the limit while Redis is down, and the
    /// outage it was made for (a new outage divides by the node count of its time).
    fallback: ArcSwapOption<(u64, Bucket)>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("tokens", &self.tokens.load(Ordering::Relaxed)).finish_non_exhaustive()
    }
}

/// Every lease of this node.
pub struct Leases {
    table: moka::sync::Cache<u64, Arc<Lease>>,
}

impl Default for Leases {
    fn default() -> Self {
        Leases::new()
    }
}

/// The numbers one Redis take needs.
#[derive(Debug, Clone, Copy)]
struct Ask {
    interval_us: u64,
    burst: u32,
    want: u32,
}

impl Ask {
    fn of(limit: &LimitRt) -> Ask {
        let t = &limit.throttle;
        let interval_us = (1_000_000.0 / t.rate).round().max(1.0) as u64;
        let want =
            if t.strict { 1 } else { (t.rate * BATCH_SECS).round().clamp(1.0, f64::from((t.burst / 2).max(1))) as u32 };
        Ask { interval_us, burst: t.burst.max(1), want }
    }
}

impl Lease {
    /// Spends a leased token, or repeats Redis's last "no" while it holds.
    fn local(&self, now: u64) -> Option<Decision> {
        if self.tokens.load(Ordering::Acquire) > 0 {
            let before = self.tokens.fetch_sub(1, Ordering::AcqRel);
            if before > 0 {
                return Some(Decision::Allowed { remaining: u32::try_from(before - 1).unwrap_or(u32::MAX) });
            }
            self.tokens.fetch_add(1, Ordering::AcqRel);
        }
        let until = self.denied_until.load(Ordering::Acquire);
        (now < until).then(|| Decision::Denied { retry_after: Duration::from_nanos(until - now) })
    }

    /// Takes what Redis granted; false when Redis did not answer.
    fn absorb(&self, granted: Option<(i64, i64)>, now: u64) -> bool {
        let Some((k, wait_us)) = granted else { return false };
        if k > 0 {
            self.tokens.fetch_add(k, Ordering::AcqRel);
        } else {
            let wait = u64::try_from(wait_us).unwrap_or(0).saturating_mul(1000).max(1_000_000);
            self.denied_until.store(now.saturating_add(wait), Ordering::Release);
        }
        true
    }
}

async fn take(cluster: &Cluster, key: &str, ask: Ask) -> Option<(i64, i64)> {
    let mut conn = cluster.conn();
    let mut invocation = crate::store::redis::script(&TAKE, TAKE_LUA).key(key);
    invocation.arg(ask.interval_us).arg(ask.burst).arg(ask.want);
    cluster.call("shared limit", invocation.invoke_async(&mut conn)).await
}

impl Leases {
    /// An empty table.
    pub fn new() -> Leases {
        Leases { table: moka::sync::Cache::builder().max_capacity(MAX_LEASES).time_to_idle(LEASE_IDLE).build() }
    }

    fn lease(&self, cluster: &Cluster, limit: &LimitRt, partition: &[u8]) -> Arc<Lease> {
        let make = || {
            let mut what = limit.shared_id.as_bytes().to_vec();
            what.push(0);
            what.extend_from_slice(partition);
            Arc::new(Lease {
                redis_key: cluster.names.counter("rl", &what),
                tokens: AtomicI64::new(0),
                denied_until: AtomicU64::new(0),
                prefetching: AtomicBool::new(false),
                fetch: tokio::sync::Mutex::new(()),
                fallback: ArcSwapOption::empty(),
            })
        };
        if matches!(limit.buckets, Buckets::One(_)) {
            return limit.lease.get_or_init(make).clone();
        }
        self.table.get_with(portcullis_limit::hash_key(&(limit.shared_id.as_str(), partition)), make)
    }

    /// Decides one request on a shared limit. `partition` names the bucket within the limit
    /// (empty for an unpartitioned limit); `now` is the gateway clock in nanoseconds.
    ///
    /// While Redis is down: `local` checks a bucket of this node's share (rate and burst
    /// divided by the nodes last seen alive), `open` admits, `closed` refuses; each such
    /// decision is counted in `portcullis_store_degraded_decisions_total`.
    pub async fn check(&self, cluster: &Arc<Cluster>, limit: &LimitRt, partition: &[u8], now: u64) -> Shared {
        let lease = self.lease(cluster, limit, partition);
        if !cluster.is_up() {
            return degraded(cluster, &lease, limit, now);
        }
        let ask = Ask::of(limit);
        if let Some(d) = lease.local(now) {
            if matches!(d, Decision::Allowed { remaining } if remaining < ask.want / 2) && !limit.throttle.strict {
                prefetch(cluster, &lease, ask, now);
            }
            return Shared::Decided(d);
        }
        // Nothing leased: wait for Redis (one caller asks, the others wait for its answer).
        let _one = lease.fetch.lock().await;
        if let Some(d) = lease.local(now) {
            return Shared::Decided(d);
        }
        if !lease.absorb(take(cluster, &lease.redis_key, ask).await, now) {
            return degraded(cluster, &lease, limit, now);
        }
        Shared::Decided(lease.local(now).unwrap_or(Decision::Denied { retry_after: Duration::from_secs(1) }))
    }
}

/// Asks for the next batch in the background (at most one ask in flight per lease).
fn prefetch(cluster: &Arc<Cluster>, lease: &Arc<Lease>, ask: Ask, now: u64) {
    if lease.prefetching.swap(true, Ordering::AcqRel) {
        return;
    }
    let (cluster, lease) = (cluster.clone(), lease.clone());
    tokio::spawn(async move {
        {
            let _one = lease.fetch.lock().await;
            lease.absorb(take(&cluster, &lease.redis_key, ask).await, now);
        }
        lease.prefetching.store(false, Ordering::Release);
    });
}

fn degraded(cluster: &Cluster, lease: &Lease, limit: &LimitRt, now: u64) -> Shared {
    cluster.degraded_decision();
    match cluster.on_failure {
        OnFailure::Open => Shared::Decided(Decision::Allowed { remaining: limit.throttle.burst }),
        OnFailure::Closed => Shared::Unavailable,
        OnFailure::Local => {
            let outage = cluster.outages();
            let bucket = match lease.fallback.load_full() {
                Some(b) if b.0 == outage => b,
                _ => {
                    let n = cluster.nodes() as f64;
                    let t = &limit.throttle;
                    let share = Rate {
                        per_second: (t.rate / n).max(1e-3),
                        burst: ((f64::from(t.burst) / n).ceil() as u32).max(1),
                    };
                    let b = Arc::new((outage, Bucket::new(share)));
                    lease.fallback.store(Some(b.clone()));
                    b
                }
            };
            Shared::Decided(bucket.1.check(now))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::Throttle;

    fn ask(rate: f64, burst: u32, strict: bool) -> Ask {
        let t = Throttle { rate, burst, per: None, strict };
        Ask::of(&crate::config::compile_limits::limit_rt(t, "route", "route/r".into(), 16, None))
    }

    #[test]
    fn batches_are_100ms_of_the_rate_within_one_and_half_the_burst() {
        let a = ask(200.0, 100, false);
        assert_eq!((a.interval_us, a.burst, a.want), (5_000, 100, 20));
        assert_eq!(ask(1000.0, 2000, false).want, 100);
        assert_eq!(ask(100_000.0, 10, false).want, 5, "never more than half the burst");
        assert_eq!(ask(0.5, 10, false).want, 1, "at least one token");
        assert_eq!(ask(5.0, 1, false).want, 1, "a burst of one still asks for one");
        assert_eq!(ask(1000.0, 2000, true).want, 1, "strict: one token per call");
        assert_eq!(ask(0.001, 5, false).interval_us, 1_000_000_000);
    }
}
