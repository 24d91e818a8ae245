//! `portcullis keys …`: manage API keys in the store named by a config file. Works whether or
//! not the gateway runs; a running gateway sees the change within a second.

use super::{Keys, generate};
use crate::config;
use crate::store::KeyStatus;
use std::path::Path;
use std::sync::Arc;

/// What to do.
#[derive(Debug, Clone)]
pub enum KeysCmd {
    /// Make a key.
    Create {
        /// Who it is for.
        name: String,
        /// Its plan.
        plan: String,
    },
    /// List keys (never the keys themselves).
    List,
    /// Change a key's plan or status.
    Update {
        /// Key id.
        id: String,
        /// New plan.
        plan: Option<String>,
        /// New status.
        status: Option<String>,
    },
    /// Revoke a key for good.
    Revoke {
        /// Key id.
        id: String,
    },
}

fn open(config_path: &Path) -> Result<(Keys, Arc<config::Runtime>), String> {
    let rt = config::load_runtime(config_path, None).map_err(|e| e.to_string())?;
    let url = rt.store.clone().ok_or_else(|| {
        format!(
            "{}: no key store: set state.store, or require keys on a route (auth: {{ api_key: true }})",
            config_path.display()
        )
    })?;
    let base = config_path.parent().map(Path::to_path_buf).unwrap_or_default();
    let store = crate::store::open(&url, &base).map_err(|e| e.to_string())?;
    let keys = Keys::load(store, &rt).map_err(|e| e.to_string())?;
    Ok((keys, Arc::new(rt)))
}

/// Runs a command; returns what to print.
pub fn run(config_path: &Path, cmd: KeysCmd) -> Result<String, String> {
    let (keys, rt) = open(config_path)?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    match cmd {
        KeysCmd::Create { name, plan } => {
            if keys.plans.load().get(&plan).is_none() {
                return Err(format!("no plan {plan:?} (plans: {})", plan_names(&keys)));
            }
            let new = generate(&name, &plan, now);
            keys.store.insert_key(&new.record).map_err(|e| e.to_string())?;
            Ok(format!(
                "key_id: {}\nplan:   {plan}\nname:   {name}\nkey:    {}\n\nThe key is shown only now: give it to {name} and do not keep a copy.\n",
                new.record.id, new.key
            ))
        }
        KeysCmd::List => {
            let mut out = format!("{:<14} {:<10} {:<9} {:<20} name\n", "key_id", "plan", "status", "created");
            for k in keys.store.keys().map_err(|e| e.to_string())? {
                let created = crate::observe::access_log::rfc3339(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(k.created_at).unwrap_or(0)),
                );
                out.push_str(&format!(
                    "{:<14} {:<10} {:<9} {:<20} {}\n",
                    k.id,
                    k.plan,
                    k.status.as_str(),
                    &created[..19.min(created.len())],
                    k.name
                ));
            }
            Ok(out)
        }
        KeysCmd::Update { id, plan, status } => {
            let status = match status.as_deref() {
                Some(s) => Some(KeyStatus::parse(s).ok_or("status must be active, disabled or revoked")?),
                None => None,
            };
            if let Some(p) = &plan
                && keys.plans.load().get(p).is_none()
            {
                return Err(format!("no plan {p:?} (plans: {})", plan_names(&keys)));
            }
            if keys.index.load().get(&id).is_some_and(|k| k.status == KeyStatus::Revoked)
                && status.is_some_and(|s| s != KeyStatus::Revoked)
            {
                return Err("a revoked key stays revoked: create a new one".into());
            }
            match keys.store.update_key(&id, plan.as_deref(), status).map_err(|e| e.to_string())? {
                true => Ok(format!("key {id} updated\n")),
                false => Err(format!("no key {id:?}")),
            }
        }
        KeysCmd::Revoke { id } => {
            match keys.store.update_key(&id, None, Some(KeyStatus::Revoked)).map_err(|e| e.to_string())? {
                true => {
                    let _ = rt;
                    Ok(format!("key {id} revoked\n"))
                }
                false => Err(format!("no key {id:?}")),
            }
        }
    }
}

fn plan_names(keys: &Keys) -> String {
    keys.plans.load().all().iter().map(|p| p.name.to_string()).collect::<Vec<_>>().join(", ")
}
