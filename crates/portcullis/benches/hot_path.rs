//! Pure functions every request goes through. Speed targets live here, not in tests.
#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // fixed benchmark data
use criterion::{Criterion, criterion_group, criterion_main};
use http::Method;
use portcullis::phases::path::normalize;
use portcullis::phases::route::{RouteEntry, Router, Template};
use std::hint::black_box;

fn paths(c: &mut Criterion) {
    c.bench_function("normalize_plain", |b| b.iter(|| black_box(normalize(black_box("/api/v1/orders/12345/items")))));
    c.bench_function("normalize_dirty", |b| {
        b.iter(|| black_box(normalize(black_box("/api//v1/./orders/%61/../12345/items"))))
    });
    c.bench_function("normalize_refused", |b| {
        b.iter(|| black_box(normalize(black_box("/api/v1/..%2f..%2fetc/passwd"))))
    });
}

fn routing(c: &mut Criterion) {
    let specs: Vec<(String, Vec<Method>, Vec<String>)> = (0..200)
        .map(|i| (format!("/svc{i}/orders/{{id}}/items/{{item}}"), vec![Method::GET], Vec::new()))
        .chain((0..50).map(|i| (format!("/static{i}/*"), vec![], vec![format!("host{i}.example.com")])))
        .collect();
    let templates: Vec<Template> =
        specs.iter().map(|s| Template::parse(&s.0).unwrap_or_else(|_| Template::root())).collect();
    let names: Vec<String> = (0..specs.len()).map(|i| format!("r{i}")).collect();
    let entries: Vec<RouteEntry> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| RouteEntry { name: &names[i], hosts: &s.2, methods: &s.1, template: &templates[i] })
        .collect();
    let Ok(router) = Router::build(&entries) else { return };
    c.bench_function("route_250_routes_params", |b| {
        b.iter(|| black_box(router.find(Some("api.example.com"), black_box("/svc150/orders/42/items/7"), &Method::GET)))
    });
    c.bench_function("route_250_routes_host_wildcard", |b| {
        b.iter(|| black_box(router.find(Some("host7.example.com"), black_box("/static7/a/b/c.css"), &Method::GET)))
    });
    c.bench_function("route_not_found", |b| {
        b.iter(|| black_box(router.find(None, black_box("/nope/x"), &Method::GET)))
    });
}

fn misc(c: &mut Criterion) {
    c.bench_function("normalize_host", |b| {
        b.iter(|| black_box(portcullis::phases::hygiene::normalize_host(black_box("Api.Example.com:8443"))))
    });
    c.bench_function("problem_body", |b| {
        b.iter(|| {
            black_box(portcullis::error::problem_body(
                portcullis::error::ErrorKind::RouteLimit,
                black_box("0123456789abcdef0123456789abcdef"),
            ))
        })
    });
    c.bench_function("new_request_id", |b| b.iter(|| black_box(portcullis::headers::new_request_id())));

    // API key check: parse, look up by id, SHA-256 (hardware-accelerated where the CPU has
    // SHA extensions), constant-time compare.
    let keys: Vec<_> = (0..10_000).map(|i| portcullis::keys::generate(&format!("k{i}"), "free", 0)).collect();
    let index = portcullis::keys::KeyIndex::build(
        keys.iter().map(|k| k.record.clone()).collect(),
        &Default::default(),
        None,
        &Default::default(),
    );
    let presented = keys[5_000].key.clone();
    c.bench_function("api_key_verify_10k_keys", |b| b.iter(|| black_box(index.verify(black_box(&presented)))));
    c.bench_function("sha256_80_bytes", |b| b.iter(|| black_box(portcullis::keys::hash(black_box(&presented)))));
}

criterion_group!(benches, paths, routing, misc);
criterion_main!(benches);
