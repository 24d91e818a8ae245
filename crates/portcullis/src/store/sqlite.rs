//! The embedded store: SQLite in WAL mode, one connection behind a mutex (every call is a
//! short local transaction; callers on async threads use `spawn_blocking`).

use super::{KeyRecord, KeyStatus, Store, StoreError};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::Mutex;

/// SQLite-backed [`Store`].
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

fn db(e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(e.to_string())
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (k, v) VALUES ('version', 0);
CREATE TABLE IF NOT EXISTS api_keys (
  id TEXT PRIMARY KEY,
  hash BLOB NOT NULL,
  name TEXT NOT NULL,
  plan TEXT NOT NULL,
  status TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS plans (name TEXT PRIMARY KEY, json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS quota_usage (
  key_id TEXT PRIMARY KEY,
  period_start INTEGER NOT NULL,
  used INTEGER NOT NULL
);
";

impl SqliteStore {
    /// Opens (and creates) a database file.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open(path).map_err(|e| StoreError::Db(format!("{}: {e}", path.display())))?;
        // WAL: readers never block the writer; NORMAL sync is durable across process crashes
        // (kill -9), which is what quota counts need.
        conn.pragma_update(None, "journal_mode", "WAL").map_err(db)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(db)?;
        Self::init(conn)
    }

    /// A private in-memory database (lost on exit).
    pub fn memory() -> Result<SqliteStore, StoreError> {
        Self::init(Connection::open_in_memory().map_err(db)?)
    }

    fn init(conn: Connection) -> Result<SqliteStore, StoreError> {
        conn.execute_batch(SCHEMA).map_err(db)?;
        Ok(SqliteStore { conn: Mutex::new(conn) })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let mut conn = self.conn.lock().map_err(|_| StoreError::Db("connection lock poisoned".into()))?;
        f(&mut conn).map_err(db)
    }
}

fn bump(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute("UPDATE meta SET v = v + 1 WHERE k = 'version'", [])?;
    Ok(())
}

impl Store for SqliteStore {
    fn version(&self) -> Result<u64, StoreError> {
        self.with(|c| c.query_row("SELECT v FROM meta WHERE k = 'version'", [], |r| r.get::<_, i64>(0)))
            .map(|v| u64::try_from(v).unwrap_or(0))
    }

    fn keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.with(|c| {
            let mut st =
                c.prepare("SELECT id, hash, name, plan, status, created_at FROM api_keys ORDER BY created_at, id")?;
            let rows = st.query_map([], |r| {
                let hash: Vec<u8> = r.get(1)?;
                let status: String = r.get(4)?;
                Ok(KeyRecord {
                    id: r.get(0)?,
                    hash: <[u8; 32]>::try_from(hash.as_slice()).unwrap_or([0; 32]),
                    name: r.get(2)?,
                    plan: r.get(3)?,
                    // An unknown status refuses the key rather than admitting it.
                    status: KeyStatus::parse(&status).unwrap_or(KeyStatus::Disabled),
                    created_at: r.get(5)?,
                })
            })?;
            rows.collect()
        })
    }

    fn insert_key(&self, k: &KeyRecord) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO api_keys (id, hash, name, plan, status, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![k.id, &k.hash[..], k.name, k.plan, k.status.as_str(), k.created_at],
            )?;
            bump(&tx)?;
            tx.commit()
        })
    }

    fn update_key(&self, id: &str, plan: Option<&str>, status: Option<KeyStatus>) -> Result<bool, StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            let exists = tx.query_row("SELECT 1 FROM api_keys WHERE id = ?1", [id], |_| Ok(())).optional()?.is_some();
            if exists {
                if let Some(p) = plan {
                    tx.execute("UPDATE api_keys SET plan = ?2 WHERE id = ?1", params![id, p])?;
                }
                if let Some(s) = status {
                    tx.execute("UPDATE api_keys SET status = ?2 WHERE id = ?1", params![id, s.as_str()])?;
                }
                bump(&tx)?;
            }
            tx.commit()?;
            Ok(exists)
        })
    }

    fn plans(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare("SELECT name, json FROM plans ORDER BY name")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    fn put_plan(&self, name: &str, json: &str) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute("INSERT OR REPLACE INTO plans (name, json) VALUES (?1, ?2)", params![name, json])?;
            bump(&tx)?;
            tx.commit()
        })
    }

    fn delete_plan(&self, name: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            let n = tx.execute("DELETE FROM plans WHERE name = ?1", [name])?;
            if n > 0 {
                bump(&tx)?;
            }
            tx.commit()?;
            Ok(n > 0)
        })
    }

    fn quota_usage(&self) -> Result<Vec<(String, i64, u64)>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare("SELECT key_id, period_start, used FROM quota_usage")?;
            let rows = st.query_map([], |r| {
                let used: i64 = r.get(2)?;
                Ok((r.get(0)?, r.get(1)?, u64::try_from(used).unwrap_or(0)))
            })?;
            rows.collect()
        })
    }

    fn add_quota_usage(&self, rows: &[(String, i64, u64)]) -> Result<Vec<(String, i64, u64)>, StoreError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        self.with(|c| {
            let tx = c.transaction()?;
            let mut totals = Vec::with_capacity(rows.len());
            {
                // A delta for the stored period adds up; one for a newer period starts it
                // over; one for an older period (flushed late) is dropped.
                let mut st = tx.prepare_cached(
                    "INSERT INTO quota_usage (key_id, period_start, used) VALUES (?1, ?2, ?3)
                     ON CONFLICT (key_id) DO UPDATE SET
                       used = CASE WHEN excluded.period_start = period_start THEN used + excluded.used
                                   WHEN excluded.period_start > period_start THEN excluded.used
                                   ELSE used END,
                       period_start = MAX(period_start, excluded.period_start)
                     RETURNING period_start, used",
                )?;
                for (id, start, delta) in rows {
                    let (start, used): (i64, i64) = st
                        .query_row(params![id, start, i64::try_from(*delta).unwrap_or(i64::MAX)], |r| {
                            Ok((r.get(0)?, r.get(1)?))
                        })?;
                    totals.push((id.clone(), start, u64::try_from(used).unwrap_or(0)));
                }
            }
            tx.commit()?;
            Ok(totals)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> KeyRecord {
        KeyRecord {
            id: id.into(),
            hash: [7; 32],
            name: "acme".into(),
            plan: "free".into(),
            status: KeyStatus::Active,
            created_at: 1,
        }
    }

    #[test]
    fn keys_plans_and_usage_round_trip_and_bump_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let s = SqliteStore::open(&path).unwrap();
        let v0 = s.version().unwrap();
        s.insert_key(&key("k1")).unwrap();
        assert!(s.version().unwrap() > v0);
        assert!(s.update_key("k1", Some("pro"), Some(KeyStatus::Revoked)).unwrap());
        assert!(!s.update_key("nope", Some("pro"), None).unwrap());
        s.put_plan("gold", "{\"throttle\":null}").unwrap();
        assert_eq!(s.add_quota_usage(&[("k1".into(), 86_400, 40)]).unwrap(), vec![("k1".to_string(), 86_400, 40)]);
        assert_eq!(s.add_quota_usage(&[("k1".into(), 86_400, 2)]).unwrap()[0].2, 42, "deltas add up");
        assert_eq!(s.add_quota_usage(&[("k1".into(), 0, 5)]).unwrap()[0], ("k1".to_string(), 86_400, 42), "late delta");
        drop(s);
        let s = SqliteStore::open(&path).unwrap();
        let keys = s.keys().unwrap();
        assert_eq!((keys[0].plan.as_str(), keys[0].status), ("pro", KeyStatus::Revoked));
        assert_eq!(keys[0].hash, [7; 32]);
        assert_eq!(s.plans().unwrap(), vec![("gold".to_string(), "{\"throttle\":null}".to_string())]);
        assert_eq!(s.quota_usage().unwrap(), vec![("k1".to_string(), 86_400, 42)]);
        assert!(s.delete_plan("gold").unwrap());
        assert!(!s.delete_plan("gold").unwrap());
    }

    #[test]
    fn duplicate_key_ids_are_refused() {
        let s = SqliteStore::memory().unwrap();
        s.insert_key(&key("k1")).unwrap();
        assert!(s.insert_key(&key("k1")).is_err());
    }
}
