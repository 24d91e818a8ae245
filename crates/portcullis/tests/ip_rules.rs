//! Per-IP rate rules: block and unblock as the window slides (advanced clock), count-only
//! rules, route scopes, IPv6 aggregation, the admin listing and unblocking.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests: a panic is a failed assertion

use portcullis_testkit::client::{self, Opts, empty, req};
use portcullis_testkit::{MockUpstream, TestGateway};
use std::time::Duration;

// sha256("t0ken")
fn token_sha() -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b"t0ken"))
}

async fn gateway(up: &MockUpstream, rules: &str) -> TestGateway {
    TestGateway::start(&format!(
        r#"
listeners: [{{ name: public, bind: "127.0.0.1:0" }}]
admin: {{ bind: "127.0.0.1:0", token_sha256: "{sha}" }}
clients: {{ trusted_proxies: [127.0.0.0/8] }}
log: {{ access: off }}
upstreams: {{ up: {{ targets: ["{up}"] }} }}
routes:
  - {{ name: api, match: {{ path: "/api/*" }}, upstream: up }}
  - {{ name: login, match: {{ path: /login }}, upstream: up }}
ip_rules:
{rules}
"#,
        sha = token_sha(),
        up = up.url()
    ))
    .await
}

/// A request as if from `ip` behind our trusted proxy (127.0.0.1).
async fn from(gw: &TestGateway, ip: &str, path: &str) -> client::Resp {
    client::send(gw.addr(), &Opts::default(), req("GET", path).header("x-forwarded-for", ip).body(empty()).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn an_ip_over_the_limit_is_blocked_until_its_rate_falls_back() {
    let up = MockUpstream::start().await;
    let gw = gateway(&up, "  - { name: per-ip, limit: 5, window: 1m }").await;
    for _ in 0..5 {
        assert_eq!(from(&gw, "198.51.100.7", "/api/x").await.status, 200);
    }
    let r = from(&gw, "198.51.100.7", "/api/x").await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["code"], "throttle.ip_blocked");
    assert_eq!(from(&gw, "198.51.100.8", "/api/x").await.status, 200, "other IPs are not affected");
    // still blocked while it keeps sending
    gw.gateway().clock.advance(Duration::from_secs(30));
    assert_eq!(from(&gw, "198.51.100.7", "/api/x").await.status, 403);
    // after a quiet window it is let in again, with nobody's help
    gw.gateway().clock.advance(Duration::from_secs(70));
    assert_eq!(from(&gw, "198.51.100.7", "/api/x").await.status, 200);
    assert_eq!(up.requests().len(), 7, "blocked requests never reached the upstream");
    let m = gw.gateway().metrics.encode();
    assert!(m.contains("portcullis_ip_rule_matches_total{rule=\"per-ip\",action=\"block\"} 2"), "{m}");
    assert!(m.contains("portcullis_rejections_total{route=\"_none\",reason=\"throttle.ip_blocked\"} 2"), "{m}");
}

#[tokio::test]
async fn count_rules_only_count_and_status_can_be_429() {
    let up = MockUpstream::start().await;
    let gw = gateway(
        &up,
        "  - { name: watch, limit: 2, window: 1m, action: count }\n  - { name: strict, limit: 4, window: 1m, status: 429 }",
    )
    .await;
    let codes: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..6 {
            v.push(from(&gw, "192.0.2.1", "/api/x").await.status);
        }
        v
    };
    assert_eq!(codes, vec![200, 200, 200, 200, 429, 429], "the count rule refuses nothing; the strict one answers 429");
    let m = gw.gateway().metrics.encode();
    assert!(m.contains("rule=\"watch\",action=\"count\""), "{m}");
}

#[tokio::test]
async fn scopes_by_route_and_by_path_prefix() {
    let up = MockUpstream::start().await;
    let gw = gateway(
        &up,
        "  - { name: login-guard, limit: 2, window: 1m, scope: { routes: [login] } }\n  - { name: api-guard, limit: 3, window: 1m, scope: { path_prefix: /api/v2 } }",
    )
    .await;
    for _ in 0..2 {
        assert_eq!(from(&gw, "192.0.2.9", "/login").await.status, 200);
    }
    assert_eq!(from(&gw, "192.0.2.9", "/login").await.status, 403);
    for _ in 0..5 {
        assert_eq!(from(&gw, "192.0.2.9", "/api/v1/x").await.status, 200, "other routes and prefixes are not counted");
    }
    for _ in 0..3 {
        assert_eq!(from(&gw, "192.0.2.9", "/api/v2/x").await.status, 200);
    }
    assert_eq!(from(&gw, "192.0.2.9", "/api/v2/x").await.status, 403);
    assert_eq!(from(&gw, "192.0.2.9", "/api/v2x").await.status, 200, "a prefix matches whole segments");
}

#[tokio::test]
async fn ipv6_clients_are_counted_per_64() {
    let up = MockUpstream::start().await;
    let gw = gateway(&up, "  - { name: per-ip, limit: 3, window: 1m }").await;
    for last in ["1", "2", "3"] {
        assert_eq!(from(&gw, &format!("2001:db8:1:2::{last}"), "/api/x").await.status, 200);
    }
    assert_eq!(from(&gw, "2001:db8:1:2:ffff::9", "/api/x").await.status, 403, "same /64, rotating addresses");
    assert_eq!(from(&gw, "2001:db8:1:3::1", "/api/x").await.status, 200, "another /64");
}

#[tokio::test]
async fn admin_lists_and_unblocks() {
    let up = MockUpstream::start().await;
    let gw = gateway(&up, "  - { name: per-ip, limit: 1, window: 5m }").await;
    from(&gw, "203.0.113.5", "/api/x").await;
    from(&gw, "203.0.113.5", "/api/x").await;
    from(&gw, "2001:db8::1", "/api/x").await;
    from(&gw, "2001:db8::2", "/api/x").await;
    let admin = gw.admin();
    let auth = |b: http::request::Builder| b.header("authorization", "Bearer t0ken");
    let r = client::send(admin, &Opts::default(), auth(req("GET", "/api/v1/blocked-ips")).body(empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let list = r.json()["blocked"].as_array().unwrap().clone();
    let ips: Vec<&str> = list.iter().map(|e| e["ip"].as_str().unwrap()).collect();
    assert!(ips.contains(&"203.0.113.5") && ips.contains(&"2001:db8::/64"), "{list:?}");
    let entry = list.iter().find(|e| e["ip"] == "203.0.113.5").unwrap();
    assert_eq!(entry["rule"], "per-ip");
    assert_eq!(entry["rate"], 2);
    assert!(entry["since"].as_str().unwrap().ends_with('Z'));

    let r = client::send(
        admin,
        &Opts::default(),
        auth(req("DELETE", "/api/v1/blocked-ips/203.0.113.5")).body(empty()).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(from(&gw, "203.0.113.5", "/api/x").await.status, 200, "unblocked at once");
    let r = client::send(
        admin,
        &Opts::default(),
        auth(req("DELETE", "/api/v1/blocked-ips/not-an-ip")).body(empty()).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400);
    let r =
        client::send(admin, &Opts::default(), req("GET", "/api/v1/blocked-ips").body(empty()).unwrap()).await.unwrap();
    assert_eq!(r.status, 401, "the listing needs the token");
}

#[tokio::test]
async fn a_reload_keeps_the_counts() {
    let up = MockUpstream::start().await;
    let rules = "  - { name: per-ip, limit: 2, window: 1m }";
    let gw = gateway(&up, rules).await;
    from(&gw, "192.0.2.50", "/api/x").await;
    from(&gw, "192.0.2.50", "/api/x").await;
    let text = std::fs::read_to_string(gw.config_path()).unwrap();
    gw.write_config(&format!("{text}\n# touched\n"));
    gw.reload().await.unwrap();
    assert_eq!(from(&gw, "192.0.2.50", "/api/x").await.status, 403, "a reload does not forgive");
}
