//! The WAF in the gateway: built-in rules by default, stock CRS when configured, block and
//! detect modes, per-route exclusions, IP lists, body limits. Every blocked attack is checked
//! to never have reached the upstream.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests: a panic is a failed assertion

use portcullis_testkit::client::{self, Opts, empty, full, req};
use portcullis_testkit::{MockUpstream, TestGateway};
use std::path::PathBuf;

fn crs_dir() -> Option<PathBuf> {
    portcullis_waf::ftw::test_crs_dir()
}

async fn gateway(up: &MockUpstream, waf: &str, routes: &str) -> TestGateway {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"
listeners: [{{ name: public, bind: "127.0.0.1:0" }}]
log: {{ access: access.log }}
upstreams: {{ up: {{ targets: ["{}"] }} }}
waf: {{ log: waf.log{waf} }}
routes:
{routes}
  - {{ name: api, match: {{ path: "/*" }}, upstream: up }}
"#,
        up.url()
    );
    TestGateway::start_in(dir, &yaml, false).await.unwrap()
}

async fn get(gw: &TestGateway, path: &str) -> client::Resp {
    client::send(gw.addr(), &Opts::default(), req("GET", path).body(empty()).unwrap()).await.unwrap()
}

async fn post_json(gw: &TestGateway, path: &str, body: &str) -> client::Resp {
    let r = req("POST", path).header("content-type", "application/json").body(full(body.to_string())).unwrap();
    client::send(gw.addr(), &Opts::default(), r).await.unwrap()
}

fn waf_log(gw: &TestGateway) -> String {
    std::fs::read_to_string(gw.dir().join("waf.log")).unwrap_or_default()
}

#[tokio::test]
async fn builtin_rules_block_by_default_and_never_forward_the_attack() {
    let up = MockUpstream::start().await;
    let gw = gateway(&up, "", "").await;

    let r = get(&gw, "/items?id=1'%20OR%20'1'='1").await;
    assert_eq!((r.status, r.json()["code"].as_str()), (403, Some("waf.blocked")), "{}", r.text());
    assert_eq!(r.header("content-type").as_deref(), Some("application/problem+json"));
    assert!(!r.text().contains("100100"), "the answer names no rule: {}", r.text());
    let r = post_json(&gw, "/comments", r#"{"text":"<script>alert(document.cookie)</script>"}"#).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(up.count(), 0, "no attack reached the upstream");

    let log = waf_log(&gw);
    assert!(log.contains(r#"[id "100100"]"#) && log.contains(r#"[msg "SQL injection"]"#), "{log}");
    assert!(log.contains(r#"[id "100201"]"#), "{log}");

    let r = get(&gw, "/items?id=42&sort=name").await;
    assert_eq!(r.status, 200);
    assert_eq!(up.count(), 1);
    let metrics = gw.gateway().metrics.encode();
    assert!(metrics.contains(r#"portcullis_waf_matches_total{rule="100100"} 1"#), "{metrics}");
    assert!(portcullis_testkit::eventually(std::time::Duration::from_secs(3), || gw.access_log().len() >= 3).await);
    let lines = gw.access_log();
    let blocked = lines.iter().find(|l| l["reason"] == "waf.blocked").unwrap();
    assert_eq!(blocked["waf_rules"], serde_json::json!([100100]));
}

#[tokio::test]
async fn detect_mode_logs_and_forwards_and_exclusions_silence_a_rule() {
    let up = MockUpstream::start().await;
    let routes = r#"  - { name: watch, match: { path: "/watch/*" }, upstream: up, waf: { mode: detect } }
  - { name: search, match: { path: "/search" }, upstream: up, waf: { exclude_rules: ["100100"] } }
  - { name: raw, match: { path: "/raw/*" }, upstream: up, waf: { mode: off } }"#;
    let gw = gateway(&up, "", routes).await;
    assert_eq!(get(&gw, "/watch/x?id=1'%20OR%20'1'='1").await.status, 200);
    assert!(waf_log(&gw).contains(r#"[id "100100"]"#));
    assert_eq!(get(&gw, "/search?q=1'%20OR%20'1'='1").await.status, 200, "rule 100100 is excluded on /search");
    assert_eq!(get(&gw, "/raw/x?q=1'%20OR%20'1'='1").await.status, 200);
    assert_eq!(up.count(), 3);
    assert_eq!(get(&gw, "/other?q=1'%20OR%20'1'='1").await.status, 403, "other routes still block");
    assert_eq!(up.count(), 3);
}

#[tokio::test]
async fn ip_lists_use_the_longest_prefix_and_body_limits_never_let_a_body_pass_unchecked() {
    let up = MockUpstream::start().await;
    let gw = gateway(&up, r#", ip_deny: ["127.0.0.0/8"], ip_allow: ["127.0.0.1/32"]"#, "").await;
    // 127.0.0.1 is allowed by the longer prefix: past ip_deny and past the rules.
    assert_eq!(get(&gw, "/x?id=1'%20OR%20'1'='1").await.status, 200);
    drop(gw);
    let gw = gateway(&up, r#", ip_deny: ["127.0.0.0/8"]"#, "").await;
    let r = get(&gw, "/x").await;
    assert_eq!((r.status, r.json()["code"].as_str()), (403, Some("waf.ip_denied")));
    drop(gw);

    let before = up.count();
    let gw = gateway(&up, ", body_limit: 1KiB", "").await;
    let big = format!(r#"{{"pad":"{}"}}"#, "a".repeat(2000));
    let r = post_json(&gw, "/upload", &big).await;
    assert_eq!((r.status, r.json()["code"].as_str()), (413, Some("waf.body_too_large")));
    assert_eq!(up.count(), before);
    drop(gw);
    // inspect_prefix: the first KiB is inspected (an attack in it is blocked), all of it forwarded.
    let gw = gateway(&up, ", body_limit: 1KiB, on_body_limit: inspect_prefix", "").await;
    let r = post_json(&gw, "/upload", &big).await;
    assert_eq!(r.status, 200, "{}", waf_log(&gw));
    assert_eq!(up.requests().last().unwrap().body.len(), big.len(), "the whole body was forwarded");
    let attack = format!(r#"{{"q":"1' OR '1'='1","pad":"{}"}}"#, "a".repeat(2000));
    assert_eq!(post_json(&gw, "/upload", &attack).await.status, 403);
    assert_eq!(up.count(), before + 1);
}

#[tokio::test]
async fn crs_blocks_sqli_and_lets_a_benign_json_call_through_untouched() {
    let Some(crs) = crs_dir() else { return };
    let up = MockUpstream::start().await;
    let waf = format!(r#", crs: {{ path: "{}", paranoia: 1 }}"#, crs.display());
    let gw = gateway(&up, &waf, "").await;

    let r = get(&gw, "/api/orders/42?id=1'%20OR%20'1'='1").await;
    assert_eq!((r.status, r.json()["code"].as_str()), (403, Some("waf.blocked")), "{}", r.text());
    let r = post_json(&gw, "/api/orders", r#"{"note":"x' UNION SELECT password FROM users --"}"#).await;
    assert_eq!(r.status, 403);
    assert_eq!(up.count(), 0, "no attack reached the upstream");
    let log = waf_log(&gw);
    assert!(log.contains(r#"[id "942100"]"#) && log.contains(r#"[id "949110"]"#), "{log}");

    let body = r#"{"orderId":"ord-2026-000042","customer":{"name":"Anna Schmidt","email":"anna.schmidt@example.com"},"items":[{"sku":"SKU-4100","name":"Organic cotton t-shirt, size M","quantity":2,"unitPrice":{"amount":12.5,"currency":"EUR"}}],"notes":"Please leave the parcel with the neighbour if nobody is at home."}"#;
    let r = post_json(&gw, "/api/orders", body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let got = up.requests().pop().unwrap();
    assert_eq!(got.body, body.as_bytes(), "the body arrived byte for byte");
    let r = client::send(
        gw.addr(),
        &Opts::default(),
        req("GET", "/api/orders/42?expand=items&page=2")
            .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0")
            .header("accept", "application/json, text/plain, */*")
            .header("cookie", "sid=3f9a1c7e5b2d40aa; theme=dark")
            .body(empty())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", waf_log(&gw));
}

#[tokio::test]
async fn broken_waf_config_is_refused_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("own.conf"),
        "SecRule ARGS \"@rx a\" \"id:1,phase:2,deny\"\nSecRule ARGS \"@bogus\" \"id:2\"\n",
    )
    .unwrap();
    let yaml = r#"
listeners: [{ name: public, bind: "127.0.0.1:0" }]
upstreams: { up: { targets: ["http://127.0.0.1:9"] } }
waf:
  rules: [own.conf]
  crs: { path: nowhere }
routes: [{ name: r, match: { path: "/*" }, upstream: up, waf: { exclude_rules: ["x"] } }]
"#;
    let err = TestGateway::start_in(dir, yaml, false).await.err().expect("refused").to_string();
    assert!(err.contains("nowhere has no rules/ directory"), "{err}");
    assert!(err.contains(":7:"), "the crs line is named: {err}");
    assert!(err.contains("not a rule id"), "{err}");
}

#[tokio::test]
async fn the_demo_config_blocks_sqli_and_script_without_crs() {
    let up = MockUpstream::start().await;
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/demo.yaml")).unwrap();
    let yaml = demo
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("admin: { bind: \"127.0.0.1:9901\" }", "")
        .replace("http://127.0.0.1:18081", &up.url());
    let gw = TestGateway::start(&yaml).await;
    for attack in ["/api/orders/42?id=1'%20OR%20'1'='1", "/api/orders/42?q=%3Cscript%3Ealert(1)%3C/script%3E"] {
        let r = get(&gw, attack).await;
        assert_eq!((r.status, r.json()["code"].as_str()), (403, Some("waf.blocked")), "{attack}");
    }
    assert_eq!(up.count(), 0);
    assert_eq!(get(&gw, "/api/orders/42").await.status, 200);
}

#[tokio::test]
async fn detect_mode_never_refuses_an_oversized_body() {
    let up = MockUpstream::start().await;
    let routes = r#"  - { name: watch, match: { path: "/watch/*" }, upstream: up, waf: { mode: detect } }"#;
    let gw = gateway(&up, ", body_limit: 1KiB", routes).await;
    let big = format!(r#"{{"q":"1' OR '1'='1","pad":"{}"}}"#, "a".repeat(2000));
    let r = post_json(&gw, "/watch/upload", &big).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.requests()[0].body.len(), big.len());
    assert!(waf_log(&gw).contains(r#"[id "100101"]"#), "the prefix was inspected and the match logged");
    assert_eq!(post_json(&gw, "/upload", &big).await.status, 413, "block-mode routes still refuse");
}

#[tokio::test]
async fn a_reload_keeps_compiled_rules_until_a_rule_file_changes() {
    let up = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let own = "SecRule ARGS \"@contains evil\" \"id:500001,phase:2,deny,status:403,log,msg:'own rule'\"\n";
    std::fs::write(dir.path().join("own.conf"), own).unwrap();
    let yaml = |route: &str| {
        format!(
            "listeners: [{{ name: public, bind: \"127.0.0.1:0\" }}]\nupstreams: {{ up: {{ targets: [\"{}\"] }} }}\n\
             waf: {{ log: off, rules: [own.conf] }}\nroutes:\n  - {{ name: {route}, match: {{ path: \"/*\" }}, upstream: up }}\n",
            up.url()
        )
    };
    let gw = TestGateway::start_in(dir, &yaml("api"), false).await.unwrap();
    let rules = |gw: &TestGateway| gw.gateway().runtime.load().waf.rules.clone().unwrap();
    let first = rules(&gw);
    assert_eq!(get(&gw, "/x?q=evil").await.status, 403);

    // Routes change, rule sources do not: the same compiled rules serve on.
    gw.write_config(&yaml("renamed"));
    gw.reload().await.unwrap();
    assert!(std::sync::Arc::ptr_eq(&first, &rules(&gw)), "rules were compiled again");

    // The rule file changes: compiled again, and the new rule decides.
    std::fs::write(gw.dir().join("own.conf"), own.replace("evil", "wicked")).unwrap();
    gw.reload().await.unwrap();
    assert!(!std::sync::Arc::ptr_eq(&first, &rules(&gw)));
    assert_eq!(get(&gw, "/x?q=evil").await.status, 200);
    assert_eq!(get(&gw, "/x?q=wicked").await.status, 403);
}
