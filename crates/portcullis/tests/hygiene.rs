//! Request hygiene: path rules, limits (431, 414, 413), Host, client IP and forwarding
//! headers, request ids, hop-by-hop stripping.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests: a panic is a failed assertion

use portcullis_testkit::client::{self, Opts, empty, full, generated, req};
use portcullis_testkit::{MockUpstream, TestGateway};
use std::time::Duration;

fn config(up: &MockUpstream, extra: &str) -> String {
    format!(
        r#"
listeners: [{{ name: public, bind: "127.0.0.1:0" }}]
log: {{ access: off }}
{extra}
upstreams:
  up: {{ targets: ["{up}"] }}
routes:
  - {{ name: all, match: {{ path: "/*" }}, upstream: up }}
  - {{ name: small, match: {{ methods: [POST], path: /small }}, upstream: up, limits: {{ max_body_bytes: 1KiB }} }}
"#,
        up = up.url()
    )
}

#[tokio::test]
async fn unsafe_paths_get_400_and_never_reach_the_upstream() {
    let up = MockUpstream::start().await;
    let gw = TestGateway::start(&config(&up, "")).await;
    for path in [
        "/a%2fb",
        "/a%2Fb",
        "/a%5cb",
        "/a%00b",
        "/%2e%2e/etc/passwd",
        "/..",
        "/a/../../b",
        "/a%zz",
        "/public/..;/admin",
        "/a%0d%0aSet-Cookie:x",
    ] {
        let raw = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let out = client::raw(gw.addr(), raw.as_bytes(), Duration::from_secs(5)).await;
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 400"), "{path}: {text}");
        assert!(text.contains("\"code\":\"request.bad_path\""), "{path}: {text}");
    }
    assert_eq!(up.count(), 0, "no bad path reached the upstream: {:?}", up.requests());
}

#[tokio::test]
async fn header_and_uri_limits() {
    let up = MockUpstream::start().await;
    let gw =
        TestGateway::start(&config(&up, "limits: { max_header_bytes: 2KiB, max_headers: 20, max_uri_bytes: 512 }"))
            .await;

    let big = "v".repeat(3000);
    let r = client::send(gw.addr(), &Opts::default(), req("GET", "/x").header("x-big", big).body(empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status, 431);
    assert_eq!(r.json()["code"], "request.headers_too_large");

    let mut b = req("GET", "/x");
    for i in 0..25 {
        b = b.header(format!("x-h{i}"), "1");
    }
    let r = client::send(gw.addr(), &Opts::default(), b.body(empty()).unwrap()).await.unwrap();
    assert_eq!(r.status, 431);

    let long = format!("/{}", "a".repeat(600));
    let r = client::get(gw.addr(), &long).await;
    assert_eq!(r.status, 414);
    assert_eq!(r.json()["code"], "request.uri_too_long");
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn body_limit_applies_to_declared_and_chunked_bodies() {
    let up = MockUpstream::start().await;
    let gw = TestGateway::start(&config(&up, "")).await;

    let r = client::send(gw.addr(), &Opts::default(), req("POST", "/small").body(full(vec![b'x'; 2000])).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["code"], "request.too_large");
    assert_eq!(up.count(), 0, "a declared oversize body is refused before contacting the upstream");

    // chunked (no Content-Length): counted while streaming, cut at the limit
    let r = client::send(gw.addr(), &Opts::default(), req("POST", "/small").body(generated(5000, 100, None)).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status, 413);
    assert!(up.requests().iter().all(|r| r.body_len <= 1024), "the upstream never got more than the limit");

    let r = client::send(gw.addr(), &Opts::default(), req("POST", "/small").body(generated(1000, 100, None)).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(up.requests().last().unwrap().body_len, 1000);
}

#[tokio::test]
async fn http11_without_host_or_with_two_hosts_is_refused() {
    let up = MockUpstream::start().await;
    let gw = TestGateway::start(&config(&up, "")).await;
    let out = client::raw(gw.addr(), b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", Duration::from_secs(5)).await;
    assert!(String::from_utf8_lossy(&out).contains("request.bad_host"));
    let out = client::raw(
        gw.addr(),
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 400"));
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn forwarding_headers_from_untrusted_clients_are_replaced() {
    let up = MockUpstream::start().await;
    let gw = TestGateway::start(&config(&up, "")).await;
    let r = req("GET", "/x")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-host", "evil.example")
        .header("x-forwarded-proto", "https")
        .header("forwarded", "for=6.6.6.6")
        .header("x-real-ip", "6.6.6.6")
        .header("x-request-id", "chosen-by-attacker")
        .body(empty())
        .unwrap();
    let resp = client::send(gw.addr(), &Opts::default(), r).await.unwrap();
    let got = &up.requests()[0];
    assert_eq!(got.header_all("x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(got.header("x-forwarded-host").unwrap(), "localhost");
    assert_eq!(got.header("x-forwarded-proto").unwrap(), "http");
    assert!(got.header("forwarded").is_none() && got.header("x-real-ip").is_none());
    let id = got.header("x-request-id").unwrap();
    assert_ne!(id, "chosen-by-attacker");
    assert_eq!(resp.header("x-request-id").unwrap(), id, "the client sees the id the upstream got");
}

#[tokio::test]
async fn trusted_proxies_pass_client_ip_and_request_id() {
    let up = MockUpstream::start().await;
    let gw = TestGateway::start(
        &config(&up, "clients: { trusted_proxies: [127.0.0.0/8] }\nlog: { access: \"{dir}/access.log\" }")
            .replace("log: { access: off }\n", ""),
    )
    .await;
    let r = req("GET", "/x")
        .header("x-forwarded-for", "6.6.6.6, 203.0.113.9")
        .header("x-request-id", "edge-123")
        .body(empty())
        .unwrap();
    client::send(gw.addr(), &Opts::default(), r).await.unwrap();
    let got = &up.requests()[0];
    assert_eq!(got.header("x-forwarded-for").unwrap(), "6.6.6.6, 203.0.113.9, 127.0.0.1");
    assert_eq!(got.header("x-request-id").unwrap(), "edge-123");
    assert!(portcullis_testkit::eventually(Duration::from_secs(3), || !gw.access_log().is_empty()).await);
    assert_eq!(gw.access_log()[0]["client_ip"], "203.0.113.9", "the rightmost untrusted hop is the client");
}

#[tokio::test]
async fn hop_by_hop_and_connection_named_headers_are_stripped() {
    let up = MockUpstream::start().await;
    let gw = TestGateway::start(&config(&up, "")).await;
    let raw = b"GET /x HTTP/1.1\r\nHost: localhost\r\nConnection: close, X-Forwarded-For, X-Secret\r\nX-Secret: s\r\nKeep-Alive: timeout=9\r\nTE: trailers\r\nProxy-Authorization: Basic Zm9v\r\nUpgrade: h2c\r\n\r\n";
    let out = client::raw(gw.addr(), raw, Duration::from_secs(5)).await;
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"));
    let got = &up.requests()[0];
    for h in ["x-secret", "keep-alive", "te", "proxy-authorization", "upgrade"] {
        assert!(got.header(h).is_none(), "{h} reached the upstream");
    }
    assert_eq!(got.header("x-forwarded-for").unwrap(), "127.0.0.1", "naming a header in Connection cannot remove ours");
}

#[tokio::test]
async fn slow_post_is_cut_by_the_body_deadline() {
    let up = MockUpstream::start().await;
    let gw = TestGateway::start(&config(&up, "limits: { body_timeout: 300ms }")).await;
    let body = generated(10_000, 100, Some(Duration::from_millis(50)));
    let r = client::send(gw.addr(), &Opts::default(), req("POST", "/x").body(body).unwrap()).await.unwrap();
    assert_eq!(r.status, 408);
    assert_eq!(r.json()["code"], "request.timeout");
}
