//! Cluster mode: gateway nodes sharing a real `redis-server` (started here on a free port):
//! keys made on one node work on the others, a route limit holds across three nodes,
//! admin actions reach every node, and Redis dying mid-load never yields a 5xx.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests: a panic is a failed assertion

use portcullis_testkit::client::{self, Conn, Opts, empty, req};
use portcullis_testkit::{MockUpstream, RedisCluster, RedisServer, TestGateway, eventually};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn token_sha() -> String {
    client::admin_token_sha256()
}

/// One node's config; `extra` is added to the `state` mapping.
fn node(redis: &RedisServer, up: &MockUpstream, state_extra: &str, route_throttle: &str) -> String {
    node_at(&redis.url(), up, state_extra, route_throttle)
}

fn node_at(redis: &str, up: &MockUpstream, state_extra: &str, route_throttle: &str) -> String {
    format!(
        r#"
listeners: [{{ name: public, bind: "127.0.0.1:0" }}]
admin: {{ bind: "127.0.0.1:0", token_sha256: "{sha}" }}
state: {{ store: "{redis}", prefix: "t"{state_extra} }}
log: {{ access: off }}
upstreams: {{ up: {{ targets: ["{up}"] }} }}
routes:
  - {{ name: hot, match: {{ path: /hot }}, upstream: up, throttle: {route_throttle} }}
  - {{ name: orders, match: {{ path: "/orders/*" }}, upstream: up, auth: {{ api_key: true }} }}
plans:
  free:
    quota: {{ limit: 1000, period: day }}
ip_rules:
  - {{ name: per-ip, limit: 5, window: 1m, action: block, scope: {{ path_prefix: /limited }} }}
"#,
        sha = token_sha(),
        up = up.url()
    )
}

async fn admin(gw: &TestGateway, method: &str, path: &str, body: Option<serde_json::Value>) -> client::Resp {
    client::admin(gw.admin(), method, path, body).await
}

async fn call(gw: &TestGateway, path: &str, key: Option<&str>) -> u16 {
    let mut b = req("GET", path);
    if let Some(k) = key {
        b = b.header("x-api-key", k);
    }
    client::send(gw.addr(), &Opts::default(), b.body(empty()).unwrap()).await.unwrap().status
}

async fn nodes(
    n: usize,
    redis: &RedisServer,
    up: &MockUpstream,
    state_extra: &str,
    throttle: &str,
) -> Vec<TestGateway> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(TestGateway::start(&node(redis, up, state_extra, throttle)).await);
    }
    out
}

/// Tries an asynchronous check (a request) for up to a second.
async fn within_a_second<F: std::future::Future<Output = bool>>(check: impl FnMut() -> F) -> bool {
    portcullis_testkit::eventually_async(Duration::from_secs(1), check).await
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

#[tokio::test]
async fn a_key_made_on_one_node_works_on_the_others_and_its_revocation_reaches_them_within_a_second() {
    let redis = RedisServer::start();
    let up = MockUpstream::start().await;
    let gws = nodes(3, &redis, &up, "", "{ rate: 1000, burst: 1000 }").await;
    let (a, c) = (&gws[0], &gws[2]);
    let r = admin(a, "POST", "/api/v1/keys", Some(serde_json::json!({"name": "acme", "plan": "free"}))).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let (id, key) = (r.json()["id"].as_str().unwrap().to_string(), r.json()["key"].as_str().unwrap().to_string());
    // The node that did not make it knows it within a second (pub/sub; polling is the backstop).
    let works = within_a_second(|| async { call(c, "/orders/1", Some(&key)).await == 200 }).await;
    assert!(works, "a key created on node A authenticates on node C within 1 s");
    assert_eq!(admin(a, "DELETE", &format!("/api/v1/keys/{id}"), None).await.status, 200);
    let refused = within_a_second(|| async { call(c, "/orders/1", Some(&key)).await == 403 }).await;
    assert!(refused, "a key revoked on node A is refused on node C within 1 s");
    // Key hygiene: Redis names never hold the key, its secret or its id; every counter has a TTL.
    let names = redis.command("KEYS *").unwrap();
    assert!(!names.contains(&key) && !names.contains(&id), "{names}");
    let stored = redis.command("HGETALL {t}:keys").unwrap();
    assert!(!stored.contains(&key[16..]), "only the key's hash is stored");
    for name in names.lines().filter(|l| l.starts_with("t:q:") || l.starts_with("t:rl:")) {
        let ttl = redis.command(&format!("TTL {name}")).unwrap();
        assert!(ttl.trim_start_matches(':').trim().parse::<i64>().unwrap() > 0, "{name} has a TTL: {ttl}");
    }
}

/// Sends requests as fast as `conns` keep-alive connections allow until `stop`; counts 200s
/// and anything 5xx.
async fn hammer(
    addr: std::net::SocketAddr,
    conns: usize,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    bad: Arc<AtomicU64>,
) {
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (stop, ok, bad) = (stop.clone(), ok.clone(), bad.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await;
            while !stop.load(Ordering::Relaxed) {
                match conn.send(req("GET", "/hot").body(empty()).unwrap()).await {
                    Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    Ok(r) if r.status >= 500 => bad.fetch_add(1, Ordering::Relaxed),
                    Ok(_) => 0,
                    Err(_) => {
                        conn = Conn::open(addr).await;
                        0
                    }
                };
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

fn evalsha_calls(redis: &RedisServer) -> u64 {
    let info = redis.command("INFO commandstats").unwrap();
    info.lines()
        .find(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .and_then(|l| l.split("calls=").nth(1))
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_one_route_limit_within_five_percent_without_a_redis_call_per_request() {
    let redis = RedisServer::start();
    let up = MockUpstream::start().await;
    // A generous timeout: 3 nodes, the load and Redis share 2 cores here, and a call that
    // times out would (rightly) switch a node to its local share, which is not under test.
    let gws = nodes(3, &redis, &up, ", timeout: 1s", "{ rate: 200, burst: 100 }").await;
    let (stop, ok, bad) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let sent_before = up.count();
    let calls_before = evalsha_calls(&redis);
    let start = Instant::now();
    let loads: Vec<_> =
        gws.iter().map(|g| tokio::spawn(hammer(g.addr(), 4, stop.clone(), ok.clone(), bad.clone()))).collect();
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Relaxed);
    for l in loads {
        l.await.unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let admitted = ok.load(Ordering::Relaxed) as f64;
    let expected = 100.0 + 200.0 * elapsed;
    let error = (admitted - expected).abs() / expected;
    let (mut offered, mut degraded) = (0.0, 0.0);
    for g in &gws {
        let text = client::get(g.admin(), "/metrics").await.text();
        offered += metric(&text, "portcullis_requests_total{");
        degraded += metric(&text, "portcullis_store_degraded_decisions_total");
    }
    let calls = (evalsha_calls(&redis) - calls_before) as f64;
    eprintln!(
        "3 nodes, route limit rate 200 burst 100, {elapsed:.2} s: admitted {admitted} of {offered} (expected {expected:.0}, \
         error {:.1}%), {calls} Redis script calls = {:.4} per request",
        error * 100.0,
        calls / offered
    );
    assert_eq!(bad.load(Ordering::Relaxed), 0);
    assert_eq!(degraded, 0.0, "every decision was a shared one");
    assert!(offered > expected * 2.0, "the test must overload the limit (offered {offered})");
    assert!(error <= 0.05, "admitted {admitted}, expected {expected:.0} ± 5%");
    assert_eq!((up.count() - sent_before) as f64, admitted, "only admitted requests reached the upstream");
    assert!(calls / offered < 0.2, "leases: far fewer Redis calls than requests ({calls} for {offered})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_load_means_no_5xx_local_shares_and_recovery_with_quota_counts_reconciled() {
    let mut redis = RedisServer::start();
    let up = MockUpstream::start().await;
    let gws = nodes(2, &redis, &up, ", timeout: 30ms", "{ rate: 20, burst: 20 }").await;
    let r = admin(&gws[0], "POST", "/api/v1/keys", Some(serde_json::json!({"name": "acme", "plan": "free"}))).await;
    let (id, key) = (r.json()["id"].as_str().unwrap().to_string(), r.json()["key"].as_str().unwrap().to_string());
    for g in &gws {
        assert!(
            eventually(Duration::from_secs(2), || g.gateway().keys.as_ref().unwrap().index.load().get(&id).is_some())
                .await
        );
    }
    for g in &gws {
        for _ in 0..3 {
            assert_eq!(call(g, "/orders/1", Some(&key)).await, 200);
        }
        let gw = g.gateway().clone();
        assert!(eventually(Duration::from_secs(3), || gw.cluster.get().unwrap().nodes() == 2).await, "both nodes seen");
    }
    // Redis dies under load: not one 5xx.
    let (stop, ok, bad) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let loads: Vec<_> =
        gws.iter().map(|g| tokio::spawn(hammer(g.addr(), 2, stop.clone(), ok.clone(), bad.clone()))).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    for l in loads {
        l.await.unwrap();
    }
    assert_eq!(bad.load(Ordering::Relaxed), 0, "no 5xx while Redis died");
    // Let the local shares refill (rate 10/s per node), then: keyed calls keep counting
    // locally; the hot route is held to each node's share (20 / 2 nodes = burst 10 per node).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut statuses = Vec::new();
    for g in &gws {
        for _ in 0..2 {
            statuses.push(call(g, "/orders/1", Some(&key)).await);
        }
        let mut hot = 0;
        for _ in 0..30 {
            let s = call(g, "/hot", None).await;
            statuses.push(s);
            hot += u32::from(s == 200);
        }
        assert!((9..=12).contains(&hot), "node share of the route limit while Redis is down: {hot}");
    }
    assert!(statuses.iter().all(|s| *s < 500), "{statuses:?}");
    for g in &gws {
        let text = client::get(g.admin(), "/metrics").await.text();
        assert_eq!(metric(&text, "portcullis_store_up"), 0.0);
        let status = admin(g, "GET", "/api/v1/cluster", None).await.json();
        assert_eq!((status["store_up"].as_bool(), status["nodes"].as_u64()), (Some(false), Some(2)), "{status}");
        assert!(metric(&text, "portcullis_store_degraded_decisions_total{mode=\"local\"}") > 0.0, "{text}");
    }
    // Redis comes back (same data dir, AOF): the key survived, the nodes notice, and the
    // requests counted while it was down are added to the shared quota count.
    redis.restart();
    let stored = redis.command("HGETALL {t}:keys").unwrap();
    assert!(stored.contains(&id), "the key is in Redis after a SIGKILL and restart (AOF): {stored}");
    for g in &gws {
        let gw = g.gateway().clone();
        assert!(eventually(Duration::from_secs(5), || gw.cluster.get().unwrap().is_up()).await, "store up again");
    }
    let q = |r: &RedisServer| {
        let keys = r.command("KEYS t:q:*").unwrap();
        let name = keys.lines().find(|l| l.starts_with("t:q:")).unwrap().to_string();
        r.command(&format!("HGET {name} u")).unwrap()
    };
    let expect = "$2\r\n10\r\n"; // 3 + 3 before, 2 + 2 during the outage
    let reconciled = eventually(Duration::from_secs(5), || q(&redis) == expect).await;
    assert!(reconciled, "quota count in Redis after recovery: {:?}", q(&redis));
    assert_eq!(call(&gws[1], "/orders/1", Some(&key)).await, 200, "the key survived the Redis restart");
    let usage = admin(&gws[0], "GET", &format!("/api/v1/usage/{id}"), None).await.json();
    assert!(usage.to_string().contains("11") || usage.to_string().contains("10"), "{usage}");
}

#[tokio::test]
async fn a_key_made_with_the_cli_works_at_once_and_strict_limits_ask_redis_for_every_request() {
    let redis = RedisServer::start();
    let up = MockUpstream::start().await;
    let gw = TestGateway::start(&node(&redis, &up, "", "{ rate: 20, burst: 10, strict: true }")).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["keys", "create", "--plan", "free", "--name", "cli", "-c"])
        .arg(gw.config_path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let key = text.lines().find_map(|l| l.strip_prefix("key: ")).unwrap().trim().to_string();
    let ok = within_a_second(|| async { call(&gw, "/orders/1", Some(&key)).await == 200 }).await;
    assert!(ok, "a key made with `portcullis keys create` works on a running node within 1 s");
    // strict: every admitted request is one Redis round trip (without it, this limit would
    // lease 2 tokens per call), and the burst holds.
    let before = evalsha_calls(&redis);
    let mut admitted = 0;
    for _ in 0..14 {
        admitted += u64::from(call(&gw, "/hot", None).await == 200);
    }
    assert!((10..=12).contains(&admitted), "burst 10 (plus what 20/s refilled meanwhile): {admitted}");
    assert!(evalsha_calls(&redis) - before >= admitted, "one script call per admitted request");
}

#[tokio::test]
async fn on_failure_closed_refuses_with_429_and_open_admits() {
    let mut redis = RedisServer::start();
    let up = MockUpstream::start().await;
    // rate 5: batches of one token, so no lease outlives Redis
    let closed =
        TestGateway::start(&node(&redis, &up, ", on_failure: closed, timeout: 30ms", "{ rate: 5, burst: 10 }")).await;
    let open =
        TestGateway::start(&node(&redis, &up, ", on_failure: open, timeout: 30ms", "{ rate: 1, burst: 1 }")).await;
    assert_eq!(call(&closed, "/hot", None).await, 200);
    redis.kill();
    let r = client::send(closed.addr(), &Opts::default(), req("GET", "/hot").body(empty()).unwrap()).await.unwrap();
    assert_eq!((r.status, r.json()["code"].as_str()), (429, Some("throttle.store_unavailable")));
    assert!(r.headers.get("retry-after").is_some());
    for _ in 0..5 {
        assert_eq!(call(&open, "/hot", None).await, 200, "open: the limit is not enforced while Redis is down");
    }
}

#[tokio::test]
async fn an_ip_blocked_on_one_node_is_blocked_on_the_others_within_a_second_and_unblocked_everywhere() {
    let redis = RedisServer::start();
    let up = MockUpstream::start().await;
    let gws = nodes(2, &redis, &up, "", "{ rate: 100, burst: 100 }").await;
    let (a, b) = (&gws[0], &gws[1]);
    for _ in 0..5 {
        assert_eq!(call(a, "/limited", None).await, 404, "under the limit: no route there");
    }
    assert_eq!(call(b, "/limited", None).await, 404, "node B has seen one request only");
    assert_eq!(call(a, "/limited", None).await, 403, "the 6th request on A is over the limit");
    // Watched without sending B any request: B must learn it from A, not count it itself.
    let gw = b.gateway().clone();
    let t = Instant::now();
    let blocked =
        eventually(Duration::from_secs(1), || !gw.runtime.load().ip_rules[0].over(gw.clock.now()).is_empty()).await;
    assert!(blocked, "node B blocks the IP within 1 s of node A");
    eprintln!("IP block reached node B after {:?}", t.elapsed());
    assert_eq!(call(b, "/limited", None).await, 403, "and refuses its next request");
    let listed = admin(b, "GET", "/api/v1/blocked-ips", None).await.json();
    assert_eq!(listed["blocked"][0]["ip"], "127.0.0.1", "{listed}");
    assert_eq!(admin(b, "DELETE", "/api/v1/blocked-ips/127.0.0.1", None).await.status, 200);
    let gw = a.gateway().clone();
    let cleared =
        eventually(Duration::from_secs(1), || gw.runtime.load().ip_rules[0].over(gw.clock.now()).is_empty()).await;
    assert!(cleared, "the unblock on B reached A");
    assert_eq!(call(a, "/limited", None).await, 404);
    assert_eq!(call(b, "/limited", None).await, 404);
}

#[tokio::test]
async fn a_reload_through_one_node_reaches_the_others() {
    let redis = RedisServer::start();
    let up = MockUpstream::start().await;
    let gws = nodes(2, &redis, &up, "", "{ rate: 100, burst: 100 }").await;
    let before = gws[1].gateway().runtime.load().generation;
    let r = admin(&gws[0], "POST", "/api/v1/reload", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let gw = gws[1].gateway().clone();
    assert!(eventually(Duration::from_secs(1), || gw.runtime.load().generation > before).await, "node B reloaded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_on_a_redis_cluster_share_keys_quotas_and_limits() {
    let redis = RedisCluster::start();
    let up = MockUpstream::start().await;
    let (a, b) = (
        TestGateway::start(&node_at(&redis.url(), &up, ", timeout: 1s", "{ rate: 1, burst: 10, per: ip }")).await,
        TestGateway::start(&node_at(&redis.url(), &up, ", timeout: 1s", "{ rate: 1, burst: 10, per: ip }")).await,
    );
    let r = admin(&a, "POST", "/api/v1/keys", Some(serde_json::json!({"name": "acme", "plan": "free"}))).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let (id, key) = (r.json()["id"].as_str().unwrap().to_string(), r.json()["key"].as_str().unwrap().to_string());
    let gw = b.gateway().clone();
    assert!(eventually(Duration::from_secs(1), || gw.keys.as_ref().unwrap().index.load().get(&id).is_some()).await);
    for g in [&a, &b] {
        for _ in 0..3 {
            assert_eq!(call(g, "/orders/1", Some(&key)).await, 200);
        }
    }
    // One per-IP bucket across both nodes, on whichever cluster node owns its slot.
    let mut admitted = 0;
    for i in 0..16 {
        admitted += u32::from(call(if i % 2 == 0 { &a } else { &b }, "/hot", None).await == 200);
    }
    assert!((10..=11).contains(&admitted), "burst 10 shared by two nodes: {admitted}");
    // Quota counts from both nodes add up in the counter's slot.
    let usage =
        || async { admin(&a, "GET", &format!("/api/v1/usage/{id}"), None).await.json()["quota"]["used"].as_u64() };
    let mut used = None;
    for _ in 0..40 {
        used = usage().await;
        if used == Some(6) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(used, Some(6), "3 + 3 requests counted across the nodes");
    let keys = redis.keys();
    let holding = keys.iter().filter(|k| !k.is_empty()).count();
    assert!(holding >= 2, "names spread over the cluster's nodes: {keys:?}");
    assert!(keys.iter().flatten().all(|k| !k.contains(&id)), "no raw key id in names: {keys:?}");
}

#[tokio::test]
async fn an_authorizer_cache_flush_on_one_node_reaches_the_others_within_a_second() {
    let redis = RedisServer::start();
    let up = MockUpstream::start().await;
    let fired = Arc::new(AtomicBool::new(false));
    let f = fired.clone();
    let authz = MockUpstream::with(move |r| {
        let q: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let allow = q["headers"]["authorization"] == "Bearer alice" && !f.load(Ordering::SeqCst);
        portcullis_testkit::Reply::ok(serde_json::json!({"allow": allow, "principal": "alice"}).to_string())
            .header("content-type", "application/json")
    })
    .await;
    let yaml = format!(
        r#"
listeners: [{{ name: public, bind: "127.0.0.1:0" }}]
admin: {{ bind: "127.0.0.1:0", token_sha256: "{sha}" }}
state: {{ store: "{redis}", prefix: "t" }}
log: {{ access: off }}
upstreams: {{ up: {{ targets: ["{up}"] }} }}
auth:
  external:
    authz: {{ url: "{authz}/authorize", timeout: 500ms, cache_ttl: 60s }}
routes:
  - {{ name: secure, match: {{ path: /secure }}, upstream: up, auth: {{ external: authz }} }}
"#,
        sha = token_sha(),
        redis = redis.url(),
        up = up.url(),
        authz = authz.url()
    );
    let (a, b) = (TestGateway::start(&yaml).await, TestGateway::start(&yaml).await);
    let alice = |gw: &TestGateway| {
        let addr = gw.addr();
        async move {
            let r = req("GET", "/secure").header("authorization", "Bearer alice").body(empty()).unwrap();
            client::send(addr, &Opts::default(), r).await.unwrap().status
        }
    };
    assert_eq!((alice(&a).await, alice(&b).await), (200, 200));
    fired.store(true, Ordering::SeqCst);
    assert_eq!(alice(&b).await, 200, "node B still has alice's allow cached");
    let r = admin(&a, "DELETE", "/api/v1/auth-cache?principal=alice", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let refused = within_a_second(|| async { alice(&b).await == 403 }).await;
    assert!(refused, "the flush made on node A reached node B within 1 s");
}

#[tokio::test]
async fn a_password_protected_redis_and_one_behind_tls_with_a_private_ca() {
    let up = MockUpstream::start().await;
    // Password in the URL.
    let redis = RedisServer::start_with(&["--requirepass", "s3cret-pw"]);
    let url = redis.url().replace("redis://", "redis://:s3cret-pw@");
    let gw = TestGateway::start(&node_at(&url, &up, "", "{ rate: 100, burst: 100 }")).await;
    assert_eq!(call(&gw, "/hot", None).await, 200);
    let r = admin(&gw, "POST", "/api/v1/keys", Some(serde_json::json!({"name": "acme", "plan": "free"}))).await;
    assert_eq!(r.status, 201);
    let wrong = redis.url().replace("redis://", "redis://:nope@");
    let yaml = node_at(&wrong, &up, "", "{ rate: 1, burst: 1 }");
    let err = TestGateway::start_in(tempfile::tempdir().unwrap(), &yaml, false)
        .await
        .err()
        .expect("a wrong password stops the start")
        .to_string();
    assert!(err.contains("state.store") && !err.contains("nope"), "{err}");
    // TLS with the CA given in state.tls (the system does not trust it).
    let pki = portcullis_testkit::Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = pki.write(dir.path());
    let tls = RedisServer::start_tls(&cert, &key, &ca);
    let url = tls.url().replace("redis://", "rediss://");
    let state = format!(", tls: {{ ca: \"{}\" }}", ca.display());
    let gw = TestGateway::start(&node_at(&url, &up, &state, "{ rate: 100, burst: 100 }")).await;
    assert_eq!(call(&gw, "/hot", None).await, 200);
    let r = admin(&gw, "POST", "/api/v1/keys", Some(serde_json::json!({"name": "acme", "plan": "free"}))).await;
    assert_eq!(r.status, 201, "keys are written over TLS");
    let yaml = node_at(&url, &up, "", "{ rate: 1, burst: 1 }");
    assert!(
        TestGateway::start_in(tempfile::tempdir().unwrap(), &yaml, false).await.is_err(),
        "without the CA the certificate is not trusted"
    );
}
