//! TLS termination, client certificates (mTLS), HTTP/2 over ALPN and h2c, certificate reload.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests: a panic is a failed assertion

use portcullis_testkit::client::{self, Opts, empty, req};
use portcullis_testkit::{MockUpstream, Pki, TestGateway};

fn config(up: &MockUpstream, mode: &str) -> String {
    format!(
        r#"
listeners:
  - name: tls
    bind: "127.0.0.1:0"
    tls: {{ cert: server.pem, key: server.key {auth} }}
  - {{ name: plain, bind: "127.0.0.1:0" }}
log: {{ access: off }}
upstreams: {{ up: {{ targets: ["{}"] }} }}
routes: [{{ name: all, match: {{ path: "/*" }}, upstream: up }}]
"#,
        up.url(),
        auth = if mode == "none" { String::new() } else { format!(", client_auth: {{ ca: ca.pem, mode: {mode} }}") },
    )
}

async fn start(up: &MockUpstream, mode: &str, pki: &Pki) -> TestGateway {
    let dir = tempfile::tempdir().unwrap();
    pki.write(dir.path());
    TestGateway::start_in(dir, &config(up, mode), false).await.unwrap()
}

#[tokio::test]
async fn mtls_required_refuses_clients_without_a_valid_certificate() {
    let pki = Pki::new();
    let up = MockUpstream::start().await;
    let gw = start(&up, "required", &pki).await;
    let addr = gw.listener("tls");

    let anon = Opts { tls: Some(pki.client_config(None, &[b"http/1.1"])), h2c: false };
    let err = client::send(addr, &anon, req("GET", "/").body(empty()).unwrap()).await.unwrap_err();
    assert!(err.contains("tls") || err.contains("connection") || err.contains("closed"), "{err}");

    let stranger = Opts { tls: Some(pki.client_config(Some(&pki.stranger), &[b"http/1.1"])), h2c: false };
    assert!(client::send(addr, &stranger, req("GET", "/").body(empty()).unwrap()).await.is_err());
    assert_eq!(up.count(), 0, "no request without a verified certificate reached the upstream");

    let ok = Opts { tls: Some(pki.client_config(Some(&pki.client), &[b"http/1.1"])), h2c: false };
    let r = client::send(addr, &ok, req("GET", "/hello").body(empty()).unwrap()).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(up.requests()[0].header("x-forwarded-proto").unwrap(), "https");
    let m = gw.gateway().metrics.encode();
    assert!(m.contains("portcullis_connections_refused_total{reason=\"tls_handshake\"}"), "{m}");
}

#[tokio::test]
async fn mtls_optional_accepts_both_and_exposes_the_identity() {
    let pki = Pki::new();
    let up = MockUpstream::start().await;
    let gw = start(&up, "optional", &pki).await;
    let addr = gw.listener("tls");
    let anon = Opts { tls: Some(pki.client_config(None, &[b"http/1.1"])), h2c: false };
    assert_eq!(client::send(addr, &anon, req("GET", "/").body(empty()).unwrap()).await.unwrap().status, 200);
    let with = Opts { tls: Some(pki.client_config(Some(&pki.client), &[b"http/1.1"])), h2c: false };
    assert_eq!(client::send(addr, &with, req("GET", "/").body(empty()).unwrap()).await.unwrap().status, 200);
    // a certificate from another CA is refused even in optional mode
    let stranger = Opts { tls: Some(pki.client_config(Some(&pki.stranger), &[b"http/1.1"])), h2c: false };
    assert!(client::send(addr, &stranger, req("GET", "/").body(empty()).unwrap()).await.is_err());
}

#[test]
fn client_certificate_identity_is_parsed() {
    let pki = Pki::new();
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(pki.client.cert.as_bytes())
        .map(|c: rustls_pki_types::CertificateDer<'static>| c.to_vec())
        .unwrap();
    let id = portcullis::tls::parse_client_cert(&der).unwrap();
    assert_eq!(id.common_name.as_deref(), Some("client-1"));
    assert!(id.subject.contains("CN=client-1"));
    assert_eq!(id.sans, vec!["URI:spiffe://test/client-1"]);
    assert_eq!(id.fingerprint_sha256.len(), 64);
}

#[tokio::test]
async fn http2_over_alpn_and_h2c_prior_knowledge() {
    let pki = Pki::new();
    let up = MockUpstream::start().await;
    let gw = start(&up, "none", &pki).await;

    let h2 = Opts { tls: Some(pki.client_config(None, &[b"h2", b"http/1.1"])), h2c: false };
    let r =
        client::send(gw.listener("tls"), &h2, http::Request::get("https://localhost/over-h2").body(empty()).unwrap())
            .await
            .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.version, http::Version::HTTP_2);

    let h2c = Opts { tls: None, h2c: true };
    let r = client::send(
        gw.listener("plain"),
        &h2c,
        http::Request::get("http://localhost/over-h2c").body(client::full("body")).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.version, http::Version::HTTP_2);

    let seen: Vec<(String, http::Version, Option<String>)> =
        up.requests().iter().map(|r| (r.uri.clone(), r.version, r.header("host"))).collect();
    assert_eq!(
        seen[0],
        ("/over-h2".into(), http::Version::HTTP_11, Some("localhost".into())),
        "HTTP/2 is translated to HTTP/1.1 upstream with a Host header"
    );
    assert_eq!(seen[1].0, "/over-h2c");
    assert_eq!(&up.requests()[1].body[..], b"body");
}

#[tokio::test]
async fn tls_is_1_2_or_newer() {
    let pki = Pki::new();
    let up = MockUpstream::start().await;
    let gw = start(&up, "none", &pki).await;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls_pki_types::pem::PemObject::from_pem_slice(pki.ca.cert.as_bytes()).unwrap()).unwrap();
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        let opts = Opts { tls: Some(std::sync::Arc::new(cfg)), h2c: false };
        assert_eq!(
            client::send(gw.listener("tls"), &opts, req("GET", "/").body(empty()).unwrap()).await.unwrap().status,
            200
        );
    }
}

#[tokio::test]
async fn certificates_are_reloaded() {
    let pki = Pki::new();
    let up = MockUpstream::start().await;
    let gw = start(&up, "none", &pki).await;
    let addr = gw.listener("tls");
    let old = Opts { tls: Some(pki.client_config(None, &[b"http/1.1"])), h2c: false };
    assert_eq!(client::send(addr, &old, req("GET", "/").body(empty()).unwrap()).await.unwrap().status, 200);

    // rotate to a certificate from a new CA; after reload only clients trusting it connect
    let next = Pki::new();
    next.write(gw.dir());
    gw.reload().await.unwrap();
    assert!(client::send(addr, &old, req("GET", "/").body(empty()).unwrap()).await.is_err());
    let new = Opts { tls: Some(next.client_config(None, &[b"http/1.1"])), h2c: false };
    assert_eq!(client::send(addr, &new, req("GET", "/").body(empty()).unwrap()).await.unwrap().status, 200);
}
