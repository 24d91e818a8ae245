//! The three requests of ../shared/bench/waf-bench.sh through stock CRS PL1 in blocking mode,
//! in-process: a browser-like GET, a 4 KB JSON POST (~180 values), a blocked SQLi GET.
//! CRS comes from PORTCULLIS_CRS (default ../shared/crs); without it the bench says so and exits.

mod common;

use common::{GET_URI, HEADERS, POST_URI, SQLI_URI, order_json, post_headers, rules, run};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn crs(c: &mut Criterion) {
    let Some(rules) = rules() else { return };
    let body = order_json();
    let post_headers = post_headers();
    assert_eq!(run(&rules, b"GET", GET_URI, &HEADERS, b""), None);
    assert_eq!(run(&rules, b"POST", POST_URI, &post_headers, body.as_bytes()), None);
    assert_eq!(run(&rules, b"GET", SQLI_URI, &HEADERS, b""), Some(403));
    c.bench_function("crs_pl1_get", |b| b.iter(|| run(&rules, b"GET", black_box(GET_URI), &HEADERS, b"")));
    c.bench_function("crs_pl1_json_post_4k", |b| {
        b.iter(|| run(&rules, b"POST", POST_URI, &post_headers, black_box(body.as_bytes())))
    });
    c.bench_function("crs_pl1_sqli_get", |b| b.iter(|| run(&rules, b"GET", black_box(SQLI_URI), &HEADERS, b"")));
}

criterion_group!(benches, crs);
criterion_main!(benches);
