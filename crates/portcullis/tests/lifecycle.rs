//! Reload, shutdown and connection-level protection.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests: a panic is a failed assertion

use portcullis_testkit::client::{self, Conn, empty, req};
use portcullis_testkit::{GatewayProcess, MockUpstream, Reply, TestGateway, eventually, free_port};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn config(bind: &str, upstream: &str, routes: &str, extra: &str) -> String {
    format!(
        r#"
listeners: [{{ name: public, bind: "{bind}" }}]
log: {{ access: off }}
{extra}
upstreams: {{ up: {{ targets: ["{upstream}"] }} }}
routes:
{routes}
"#
    )
}

const ALL: &str = "  - { name: all, match: { path: \"/*\" }, upstream: up }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_fails_no_request() {
    let a = MockUpstream::with(|_| Reply::ok("a")).await;
    let b = MockUpstream::with(|_| Reply::ok("b")).await;
    const FAST: &str = "defaults: { throttle: { rate: 1000000, burst: 1000000 } }";
    let cfg_a = config("127.0.0.1:0", &a.url(), ALL, FAST);
    let gw = TestGateway::start(&cfg_a).await;
    let addr = gw.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for w in 0..8 {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            // half the workers keep one connection, half open a new one per request
            let mut conn = if w % 2 == 0 { Some(Conn::open(addr).await) } else { None };
            while !stop.load(Ordering::Relaxed) {
                let r = match conn.as_mut() {
                    Some(c) => c.send(req("GET", "/x").body(empty()).unwrap()).await,
                    None => client::send(addr, &Default::default(), req("GET", "/x").body(empty()).unwrap()).await,
                };
                match r {
                    Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    other => {
                        if failed.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("failed: {other:?}");
                        }
                        0
                    }
                };
            }
        }));
    }
    for i in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let target = if i % 2 == 0 { &b } else { &a };
        gw.write_config(&config("127.0.0.1:0", &target.url(), ALL, FAST));
        gw.reload().await.expect("valid reload");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("{ok} requests during 10 reloads, {failed} failed");
    assert_eq!(failed, 0);
    assert!(ok > 100, "load actually ran: {ok}");
    assert!(a.count() > 0 && b.count() > 0, "both configs served");
    assert_eq!(gw.gateway().runtime.load().generation, 11);
}

#[tokio::test]
async fn invalid_reload_keeps_the_old_config() {
    let up = MockUpstream::start().await;
    let gw = TestGateway::start(&config("127.0.0.1:0", &up.url(), ALL, "")).await;
    let bad = config("127.0.0.1:0", &up.url(), "  - { name: all, match: { path: \"/*\" }, upstream: missing }", "");
    let line = bad.lines().position(|l| l.contains("upstream: missing")).unwrap() + 1;
    gw.write_config(&bad);
    let err = gw.reload().await.unwrap_err().to_string();
    assert!(err.contains(&format!("gateway.yaml:{line}: ")), "file:line in the error: {err}");
    assert!(err.contains("\"missing\" is not defined"), "{err}");
    gw.write_config("routes: [ {{{ not yaml");
    let err = gw.reload().await.unwrap_err().to_string();
    assert!(err.contains("gateway.yaml:1:"), "{err}");
    assert_eq!(client::get(gw.addr(), "/still").await.status, 200, "the old snapshot keeps serving");
    assert_eq!(gw.gateway().runtime.load().generation, 1);
    let m = gw.gateway().metrics.encode();
    assert!(m.contains("portcullis_config_reloads_total{result=\"invalid\"} 2"), "{m}");
}

#[tokio::test]
async fn in_flight_requests_finish_on_their_snapshot() {
    let up = MockUpstream::with(|r| {
        if r.uri == "/slow" { Reply::ok("slow").delay(Duration::from_millis(600)) } else { Reply::ok("fast") }
    })
    .await;
    let gw = TestGateway::start(&config("127.0.0.1:0", &up.url(), ALL, "")).await;
    let addr = gw.addr();
    let slow = tokio::spawn(async move { client::get(addr, "/slow").await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    gw.write_config(&config(
        "127.0.0.1:0",
        &up.url(),
        "  - { name: other, match: { path: /other }, upstream: up }",
        "",
    ));
    gw.reload().await.unwrap();
    assert_eq!(client::get(addr, "/slow").await.status, 404, "new requests see the new config");
    let r = slow.await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "slow"), "the in-flight request finished on its snapshot");
}

#[tokio::test]
async fn config_file_changes_are_picked_up() {
    let up = MockUpstream::start().await;
    let gw = TestGateway::start_with(&config("127.0.0.1:0", &up.url(), ALL, ""), true).await;
    assert_eq!(client::get(gw.addr(), "/new").await.status, 200);
    gw.write_config(&config("127.0.0.1:0", &up.url(), "  - { name: only, match: { path: /only }, upstream: up }", ""));
    let addr = gw.addr();
    assert!(client::until_status(addr, "/new", 404, Duration::from_secs(5)).await, "the file change was picked up");
    assert_eq!(client::get(addr, "/only").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_sigterm_drains_the_binary() {
    let up = MockUpstream::with(|r| {
        if r.uri == "/slow" { Reply::ok("done").delay(Duration::from_millis(700)) } else { Reply::ok("ok") }
    })
    .await;
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let proc = GatewayProcess::spawn(env!("CARGO_BIN_EXE_portcullis"), &config(&bind, &up.url(), ALL, ""));
    let addr = bind.parse().unwrap();
    proc.wait_ready(addr).await;
    assert_eq!(client::get(addr, "/a").await.status, 200);

    std::fs::write(
        proc.dir.path().join("gateway.yaml"),
        config(&bind, &up.url(), "  - { name: b, match: { path: /b }, upstream: up }", ""),
    )
    .unwrap();
    proc.signal("HUP");
    assert!(client::until_status(addr, "/a", 404, Duration::from_secs(5)).await, "SIGHUP reloaded the config");

    std::fs::write(proc.dir.path().join("gateway.yaml"), config(&bind, &up.url(), ALL, "")).unwrap();
    proc.signal("HUP");
    assert!(client::until_status(addr, "/slow", 200, Duration::from_secs(5)).await, "reloaded back");
    let slow_seen = || up.requests().iter().filter(|r| r.uri == "/slow").count();
    let before = slow_seen();
    let slow = tokio::spawn(async move { client::get(addr, "/slow").await });
    // TERM only once the request is in flight (it reached the upstream), however slow the machine.
    assert!(eventually(Duration::from_secs(5), || slow_seen() > before).await);
    proc.signal("TERM");
    let r = slow.await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "done"), "the in-flight request finished during shutdown");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "no new connections after SIGTERM");
}

#[tokio::test]
async fn slowloris_is_closed_by_the_header_timeout_while_others_are_served() {
    let up = MockUpstream::start().await;
    let gw = TestGateway::start(&config("127.0.0.1:0", &up.url(), ALL, "limits: { header_timeout: 500ms }")).await;
    let addr = gw.addr();
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let dripper = tokio::spawn(async move {
        for b in b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Drip: " {
            if slow.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut buf = [0u8; 1024];
        let closed =
            matches!(tokio::time::timeout(Duration::from_secs(10), slow.read(&mut buf)).await, Ok(Ok(_) | Err(_)));
        (closed, started.elapsed())
    });
    for _ in 0..5 {
        assert_eq!(client::get(addr, "/other").await.status, 200, "other clients are served meanwhile");
    }
    let (closed, after) = dripper.await.unwrap();
    assert!(closed, "the dripping connection was closed");
    assert!(after < Duration::from_secs(4), "closed by the 500ms header timeout, after {after:?}");
    assert_eq!(up.requests().iter().filter(|r| r.uri == "/").count(), 0);
}

#[tokio::test]
async fn idle_client_that_sends_nothing_is_closed() {
    let up = MockUpstream::start().await;
    let gw = TestGateway::start(&config("127.0.0.1:0", &up.url(), ALL, "limits: { header_timeout: 300ms }")).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let mut buf = [0u8; 16];
    let r = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await;
    assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "closed without a byte sent: {r:?}");
}

#[tokio::test]
async fn per_ip_connection_cap() {
    let up = MockUpstream::start().await;
    let gw = TestGateway::start(&config("127.0.0.1:0", &up.url(), ALL, "limits: { max_conns_per_ip: 3 }")).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = Conn::open(gw.addr()).await;
        assert_eq!(c.send(req("GET", "/").body(empty()).unwrap()).await.unwrap().status, 200);
        held.push(c);
    }
    let mut extra = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let _ = extra.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    let mut buf = [0u8; 64];
    let r = tokio::time::timeout(Duration::from_secs(3), extra.read(&mut buf)).await;
    assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "the 4th connection is closed: {r:?}");
    assert!(gw.gateway().metrics.encode().contains("portcullis_connections_refused_total{reason=\"per_ip_limit\"} 1"));
    drop(held);
    assert!(eventually(Duration::from_secs(3), || gw.gateway().conns.total() == 0).await);
    assert_eq!(client::get(gw.addr(), "/").await.status, 200, "slots come back when connections close");
}
