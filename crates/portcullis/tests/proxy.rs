//! Upstream behaviour: timeouts, saturation, failover and ejection, streaming in both
//! directions with bounded memory, WebSocket pass-through, connection reuse.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests: a panic is a failed assertion

use portcullis_testkit::client::{self, Conn, Opts, empty, generated, req};
use portcullis_testkit::{GatewayProcess, MockUpstream, Reply, TestGateway, free_port};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn one_route(upstream: &str, extra: &str) -> String {
    format!(
        r#"
listeners: [{{ name: public, bind: "127.0.0.1:0" }}]
log: {{ access: off }}
upstreams:
  up: {{ targets: [{upstream}] {extra} }}
routes:
  - {{ name: all, match: {{ path: "/*" }}, upstream: up }}
"#
    )
}

#[tokio::test]
async fn slow_upstream_gives_504() {
    let up = MockUpstream::with(|_| Reply::ok("late").delay(Duration::from_secs(5))).await;
    let gw = TestGateway::start(&one_route(&format!("\"{}\"", up.url()), ", timeout: 200ms")).await;
    let started = std::time::Instant::now();
    let r = client::get(gw.addr(), "/slow").await;
    assert_eq!(r.status, 504);
    assert_eq!(r.json()["code"], "upstream.timeout");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(!r.text().contains("127.0.0.1"), "no upstream address in errors");
}

#[tokio::test]
async fn a_stalled_response_body_is_cut() {
    let up = MockUpstream::with(|_| Reply::ok(vec![b'x'; 3000]).chunked(3, Duration::from_secs(5))).await;
    let gw = TestGateway::start(&one_route(&format!("\"{}\"", up.url()), ", timeout: 300ms")).await;
    let r = client::send(gw.addr(), &Opts::default(), req("GET", "/").body(empty()).unwrap()).await;
    assert!(r.is_err() || r.as_ref().is_ok_and(|r| r.body.len() < 3000), "the body must not complete: {r:?}");
}

#[tokio::test]
async fn saturation_gives_503_without_queueing() {
    let up = MockUpstream::with(|_| Reply::ok("held").delay(Duration::from_millis(800))).await;
    let gw = TestGateway::start(&one_route(&format!("\"{}\"", up.url()), ", max_concurrency: 2")).await;
    let addr = gw.addr();
    let tasks: Vec<_> = (0..6).map(|_| tokio::spawn(async move { client::get(addr, "/").await.status })).collect();
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap());
    }
    codes.sort();
    assert_eq!(codes, vec![200, 200, 503, 503, 503, 503]);
    assert!(up.max_inflight() <= 2, "upstream saw {} at once", up.max_inflight());
    let r = client::get(addr, "/").await;
    assert_eq!(r.status, 200, "slots are given back");
}

#[tokio::test]
async fn connect_failure_fails_over_for_idempotent_methods_only() {
    let good = MockUpstream::start().await;
    let dead = format!("http://127.0.0.1:{}", free_port());
    let gw = TestGateway::start(&one_route(
        &format!("\"{dead}\", \"{}\"", good.url()),
        ", retries: 1, connect_timeout: 500ms, eject: { consecutive_failures: 100, duration: 1s }",
    ))
    .await;
    for _ in 0..4 {
        assert_eq!(client::get(gw.addr(), "/").await.status, 200, "GET retried on the live target");
    }
    let mut posts = Vec::new();
    for _ in 0..4 {
        let r =
            client::send(gw.addr(), &Opts::default(), req("POST", "/").body(client::full("x")).unwrap()).await.unwrap();
        posts.push(r.status);
    }
    assert!(posts.contains(&502) && posts.contains(&200), "POST is not retried: {posts:?}");
}

#[tokio::test]
async fn failing_targets_are_ejected() {
    let good = MockUpstream::start().await;
    let dead = format!("http://127.0.0.1:{}", free_port());
    let gw = TestGateway::start(&one_route(
        &format!("\"{dead}\", \"{}\"", good.url()),
        ", retries: 0, eject: { consecutive_failures: 2, duration: 30s }",
    ))
    .await;
    let mut codes = Vec::new();
    for _ in 0..10 {
        codes.push(client::get(gw.addr(), "/").await.status);
    }
    let failures = codes.iter().filter(|c| **c == 502).count();
    assert_eq!(failures, 2, "after 2 failures the dead target is skipped: {codes:?}");
    assert!(codes[4..].iter().all(|c| *c == 200), "{codes:?}");
}

#[tokio::test]
async fn all_targets_down_gives_502_problem() {
    let dead = format!("http://127.0.0.1:{}", free_port());
    let gw = TestGateway::start(&one_route(&format!("\"{dead}\""), "")).await;
    let r = client::get(gw.addr(), "/").await;
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["code"], "upstream.unavailable");
    assert!(!r.text().contains("127.0.0.1"));
}

#[tokio::test]
async fn keep_alive_connections_to_the_upstream_are_reused() {
    let up = MockUpstream::start().await;
    let gw = TestGateway::start(&one_route(&format!("\"{}\"", up.url()), "")).await;
    let mut c = Conn::open(gw.addr()).await;
    for i in 0..20 {
        let r = c.send(req("GET", &format!("/{i}")).body(empty()).unwrap()).await.unwrap();
        assert_eq!(r.status, 200);
    }
    assert_eq!(up.count(), 20);
    assert_eq!(up.connections(), 1, "one pooled upstream connection served all 20");
}

#[tokio::test]
async fn streams_response_bodies_as_they_arrive() {
    // Chunks 1.5 s apart: the head and first chunk must arrive long before the next one is
    // produced (generous margins for a loaded CI machine).
    let up = MockUpstream::with(|_| Reply::ok(vec![b'z'; 30]).chunked(3, Duration::from_millis(1500))).await;
    let gw = TestGateway::start(&one_route(&format!("\"{}\"", up.url()), "")).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "the head and first chunk arrive before the next chunk is produced"
    );
}

#[tokio::test]
async fn websocket_upgrade_is_passed_through() {
    let up = MockUpstream::with(|_| Reply::upgrade()).await;
    let gw = TestGateway::start(&one_route(&format!("\"{}\"", up.url()), "")).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"));
    s.write_all(b"ping-through-the-gateway").await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf[..n], b"ping-through-the-gateway");
    let got = &up.requests()[0];
    assert_eq!(got.header("upgrade").unwrap(), "websocket");
    assert_eq!(got.header("connection").unwrap().to_ascii_lowercase(), "upgrade");
}

#[tokio::test]
async fn http10_upstream_answers_reach_http11_clients_as_http11() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nold server").await;
            });
        }
    });
    let gw = TestGateway::start(&one_route(&format!("\"http://{addr}\""), "")).await;
    let out = client::raw(
        gw.addr(),
        b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\r\nold server\r\n"), "the close-delimited body is re-framed: {text}");
}

/// A 50 MB upload streams through the real binary while its peak RSS stays far below the
/// body size (the WAF inspects its first MiB and forwards the rest as it arrives).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_upload_streams_with_bounded_memory() {
    const SIZE: u64 = 50 * 1024 * 1024;
    let up = MockUpstream::start().await;
    let port = free_port();
    let proc = GatewayProcess::spawn(
        env!("CARGO_BIN_EXE_portcullis"),
        &format!(
            r#"
listeners: [{{ name: public, bind: "127.0.0.1:{port}" }}]
log: {{ access: off }}
limits: {{ max_body_bytes: 100MiB, body_timeout: 60s }}
waf: {{ on_body_limit: inspect_prefix }}
upstreams: {{ up: {{ targets: ["{}"] }} }}
routes: [{{ name: all, match: {{ path: "/*" }}, upstream: up }}]
"#,
            up.url()
        ),
    );
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    proc.wait_ready(addr).await;
    let before = proc.peak_rss_kib();
    let r =
        client::send(addr, &Opts::default(), req("POST", "/upload").body(generated(SIZE, 64 * 1024, None)).unwrap())
            .await
            .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(up.requests()[0].body_len, SIZE, "every byte arrived");
    let peak = proc.peak_rss_kib();
    eprintln!("gateway peak RSS: {before} KiB before, {peak} KiB after a 50 MiB upload");
    assert!(peak < 40 * 1024, "peak RSS {peak} KiB: the body was buffered, not streamed");
}
