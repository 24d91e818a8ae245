//! The cluster store: keys, plans and quota counts in Redis, shared by every gateway node.
//!
//! Redis names (`P` is `state.prefix`): `{P}:keys` (hash: key id → JSON record holding the
//! key's SHA-256, never the key), `{P}:plans` (hash: name → JSON), `{P}:version` (bumped by
//! every change; nodes poll it and are told through `{P}:events`), and one counter per key and
//! quota period, `P:q:<hash of the key id>`, which expires 40 days after its last write. The
//! three `{P}:…` names share a hash slot, so the scripts that touch two of them stay valid on a
//! Redis Cluster.
//!
//! This side is synchronous (callers use `spawn_blocking`, the CLI calls it directly): one
//! connection behind a mutex, reconnected on the next call after an error, with short
//! connect/read/write timeouts so a stalled Redis cannot hang the sync loop or the admin API.

use super::redis_conn::{SyncConn, Target};
use super::{KeyRecord, KeyStatus, Store, StoreError};
use redis::Script;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// How long a quota counter lives after its last write: longer than the longest period (a
/// month) plus any offset.
const QUOTA_TTL_SECS: u64 = 40 * 86_400;

/// Redis-backed [`Store`].
pub struct RedisStore {
    target: Target,
    names: Names,
    timeout: Duration,
    conn: Mutex<Option<SyncConn>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: show only where it points.
        f.debug_struct("RedisStore").field("at", &self.target.describe()).field("prefix", &self.names.prefix).finish()
    }
}

/// The Redis names under one prefix.
#[derive(Debug, Clone)]
pub struct Names {
    /// `state.prefix`.
    pub prefix: String,
    keys: String,
    plans: String,
    version: String,
    /// The pub/sub channel for admin actions.
    pub events: String,
}

impl Names {
    /// Names under `prefix`.
    pub fn new(prefix: &str) -> Names {
        Names {
            prefix: prefix.to_string(),
            keys: format!("{{{prefix}}}:keys"),
            plans: format!("{{{prefix}}}:plans"),
            version: format!("{{{prefix}}}:version"),
            events: format!("{prefix}:events"),
        }
    }

    /// A counter's name: the prefix, a kind, and a hash of what it counts (never the raw
    /// value: no key id, IP address or header value appears in Redis key names).
    pub fn counter(&self, kind: &str, what: &[u8]) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(what);
        format!("{}:{kind}:{}", self.prefix, hex::encode(digest.get(..16).unwrap_or_default()))
    }
}

fn db(e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(format!("redis: {e}"))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredKey {
    hash: String,
    name: String,
    plan: String,
    status: String,
    created_at: i64,
}

/// A Lua script compiled (hashed) once.
pub(crate) fn script(cell: &'static OnceLock<Script>, src: &str) -> &'static Script {
    cell.get_or_init(|| Script::new(src))
}

static INSERT: OnceLock<Script> = OnceLock::new();
const INSERT_LUA: &str = "
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[3], 'store keys')
return 1";

static UPDATE: OnceLock<Script> = OnceLock::new();
const UPDATE_LUA: &str = "
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local r = cjson.decode(v)
if ARGV[2] ~= '' then r.plan = ARGV[2] end
if ARGV[3] ~= '' then r.status = ARGV[3] end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(r))
redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[4], 'store keys')
return 1";

static QUOTA: OnceLock<Script> = OnceLock::new();
const QUOTA_LUA: &str = "
local start = tonumber(ARGV[1])
local s = tonumber(redis.call('HGET', KEYS[1], 's') or '-1')
local u
if start == s then
  u = redis.call('HINCRBY', KEYS[1], 'u', ARGV[2])
elseif start > s then
  redis.call('HSET', KEYS[1], 's', ARGV[1], 'u', ARGV[2])
  u = tonumber(ARGV[2])
else
  u = tonumber(redis.call('HGET', KEYS[1], 'u') or '0')
  start = s
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {start, u}";

impl RedisStore {
    /// Connects to `url` (`redis://[:password@]host:port[/db]`, `rediss://…`, or a Redis
    /// Cluster as `redis+cluster://host1:port,host2:port`) and checks that Redis answers.
    pub fn open(settings: &super::StoreSettings, timeout: Duration) -> Result<RedisStore, StoreError> {
        let url = &settings.url;
        let target = Target::parse(url, timeout, settings.tls.as_ref())
            .map_err(|e| StoreError::BadUrl(format!("{}: {e}", redact(url))))?;
        let store = RedisStore { target, names: Names::new(&settings.prefix), timeout, conn: Mutex::new(None) };
        store.with(|c| redis::cmd("PING").query::<String>(c))?;
        Ok(store)
    }

    fn with<T>(&self, f: impl FnOnce(&mut SyncConn) -> redis::RedisResult<T>) -> Result<T, StoreError> {
        let mut slot = self.conn.lock().map_err(|_| StoreError::Db("redis connection lock poisoned".into()))?;
        if slot.is_none() {
            *slot = Some(self.target.connect(self.timeout).map_err(db)?);
        }
        let Some(conn) = slot.as_mut() else { return Err(StoreError::Db("redis: no connection".into())) };
        let out = f(conn);
        if out.is_err() {
            // The connection may be half-way through a reply: start clean next time.
            *slot = None;
        }
        out.map_err(db)
    }

    /// Runs commands that each touch one key: pipelined in one round trip on one server, one
    /// call each on a Redis Cluster (a pipeline cannot span slots).
    fn each<T: redis::FromRedisValue>(&self, cmds: Vec<redis::Cmd>) -> Result<Vec<T>, StoreError> {
        if self.target.is_cluster() {
            return cmds.iter().map(|c| self.with(|conn| c.query(conn))).collect();
        }
        let mut pipe = redis::pipe();
        for c in cmds {
            pipe.add_command(c);
        }
        self.with(|conn| pipe.query(conn))
    }

    fn quota_key(&self, id: &str) -> String {
        self.names.counter("q", id.as_bytes())
    }
}

/// `url` without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://***{}", url.get(at..).unwrap_or_default()),
        _ => url.to_string(),
    }
}

impl Store for RedisStore {
    fn version(&self) -> Result<u64, StoreError> {
        self.with(|c| redis::cmd("GET").arg(&self.names.version).query::<Option<u64>>(c)).map(Option::unwrap_or_default)
    }

    fn keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let raw: Vec<(String, String)> = self.with(|c| redis::cmd("HGETALL").arg(&self.names.keys).query(c))?;
        let mut out: Vec<KeyRecord> = raw
            .into_iter()
            .filter_map(|(id, json)| {
                let Ok(k) = serde_json::from_str::<StoredKey>(&json) else {
                    tracing::error!(key_id = %id, "unreadable key record in Redis: the key is refused");
                    return None;
                };
                let hash = hex::decode(&k.hash).ok().and_then(|h| <[u8; 32]>::try_from(h).ok());
                Some(KeyRecord {
                    id,
                    // A damaged hash matches no presented key.
                    hash: hash.unwrap_or([0; 32]),
                    name: k.name,
                    plan: k.plan,
                    status: KeyStatus::parse(&k.status).unwrap_or(KeyStatus::Disabled),
                    created_at: k.created_at,
                })
            })
            .collect();
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(out)
    }

    fn insert_key(&self, k: &KeyRecord) -> Result<(), StoreError> {
        let json = serde_json::to_string(&StoredKey {
            hash: hex::encode(k.hash),
            name: k.name.clone(),
            plan: k.plan.clone(),
            status: k.status.as_str().to_string(),
            created_at: k.created_at,
        })
        .map_err(db)?;
        let s = script(&INSERT, INSERT_LUA);
        let added: i64 = self.with(|c| {
            s.key(&self.names.keys).key(&self.names.version).arg(&k.id).arg(&json).arg(&self.names.events).invoke(c)
        })?;
        if added == 0 {
            return Err(StoreError::Db(format!("a key with id {} exists", k.id)));
        }
        Ok(())
    }

    fn update_key(&self, id: &str, plan: Option<&str>, status: Option<KeyStatus>) -> Result<bool, StoreError> {
        let s = script(&UPDATE, UPDATE_LUA);
        let status = status.map_or("", KeyStatus::as_str);
        let changed: i64 = self.with(|c| {
            s.key(&self.names.keys)
                .key(&self.names.version)
                .arg(id)
                .arg(plan.unwrap_or(""))
                .arg(status)
                .arg(&self.names.events)
                .invoke(c)
        })?;
        Ok(changed == 1)
    }

    fn plans(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut out: Vec<(String, String)> = self.with(|c| redis::cmd("HGETALL").arg(&self.names.plans).query(c))?;
        out.sort();
        Ok(out)
    }

    fn put_plan(&self, name: &str, json: &str) -> Result<(), StoreError> {
        self.with(|c| {
            redis::pipe()
                .atomic()
                .hset(&self.names.plans, name, json)
                .ignore()
                .incr(&self.names.version, 1)
                .ignore()
                .publish(&self.names.events, "store keys")
                .ignore()
                .query::<()>(c)
        })
    }

    fn delete_plan(&self, name: &str) -> Result<bool, StoreError> {
        let (deleted,): (i64,) = self.with(|c| {
            redis::pipe()
                .atomic()
                .hdel(&self.names.plans, name)
                .incr(&self.names.version, 1)
                .ignore()
                .publish(&self.names.events, "store keys")
                .ignore()
                .query(c)
        })?;
        Ok(deleted > 0)
    }

    fn quota_usage(&self) -> Result<Vec<(String, i64, u64)>, StoreError> {
        let ids: Vec<String> = self.with(|c| redis::cmd("HKEYS").arg(&self.names.keys).query(c))?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let cmds = ids.iter().map(|id| {
            let mut c = redis::cmd("HMGET");
            c.arg(self.quota_key(id)).arg("s").arg("u");
            c
        });
        let rows: Vec<(Option<i64>, Option<u64>)> = self.each(cmds.collect())?;
        Ok(ids
            .into_iter()
            .zip(rows)
            .filter_map(|(id, row)| match row {
                (Some(start), Some(used)) => Some((id, start, used)),
                _ => None,
            })
            .collect())
    }

    fn add_quota_usage(&self, rows: &[(String, i64, u64)]) -> Result<Vec<(String, i64, u64)>, StoreError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let s = script(&QUOTA, QUOTA_LUA);
        // Scripts are sent by hash; load it first so a fresh (or restarted) Redis knows it (on
        // a Redis Cluster, SCRIPT LOAD goes to every primary).
        self.with(|c| s.load(c))?;
        let cmds = rows.iter().map(|(id, start, delta)| {
            let mut c = redis::cmd("EVALSHA");
            c.arg(s.get_hash()).arg(1).arg(self.quota_key(id)).arg(*start).arg(*delta).arg(QUOTA_TTL_SECS);
            c
        });
        let totals: Vec<(i64, u64)> = self.each(cmds.collect())?;
        Ok(rows.iter().zip(totals).map(|((id, _, _), (start, used))| (id.clone(), start, used)).collect())
    }
}
