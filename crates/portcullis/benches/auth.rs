//! Per-request cost of authentication: JWT verification per algorithm (parse, signature,
//! claims), and an external-authorizer cache hit (question, SHA-256 key, cache lookup).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::Algorithm;
use portcullis::phases::auth::external::{Authorizer, Decision, ExternalSettings};
use portcullis::phases::auth::jwt::{self, KeySet, Rules};
use portcullis::phases::auth::keys::{from_pem, from_secret};
use portcullis_testkit::tokens::{SigningKey, claims};
use serde_json::json;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

fn rules(alg: Algorithm) -> Rules {
    Rules {
        issuer: "https://id.example.com/".into(),
        audiences: vec!["orders".into()],
        algorithms: vec![alg],
        leeway_secs: 30,
        max_token_bytes: 8192,
        principal_claim: "sub".into(),
        tenant_claim: "tenant".into(),
    }
}

fn jwt_verify(c: &mut Criterion) {
    let secret = b"0123456789abcdef0123456789abcdef";
    let keys = [
        SigningKey::rsa(Algorithm::RS256, None),
        SigningKey::es256(None),
        SigningKey::ed25519(None),
        SigningKey::hmac(Algorithm::HS256, secret),
    ];
    let now = portcullis_testkit::tokens::now();
    for key in &keys {
        let rules = rules(key.alg);
        let verify_key = match key.alg {
            Algorithm::HS256 => from_secret(secret),
            alg => from_pem(key.public_pem.as_bytes(), &[alg]).unwrap(),
        };
        let set = KeySet { keys: vec![verify_key] };
        let token = key.sign(&claims(
            "https://id.example.com/",
            "orders",
            600,
            json!({"scope": "orders:read orders:write", "tenant": "acme"}),
        ));
        let check = |t: &str| {
            let parsed = jwt::parse(t, &rules).unwrap();
            jwt::verify_signature(&parsed, &set).unwrap();
            jwt::check_claims(&parsed, &rules, now as u64).unwrap()
        };
        check(&token);
        c.bench_function(&format!("jwt_verify_{:?}", key.alg), |b| b.iter(|| black_box(check(black_box(&token)))));
    }
}

fn authorizer_cache_hit(c: &mut Criterion) {
    let settings = ExternalSettings {
        target: portcullis::outbound::Target::parse("http://127.0.0.1:9/authorize").unwrap(),
        ca: None,
        timeout: Duration::from_millis(200),
        send_headers: vec![http::header::AUTHORIZATION],
        send_method: true,
        send_path: true,
        send_query: false,
        send_client_ip: false,
        cache_ttl: Duration::from_secs(60),
        negative_ttl: Duration::from_secs(5),
        cache_entries: 100_000,
        on_error: Default::default(),
    };
    let authz = Authorizer::new("authz", settings).unwrap();
    let (mut parts, ()) = http::Request::get("/orders/17")
        .header("authorization", format!("Bearer {}", "x".repeat(600)))
        .body(())
        .unwrap()
        .into_parts();
    parts.headers.insert("accept", http::HeaderValue::from_static("application/json"));
    let ip = "192.0.2.1".parse().unwrap();
    let q = authz.question(&parts, "/orders/17", ip).unwrap();
    let (key, _) = authz.cached(&q);
    let id = portcullis::phases::auth::Identity::new(Some("alice".into()), Vec::new(), None, Arc::default());
    authz.remember(key, Arc::new(Decision { allow: true, id: Arc::new(id) }));
    c.bench_function("authorizer_cache_hit", |b| {
        b.iter(|| {
            let q = authz.question(black_box(&parts), "/orders/17", ip).unwrap();
            black_box(authz.cached(&q).1.unwrap())
        })
    });
}

criterion_group!(benches, jwt_verify, authorizer_cache_hit);
criterion_main!(benches);
