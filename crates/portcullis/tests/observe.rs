//! Access log, metrics, admin API.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests: a panic is a failed assertion

use portcullis_testkit::client::{self, Opts, empty, req};
use portcullis_testkit::{MockUpstream, TestGateway, eventually};
use std::time::Duration;

fn config(up: &MockUpstream, token_sha: &str) -> String {
    format!(
        r#"
listeners: [{{ name: public, bind: "127.0.0.1:0" }}]
admin: {{ bind: "127.0.0.1:0" {token_sha} }}
log: {{ access: "{{dir}}/access.log" }}
upstreams: {{ up: {{ targets: ["{}"] }} }}
routes:
  - {{ name: all, match: {{ path: "/*" }}, upstream: up }}
  - {{ name: quiet, match: {{ path: /quiet }}, upstream: up, log: {{ sample: 0.0 }} }}
"#,
        up.url()
    )
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

#[tokio::test]
async fn access_log_lines_carry_the_contract_fields() {
    let up = MockUpstream::start().await;
    let gw = TestGateway::start(&config(&up, "")).await;
    let ok = client::get(gw.addr(), "/orders/1?token=secret-in-query").await;
    client::get(gw.addr(), "/a%2fb").await;
    assert!(eventually(Duration::from_secs(3), || gw.access_log().len() >= 2).await);
    let log = gw.access_log();
    let line = &log[0];
    for field in [
        "ts",
        "request_id",
        "client_ip",
        "method",
        "path",
        "route",
        "status",
        "bytes_out",
        "duration_ms",
        "upstream_ms",
        "principal",
        "key_id",
        "decision",
        "reason",
        "waf_rules",
    ] {
        assert!(line.get(field).is_some(), "missing {field}: {line}");
    }
    assert_eq!(line["request_id"], ok.header("x-request-id").unwrap());
    assert_eq!(line["path"], "/orders/1", "no query string in logs");
    assert_eq!(line["route"], "all");
    assert_eq!(line["status"], 200);
    assert_eq!(line["decision"], "allow");
    assert_eq!(line["bytes_out"], ok.body.len() as u64);
    assert!(!line.to_string().contains("secret-in-query"));
    let bad = &log[1];
    assert_eq!(
        (bad["status"].as_u64(), bad["decision"].as_str(), bad["reason"].as_str()),
        (Some(400), Some("reject"), Some("request.bad_path"))
    );
}

#[tokio::test]
async fn sampling_drops_successes_but_never_errors() {
    let up = MockUpstream::start().await;
    let gw = TestGateway::start(&config(&up, "")).await;
    for _ in 0..5 {
        client::get(gw.addr(), "/quiet").await;
    }
    client::send(
        gw.addr(),
        &Opts::default(),
        req("GET", "/quiet").header("x-big", "v".repeat(20_000)).body(empty()).unwrap(),
    )
    .await
    .unwrap();
    client::get(gw.addr(), "/marker").await;
    assert!(eventually(Duration::from_secs(3), || gw.access_log().iter().any(|l| l["path"] == "/marker")).await);
    let quiet: Vec<_> = gw.access_log().into_iter().filter(|l| l["path"] == "/quiet").collect();
    assert_eq!(quiet.len(), 1, "only the error was logged: {quiet:?}");
    assert_eq!(quiet[0]["status"], 431);
}

#[tokio::test]
async fn metrics_use_the_documented_names() {
    let up = MockUpstream::start().await;
    let gw = TestGateway::start(&config(&up, "")).await;
    client::get(gw.addr(), "/x").await;
    client::get(gw.addr(), "/a%2fb").await;
    let admin = gw.admin();
    let text = client::get(admin, "/metrics").await.text();
    for needle in [
        "portcullis_requests_total{route=\"all\",status=\"200\"} 1",
        "portcullis_rejections_total{route=\"_none\",reason=\"request.bad_path\"} 1",
        "portcullis_request_duration_seconds_count{route=\"all\"} 1",
        "portcullis_upstream_duration_seconds_count{upstream=\"up\"} 1",
        "portcullis_connections_active",
        "portcullis_config_generation 1",
    ] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }
}

#[tokio::test]
async fn admin_health_is_open_and_the_api_needs_the_token() {
    let up = MockUpstream::start().await;
    assert_eq!(sha256_hex("s3cret").len(), 64);
    let gw = TestGateway::start(&config(&up, &format!(", token_sha256: \"{}\"", sha256_hex("s3cret")))).await;
    let admin = gw.admin();
    assert_eq!(client::get(admin, "/healthz").await.status, 200);
    assert_eq!(client::get(admin, "/readyz").await.status, 200);

    let post = |auth: Option<&str>| {
        let mut b = req("POST", "/api/v1/reload");
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        b.body(empty()).unwrap()
    };
    let r = client::send(admin, &Opts::default(), post(None)).await.unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["code"], "admin.unauthorized");
    let r = client::send(admin, &Opts::default(), post(Some("Bearer wrong"))).await.unwrap();
    assert_eq!(r.status, 401);
    let r = client::send(admin, &Opts::default(), post(Some("Bearer s3cret"))).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["generation"], 2);

    std::fs::write(gw.config_path(), "routes: nope").unwrap();
    let r = client::send(admin, &Opts::default(), post(Some("bearer s3cret"))).await.unwrap();
    assert_eq!(r.status, 422);
    assert!(r.json()["errors"][0].as_str().unwrap().contains("gateway.yaml:1:"));
}

#[tokio::test]
async fn admin_api_is_off_without_a_token() {
    let up = MockUpstream::start().await;
    let gw = TestGateway::start(&config(&up, "")).await;
    let r = client::send(
        gw.admin(),
        &Opts::default(),
        req("POST", "/api/v1/reload").header("authorization", "Bearer x").body(empty()).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["code"], "admin.disabled");
}
