//! Admin API for API keys, plans and usage (all behind the admin token).
//!
//! Keys are shown once, in the answer to their creation. Changes take effect on this node at
//! once and on others sharing the store within a second (they poll its change counter).

#![allow(clippy::result_large_err)] // the Err side is a response the handler returns at once

use super::{problem, refuse};
use crate::keys::{Keys, generate, quota};
use crate::state::Gateway;
use crate::store::KeyStatus;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

pub(super) fn routes() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/api/v1/keys", get(list_keys).post(create_key))
        .route("/api/v1/keys/{id}", get(get_key).patch(update_key).delete(revoke_key))
        .route("/api/v1/usage/{id}", get(usage))
        .route("/api/v1/plans", get(list_plans))
        .route("/api/v1/plans/{name}", axum::routing::put(put_plan).delete(delete_plan))
}

/// Checks the token and that keys are enabled; returns the key state.
fn keys_or_refuse(gw: &Gateway, headers: &HeaderMap) -> Result<Arc<Keys>, Response> {
    if let Some(r) = refuse(gw, headers) {
        return Err(r);
    }
    gw.keys.clone().ok_or_else(|| {
        problem(StatusCode::NOT_FOUND, "admin.no_store", "No key store: set state.store or use auth.api_key on a route")
    })
}

/// Runs store work off the async threads, then rebuilds the caches.
async fn write<T: Send + 'static>(
    gw: &Arc<Gateway>,
    keys: Arc<Keys>,
    f: impl FnOnce(&Keys) -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, Response> {
    let rt = gw.runtime.load_full();
    let done = tokio::task::spawn_blocking(move || {
        let out = f(&keys)?;
        keys.refresh(&rt)?;
        Ok::<T, crate::store::StoreError>(out)
    })
    .await;
    match done {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            tracing::error!("admin store write failed: {e}");
            Err(problem(StatusCode::SERVICE_UNAVAILABLE, "admin.store_failed", "The key store failed"))
        }
        Err(_) => Err(problem(StatusCode::INTERNAL_SERVER_ERROR, "internal.error", "Internal error")),
    }
}

fn now_unix(gw: &Gateway) -> i64 {
    gw.wall_time(gw.clock.now()).duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

fn key_json(e: &crate::keys::KeyEntry) -> serde_json::Value {
    serde_json::json!({
        "id": &*e.id,
        "name": e.name,
        "plan": &*e.plan,
        "status": e.status.as_str(),
        "created_at": crate::observe::access_log::rfc3339(UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(e.created_at).unwrap_or(0))),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKeyBody {
    name: String,
    plan: String,
}

async fn create_key(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let keys = match keys_or_refuse(&gw, &headers) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let Ok(req) = serde_json::from_slice::<NewKeyBody>(&body) else {
        return problem(StatusCode::BAD_REQUEST, "admin.bad_request", "Expected {\"name\": ..., \"plan\": ...}");
    };
    if req.name.trim().is_empty() || req.name.len() > 200 {
        return problem(StatusCode::BAD_REQUEST, "admin.bad_request", "name must be 1 to 200 characters");
    }
    if keys.plans.load().get(&req.plan).is_none() {
        return problem(StatusCode::BAD_REQUEST, "admin.unknown_plan", "No such plan");
    }
    let new = generate(req.name.trim(), &req.plan, now_unix(&gw));
    let record = new.record.clone();
    if let Err(r) = write(&gw, keys.clone(), move |k| k.store.insert_key(&record)).await {
        return r;
    }
    tracing::info!(key_id = %new.record.id, plan = %new.record.plan, "API key created through the admin API");
    let body = serde_json::json!({
        "id": new.record.id,
        "key": new.key,
        "name": new.record.name,
        "plan": new.record.plan,
        "status": "active",
        "note": "the key is shown only now; store it safely",
    });
    (StatusCode::CREATED, axum::Json(body)).into_response()
}

async fn list_keys(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    let keys = match keys_or_refuse(&gw, &headers) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let index = keys.index.load();
    let mut list: Vec<_> = index.entries().collect();
    list.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    axum::Json(serde_json::json!({ "keys": list.iter().map(|e| key_json(e)).collect::<Vec<_>>() })).into_response()
}

async fn get_key(State(gw): State<Arc<Gateway>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let keys = match keys_or_refuse(&gw, &headers) {
        Ok(k) => k,
        Err(r) => return r,
    };
    match keys.index.load().get(&id) {
        Some(e) => axum::Json(key_json(e)).into_response(),
        None => problem(StatusCode::NOT_FOUND, "admin.unknown_key", "No such key"),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyChange {
    #[serde(default)]
    plan: Option<String>,
    #[serde(default)]
    status: Option<String>,
}

async fn update_key(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let keys = match keys_or_refuse(&gw, &headers) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let Ok(change) = serde_json::from_slice::<KeyChange>(&body) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "admin.bad_request",
            "Expected {\"plan\": ..., \"status\": active|disabled|revoked}",
        );
    };
    let status = match change.status.as_deref().map(KeyStatus::parse) {
        Some(None) => {
            return problem(StatusCode::BAD_REQUEST, "admin.bad_request", "status must be active, disabled or revoked");
        }
        Some(s) => s,
        None => None,
    };
    let Some(current) = keys.index.load().get(&id).cloned() else {
        return problem(StatusCode::NOT_FOUND, "admin.unknown_key", "No such key");
    };
    if current.status == KeyStatus::Revoked && status.is_some_and(|s| s != KeyStatus::Revoked) {
        return problem(StatusCode::CONFLICT, "admin.key_revoked", "A revoked key stays revoked: create a new one");
    }
    if let Some(p) = &change.plan
        && keys.plans.load().get(p).is_none()
    {
        return problem(StatusCode::BAD_REQUEST, "admin.unknown_plan", "No such plan");
    }
    let (id2, plan) = (id.clone(), change.plan.clone());
    if let Err(r) = write(&gw, keys.clone(), move |k| k.store.update_key(&id2, plan.as_deref(), status)).await {
        return r;
    }
    tracing::info!(key_id = %id, plan = ?change.plan, status = ?change.status, "API key changed through the admin API");
    match keys.index.load().get(&id) {
        Some(e) => axum::Json(key_json(e)).into_response(),
        None => problem(StatusCode::NOT_FOUND, "admin.unknown_key", "No such key"),
    }
}

async fn revoke_key(State(gw): State<Arc<Gateway>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let keys = match keys_or_refuse(&gw, &headers) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let id2 = id.clone();
    match write(&gw, keys, move |k| k.store.update_key(&id2, None, Some(KeyStatus::Revoked))).await {
        Ok(true) => {
            tracing::info!(key_id = %id, "API key revoked through the admin API");
            axum::Json(serde_json::json!({ "id": id, "status": "revoked" })).into_response()
        }
        Ok(false) => problem(StatusCode::NOT_FOUND, "admin.unknown_key", "No such key"),
        Err(r) => r,
    }
}

async fn usage(State(gw): State<Arc<Gateway>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let keys = match keys_or_refuse(&gw, &headers) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let Some(key) = keys.index.load().get(&id).cloned() else {
        return problem(StatusCode::NOT_FOUND, "admin.unknown_key", "No such key");
    };
    let plan = keys.plans.load().get(&key.plan).cloned();
    let quota = plan.as_ref().and_then(|p| p.quota.clone()).map(|q| {
        let now = now_unix(&gw);
        let (start, end) = quota::bounds(now, q.period, q.offset);
        let used = key.quota.used(start);
        let at = |t: i64| {
            crate::observe::access_log::rfc3339(
                UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(t).unwrap_or(0)),
            )
        };
        serde_json::json!({
            "limit": q.limit,
            "used": used,
            "remaining": q.limit.saturating_sub(used),
            "period": q.period.as_str(),
            "period_start": at(start),
            "resets_at": at(end),
        })
    });
    axum::Json(serde_json::json!({ "key_id": &*key.id, "plan": &*key.plan, "quota": quota })).into_response()
}

async fn list_plans(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    let keys = match keys_or_refuse(&gw, &headers) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let plans = keys.plans.load();
    let index = keys.index.load();
    let list: Vec<_> = plans
        .all()
        .into_iter()
        .map(|p| {
            serde_json::json!({
                "name": &*p.name,
                "source": if p.from_config { "config" } else { "api" },
                "keys": index.on_plan(&p.name),
                "plan": p.spec,
            })
        })
        .collect();
    axum::Json(serde_json::json!({ "plans": list })).into_response()
}

async fn put_plan(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let keys = match keys_or_refuse(&gw, &headers) {
        Ok(k) => k,
        Err(r) => return r,
    };
    if keys.plans.load().get(&name).is_some_and(|p| p.from_config) {
        return problem(
            StatusCode::CONFLICT,
            "admin.plan_in_config",
            "This plan is defined in the config file: change it there",
        );
    }
    if name.is_empty() || name.len() > 128 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return problem(
            StatusCode::BAD_REQUEST,
            "admin.bad_request",
            "Plan names are letters, digits, '-', '_' or '.'",
        );
    }
    let spec: crate::config::model::Plan = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => {
            let body = serde_json::json!({ "code": "admin.bad_plan", "status": 400, "errors": [e.to_string()] });
            return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
        }
    };
    let rt = gw.runtime.load();
    let route_names: std::collections::HashSet<&str> = rt.routes.iter().map(|r| &*r.name).collect();
    let problems = crate::keys::plans::plan_problems(&spec, &route_names);
    if !problems.is_empty() {
        let errors: Vec<String> = problems.into_iter().map(|(p, m)| format!("{p}: {m}")).collect();
        let body = serde_json::json!({ "code": "admin.bad_plan", "status": 400, "errors": errors });
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    }
    let json = serde_json::to_string(&spec).unwrap_or_default();
    let n = name.clone();
    if let Err(r) = write(&gw, keys, move |k| k.store.put_plan(&n, &json)).await {
        return r;
    }
    tracing::info!(plan = %name, "plan stored through the admin API");
    axum::Json(serde_json::json!({ "name": name, "source": "api", "plan": spec })).into_response()
}

async fn delete_plan(State(gw): State<Arc<Gateway>>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    let keys = match keys_or_refuse(&gw, &headers) {
        Ok(k) => k,
        Err(r) => return r,
    };
    match keys.plans.load().get(&name) {
        Some(p) if p.from_config => {
            return problem(
                StatusCode::CONFLICT,
                "admin.plan_in_config",
                "This plan is defined in the config file: change it there",
            );
        }
        Some(_) if keys.index.load().on_plan(&name) > 0 => {
            return problem(StatusCode::CONFLICT, "admin.plan_in_use", "Keys are on this plan: move them first");
        }
        _ => {}
    }
    let n = name.clone();
    match write(&gw, keys, move |k| k.store.delete_plan(&n)).await {
        Ok(true) => axum::Json(serde_json::json!({ "deleted": name })).into_response(),
        Ok(false) => problem(StatusCode::NOT_FOUND, "admin.unknown_plan", "No such plan"),
        Err(r) => r,
    }
}
