//! Durable state: API keys, API-managed plans, quota counts, behind one trait: SQLite for one
//! node ([`SqliteStore`]), Redis for a cluster ([`RedisStore`]).
//!
//! The request path never waits on this trait: keys live in an in-memory index that is
//! rebuilt when the store's change counter moves, and quota counts are kept in memory and
//! added to the store every second. (In cluster mode shared rate limits talk to Redis on
//! their own, see `cluster::lease`.)

pub mod redis;
pub mod redis_conn;
mod sqlite;

pub use redis::RedisStore;
pub use sqlite::SqliteStore;
use std::path::Path;
use std::sync::Arc;

/// A key's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    /// Accepted.
    Active,
    /// Refused until enabled again.
    Disabled,
    /// Refused for good.
    Revoked,
}

impl KeyStatus {
    /// As stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Disabled => "disabled",
            KeyStatus::Revoked => "revoked",
        }
    }

    /// Parses a stored or requested status.
    pub fn parse(s: &str) -> Option<KeyStatus> {
        match s {
            "active" => Some(KeyStatus::Active),
            "disabled" => Some(KeyStatus::Disabled),
            "revoked" => Some(KeyStatus::Revoked),
            _ => None,
        }
    }
}

/// A stored API key: never the key itself, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// Public id (in logs and the admin API).
    pub id: String,
    /// SHA-256 of the whole key.
    pub hash: [u8; 32],
    /// Who it is for.
    pub name: String,
    /// Plan name.
    pub plan: String,
    /// State.
    pub status: KeyStatus,
    /// Unix seconds.
    pub created_at: i64,
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("store: {0}")]
    Db(String),
    /// The `state.store` URL is not understood.
    #[error("state.store {0:?}: use sqlite:PATH, memory or redis://host:port")]
    BadUrl(String),
}

/// What every store provides.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// A counter that changes whenever keys or plans change (polled to refresh the caches).
    fn version(&self) -> Result<u64, StoreError>;
    /// Every key.
    fn keys(&self) -> Result<Vec<KeyRecord>, StoreError>;
    /// Adds a key.
    fn insert_key(&self, key: &KeyRecord) -> Result<(), StoreError>;
    /// Changes a key's plan and/or status; false when no such key.
    fn update_key(&self, id: &str, plan: Option<&str>, status: Option<KeyStatus>) -> Result<bool, StoreError>;
    /// API-managed plans: name and JSON definition.
    fn plans(&self) -> Result<Vec<(String, String)>, StoreError>;
    /// Creates or replaces an API-managed plan.
    fn put_plan(&self, name: &str, json: &str) -> Result<(), StoreError>;
    /// Deletes an API-managed plan; false when no such plan.
    fn delete_plan(&self, name: &str) -> Result<bool, StoreError>;
    /// Quota usage: key id, period start (unix seconds), requests counted.
    fn quota_usage(&self) -> Result<Vec<(String, i64, u64)>, StoreError>;
    /// Adds requests counted by this process (key id, period start, delta) and returns the
    /// totals now stored, in the same order. A delta for a newer period than the stored one
    /// starts that period; one for an older period is dropped (the stored total is returned).
    fn add_quota_usage(&self, rows: &[(String, i64, u64)]) -> Result<Vec<(String, i64, u64)>, StoreError>;
}

/// `state` as compiled: where the store is and how to use it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreSettings {
    /// `sqlite:PATH`, `memory` or `redis://…`.
    pub url: String,
    /// Prefix of Redis names.
    pub prefix: String,
    /// Shared limits while Redis is down.
    pub on_failure: crate::config::model::OnFailure,
    /// Per-call Redis timeout.
    pub timeout: std::time::Duration,
    /// `rediss://` with a private CA (and client certificate): the files' contents, PEM.
    pub tls: Option<StoreTlsPem>,
}

/// TLS material for Redis, read when the config is compiled.
#[derive(Clone, PartialEq)]
pub struct StoreTlsPem {
    /// CA certificate(s).
    pub ca: Vec<u8>,
    /// Client certificate and key.
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for StoreTlsPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("StoreTlsPem").field("client_cert", &self.client.is_some()).finish_non_exhaustive()
    }
}

impl StoreSettings {
    /// True for a Redis URL.
    pub fn is_redis(&self) -> bool {
        is_redis_url(&self.url)
    }
}

/// True for `redis://`, `rediss://`, `redis+cluster://` and `rediss+cluster://` URLs.
pub fn is_redis_url(url: &str) -> bool {
    ["redis://", "rediss://", "redis+cluster://", "rediss+cluster://"].iter().any(|p| url.starts_with(p))
}

/// How long the store may take on calls off the request path (admin API, sync loop, CLI):
/// longer than a request-path call, still short enough that a stalled Redis shows as an error.
const OFF_PATH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Opens the store: `sqlite:PATH` (relative to `base`), `memory` or a Redis URL.
pub fn open(settings: &StoreSettings, base: &Path) -> Result<Arc<dyn Store>, StoreError> {
    let url = settings.url.as_str();
    if url == "memory" {
        return Ok(Arc::new(SqliteStore::memory()?));
    }
    if is_redis_url(url) {
        return Ok(Arc::new(RedisStore::open(settings, OFF_PATH_TIMEOUT)?));
    }
    match url.strip_prefix("sqlite:") {
        Some(p) if !p.is_empty() => {
            let path = Path::new(p);
            let path = if path.is_absolute() { path.to_path_buf() } else { base.join(path) };
            Ok(Arc::new(SqliteStore::open(&path)?))
        }
        _ => Err(StoreError::BadUrl(url.to_string())),
    }
}
