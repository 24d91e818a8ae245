//! The WAF's response phases in the gateway (CRS 95x over the upstream's answer): a leaked SQL
//! error is refused in block mode and only logged in detect mode, and never reaches the client
//! when refused; bodies are read ahead only up to the limit, only for listed media types and
//! uncompressed; answers stream on intact after the inspected prefix; the upstream connection
//! is reused after a body read ahead.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests: a panic is a failed assertion

use portcullis_testkit::client::{self, Opts, empty, req};
use portcullis_testkit::{MockUpstream, Recorded, Reply, TestGateway};
use std::time::Duration;

const LEAK: &str = "<html><body>You have an error in your SQL syntax; check the manual that corresponds to \
                    your MySQL server version for the right syntax to use near ''' at line 1</body></html>";

fn answer(r: &Recorded) -> Reply {
    let path = r.uri.split('?').next().unwrap_or_default();
    let leak = || Reply::ok(LEAK).header("content-type", "text/html; charset=utf-8");
    match path.trim_start_matches("/watch") {
        "/leak" => leak(),
        "/leak.png" => Reply::ok(LEAK).header("content-type", "image/png"),
        "/leak.gz" => leak().header("content-encoding", "gzip"),
        // The leak after the first KiB: past the inspected prefix.
        "/late-leak" => Reply::ok(format!("{}{LEAK}", "a".repeat(2048)))
            .header("content-type", "text/plain")
            .chunked(8, Duration::from_millis(5)),
        "/json" => {
            Reply::ok(big_json()).header("content-type", "application/json").chunked(20, Duration::from_millis(2))
        }
        // A pause (1 s) longer than the upstream timeout (300 ms) inside the inspected prefix.
        "/stall" => Reply::ok("b".repeat(4096)).header("content-type", "text/plain").chunked(8, Duration::from_secs(1)),
        _ => Reply::ok(r#"{"ok":true}"#).header("content-type", "application/json"),
    }
}

fn big_json() -> String {
    let items: Vec<String> = (0..3000).map(|i| format!(r#"{{"id":{i},"name":"item {i}","price":12.5}}"#)).collect();
    format!(r#"{{"items":[{}]}}"#, items.join(","))
}

async fn gateway(up: &MockUpstream, rules: &str) -> TestGateway {
    let yaml = format!(
        r#"
listeners: [{{ name: public, bind: "127.0.0.1:0" }}]
log: {{ access: access.log }}
upstreams: {{ up: {{ targets: ["{}"], timeout: 300ms }} }}
waf: {{ log: waf.log, response: {{ body_limit: 1KiB }}{rules} }}
routes:
  - {{ name: watch, match: {{ path: "/watch/*" }}, upstream: up, waf: {{ mode: detect }} }}
  - {{ name: api, match: {{ path: "/*" }}, upstream: up }}
"#,
        up.url()
    );
    TestGateway::start_in(tempfile::tempdir().unwrap(), &yaml, false).await.unwrap()
}

async fn get(gw: &TestGateway, path: &str) -> client::Resp {
    client::send(gw.addr(), &Opts::default(), req("GET", path).body(empty()).unwrap()).await.unwrap()
}

fn waf_log(gw: &TestGateway) -> String {
    std::fs::read_to_string(gw.dir().join("waf.log")).unwrap_or_default()
}

#[tokio::test]
async fn crs_refuses_a_leaked_sql_error_and_lets_other_answers_through_intact() {
    let Some(crs) = portcullis_waf::ftw::test_crs_dir() else { return };
    let up = MockUpstream::with(answer).await;
    let gw = gateway(&up, &format!(r#", crs: {{ path: "{}", paranoia: 1 }}"#, crs.display())).await;

    let r = get(&gw, "/leak").await;
    assert_eq!((r.status, r.json()["code"].as_str()), (502, Some("waf.response_blocked")), "{}", r.text());
    assert!(!r.text().contains("SQL syntax") && !r.text().contains("951230"), "nothing leaks: {}", r.text());
    assert_eq!(up.count(), 1, "the request itself was forwarded");
    let log = waf_log(&gw);
    assert!(log.contains(r#"[id "951230"]"#) && log.contains(r#"[id "959100"]"#), "{log}");

    // Detect mode: logged, delivered.
    let r = get(&gw, "/watch/leak").await;
    assert_eq!((r.status, r.text().as_str()), (200, LEAK));
    assert_eq!(waf_log(&gw).matches(r#"[id "951230"]"#).count(), 2);

    // Not inspected: a media type not listed, a compressed body, a leak past the limit.
    for path in ["/leak.png", "/leak.gz"] {
        let r = get(&gw, path).await;
        assert_eq!((r.status, r.text().as_str()), (200, LEAK), "{path}");
    }
    let r = get(&gw, "/late-leak").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), format!("{}{LEAK}", "a".repeat(2048)), "the whole body, after the inspected prefix");
    assert_eq!(waf_log(&gw).matches(r#"[id "951230"]"#).count(), 2, "{}", waf_log(&gw));

    let r = get(&gw, "/json").await;
    assert_eq!((r.status, r.text()), (200, big_json()), "streamed on intact");

    // The upstream stalls inside the prefix the WAF reads: nothing was sent yet, so 504.
    let r = get(&gw, "/stall").await;
    assert_eq!((r.status, r.json()["code"].as_str()), (504, Some("upstream.timeout")), "{}", r.text());

    assert!(portcullis_testkit::eventually(Duration::from_secs(3), || gw.access_log().len() >= 7).await);
    let lines = gw.access_log();
    let blocked = lines.iter().find(|l| l["reason"] == "waf.response_blocked").unwrap();
    let rules = blocked["waf_rules"].as_array().unwrap();
    assert!(rules.contains(&951230.into()) && rules.contains(&959100.into()), "{blocked}");
    assert_eq!(blocked["decision"], "reject");
    let metrics = gw.gateway().metrics.encode();
    assert!(
        metrics.contains(r#"portcullis_rejections_total{route="api",reason="waf.response_blocked"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_body_read_ahead_leaves_the_upstream_connection_reusable() {
    let Some(crs) = portcullis_waf::ftw::test_crs_dir() else { return };
    let up = MockUpstream::with(answer).await;
    let gw = gateway(&up, &format!(r#", crs: {{ path: "{}", paranoia: 1 }}"#, crs.display())).await;
    for _ in 0..5 {
        let r = get(&gw, "/watch/leak").await;
        assert_eq!((r.status, r.text().as_str()), (200, LEAK));
        let r = get(&gw, "/leak").await;
        assert_eq!(r.status, 502);
    }
    assert_eq!(up.count(), 10);
    assert_eq!(up.connections(), 1, "every exchange went over the one pooled connection");
}

#[tokio::test]
async fn rules_without_response_phases_leave_answers_alone() {
    // The built-in rules have no response rules: nothing is read ahead or refused.
    let up = MockUpstream::with(answer).await;
    let gw = gateway(&up, "").await;
    let r = get(&gw, "/leak").await;
    assert_eq!((r.status, r.text().as_str()), (200, LEAK));
    assert!(!waf_log(&gw).contains("951230"));
}
