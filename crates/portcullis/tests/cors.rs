//! CORS: preflights answered at the gateway (before authentication, never forwarded),
//! refused for foreign origins, methods and headers; actual responses decorated for allowed
//! origins only, with the upstream's own CORS headers replaced.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests: a panic is a failed assertion

use jsonwebtoken::Algorithm;
use portcullis_testkit::client::{self, Opts, empty, req};
use portcullis_testkit::tokens::{SigningKey, claims};
use portcullis_testkit::{MockUpstream, Reply, TestGateway};
use serde_json::json;

const SECRET: &[u8] = b"cors-test-secret-cors-test-secret!";
const APP: &str = "https://app.example.com";

async fn gateway(up: &MockUpstream) -> TestGateway {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("jwt.key"), SECRET).unwrap();
    let yaml = format!(
        r#"
listeners: [{{ name: public, bind: "127.0.0.1:0" }}]
log: {{ access: off }}
upstreams: {{ up: {{ targets: ["{up}"] }} }}
auth:
  jwt:
    main: {{ issuer: iss, audiences: [api], algorithms: [HS256], secret_file: jwt.key }}
routes:
  - name: api
    match: {{ methods: [GET, POST], path: "/api/*" }}
    upstream: up
    auth: {{ jwt: main }}
    cors: {{ origins: ["{APP}"], headers: [Authorization, Content-Type], expose_headers: [x-request-id],
            credentials: true, max_age: 5m }}
  - {{ name: plain, match: {{ path: /plain }}, upstream: up }}
"#,
        up = up.url()
    );
    TestGateway::start_in(dir, &yaml, false).await.unwrap()
}

async fn send(gw: &TestGateway, method: &str, path: &str, headers: &[(&str, &str)]) -> client::Resp {
    let mut b = req(method, path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    client::send(gw.addr(), &Opts::default(), b.body(empty()).unwrap()).await.unwrap()
}

#[tokio::test]
async fn preflights_are_answered_at_the_gateway_and_responses_carry_the_policy() {
    let up = MockUpstream::with(|_| Reply::ok("ok").header("access-control-allow-origin", "*")).await;
    let gw = gateway(&up).await;

    let pre = [("origin", APP), ("access-control-request-method", "POST")];
    let r = send(
        &gw,
        "OPTIONS",
        "/api/orders",
        &[pre[0], pre[1], ("access-control-request-headers", "content-type, authorization")],
    )
    .await;
    assert_eq!(r.status, 204, "answered without credentials: {}", r.text());
    assert_eq!(r.header("access-control-allow-origin").as_deref(), Some(APP));
    assert_eq!(r.header("access-control-allow-methods").as_deref(), Some("GET, POST"));
    assert_eq!(r.header("access-control-allow-headers").as_deref(), Some("authorization, content-type"));
    assert_eq!(r.header("access-control-allow-credentials").as_deref(), Some("true"));
    assert_eq!(r.header("access-control-max-age").as_deref(), Some("300"));

    let refusals: [&[(&str, &str)]; 3] = [
        &[("origin", "https://evil.example"), pre[1]],
        &[pre[0], ("access-control-request-method", "DELETE")],
        &[pre[0], pre[1], ("access-control-request-headers", "x-evil")],
    ];
    for h in refusals {
        let r = send(&gw, "OPTIONS", "/api/orders", h).await;
        assert_eq!((r.status, r.json()["code"].as_str()), (403, Some("cors.rejected")), "{h:?}");
        assert!(r.header("access-control-allow-origin").is_none());
    }
    assert_eq!(up.count(), 0, "no preflight reached the backend");

    let token = SigningKey::hmac(Algorithm::HS256, SECRET).sign(&claims("iss", "api", 300, json!({})));
    let bearer = format!("Bearer {token}");
    let r = send(&gw, "GET", "/api/orders", &[("origin", APP), ("authorization", &bearer)]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin").as_deref(), Some(APP), "the backend's * was replaced");
    assert_eq!(r.header("access-control-allow-credentials").as_deref(), Some("true"));
    assert_eq!(r.header("access-control-expose-headers").as_deref(), Some("x-request-id"));
    assert!(r.headers.get_all("vary").iter().any(|v| v == "Origin"));

    let r = send(&gw, "GET", "/api/orders", &[("origin", "https://evil.example"), ("authorization", &bearer)]).await;
    assert_eq!(r.status, 200, "CORS is enforced by browsers: the request itself is served");
    assert!(r.header("access-control-allow-origin").is_none(), "but a foreign origin gets no permission to read it");

    let r = send(&gw, "GET", "/api/orders", &[("origin", APP)]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("access-control-allow-origin").as_deref(), Some(APP), "the app can read the error");

    let r = send(&gw, "GET", "/plain", &[("origin", APP)]).await;
    assert_eq!(r.header("access-control-allow-origin").as_deref(), Some("*"), "routes without cors pass the backend's");
}

#[test]
fn wildcard_origins_cannot_carry_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.yaml");
    std::fs::write(
        &path,
        "listeners: [{ name: p, bind: \"127.0.0.1:0\" }]\nupstreams: { u: { targets: [\"http://127.0.0.1:1\"] } }\nroutes:\n  - { name: r, match: { path: /x }, upstream: u, cors: { origins: [\"*\"], credentials: true } }\n  - { name: s, match: { path: /y }, upstream: u, cors: { origins: [\"https://a.example/path\"] } }\n",
    )
    .unwrap();
    let err = portcullis::config::load_runtime(&path, None).unwrap_err().to_string();
    assert!(err.contains("g.yaml:4:") && err.contains("cannot be combined with credentials"), "{err}");
    assert!(err.contains("g.yaml:5:") && err.contains("is not an origin"), "{err}");
}
