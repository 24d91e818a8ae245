//! The `external` method: an HTTP service decides (like an AWS Lambda authorizer).
//!
//! The gateway POSTs JSON with the parts the authorizer is configured to see:
//! `{"headers": {"authorization": "..."}, "method": "GET", "path": "/x", "query": "a=1",
//! "client_ip": "192.0.2.1"}` and expects `{"allow": true, "principal": "u1", "scopes":
//! ["a"], "tenant": "t", "context": {...}}` with status 200 (`allow` is required and must be
//! a boolean; the rest is optional; `context` is what route `claims` are matched against).
//!
//! Decisions are cached under the SHA-256 of that exact JSON, so the raw token is never a
//! cache key and different inputs never share a decision; allows for `cache_ttl`, denials for
//! the shorter `negative_ttl`. `DELETE /api/v1/auth-cache` drops every decision, or those of
//! one principal — the fired-employee case. A call that fails (timeout, refused, non-200,
//! malformed answer) is `on_error`: deny (503 `auth.unavailable`) unless configured to allow.

use crate::config::model::OnError;
use crate::outbound::{self, Target};
use crate::pipeline::RequestCtx;
use bytes::Bytes;
use http::HeaderName;
use moka::sync::Cache;
use serde_json::{Map, Value, json};
use sha2::Digest;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest authorizer answer read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Settings that identify an authorizer; a reload that keeps them keeps the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalSettings {
    /// Where decisions are asked.
    pub target: Target,
    /// CA bundle, when not the system roots.
    pub ca: Option<std::path::PathBuf>,
    /// Deadline of one call.
    pub timeout: Duration,
    /// Identity-source headers sent.
    pub send_headers: Vec<HeaderName>,
    /// Send `method`, `path`, `query`, `client_ip`.
    pub send_method: bool,
    /// Send the path.
    pub send_path: bool,
    /// Send the query string.
    pub send_query: bool,
    /// Send the client IP.
    pub send_client_ip: bool,
    /// Allow lifetime in the cache (zero: no cache).
    pub cache_ttl: Duration,
    /// Deny lifetime in the cache.
    pub negative_ttl: Duration,
    /// Cache capacity.
    pub cache_entries: u64,
    /// What a failed call means.
    pub on_error: OnError,
}

/// An authorizer's answer.
#[derive(Debug, Clone, Default)]
pub struct Decision {
    /// Let the request through.
    pub allow: bool,
    /// Principal, scopes, tenant; `context` is what route `claims` are matched against.
    pub id: Arc<super::Identity>,
}

/// Why no allow came back.
#[derive(Debug)]
pub enum AuthzError {
    /// None of the identity-source headers was sent.
    Missing,
    /// The authorizer said no.
    Denied,
    /// The authorizer could not be asked, and `on_error` is deny.
    Unavailable(String),
}

struct TtlByDecision {
    allow: Duration,
    deny: Duration,
}

impl moka::Expiry<[u8; 32], Arc<Decision>> for TtlByDecision {
    fn expire_after_create(&self, _: &[u8; 32], d: &Arc<Decision>, _: Instant) -> Option<Duration> {
        Some(if d.allow { self.allow } else { self.deny })
    }
}

/// A configured authorizer with its decision cache.
pub struct Authorizer {
    /// Config name.
    pub name: Arc<str>,
    /// How it is called and cached.
    pub settings: ExternalSettings,
    tls: Arc<rustls::ClientConfig>,
    cache: Option<Cache<[u8; 32], Arc<Decision>>>,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer").field("name", &self.name).field("settings", &self.settings).finish_non_exhaustive()
    }
}

fn string(v: Option<&Value>, what: &str) -> Result<Option<String>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{what} is not a string")),
    }
}

/// Reads an authorizer's answer strictly: anything unexpected is an error, never an allow.
pub fn parse_answer(body: &[u8]) -> Result<Decision, String> {
    let v: Map<String, Value> =
        serde_json::from_slice(body).map_err(|e| format!("answer is not a JSON object: {e}"))?;
    let allow = v.get("allow").and_then(Value::as_bool).ok_or("answer has no boolean allow")?;
    let scopes = match v.get("scopes") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => s.split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect(),
        Some(Value::Array(list)) => list
            .iter()
            .map(|s| s.as_str().map(str::to_string).ok_or("scopes holds a non-string"))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("scopes is not a list".into()),
    };
    let context = match v.get("context") {
        None | Some(Value::Null) => Arc::new(Map::new()),
        Some(Value::Object(m)) => Arc::new(m.clone()),
        Some(_) => return Err("context is not an object".into()),
    };
    let principal = string(v.get("principal"), "principal")?;
    let tenant = string(v.get("tenant"), "tenant")?;
    let id = super::Identity::new(principal, scopes, tenant, context);
    if !id.names_fit_headers() {
        return Err("principal or tenant cannot be sent in a header".into());
    }
    Ok(Decision { allow, id: Arc::new(id) })
}

impl Authorizer {
    /// A new authorizer with an empty cache.
    pub fn new(name: &str, settings: ExternalSettings) -> Result<Authorizer, String> {
        let tls = outbound::tls_config(settings.ca.as_deref())?;
        let cache = (!settings.cache_ttl.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(settings.cache_entries)
                .expire_after(TtlByDecision { allow: settings.cache_ttl, deny: settings.negative_ttl })
                .support_invalidation_closures()
                .build()
        });
        Ok(Authorizer { name: Arc::from(name), settings, tls, cache })
    }

    /// The request the authorizer sees, or `None` when no identity source was sent.
    pub fn question(&self, parts: &http::request::Parts, path: &str, client_ip: std::net::IpAddr) -> Option<Vec<u8>> {
        let s = &self.settings;
        let mut headers = Map::new();
        for name in &s.send_headers {
            let values: Vec<String> = parts
                .headers
                .get_all(name)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect();
            if !values.is_empty() {
                headers.insert(name.as_str().to_string(), json!(values.join(", ")));
            }
        }
        if headers.is_empty() {
            return None;
        }
        let mut q = Map::new();
        q.insert("headers".into(), Value::Object(headers));
        if s.send_method {
            q.insert("method".into(), json!(parts.method.as_str()));
        }
        if s.send_path {
            q.insert("path".into(), json!(path));
        }
        if s.send_query {
            q.insert("query".into(), json!(parts.uri.query().unwrap_or("")));
        }
        if s.send_client_ip {
            q.insert("client_ip".into(), json!(client_ip.to_string()));
        }
        serde_json::to_vec(&Value::Object(q)).ok()
    }

    /// Asks (or reuses a cached decision). An allow comes back as `Ok`.
    pub async fn decide(&self, ctx: &RequestCtx) -> Result<Arc<Decision>, AuthzError> {
        let question = self.question(&ctx.parts, &ctx.path, ctx.client_ip).ok_or(AuthzError::Missing)?;
        let (key, cached) = self.cached(&question);
        let metrics = &ctx.gw.metrics;
        let (decision, source) = match cached {
            Some(d) => (d, "cache"),
            None => {
                let s = &self.settings;
                let answer =
                    outbound::post_json(&s.target, &self.tls, Bytes::from(question), s.timeout, MAX_ANSWER_BYTES)
                        .await
                        .and_then(|body| parse_answer(&body));
                match answer {
                    Ok(d) => {
                        let d = Arc::new(d);
                        self.remember(key, d.clone());
                        (d, "call")
                    }
                    Err(e) => {
                        metrics.authorizer_decision(&self.name, "call", "error");
                        return match s.on_error {
                            OnError::Deny => Err(AuthzError::Unavailable(e)),
                            OnError::Allow => {
                                tracing::error!(authorizer = %self.name, "authorizer failed, request let through (on_error: allow): {e}");
                                Ok(Arc::new(Decision { allow: true, ..Decision::default() }))
                            }
                        };
                    }
                }
            }
        };
        metrics.authorizer_decision(&self.name, source, if decision.allow { "allow" } else { "deny" });
        if decision.allow { Ok(decision) } else { Err(AuthzError::Denied) }
    }

    /// The cache key of a question and the decision cached under it.
    pub fn cached(&self, question: &[u8]) -> ([u8; 32], Option<Arc<Decision>>) {
        let key: [u8; 32] = sha2::Sha256::digest(question).into();
        (key, self.cache.as_ref().and_then(|c| c.get(&key)))
    }

    /// Caches a decision (for its allow or deny lifetime).
    pub fn remember(&self, key: [u8; 32], decision: Arc<Decision>) {
        if let Some(c) = &self.cache {
            c.insert(key, decision);
        }
    }

    /// Drops cached decisions: all, or those naming `principal`.
    pub fn flush(&self, principal: Option<&str>) {
        let Some(cache) = &self.cache else { return };
        match principal {
            None => cache.invalidate_all(),
            Some(p) => {
                let p = p.to_string();
                if cache.invalidate_entries_if(move |_, d| d.id.subject.as_deref() == Some(p.as_str())).is_err() {
                    cache.invalidate_all();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_strictly() {
        let d = parse_answer(br#"{"allow":true,"principal":"u1","scopes":"a b","tenant":"t","context":{"g":"x"}}"#)
            .unwrap();
        assert!(d.allow);
        assert_eq!((d.id.subject.as_deref(), d.id.scopes.len(), d.id.tenant.as_deref()), (Some("u1"), 2, Some("t")));
        for bad in [
            &br#"{"allow":"true"}"#[..],
            br#"{"principal":"u1"}"#,
            br#"[true]"#,
            br#"{"allow":true,"scopes":5}"#,
            b"{\"allow\":true,\"principal\":\"a\\nb\"}",
            b"",
        ] {
            assert!(parse_answer(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
