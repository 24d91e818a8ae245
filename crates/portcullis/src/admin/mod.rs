//! The admin listener: `/healthz`, `/readyz` and `/metrics` without credentials (bind it to
//! loopback or a management network), and `/api/v1/*` behind a bearer token whose SHA-256
//! is `admin.token_sha256`. Without that setting the API answers 403.

use crate::cluster::events::{Event, broadcast};
use crate::state::Gateway;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::net::TcpListener;
use tokio::sync::watch;

mod keys;

/// Serves until `stop` turns true.
pub async fn serve(gw: Arc<Gateway>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let app = router(gw);
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
        tracing::error!("admin listener failed: {e}");
    }
}

/// The admin routes.
pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/reload", post(reload))
        .route("/api/v1/config", get(config_summary))
        .route("/api/v1/blocked-ips", get(blocked_ips))
        .route("/api/v1/blocked-ips/{ip}", axum::routing::delete(unblock_ip))
        .route("/api/v1/auth-cache", axum::routing::delete(flush_auth_cache))
        .route("/api/v1/cluster", get(cluster_status))
        .merge(keys::routes())
        .with_state(gw)
}

#[derive(serde::Deserialize)]
struct FlushQuery {
    principal: Option<String>,
}

/// Drops cached authorizer decisions: all of them, or (`?principal=`) one caller's. Takes
/// effect for the next request.
async fn flush_auth_cache(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<FlushQuery>,
) -> Response {
    if let Some(refusal) = refuse(&gw, &headers) {
        return refusal;
    }
    let event = Event::AuthCache(q.principal.clone());
    let authorizers = event.apply(&gw).await;
    broadcast(&gw, &event).await;
    tracing::info!(principal = ?q.principal, "authorizer decision cache flushed");
    let body = serde_json::json!({
        "flushed": q.principal.as_deref().map_or("all", |_| "principal"),
        "principal": q.principal,
        "authorizers": authorizers,
    });
    ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

async fn readyz(State(gw): State<Arc<Gateway>>) -> Response {
    if gw.shutting_down.load(Ordering::Acquire) {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else {
        "ready\n".into_response()
    }
}

async fn metrics(State(gw): State<Arc<Gateway>>) -> Response {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], gw.metrics.encode())
        .into_response()
}

pub(crate) fn problem(status: StatusCode, code: &'static str, title: &'static str) -> Response {
    let body = serde_json::json!({
        "type": format!("urn:portcullis:problem:{code}"),
        "title": title,
        "status": status.as_u16(),
        "code": code,
    });
    (status, [(header::CONTENT_TYPE, "application/problem+json")], body.to_string()).into_response()
}

/// Checks `Authorization: Bearer <token>` against the configured SHA-256, in constant time.
/// Returns the refusal to send, if any.
pub(crate) fn refuse(gw: &Gateway, headers: &HeaderMap) -> Option<Response> {
    use sha2::Digest;
    use subtle::ConstantTimeEq;
    let rt = gw.runtime.load();
    let Some(expected) = rt.admin.as_ref().and_then(|a| a.token_sha256) else {
        return Some(problem(StatusCode::FORBIDDEN, "admin.disabled", "Admin API disabled: set admin.token_sha256"));
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    let ok = token.is_some_and(|t| bool::from(sha2::Sha256::digest(t.as_bytes()).as_slice().ct_eq(&expected)));
    (!ok).then(|| problem(StatusCode::UNAUTHORIZED, "admin.unauthorized", "Bearer token required"))
}

async fn reload(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    if let Some(r) = refuse(&gw, &headers) {
        return r;
    }
    match gw.reload().await {
        Ok(generation) => {
            broadcast(&gw, &Event::Reload).await;
            axum::Json(serde_json::json!({ "status": "reloaded", "generation": generation })).into_response()
        }
        Err(e) => {
            let body = serde_json::json!({
                "type": "urn:portcullis:problem:config.invalid",
                "title": "Configuration refused; the previous one keeps serving",
                "status": 422,
                "code": "config.invalid",
                "errors": e.0.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            });
            (StatusCode::UNPROCESSABLE_ENTITY, [(header::CONTENT_TYPE, "application/problem+json")], body.to_string())
                .into_response()
        }
    }
}

/// IPs over an IP rule's limit now: address as counted (IPv6 prefixes shown as CIDR), rule,
/// since when, and the current estimated count in the rule's window.
async fn blocked_ips(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    if let Some(r) = refuse(&gw, &headers) {
        return r;
    }
    let rt = gw.runtime.load();
    let now = gw.clock.now();
    let mut out = Vec::new();
    for rule in &rt.ip_rules {
        for (ip, since, rate) in rule.over(now) {
            let shown = match ip {
                std::net::IpAddr::V6(_) if rule.ipv6_prefix < 128 => format!("{ip}/{}", rule.ipv6_prefix),
                _ => ip.to_string(),
            };
            out.push(serde_json::json!({
                "ip": shown,
                "rule": &*rule.name,
                "action": match rule.action { crate::config::model::IpRuleAction::Block => "block", crate::config::model::IpRuleAction::Count => "count" },
                "since": crate::observe::access_log::rfc3339(gw.wall_time(since)),
                "rate": rate,
                "limit": rule.limit(),
                "window_seconds": rule.window().as_secs(),
            }));
        }
    }
    axum::Json(serde_json::json!({ "blocked": out })).into_response()
}

/// Lets an IP in again at once, in every rule.
async fn unblock_ip(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    axum::extract::Path(ip): axum::extract::Path<String>,
) -> Response {
    if let Some(r) = refuse(&gw, &headers) {
        return r;
    }
    let Ok(addr) = ip.trim().parse::<std::net::IpAddr>() else {
        return problem(StatusCode::BAD_REQUEST, "admin.bad_ip", "Not an IP address");
    };
    let event = Event::Unblock(addr);
    let rules = event.apply(&gw).await;
    // In a cluster another node may be the one tracking it: tell them all.
    broadcast(&gw, &event).await;
    if rules.is_empty() && gw.cluster.get().is_none() {
        return problem(StatusCode::NOT_FOUND, "admin.ip_not_tracked", "No rule tracks this address");
    }
    tracing::info!(ip = %addr, ?rules, "IP unblocked through the admin API");
    axum::Json(serde_json::json!({ "unblocked": addr.to_string(), "rules": rules })).into_response()
}

/// This node's view of the cluster: whether Redis answers, the nodes alive, the outages
/// since start, and what shared limits do while Redis is down.
async fn cluster_status(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    if let Some(r) = refuse(&gw, &headers) {
        return r;
    }
    let Some(c) = gw.cluster.get() else {
        return problem(StatusCode::NOT_FOUND, "admin.no_cluster", "No Redis store: this gateway runs alone");
    };
    axum::Json(serde_json::json!({
        "node_id": c.node_id,
        "store_up": c.is_up(),
        "nodes": c.nodes(),
        "outages": c.outages(),
        "on_failure": crate::cluster::on_failure_name(c.on_failure),
        "prefix": c.names.prefix,
    }))
    .into_response()
}

async fn config_summary(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    if let Some(r) = refuse(&gw, &headers) {
        return r;
    }
    let rt = gw.runtime.load();
    let routes: Vec<_> = rt
        .routes
        .iter()
        .map(|r| {
            serde_json::json!({
                "name": &*r.name,
                "upstream": &*r.upstream.name,
                "throttle": { "rate": r.limit.throttle.rate, "burst": r.limit.throttle.burst },
                "max_body_bytes": r.max_body_bytes,
            })
        })
        .collect();
    let upstreams: Vec<_> = rt
        .upstreams
        .values()
        .map(|u| serde_json::json!({ "name": &*u.name, "targets": u.targets.len(), "in_flight": u.inflight() }))
        .collect();
    axum::Json(serde_json::json!({
        "generation": rt.generation,
        "file": rt.loaded.file,
        "routes": routes,
        "upstreams": upstreams,
    }))
    .into_response()
}
