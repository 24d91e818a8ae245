//! Route isolation: every route has its own bucket; the global ceiling is an outer limit.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests: a panic is a failed assertion

use portcullis_testkit::client::{self, Conn, empty, req};
use portcullis_testkit::{MockUpstream, TestGateway};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

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

/// Issue 3's blast-radius test: `public-about` (rate 50) flooded at well over 20x its limit
/// from many connections while a steady client calls `checkout` (rate 500) under its limit.
/// Every checkout succeeds, the flood gets 429s, and with a global ceiling set the flood
/// cannot take more of it than its own route admits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blast_radius_of_a_flood_is_its_own_route() {
    let up = MockUpstream::start().await;
    let gw = TestGateway::start(&format!(
        r#"
listeners: [{{ name: public, bind: "127.0.0.1:0" }}]
log: {{ access: off }}
limits: {{ max_conns_per_ip: 1000 }}
global: {{ throttle: {{ rate: 120, burst: 120 }} }}
upstreams: {{ up: {{ targets: ["{}"] }} }}
routes:
  - {{ name: public-about, match: {{ path: /about }}, upstream: up, throttle: {{ rate: 50, burst: 50 }} }}
  - {{ name: checkout, match: {{ path: /checkout }}, upstream: up, throttle: {{ rate: 500, burst: 500 }} }}
"#,
        up.url()
    ))
    .await;
    let addr = gw.addr();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood_ok = Arc::new(AtomicUsize::new(0));
    let flood_429 = Arc::new(AtomicUsize::new(0));
    let mut flood = Vec::new();
    for _ in 0..16 {
        let (stop, ok, limited) = (stop.clone(), flood_ok.clone(), flood_429.clone());
        flood.push(tokio::spawn(async move {
            let mut c = Conn::open(addr).await;
            while !stop.load(Ordering::Relaxed) {
                match c.send(req("GET", "/about").body(empty()).unwrap()).await.map(|r| r.status) {
                    Ok(200) => ok.fetch_add(1, Ordering::Relaxed),
                    Ok(429) => limited.fetch_add(1, Ordering::Relaxed),
                    other => panic!("flood got {other:?}"),
                };
            }
        }));
    }
    let started = std::time::Instant::now();
    let mut checkout = Conn::open(addr).await;
    let mut checkouts = 0;
    while started.elapsed() < Duration::from_secs(2) {
        let r = checkout.send(req("GET", "/checkout").body(empty()).unwrap()).await.unwrap();
        assert_eq!(r.status, 200, "checkout refused during the flood: {}", r.text());
        checkouts += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for f in flood {
        f.await.unwrap();
    }
    let (ok, limited) = (flood_ok.load(Ordering::Relaxed), flood_429.load(Ordering::Relaxed));
    let secs = started.elapsed().as_secs_f64();
    eprintln!("flood: {ok} admitted, {limited} refused in {secs:.1}s; checkout: {checkouts} all admitted");
    assert!((ok + limited) as f64 >= 20.0 * 50.0 * secs * 0.5, "the flood ran at well over 10x the limit");
    assert!(ok as f64 <= 50.0 + 50.0 * secs + 5.0, "the flood got no more than its own bucket ({ok})");
    assert!(checkouts >= 30);
}

#[tokio::test]
async fn buckets_partitioned_per_ip_and_per_header() {
    let up = MockUpstream::start().await;
    let gw = TestGateway::start(&format!(
        r#"
listeners: [{{ name: public, bind: "127.0.0.1:0" }}]
clients: {{ trusted_proxies: [127.0.0.0/8] }}
log: {{ access: off }}
upstreams: {{ up: {{ targets: ["{}"] }} }}
routes:
  - {{ name: by-ip, match: {{ path: /ip }}, upstream: up, throttle: {{ rate: 0.001, burst: 2, per: ip }} }}
  - {{ name: by-tenant, match: {{ path: /tenant }}, upstream: up, throttle: {{ rate: 0.001, burst: 2, per: "header:x-tenant" }}, hide_headers: true }}
"#,
        up.url()
    ))
    .await;
    let send = |path: &'static str, header: (&'static str, &'static str)| {
        let addr = gw.addr();
        async move {
            client::send(addr, &Default::default(), req("GET", path).header(header.0, header.1).body(empty()).unwrap())
                .await
                .unwrap()
        }
    };
    let a = ("x-forwarded-for", "198.51.100.1");
    let b = ("x-forwarded-for", "198.51.100.2");
    assert_eq!(send("/ip", a).await.status, 200);
    assert_eq!(send("/ip", a).await.status, 200);
    assert_eq!(send("/ip", a).await.status, 429);
    assert_eq!(send("/ip", b).await.status, 200, "another client has its own bucket");
    let r = send("/ip", b).await;
    assert_eq!(r.header("ratelimit").as_deref(), Some("\"route\";r=0;t=0"));

    let t1 = ("x-tenant", "acme");
    let t2 = ("x-tenant", "globex");
    assert_eq!(send("/tenant", t1).await.status, 200);
    assert_eq!(send("/tenant", t1).await.status, 200);
    let r = send("/tenant", t1).await;
    assert_eq!(r.status, 429);
    assert!(r.header("ratelimit").is_none() && r.header("ratelimit-policy").is_none(), "hide_headers");
    assert!(r.header("retry-after").is_some(), "Retry-After stays");
    assert_eq!(send("/tenant", t2).await.status, 200);
}

#[test]
fn misplaced_partitions_and_bad_rules_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        "listeners: [{ name: p, bind: \"127.0.0.1:0\" }]\nglobal: { throttle: { rate: 10, burst: 10, per: ip } }\nupstreams: { u: { targets: [\"http://127.0.0.1:1\"] } }\nroutes:\n  - { name: r, match: { path: / }, upstream: u, throttle: { rate: 1, burst: 1, per: key } }\nip_rules:\n  - { name: a, limit: 10, window: 3m }\n  - { name: b, limit: 10, window: 1m, scope: { routes: [nope] } }\n",
    )
    .unwrap();
    let err = portcullis::config::load_runtime(&path, None).unwrap_err().to_string();
    assert!(err.contains("c.yaml:5:") && err.contains("per: key needs the route to require a key"), "{err}");
    let path2 = dir.path().join("d.yaml");
    std::fs::write(
        &path2,
        "listeners: [{ name: p, bind: \"127.0.0.1:0\" }]\nglobal: { throttle: { rate: 10, burst: 10, per: ip } }\nupstreams: { u: { targets: [\"http://127.0.0.1:1\"] } }\nroutes:\n  - { name: r, match: { path: / }, upstream: u }\nip_rules:\n  - { name: a, limit: 10, window: 3m }\n  - { name: b, limit: 10, window: 1m, scope: { routes: [nope] } }\n",
    )
    .unwrap();
    let err = portcullis::config::load_runtime(&path2, None).unwrap_err().to_string();
    assert!(err.contains("d.yaml:2:") && err.contains("per is not allowed"), "{err}");
    assert!(err.contains("d.yaml:7:") && err.contains("window must be 1m, 2m, 5m or 10m"), "{err}");
    assert!(err.contains("d.yaml:8:") && err.contains("route \"nope\" is not defined"), "{err}");
}

/// Issue 3 item 8: spellings of one resource cannot multiply its limit. The path is
/// normalized before routing, so they all reach one route and one bucket; `/API/x` is a
/// different resource to a case-sensitive route and does not match it at all.
#[tokio::test]
async fn spellings_of_one_resource_share_one_bucket() {
    let up = MockUpstream::start().await;
    let gw = TestGateway::start(&format!(
        r#"
listeners: [{{ name: public, bind: "127.0.0.1:0" }}]
log: {{ access: off }}
upstreams: {{ up: {{ targets: ["{}"] }} }}
routes: [{{ name: x, match: {{ path: /api/x }}, upstream: up, throttle: {{ rate: 0.001, burst: 4 }} }}]
"#,
        up.url()
    ))
    .await;
    let mut codes = Vec::new();
    for path in ["/api/x", "/api/x/", "/api//x", "/api/./x", "/%61pi/x", "/api/y/../x", "/API/x"] {
        codes.push(client::get(gw.addr(), path).await.status);
    }
    assert_eq!(codes, vec![200, 200, 200, 200, 429, 429, 404]);
    assert_eq!(up.count(), 4);
}
