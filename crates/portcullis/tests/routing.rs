//! Routing by host, method, path parameters and wildcards; strip_prefix; 404/405 bodies.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests: a panic is a failed assertion

use portcullis_testkit::client::{self, Opts, empty, req};
use portcullis_testkit::{MockUpstream, Reply, TestGateway};

fn config(a: &MockUpstream, b: &MockUpstream) -> String {
    format!(
        r#"
listeners: [{{ name: public, bind: "127.0.0.1:0" }}]
log: {{ access: off }}
upstreams:
  a: {{ targets: ["{a}"] }}
  b: {{ targets: ["{b}/base"] }}
routes:
  - {{ name: get-order, match: {{ methods: [GET], path: "/orders/{{id}}" }}, upstream: a }}
  - {{ name: orders-rest, match: {{ path: "/orders/*" }}, upstream: b }}
  - {{ name: admin-host, match: {{ hosts: [admin.example.com], path: "/orders/{{id}}" }}, upstream: b }}
  - {{ name: wild-host, match: {{ hosts: ["*.tenant.example"], methods: [GET], path: /hello }}, upstream: a }}
  - {{ name: api, match: {{ path: "/api/v1/*" }}, upstream: a, strip_prefix: /api/v1 }}
  - {{ name: login, match: {{ methods: [POST], path: /login }}, upstream: a }}
"#,
        a = a.url(),
        b = b.url()
    )
}

async fn send_host(gw: &TestGateway, method: &str, host: &str, path: &str) -> client::Resp {
    let r = http::Request::builder().method(method).uri(path).header("host", host).body(empty()).unwrap();
    client::send(gw.addr(), &Opts::default(), r).await.unwrap()
}

#[tokio::test]
async fn routes_by_host_method_params_and_wildcard() {
    let a = MockUpstream::with(|_| Reply::ok("from-a")).await;
    let b = MockUpstream::with(|_| Reply::ok("from-b")).await;
    let gw = TestGateway::start(&config(&a, &b)).await;

    let r = send_host(&gw, "GET", "localhost", "/orders/42").await;
    assert_eq!((r.status, r.text().as_str()), (200, "from-a"));
    assert_eq!(r.version, http::Version::HTTP_11);
    assert_eq!(a.requests().last().unwrap().uri, "/orders/42");

    // same path, other method: the wildcard route takes it, to the other upstream with its base path
    let r = send_host(&gw, "DELETE", "localhost", "/orders/42").await;
    assert_eq!((r.status, r.text().as_str()), (200, "from-b"));
    assert_eq!(b.requests().last().unwrap().uri, "/base/orders/42");
    let r = send_host(&gw, "GET", "localhost", "/orders/42/lines").await;
    assert_eq!(r.text(), "from-b");

    // host-specific route wins for its host, case- and port-insensitively
    let r = send_host(&gw, "GET", "Admin.Example.COM:8443", "/orders/1").await;
    assert_eq!(r.text(), "from-b");
    // wildcard host
    let r = send_host(&gw, "GET", "acme.tenant.example", "/hello").await;
    assert_eq!((r.status, r.text().as_str()), (200, "from-a"));
    let r = send_host(&gw, "GET", "tenant.example", "/hello").await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn strip_prefix_and_query_reach_the_upstream() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    let gw = TestGateway::start(&config(&a, &b)).await;
    let r = client::get(gw.addr(), "/api/v1/users/7?expand=all&x=%20y").await;
    assert_eq!(r.status, 200);
    assert_eq!(a.requests()[0].uri, "/users/7?expand=all&x=%20y");
    client::get(gw.addr(), "/api/v1").await;
    assert_eq!(a.requests()[1].uri, "/");
}

#[tokio::test]
async fn not_found_and_method_not_allowed_are_problem_documents() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    let gw = TestGateway::start(&config(&a, &b)).await;

    let r = client::get(gw.addr(), "/nothing/here").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.header("content-type").unwrap(), "application/problem+json");
    let j = r.json();
    assert_eq!(j["code"], "route.not_found");
    assert_eq!(j["status"], 404);
    assert_eq!(j["request_id"].as_str().unwrap(), r.header("x-request-id").unwrap());
    assert!(j["type"].is_string() && j["title"].is_string());

    let r = client::send(gw.addr(), &Opts::default(), req("GET", "/login").body(empty()).unwrap()).await.unwrap();
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow").unwrap(), "POST");
    assert_eq!(r.json()["code"], "route.method_not_allowed");
    assert_eq!(a.count() + b.count(), 0, "nothing reached an upstream");
}

#[tokio::test]
async fn one_resource_one_route_whatever_the_spelling() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    let gw = TestGateway::start(&config(&a, &b)).await;
    for spelling in ["/orders/42", "/orders//42", "/orders/./42", "/x/../orders/42", "/%6frders/42", "/orders/42/"] {
        let r = client::get(gw.addr(), spelling).await;
        assert_eq!(r.status, 200, "{spelling}");
    }
    let seen: Vec<String> = a.requests().iter().map(|r| r.uri.clone()).collect();
    assert_eq!(seen[..5], ["/orders/42", "/orders/42", "/orders/42", "/orders/42", "/orders/42"], "{seen:?}");
    assert_eq!(seen[5], "/orders/42/");
}
