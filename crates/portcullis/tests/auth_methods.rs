//! Route `auth` beyond a single method: mTLS identity, `any`/`all` combinations, resource
//! policies with dry runs, and the config checks that refuse dangerous providers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests: a panic is a failed assertion

use jsonwebtoken::Algorithm;
use portcullis_testkit::client::{self, Opts, empty, req};
use portcullis_testkit::tokens::{SigningKey, claims};
use portcullis_testkit::{GatewayProcess, MockUpstream, Pki, TestGateway, free_port};
use serde_json::json;

const ISS: &str = "https://id.example.com/";

fn tls_config(up: &MockUpstream, alg: Algorithm) -> String {
    format!(
        r#"
listeners:
  - name: tls
    bind: "127.0.0.1:0"
    tls: {{ cert: server.pem, key: server.key, client_auth: {{ ca: ca.pem, mode: optional }} }}
  - {{ name: plain, bind: "127.0.0.1:0" }}
log: {{ access: off }}
upstreams: {{ up: {{ targets: ["{up}"] }} }}
auth:
  jwt:
    main: {{ issuer: "{ISS}", audiences: [orders], algorithms: [{alg:?}], public_key: idp.pem }}
routes:
  - {{ name: mtls, match: {{ path: /mtls }}, upstream: up, auth: {{ mtls: true }} }}
  - {{ name: either, match: {{ path: /either }}, upstream: up, auth: {{ mtls: true, jwt: main, require: any }} }}
  - {{ name: both, match: {{ path: /both }}, upstream: up, auth: {{ mtls: true, jwt: main }} }}
  - {{ name: site, match: {{ hosts: [localhost], path: /site }}, upstream: up }}
  - {{ name: admin-site, match: {{ hosts: [admin.example], path: /site }}, upstream: up, auth: {{ mtls: true }} }}
"#,
        up = up.url()
    )
}

async fn send(addr: std::net::SocketAddr, opts: &Opts, path: &str, token: Option<&str>) -> client::Resp {
    let mut b = req("GET", path);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    client::send(addr, opts, b.body(empty()).unwrap()).await.unwrap()
}

/// The TLS gateway of `tls_config`, its PKI, token key and upstream, and client options
/// presenting the PKI's client certificate.
async fn tls_gateway() -> (Pki, SigningKey, MockUpstream, TestGateway, Opts) {
    let pki = Pki::new();
    let key = SigningKey::es256(None);
    let up = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    pki.write(dir.path());
    std::fs::write(dir.path().join("idp.pem"), &key.public_pem).unwrap();
    let gw = TestGateway::start_in(dir, &tls_config(&up, key.alg), false).await.unwrap();
    let cert = Opts { tls: Some(pki.client_config(Some(&pki.client), &[b"http/1.1"])), h2c: false };
    (pki, key, up, gw, cert)
}

#[tokio::test]
async fn mtls_identity_and_method_combinations() {
    let (pki, key, up, gw, cert) = tls_gateway().await;
    let tls = gw.listener("tls");
    let anon = Opts { tls: Some(pki.client_config(None, &[b"http/1.1"])), h2c: false };
    let token = key.sign(&claims(ISS, "orders", 300, json!({"scope": "a"})));

    let r = send(tls, &cert, "/mtls", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(up.requests()[0].header("x-portcullis-principal").as_deref(), Some("client-1"), "CN is the principal");
    let r = send(tls, &anon, "/mtls", Some(&token)).await;
    assert_eq!((r.status, r.json()["code"].as_str()), (401, Some("auth.missing")));
    assert!(r.header("www-authenticate").is_none(), "no bearer challenge on a route without jwt");
    let r = send(gw.listener("plain"), &Opts::default(), "/mtls", None).await;
    assert_eq!(r.status, 401, "plaintext has no certificate");

    let before = up.count();
    assert_eq!(send(tls, &cert, "/either", None).await.status, 200, "any: the certificate is enough");
    assert_eq!(send(tls, &anon, "/either", Some(&token)).await.status, 200, "any: the token is enough");
    let r = send(tls, &anon, "/either", Some("not.a.token")).await;
    assert_eq!(r.json()["code"], "auth.invalid_token", "any: a bad credential is reported over a missing one");
    assert_eq!(send(tls, &anon, "/either", None).await.json()["code"], "auth.missing");
    assert_eq!(up.count(), before + 2);

    let r = send(tls, &cert, "/both", None).await;
    assert_eq!((r.status, r.json()["code"].as_str()), (401, Some("auth.missing")), "all: the token is missing");
    assert_eq!(send(tls, &anon, "/both", Some(&token)).await.status, 401, "all: the certificate is missing");
    let before = up.count();
    assert_eq!(send(tls, &cert, "/both", Some(&token)).await.status, 200);
    let got = &up.requests()[before];
    assert_eq!(got.header("x-portcullis-principal").as_deref(), Some("user-1"), "the token names the principal");
    assert_eq!(got.header("x-portcullis-scopes").as_deref(), Some("a"));
}

#[tokio::test]
async fn sni_and_host_must_lead_to_the_same_route() {
    let (_pki, _key, up, gw, cert) = tls_gateway().await;
    // The client's TLS connection names `localhost` (SNI); Host names another site.
    let with_host = |path: &str, host: &str| http::Request::get(path).header("host", host).body(empty()).unwrap();
    let r = client::send(gw.listener("tls"), &cert, with_host("/site", "admin.example")).await.unwrap();
    assert_eq!((r.status, r.json()["code"].as_str()), (421, Some("route.misdirected")));
    assert_eq!(up.count(), 0);
    let r = client::send(gw.listener("tls"), &cert, with_host("/site", "localhost")).await.unwrap();
    assert_eq!(r.status, 200);
    let r = client::send(gw.listener("tls"), &cert, with_host("/mtls", "other.example")).await.unwrap();
    assert_eq!(r.status, 200, "a route for any host is the same route whatever the name");
    // Plaintext has no SNI: Host alone routes.
    let r = client::send(gw.listener("plain"), &Opts::default(), with_host("/site", "admin.example")).await.unwrap();
    assert_eq!(r.status, 401, "routed to admin-site, which wants a certificate");
}

#[tokio::test]
async fn resource_policies_refuse_or_only_log_in_dry_run() {
    let up = MockUpstream::start().await;
    let yaml = format!(
        r#"
listeners: [{{ name: public, bind: "127.0.0.1:0" }}]
log: {{ access: off }}
upstreams: {{ up: {{ targets: ["{up}"] }} }}
policy: {{ deny_ips: ["203.0.113.0/24"] }}
routes:
  - {{ name: internal, match: {{ path: /internal }}, upstream: up, policy: {{ allow_ips: ["10.0.0.0/8"] }} }}
  - {{ name: trial, match: {{ path: /trial }}, upstream: up, policy: {{ deny_ips: ["127.0.0.0/8"], dry_run: true }} }}
  - {{ name: open, match: {{ path: /open }}, upstream: up }}
"#,
        up = up.url()
    );
    let gw = TestGateway::start(&yaml).await;
    let r = client::get(gw.addr(), "/internal").await;
    assert_eq!((r.status, r.json()["code"].as_str()), (403, Some("policy.denied")));
    assert_eq!(up.count(), 0, "the refused request never reached the backend");
    assert_eq!(client::get(gw.addr(), "/trial").await.status, 200, "dry run lets it through");
    assert_eq!(client::get(gw.addr(), "/open").await.status, 200);
    let m = gw.gateway().metrics.encode();
    assert!(m.contains(r#"portcullis_policy_matches_total{policy="trial",action="dry_run"} 1"#), "{m}");
    assert!(m.contains(r#"portcullis_policy_matches_total{policy="internal",action="deny"} 1"#), "{m}");
    assert!(m.contains(r#"reason="policy.denied""#), "{m}");
}

fn errors_of(yaml: &str, files: &[(&str, &[u8])]) -> String {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let path = dir.path().join("g.yaml");
    std::fs::write(&path, yaml).unwrap();
    match portcullis::config::load_runtime(&path, None) {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn dangerous_providers_and_routes_are_refused_with_file_and_line() {
    let base =
        "listeners: [{ name: p, bind: \"127.0.0.1:0\" }]\nupstreams: { u: { targets: [\"http://127.0.0.1:1\"] } }\n";
    let secret: &[u8] = b"0123456789abcdef0123456789abcdef\n";
    let cases: [(&str, &str); 12] = [
        (
            "  jwt: { j: { issuer: i, audiences: [a], algorithms: [none], secret_file: s } }\n",
            "alg none is never accepted",
        ),
        (
            "  jwt: { j: { issuer: i, audiences: [a], algorithms: [NoNe], secret_file: s } }\n",
            "alg none is never accepted",
        ),
        (
            "  jwt: { j: { issuer: i, audiences: [a], algorithms: [HS256, RS256], secret_file: s } }\n",
            "HS* cannot be allowed together",
        ),
        (
            "  jwt: { j: { issuer: i, audiences: [], algorithms: [HS256], secret_file: s } }\n",
            "must name at least one audience",
        ),
        ("  jwt: { j: { issuer: i, audiences: [a], algorithms: [HS256], secret_file: short } }\n", "at least 32 bytes"),
        (
            "  jwt: { j: { issuer: i, audiences: [a], algorithms: [RS256], jwks_url: \"http://id.example.com/k\" } }\n",
            "plain http is only allowed to a loopback",
        ),
        (
            "  jwt: { j: { issuer: i, audiences: [a], algorithms: [RS256], secret_file: s } }\n",
            "take their keys from jwks_url or public_key",
        ),
        ("  jwt: { j: { issuer: i, audiences: [a], algorithms: [HS256] } }\n", "exactly one of jwks_url"),
        (
            "  jwt: { j: { issuer: i, audiences: [a], algorithms: [HS256], secret_env: PORTCULLIS_TEST_UNSET_VAR } }\n",
            "is not set",
        ),
        ("  jwt: { j: { issuer: i, audiences: [a], algorithms: [ES512], secret_file: s } }\n", "is not one of"),
        ("  jwt: { j: { issuer: i, audiences: [a], algorithms: [RS256], public_key: s } }\n", "no public key"),
        (
            "  jwt: { j: { issuer: i, audiences: [a], algorithms: [HS256], secret_file: s, leeway: 1h } }\n",
            "leeway must be at most 5m",
        ),
    ];
    for (provider, want) in cases {
        let yaml = format!(
            "{base}auth:\n{provider}routes: [{{ name: r, match: {{ path: /x }}, upstream: u, auth: {{ jwt: j }} }}]\n"
        );
        let err = errors_of(&yaml, &[("s", secret), ("short", b"abc")]);
        assert!(err.contains(want), "{provider}: {err}");
        assert!(err.contains("g.yaml:4:"), "errors point at the provider's line: {err}");
    }
    let routes: [(&str, &str); 6] = [
        ("auth: { jwt: nobody }", "not defined under auth.jwt"),
        ("auth: { external: nobody }", "not defined under auth.external"),
        ("auth: {}", "must name a method"),
        ("auth: { api_key: true, scopes: [a] }", "needs a jwt or external method"),
        ("auth: sometimes", "must be `none` or a map"),
        ("policy: { dry_run: true }", "neither allow_ips nor deny_ips"),
    ];
    for (route, want) in routes {
        let yaml = format!("{base}routes:\n  - {{ name: r, match: {{ path: /x }}, upstream: u, {route} }}\n");
        let err = errors_of(&yaml, &[]);
        assert!(err.contains(want), "{route}: {err}");
        assert!(err.contains("g.yaml:4:"), "{route}: {err}");
    }
    let ok = format!(
        "{base}auth:\n  jwt: {{ j: {{ issuer: i, audiences: [a], algorithms: [HS256], secret_file: s }} }}\nroutes: [{{ name: r, match: {{ path: /x }}, upstream: u, auth: {{ jwt: j }} }}, {{ name: o, match: {{ path: /o }}, upstream: u, auth: none }}]\n"
    );
    assert_eq!(errors_of(&ok, &[("s", secret)]), "", "a sound provider compiles");
}

#[tokio::test]
async fn a_dry_run_policy_logs_what_it_would_refuse() {
    let up = MockUpstream::start().await;
    let bind = format!("127.0.0.1:{}", free_port());
    let yaml = format!(
        r#"
listeners: [{{ name: public, bind: "{bind}" }}]
log: {{ access: off }}
upstreams: {{ up: {{ targets: ["{up}"] }} }}
routes:
  - {{ name: trial, match: {{ path: /trial }}, upstream: up, policy: {{ allow_ips: ["10.0.0.0/8"], dry_run: true }} }}
"#,
        up = up.url()
    );
    let mut proc = GatewayProcess::spawn(env!("CARGO_BIN_EXE_portcullis"), &yaml);
    let addr = bind.parse().unwrap();
    proc.wait_ready(addr).await;
    assert_eq!(client::get(addr, "/trial").await.status, 200, "dry run passes");
    assert_eq!(up.count(), 1);
    proc.signal("TERM");
    let _ = proc.child.wait();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut proc.child.stderr.take().unwrap(), &mut stderr).unwrap();
    let line =
        stderr.lines().find(|l| l.contains("dry run")).unwrap_or_else(|| panic!("no dry-run line in:\n{stderr}"));
    assert!(line.contains("WARN") && line.contains("trial") && line.contains("127.0.0.1"), "{line}");
    assert!(line.contains("not in allow_ips"), "{line}");
}
