//! External authorizers: allow and deny, the decision cache (hit, miss, shorter denials,
//! flush of one principal — the fired-employee case), fail-closed on timeout, and the
//! authorizer's identity reaching the backend.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests: a panic is a failed assertion

use portcullis_testkit::client::{self, Opts, empty, req};
use portcullis_testkit::{MockUpstream, Reply, TestGateway};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn token_sha() -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b"admin-t0ken"))
}

/// An authorizer: `Bearer user-<name>` is allowed as `<name>` (unless fired), `Bearer slow`
/// answers too late, anything else is denied. Records the questions it got.
async fn authorizer(fired: Arc<AtomicBool>, questions: Arc<Mutex<Vec<serde_json::Value>>>) -> MockUpstream {
    MockUpstream::with(move |r| {
        let q: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        questions.lock().unwrap().push(q.clone());
        let auth = q["headers"]["authorization"].as_str().unwrap_or_default().to_string();
        if auth == "Bearer slow" {
            return Reply::ok(r#"{"allow":true}"#).delay(Duration::from_secs(2));
        }
        let answer = match auth.strip_prefix("Bearer user-") {
            Some("alice") if fired.load(Ordering::SeqCst) => json!({"allow": false, "principal": "alice"}),
            Some(name) => json!({"allow": true, "principal": name, "scopes": ["orders:read"], "tenant": "acme",
                                 "context": {"dept": "sales"}}),
            None => json!({"allow": false}),
        };
        Reply::ok(answer.to_string()).header("content-type", "application/json")
    })
    .await
}

async fn call(gw: &TestGateway, path: &str, token: Option<&str>) -> client::Resp {
    let mut b = req("GET", path);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    client::send(gw.addr(), &Opts::default(), b.body(empty()).unwrap()).await.unwrap()
}

#[tokio::test]
async fn decisions_are_cached_flushed_and_fail_closed() {
    let fired = Arc::new(AtomicBool::new(false));
    let questions = Arc::new(Mutex::new(Vec::new()));
    let authz = authorizer(fired.clone(), questions.clone()).await;
    let up = MockUpstream::start().await;
    let yaml = format!(
        r#"
listeners: [{{ name: public, bind: "127.0.0.1:0" }}]
admin: {{ bind: "127.0.0.1:0", token_sha256: "{sha}" }}
log: {{ access: off }}
upstreams: {{ up: {{ targets: ["{up}"] }} }}
auth:
  external:
    authz: {{ url: "{authz}/authorize", timeout: 200ms, cache_ttl: 60s, negative_ttl: 5s, send: [method, path] }}
routes:
  - {{ name: orders, match: {{ path: "/orders/*" }}, upstream: up, auth: {{ external: authz, scopes: ["orders:read"] }} }}
  - {{ name: sales, match: {{ path: "/sales" }}, upstream: up, auth: {{ external: authz, claims: {{ dept: sales }} }} }}
"#,
        sha = token_sha(),
        up = up.url(),
        authz = authz.url()
    );
    let gw = TestGateway::start(&yaml).await;

    let r = call(&gw, "/orders/1", None).await;
    assert_eq!((r.status, r.json()["code"].as_str()), (401, Some("auth.missing")));
    assert_eq!(authz.count(), 0, "no identity source, no call");

    // Miss, then hit: one call for two identical requests.
    assert_eq!(call(&gw, "/orders/1", Some("user-alice")).await.status, 200);
    assert_eq!(call(&gw, "/orders/1", Some("user-alice")).await.status, 200);
    assert_eq!(authz.count(), 1, "the second decision came from the cache");
    let got = &up.requests()[0];
    assert_eq!(got.header("x-portcullis-principal").as_deref(), Some("alice"));
    assert_eq!(got.header("x-portcullis-tenant").as_deref(), Some("acme"));
    let q = questions.lock().unwrap()[0].clone();
    assert_eq!(q, json!({"headers": {"authorization": "Bearer user-alice"}, "method": "GET", "path": "/orders/1"}));
    // The path is part of the question, so it is part of the cache key.
    assert_eq!(call(&gw, "/orders/2", Some("user-alice")).await.status, 200);
    assert_eq!(authz.count(), 2);
    assert_eq!(call(&gw, "/sales", Some("user-bob")).await.status, 200, "context matched by route claims");

    // Denials are cached too (for negative_ttl).
    let r = call(&gw, "/orders/1", Some("mallory")).await;
    assert_eq!((r.status, r.json()["code"].as_str()), (403, Some("auth.forbidden")));
    assert_eq!(call(&gw, "/orders/1", Some("mallory")).await.status, 403);
    assert_eq!(authz.count(), 4);

    // Alice is fired: the cached allow still serves her until the cache is flushed for her.
    fired.store(true, Ordering::SeqCst);
    assert_eq!(call(&gw, "/orders/1", Some("user-alice")).await.status, 200, "cached allow");
    let flush = req("DELETE", "/api/v1/auth-cache?principal=alice").header("authorization", "Bearer admin-t0ken");
    let r = client::send(gw.admin(), &Opts::default(), flush.body(empty()).unwrap()).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["principal"], "alice");
    let calls = authz.count();
    assert_eq!(call(&gw, "/orders/1", Some("user-alice")).await.status, 403, "asked again after the flush");
    assert_eq!(authz.count(), calls + 1);
    assert_eq!(call(&gw, "/sales", Some("user-bob")).await.status, 200);
    assert_eq!(authz.count(), calls + 1, "bob's decision survived alice's flush");
    let unauthorized = req("DELETE", "/api/v1/auth-cache").body(empty()).unwrap();
    assert_eq!(client::send(gw.admin(), &Opts::default(), unauthorized).await.unwrap().status, 401);

    // A slow authorizer fails closed.
    let served = up.count();
    let r = call(&gw, "/orders/1", Some("slow")).await;
    assert_eq!((r.status, r.json()["code"].as_str()), (503, Some("auth.unavailable")));
    assert_eq!(up.count(), served, "nothing reached the backend without a decision");
    let m = gw.gateway().metrics.encode();
    assert!(
        m.contains(r#"portcullis_authorizer_decisions_total{authorizer="authz",source="cache",result="allow"}"#),
        "{m}"
    );
    assert!(
        m.contains(r#"portcullis_authorizer_decisions_total{authorizer="authz",source="call",result="error"} 1"#),
        "{m}"
    );
}
