//! Route isolation: every route has its own bucket; the global ceiling is an outer limit.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests: a panic is a failed assertion

use portcullis_testkit::client::{self, Conn, empty, req};
use portcullis_testkit::{MockUpstream, TestGateway};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

fn config(up: &MockUpstream, global: &str) -> String {
    format!(
        r#"
listeners: [{{ name: public, bind: "127.0.0.1:0" }}]
log: {{ access: off }}
{global}
defaults: {{ throttle: {{ rate: 0.001, burst: 5 }} }}
upstreams: {{ up: {{ targets: ["{}"] }} }}
routes:
  - {{ name: about, match: {{ path: /about }}, upstream: up }}
  - {{ name: orders, match: {{ path: /orders }}, upstream: up }}
  - {{ name: login, match: {{ path: /login }}, upstream: up, throttle: {{ rate: 0.001, burst: 2 }} }}
"#,
        up.url()
    )
}

#[tokio::test]
async fn a_flooded_route_does_not_take_others_down() {
    let up = MockUpstream::start().await;
    let gw = TestGateway::start(&config(&up, "")).await;
    let mut c = Conn::open(gw.addr()).await;
    let mut about = Vec::new();
    for _ in 0..8 {
        about.push(c.send(req("GET", "/about").body(empty()).unwrap()).await.unwrap().status);
    }
    assert_eq!(about, vec![200, 200, 200, 200, 200, 429, 429, 429]);
    for _ in 0..5 {
        assert_eq!(client::get(gw.addr(), "/orders").await.status, 200, "orders has its own bucket");
    }
    let r = client::get(gw.addr(), "/login").await;
    assert_eq!(r.status, 200);
    client::get(gw.addr(), "/login").await;
    let r = client::get(gw.addr(), "/login").await;
    assert_eq!(r.status, 429, "a route's own throttle overrides the default");
    let j = r.json();
    assert_eq!(j["code"], "throttle.route_limit");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(retry >= 1);
    assert_eq!(r.header("ratelimit-policy").unwrap(), "\"route\";q=1;w=1000");
    assert_eq!(r.header("ratelimit").unwrap(), format!("\"route\";r=0;t={retry}"));
    assert_eq!(
        up.requests().iter().filter(|r| r.uri == "/about").count(),
        5,
        "rejected requests never reached the upstream"
    );
}

#[tokio::test]
async fn the_global_ceiling_is_a_separate_outer_limit() {
    let up = MockUpstream::start().await;
    let gw = TestGateway::start(&config(&up, "global: { throttle: { rate: 0.001, burst: 7 } }")).await;
    let mut codes = Vec::new();
    for path in ["/about", "/about", "/about", "/about", "/orders", "/orders", "/orders", "/orders"] {
        let r = client::get(gw.addr(), path).await;
        codes.push((r.status, r.json_code()));
    }
    assert_eq!(codes[..7].iter().filter(|c| c.0 == 200).count(), 7);
    assert_eq!(codes[7], (429, "throttle.global_limit".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_admit_exactly_the_burst() {
    let up = MockUpstream::start().await;
    let gw = TestGateway::start(&config(&up, "").replace("burst: 5 }", "burst: 40 }")).await;
    let addr = gw.addr();
    let ok = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let ok = ok.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(addr).await;
            for _ in 0..10 {
                if c.send(req("GET", "/orders").body(empty()).unwrap()).await.unwrap().status == 200 {
                    ok.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(ok.load(Ordering::SeqCst), 40, "200 concurrent requests over 20 connections, burst 40");
    assert_eq!(up.count(), 40);
}

trait Code {
    fn json_code(&self) -> String;
}

impl Code for client::Resp {
    fn json_code(&self) -> String {
        if self.status == 200 { String::new() } else { self.json()["code"].as_str().unwrap_or_default().to_string() }
    }
}
