//! Once a second: the requests counted since the last round are added to the store and the
//! totals taken back (so a crash, even `kill -9`, loses at most about a second of counting,
//! and nodes sharing a store see each other's counts), and the caches are rebuilt if the
//! store changed (a key made with `portcullis keys create`, or by another gateway process).

use super::Keys;
use crate::state::Gateway;
use crate::store::StoreError;
use std::sync::Arc;
use std::time::Duration;

/// How often counts are flushed and the store polled.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// Adds every key's requests counted since the last flush to the store and takes the totals
/// back (other nodes count too). When the store fails, the deltas stay pending for the next
/// flush, so no request goes uncounted.
pub fn flush_quotas(keys: &Keys) -> Result<usize, StoreError> {
    let index = keys.index.load();
    let taken: Vec<(&Arc<super::KeyEntry>, i64, u64)> =
        index.entries().filter_map(|e| e.quota.take_pending().map(|(start, n)| (e, start, n))).collect();
    let rows: Vec<(String, i64, u64)> = taken.iter().map(|(e, start, n)| (e.id.to_string(), *start, *n)).collect();
    match keys.store.add_quota_usage(&rows) {
        Ok(totals) => {
            for ((e, _, _), (_, start, total)) in taken.iter().zip(totals) {
                e.quota.reconcile(start, total);
            }
            Ok(rows.len())
        }
        Err(err) => {
            for (e, start, n) in taken {
                e.quota.unflushed(start, n);
            }
            Err(err)
        }
    }
}

/// One round: flush, then refresh if the store changed. The first error is returned.
fn once(gw: &Gateway, keys: &Keys) -> Result<(), StoreError> {
    let flushed = flush_quotas(keys);
    if keys.stale()? {
        keys.refresh(&gw.runtime.load())?;
    }
    flushed.map(|_| ())
}

/// Logs a store failure once when it starts and once when it ends, not every second (counts
/// stay pending meanwhile and nothing is lost). With a Redis store the cluster's health
/// check already logs the transition as an ERROR, so this loop says it at WARN.
fn report(gw: &Gateway, failing: &mut bool, outcome: Result<(), StoreError>) {
    let clustered = gw.cluster.get().is_some();
    match outcome {
        Err(e) if !*failing => {
            *failing = true;
            if clustered {
                tracing::warn!("store sync failing ({e}): quota counts kept in memory until it answers");
            } else {
                tracing::error!("store sync failing ({e}): quota counts kept in memory until it answers");
            }
        }
        Err(e) => tracing::debug!("store sync still failing: {e}"),
        Ok(()) if *failing => {
            *failing = false;
            tracing::warn!("store sync working again: pending quota counts saved");
        }
        Ok(()) => {}
    }
}

/// Runs the sync loop until the returned task is aborted.
pub fn spawn_sync(gw: Arc<Gateway>, keys: Arc<Keys>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tick.tick().await;
            let (g, k) = (gw.clone(), keys.clone());
            if let Ok(outcome) = tokio::task::spawn_blocking(move || once(&g, &k)).await {
                report(&gw, &mut failing, outcome);
            }
        }
    })
}
