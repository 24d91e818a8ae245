//! API keys, usage plans and quotas: identification, per-key limits, quotas and their reset,
//! the key lifecycle, API-managed plans, persistence across restarts and `kill -9`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests: a panic is a failed assertion

use portcullis_testkit::client::{self, Opts, empty, req};
use portcullis_testkit::{GatewayProcess, MockUpstream, TestGateway, eventually, free_port};
use std::time::Duration;

fn token_sha() -> String {
    client::admin_token_sha256()
}

fn config(bind: &str, up: &MockUpstream) -> String {
    format!(
        r#"
listeners: [{{ name: public, bind: "{bind}" }}]
admin: {{ bind: "127.0.0.1:0", token_sha256: "{sha}" }}
state: {{ store: "sqlite:{{dir}}/state.db" }}
log: {{ access: "{{dir}}/access.log" }}
upstreams: {{ up: {{ targets: ["{up}"] }} }}
routes:
  - {{ name: orders, match: {{ path: "/orders/*" }}, upstream: up, auth: {{ api_key: true }} }}
  - {{ name: reports, match: {{ path: "/reports" }}, upstream: up, auth: {{ api_key: true }} }}
  - {{ name: open, match: {{ path: /open }}, upstream: up }}
plans:
  free:
    throttle: {{ rate: 0.001, burst: 5 }}
    routes: {{ reports: {{ rate: 0.001, burst: 1 }} }}
    quota: {{ limit: 4, period: day }}
  pro:
    throttle: {{ rate: 1000, burst: 1000 }}
"#,
        sha = token_sha(),
        up = up.url()
    )
}

async fn admin(gw: &TestGateway, method: &str, path: &str, body: Option<serde_json::Value>) -> client::Resp {
    client::admin(gw.admin(), method, path, body).await
}

async fn create_key(gw: &TestGateway, plan: &str) -> (String, String) {
    let r = admin(gw, "POST", "/api/v1/keys", Some(serde_json::json!({"name": "acme", "plan": plan}))).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let j = r.json();
    (j["id"].as_str().unwrap().to_string(), j["key"].as_str().unwrap().to_string())
}

async fn call(gw: &TestGateway, path: &str, key: Option<&str>) -> client::Resp {
    let mut b = req("GET", path);
    if let Some(k) = key {
        b = b.header("x-api-key", k);
    }
    client::send(gw.addr(), &Opts::default(), b.body(empty()).unwrap()).await.unwrap()
}

#[tokio::test]
async fn keys_identify_callers_and_never_reach_the_backend_or_the_logs() {
    let up = MockUpstream::start().await;
    let gw = TestGateway::start(&config("127.0.0.1:0", &up)).await;
    let (id, key) = create_key(&gw, "pro").await;
    let r = call(&gw, "/orders/1", None).await;
    assert_eq!((r.status, r.json()["code"].as_str()), (401, Some("auth.missing")));
    for bad in ["nonsense", "pc_aaaaaaaaaaaa_00", &format!("pc_{id}_{}", "0".repeat(64)), &key[..key.len() - 1]] {
        let r = call(&gw, "/orders/1", Some(bad)).await;
        assert_eq!((r.status, r.json()["code"].as_str()), (403, Some("auth.invalid_key")), "{bad}");
    }
    assert_eq!(up.count(), 0, "nothing without a valid key reached the upstream");
    let r = call(&gw, "/orders/1", Some(&key)).await;
    assert_eq!(r.status, 200);
    let got = &up.requests()[0];
    assert!(got.header("x-api-key").is_none(), "the key is removed before forwarding");
    assert_eq!(call(&gw, "/open", Some(&key)).await.status, 200, "routes without key auth ignore it");
    assert!(eventually(Duration::from_secs(3), || gw.access_log().len() >= 7).await);
    let log = std::fs::read_to_string(gw.dir().join("access.log")).unwrap();
    assert!(!log.contains(&key) && !log.contains(&key[16..]), "the raw key never appears in a log line");
    let line = gw.access_log().into_iter().find(|l| l["status"] == 200).unwrap();
    assert_eq!(line["key_id"], id.as_str());
}

#[tokio::test]
async fn plan_limits_apply_per_key_and_per_route() {
    let up = MockUpstream::start().await;
    let gw = TestGateway::start(&config("127.0.0.1:0", &up)).await;
    let (_, a) = create_key(&gw, "free").await;
    let (_, b) = create_key(&gw, "free").await;
    // per-key-per-route: reports allows 1 per key
    assert_eq!(call(&gw, "/reports", Some(&a)).await.status, 200);
    let r = call(&gw, "/reports", Some(&a)).await;
    assert_eq!((r.status, r.json()["code"].as_str()), (429, Some("throttle.plan_limit")));
    assert!(r.header("retry-after").is_some());
    assert_eq!(call(&gw, "/reports", Some(&b)).await.status, 200, "another key has its own budget");
    // Key a has taken 1 of its plan's 5 tokens and 1 of its 4 daily requests (the refused
    // /reports took nothing from the layers after the per-route limit). Three more pass;
    // the next is refused by the quota after taking the plan's 5th token; then the plan
    // limit refuses.
    let mut codes = Vec::new();
    for _ in 0..5 {
        let r = call(&gw, "/orders/x", Some(&a)).await;
        codes.push((
            r.status,
            if r.status == 200 { String::new() } else { r.json()["code"].as_str().unwrap().to_string() },
        ));
    }
    let want: Vec<(u16, String)> = vec![
        (200, "".into()),
        (200, "".into()),
        (200, "".into()),
        (429, "throttle.quota_exceeded".into()),
        (429, "throttle.plan_limit".into()),
    ];
    assert_eq!(codes, want);
}

#[tokio::test]
async fn quota_is_counted_refused_reported_and_reset_at_the_period_boundary() {
    let up = MockUpstream::start().await;
    let gw = TestGateway::start(&config("127.0.0.1:0", &up)).await;
    let (id, key) = create_key(&gw, "free").await;
    for _ in 0..4 {
        assert_eq!(call(&gw, "/orders/1", Some(&key)).await.status, 200);
    }
    let r = call(&gw, "/orders/1", Some(&key)).await;
    assert_eq!((r.status, r.json()["code"].as_str()), (429, Some("throttle.quota_exceeded")));
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&retry), "{retry}");
    assert_eq!(r.header("ratelimit-policy").unwrap(), "\"quota\";q=4;w=86400");
    let u = admin(&gw, "GET", &format!("/api/v1/usage/{id}"), None).await.json();
    assert_eq!((u["quota"]["used"].as_u64(), u["quota"]["remaining"].as_u64()), (Some(4), Some(0)));
    assert!(u["quota"]["resets_at"].as_str().unwrap().ends_with("T00:00:00.000Z"));
    // a day later the quota starts again (the plan's per-key bucket is far from empty by then)
    gw.gateway().clock.advance(Duration::from_secs(86_400));
    assert_eq!(call(&gw, "/orders/1", Some(&key)).await.status, 200);
    let u = admin(&gw, "GET", &format!("/api/v1/usage/{id}"), None).await.json();
    assert_eq!(u["quota"]["used"], 1);
    assert_eq!(up.count(), 5, "refused requests never reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_use_exactly_the_quota() {
    let up = MockUpstream::start().await;
    let gw = TestGateway::start(&config("127.0.0.1:0", &up).replace(
        "pro:\n    throttle: { rate: 1000, burst: 1000 }",
        "pro:\n    throttle: { rate: 1000, burst: 1000 }\n    quota: { limit: 37, period: month }",
    ))
    .await;
    let (_, key) = create_key(&gw, "pro").await;
    let addr = gw.addr();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let key = key.clone();
            tokio::spawn(async move {
                let mut c = client::Conn::open(addr).await;
                let mut ok = 0;
                for _ in 0..10 {
                    if c.send(req("GET", "/orders/1").header("x-api-key", &key).body(empty()).unwrap())
                        .await
                        .unwrap()
                        .status
                        == 200
                    {
                        ok += 1;
                    }
                }
                ok
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_eq!(total, 37, "100 concurrent requests, quota 37");
}

#[tokio::test]
async fn keys_are_disabled_moved_and_revoked() {
    let up = MockUpstream::start().await;
    let gw = TestGateway::start(&config("127.0.0.1:0", &up)).await;
    let (id, key) = create_key(&gw, "free").await;
    let path = format!("/api/v1/keys/{id}");
    assert_eq!(admin(&gw, "PATCH", &path, Some(serde_json::json!({"status": "disabled"}))).await.status, 200);
    assert_eq!(call(&gw, "/orders/1", Some(&key)).await.status, 403);
    assert_eq!(
        admin(&gw, "PATCH", &path, Some(serde_json::json!({"status": "active", "plan": "pro"}))).await.json()["plan"],
        "pro"
    );
    for _ in 0..8 {
        assert_eq!(call(&gw, "/orders/1", Some(&key)).await.status, 200, "pro has no quota");
    }
    assert_eq!(admin(&gw, "PATCH", &path, Some(serde_json::json!({"plan": "nope"}))).await.status, 400);
    assert_eq!(admin(&gw, "DELETE", &path, None).await.status, 200);
    assert_eq!(call(&gw, "/orders/1", Some(&key)).await.status, 403);
    let r = admin(&gw, "PATCH", &path, Some(serde_json::json!({"status": "active"}))).await;
    assert_eq!((r.status, r.json()["code"].as_str()), (409, Some("admin.key_revoked")));
    let list = admin(&gw, "GET", "/api/v1/keys", None).await;
    assert!(!list.text().contains(&key[16..]), "listings never show keys");
    assert_eq!(list.json()["keys"][0]["status"], "revoked");
}

#[tokio::test]
async fn plans_managed_through_the_api() {
    let up = MockUpstream::start().await;
    let gw = TestGateway::start(&config("127.0.0.1:0", &up)).await;
    let gold = serde_json::json!({"throttle": {"rate": 0.001, "burst": 2}, "quota": {"limit": 100, "period": "week"}});
    assert_eq!(admin(&gw, "PUT", "/api/v1/plans/gold", Some(gold)).await.status, 200);
    let (_, key) = create_key(&gw, "gold").await;
    assert_eq!(call(&gw, "/orders/1", Some(&key)).await.status, 200);
    assert_eq!(call(&gw, "/orders/1", Some(&key)).await.status, 200);
    assert_eq!(call(&gw, "/orders/1", Some(&key)).await.status, 429);
    // A changed plan applies to the keys already on it, at once.
    let roomier = serde_json::json!({"throttle": {"rate": 0.001, "burst": 5}});
    assert_eq!(admin(&gw, "PUT", "/api/v1/plans/gold", Some(roomier)).await.status, 200);
    assert_eq!(call(&gw, "/orders/1", Some(&key)).await.status, 200, "the new plan's bucket");
    let r = admin(&gw, "PUT", "/api/v1/plans/free", Some(serde_json::json!({}))).await;
    assert_eq!((r.status, r.json()["code"].as_str()), (409, Some("admin.plan_in_config")));
    let r =
        admin(&gw, "PUT", "/api/v1/plans/bad", Some(serde_json::json!({"routes": {"nope": {"rate": 1, "burst": 1}}})))
            .await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("not defined"));
    assert_eq!(admin(&gw, "DELETE", "/api/v1/plans/gold", None).await.status, 409, "a plan with keys stays");
    let plans = admin(&gw, "GET", "/api/v1/plans", None).await.json();
    let names: Vec<(&str, &str)> = plans["plans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["source"].as_str().unwrap()))
        .collect();
    assert_eq!(names, vec![("free", "config"), ("gold", "api"), ("pro", "config")]);
}

#[test]
fn key_related_config_errors_carry_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        "listeners: [{ name: p, bind: \"127.0.0.1:0\" }]\nstate: { store: \"postgres://x\" }\nupstreams: { u: { targets: [\"http://127.0.0.1:1\"] } }\nroutes:\n  - { name: r, match: { path: / }, upstream: u, throttle: { rate: 1, burst: 1, per: key } }\nplans:\n  free:\n    routes: { nope: { rate: 1, burst: 1 } }\n    quota: { limit: 0, period: day }\n",
    )
    .unwrap();
    let err = portcullis::config::load_runtime(&path, None).unwrap_err().to_string();
    for (line, text) in
        [(2, "state.store"), (5, "per: key needs the route to require a key"), (8, "not defined"), (9, "quota.limit")]
    {
        assert!(err.contains(&format!("c.yaml:{line}:")) && err.contains(text), "line {line} {text}: {err}");
    }
}

/// The CLI writes to the store of a running gateway, which picks the key up within a
/// second; quota counts survive kill -9 (flushed every second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_keys_reach_a_running_gateway_and_quotas_survive_kill_9() {
    let up = MockUpstream::start().await;
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let yaml = config(&bind, &up)
        .replace(&format!("admin: {{ bind: \"127.0.0.1:0\", token_sha256: \"{}\" }}", token_sha()), "");
    let bin = env!("CARGO_BIN_EXE_portcullis");
    let mut proc = GatewayProcess::spawn(bin, &yaml);
    let addr: std::net::SocketAddr = bind.parse().unwrap();
    proc.wait_ready(addr).await;
    let cfg = proc.dir.path().join("gateway.yaml");
    let out = std::process::Command::new(bin)
        .args(["keys", "create", "--plan", "free", "--name", "acme", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let key = text.lines().find_map(|l| l.strip_prefix("key:")).unwrap().trim().to_string();
    let id = text.lines().find_map(|l| l.strip_prefix("key_id:")).unwrap().trim().to_string();
    let send = |key: String| async move {
        client::send(addr, &Opts::default(), req("GET", "/orders/1").header("x-api-key", key).body(empty()).unwrap())
            .await
            .unwrap()
            .status
    };
    let mut first = 0;
    for _ in 0..40 {
        first = send(key.clone()).await;
        if first == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(first, 200, "the running gateway picked up the CLI's key");
    assert_eq!(send(key.clone()).await, 200);
    assert_eq!(send(key.clone()).await, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await; // one flush interval and a half
    proc.child.kill().unwrap(); // SIGKILL: no shutdown, no final flush
    proc.child.wait().unwrap();
    let list = std::process::Command::new(bin).args(["keys", "list", "-c"]).arg(&cfg).output().unwrap();
    assert!(String::from_utf8_lossy(&list.stdout).contains(&id));
    // restart on the same store: 3 of the 4 daily requests are used
    let restarted = std::process::Command::new(bin)
        .args(["run", "--no-watch", "-c"])
        .arg(&cfg)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    proc.child = restarted;
    proc.wait_ready(addr).await;
    assert_eq!(send(key.clone()).await, 200, "the 4th request of the day");
    assert_eq!(send(key.clone()).await, 429, "the count survived kill -9");
}
