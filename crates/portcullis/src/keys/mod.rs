//! API keys and usage plans.
//!
//! A key is `pc_<id>_<secret>`: a 12-character public id (shown in logs and the admin API as
//! `key_id`) and 256 random bits. Only the SHA-256 of the whole key is stored; the key is
//! shown once, when it is made. A presented key is looked up by its id and its hash compared
//! in constant time. Keys identify a client for its plan's limits and quota: they are not
//! authentication.
//!
//! The request path reads an in-memory index ([`KeyIndex`]) and plan table, rebuilt when the
//! store's change counter moves (polled every second, so `portcullis keys create` against a
//! running gateway takes effect within a second; a Redis store also announces every change
//! on its events channel, see `cluster::events`) or when the config is reloaded.

pub mod cli;
pub mod plans;
pub mod quota;
mod sync;

use crate::store::{KeyRecord, KeyStatus, Store, StoreError};
use arc_swap::ArcSwap;
use plans::{PlanRt, PlanTable};
use quota::QuotaCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
pub use sync::{flush_quotas, spawn_sync};

const ID_LEN: usize = 12;
const SECRET_HEX: usize = 64;

/// A new key: the key itself (shown once) and what is stored.
#[derive(Debug)]
pub struct NewKey {
    /// The key, to give to the client. Never stored, never logged.
    pub key: String,
    /// What the store keeps.
    pub record: KeyRecord,
}

/// Makes a key for `name` on `plan`.
pub fn generate(name: &str, plan: &str, now_unix: i64) -> NewKey {
    use rand::RngExt;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let id: String = (0..ID_LEN)
        .map(|_| char::from(ALPHABET.get(rng.random_range(0..ALPHABET.len())).copied().unwrap_or(b'a')))
        .collect();
    let secret: [u8; 32] = rng.random();
    let key = format!("pc_{id}_{}", hex::encode(secret));
    NewKey {
        record: KeyRecord {
            hash: hash(&key),
            id,
            name: name.to_string(),
            plan: plan.to_string(),
            status: KeyStatus::Active,
            created_at: now_unix,
        },
        key,
    }
}

/// SHA-256 of a presented key.
pub fn hash(key: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(key.as_bytes()).into()
}

/// The public id of a well-formed key.
pub fn key_id(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("pc_")?;
    let (id, secret) = rest.split_once('_')?;
    let ok = id.len() == ID_LEN
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && secret.len() == SECRET_HEX
        && secret.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then_some(id)
}

/// A key as the request path sees it.
#[derive(Debug)]
pub struct KeyEntry {
    /// Public id.
    pub id: Arc<str>,
    hash: [u8; 32],
    /// Who it is for.
    pub name: String,
    /// Plan name.
    pub plan: Arc<str>,
    /// The plan itself, resolved when the index is built (`None`: the plan does not exist,
    /// and the key is refused).
    pub plan_rt: Option<Arc<PlanRt>>,
    /// State.
    pub status: KeyStatus,
    /// Unix seconds.
    pub created_at: i64,
    /// Quota count (kept across index rebuilds).
    pub quota: Arc<QuotaCell>,
}

/// All keys, by id.
#[derive(Debug, Default)]
pub struct KeyIndex {
    by_id: HashMap<Arc<str>, Arc<KeyEntry>>,
}

impl KeyIndex {
    /// Builds the index; quota counters come from `previous` (live counts) or else from
    /// `usage` (counts persisted by the store).
    pub fn build(
        records: Vec<KeyRecord>,
        usage: &HashMap<String, (i64, u64)>,
        previous: Option<&KeyIndex>,
        plans: &PlanTable,
    ) -> KeyIndex {
        let by_id = records
            .into_iter()
            .map(|r| {
                let id: Arc<str> = Arc::from(r.id.as_str());
                let quota = previous.and_then(|p| p.by_id.get(&id)).map(|e| e.quota.clone()).unwrap_or_else(|| {
                    let (start, used) = usage.get(&r.id).copied().unwrap_or((0, 0));
                    Arc::new(QuotaCell::restored(start, used))
                });
                let entry = KeyEntry {
                    id: id.clone(),
                    hash: r.hash,
                    name: r.name,
                    plan_rt: plans.get(&r.plan).cloned(),
                    plan: Arc::from(r.plan.as_str()),
                    status: r.status,
                    created_at: r.created_at,
                    quota,
                };
                (id, Arc::new(entry))
            })
            .collect();
        KeyIndex { by_id }
    }

    /// The entry for a presented key, whatever its status, if the key is genuine.
    pub fn verify(&self, presented: &str) -> Option<Arc<KeyEntry>> {
        use subtle::ConstantTimeEq;
        let entry = self.by_id.get(key_id(presented)?)?;
        bool::from(hash(presented).ct_eq(&entry.hash)).then(|| entry.clone())
    }

    /// The entry for an id.
    pub fn get(&self, id: &str) -> Option<&Arc<KeyEntry>> {
        self.by_id.get(id)
    }

    /// Every entry.
    pub fn entries(&self) -> impl Iterator<Item = &Arc<KeyEntry>> {
        self.by_id.values()
    }

    /// Keys on a plan.
    pub fn on_plan(&self, plan: &str) -> usize {
        self.by_id.values().filter(|e| &*e.plan == plan && e.status != KeyStatus::Revoked).count()
    }
}

/// Keys and plans, shared by the request path, the admin API and the sync task.
#[derive(Debug)]
pub struct Keys {
    /// Durable state.
    pub store: Arc<dyn Store>,
    /// Keys by id.
    pub index: ArcSwap<KeyIndex>,
    /// Plans by name (config plans and API-managed ones).
    pub plans: ArcSwap<PlanTable>,
    /// The store version the caches were built from.
    version: AtomicU64,
}

impl Keys {
    /// Loads keys, plans and quota counts from the store.
    pub fn load(store: Arc<dyn Store>, rt: &crate::config::Runtime) -> Result<Keys, StoreError> {
        let version = store.version()?;
        let usage: HashMap<String, (i64, u64)> =
            store.quota_usage()?.into_iter().map(|(id, start, used)| (id, (start, used))).collect();
        let plans = PlanTable::build(rt, &store.plans()?, None);
        let index = KeyIndex::build(store.keys()?, &usage, None, &plans);
        Ok(Keys {
            store,
            index: ArcSwap::from_pointee(index),
            plans: ArcSwap::from_pointee(plans),
            version: AtomicU64::new(version),
        })
    }

    /// Rebuilds both caches from the store (after a change through the admin API, a change
    /// seen by polling, or a config reload that may have changed plans).
    pub fn refresh(&self, rt: &crate::config::Runtime) -> Result<(), StoreError> {
        let version = self.store.version()?;
        // Plans first: the key index resolves each key's plan from this table.
        let plans = Arc::new(PlanTable::build(rt, &self.store.plans()?, Some(&self.plans.load())));
        let index = KeyIndex::build(self.store.keys()?, &HashMap::new(), Some(&self.index.load()), &plans);
        self.plans.store(plans);
        self.index.store(Arc::new(index));
        self.version.store(version, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// [`Keys::refresh`] off the async threads (the store may block); a failure is logged
    /// with `what` and the old caches keep serving.
    pub async fn refresh_logged(self: Arc<Self>, rt: Arc<crate::config::Runtime>, what: &str) {
        let done = tokio::task::spawn_blocking(move || self.refresh(&rt)).await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("{what}: {e}"),
            Err(e) => tracing::error!("{what}: {e}"),
        }
    }

    /// True when the store changed since the caches were built.
    pub fn stale(&self) -> Result<bool, StoreError> {
        Ok(self.store.version()? != self.version.load(std::sync::atomic::Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_well_formed_unique_and_verified_by_hash() {
        let a = generate("acme", "free", 1);
        let b = generate("acme", "free", 1);
        assert_ne!(a.key, b.key);
        assert_eq!(key_id(&a.key), Some(a.record.id.as_str()));
        assert_eq!(a.key.len(), 3 + 12 + 1 + 64);
        assert!(!format!("{:?}", a.record).contains(&a.key[16..]), "the record holds no secret");
        let index = KeyIndex::build(vec![a.record.clone()], &HashMap::new(), None, &PlanTable::default());
        assert!(index.verify(&a.key).is_some());
        assert!(index.verify(&b.key).is_none(), "unknown id");
        let forged = format!("pc_{}_{}", a.record.id, "0".repeat(64));
        assert!(index.verify(&forged).is_none(), "right id, wrong secret");
        for bad in ["", "pc_", "pc_short_00", "xx_abcdefghijkl_00", &a.key[..a.key.len() - 1]] {
            assert!(key_id(bad).is_none() || index.verify(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn rebuilding_keeps_live_quota_counts() {
        let a = generate("acme", "free", 1);
        let first = KeyIndex::build(vec![a.record.clone()], &HashMap::new(), None, &PlanTable::default());
        first.get(&a.record.id).unwrap().quota.try_take(60, 10);
        let second = KeyIndex::build(vec![a.record.clone()], &HashMap::new(), Some(&first), &PlanTable::default());
        assert_eq!(second.get(&a.record.id).unwrap().quota.used(60), 1);
        let usage = HashMap::from([(a.record.id.clone(), (60, 7))]);
        let restored = KeyIndex::build(vec![a.record], &usage, None, &PlanTable::default());
        assert_eq!(restored.entries().next().unwrap().quota.used(60), 7);
    }
}
