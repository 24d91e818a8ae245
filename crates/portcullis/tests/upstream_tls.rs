//! TLS from the gateway to upstreams: `https://` targets verified against a pinned CA, a
//! client certificate presented when configured (mTLS), and refusals when the upstream's
//! certificate is not from the pinned CA or the upstream demands a certificate we lack.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests: a panic is a failed assertion

use http_body_util::Full;
use hyper_util::rt::TokioIo;
use portcullis_testkit::client;
use portcullis_testkit::{Pki, TestGateway};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// An HTTPS backend that requires a client certificate from `pki`'s CA and answers with the
/// certificate's subject CN in `x-client-cn`.
async fn mtls_backend(pki: &Pki) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(pki.ca.cert.as_bytes()).unwrap()).unwrap();
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build().unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(pki.server.cert.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(pki.server.key.as_bytes()).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            let count = count.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let der = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec());
                let cn = der.and_then(|d| portcullis::tls::parse_client_cert(&d)).and_then(|c| c.common_name);
                let service = hyper::service::service_fn(move |_req: hyper::Request<hyper::body::Incoming>| {
                    count.fetch_add(1, Ordering::SeqCst);
                    let cn = cn.clone().unwrap_or_default();
                    async move {
                        Ok::<_, std::convert::Infallible>(
                            hyper::Response::builder()
                                .header("x-client-cn", cn)
                                .body(Full::new(bytes::Bytes::from_static(b"secure")))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
            });
        }
    });
    (addr, served)
}

#[tokio::test]
async fn https_upstreams_are_verified_and_get_our_client_certificate() {
    let pki = Pki::new();
    let other = Pki::new();
    let (backend, served) = mtls_backend(&pki).await;
    let dir = tempfile::tempdir().unwrap();
    pki.write(dir.path());
    std::fs::write(dir.path().join("client.pem"), &pki.client.cert).unwrap();
    std::fs::write(dir.path().join("client.key"), &pki.client.key).unwrap();
    std::fs::write(dir.path().join("other-ca.pem"), &other.ca.cert).unwrap();
    let yaml = format!(
        r#"
listeners: [{{ name: public, bind: "127.0.0.1:0" }}]
log: {{ access: off }}
upstreams:
  secure: {{ targets: ["https://{backend}"], tls: {{ ca: ca.pem, cert: client.pem, key: client.key }} }}
  by-name: {{ targets: ["https://{backend}/v1"], tls: {{ ca: ca.pem, cert: client.pem, key: client.key, server_name: localhost }} }}
  no-cert: {{ targets: ["https://{backend}"], tls: {{ ca: ca.pem }} }}
  pinned-elsewhere: {{ targets: ["https://{backend}"], tls: {{ ca: other-ca.pem, cert: client.pem, key: client.key }} }}
  system-roots: {{ targets: ["https://{backend}"] }}
routes:
  - {{ name: secure, match: {{ path: /secure }}, upstream: secure }}
  - {{ name: by-name, match: {{ path: /by-name }}, upstream: by-name }}
  - {{ name: no-cert, match: {{ path: /no-cert }}, upstream: no-cert }}
  - {{ name: pinned, match: {{ path: /pinned }}, upstream: pinned-elsewhere }}
  - {{ name: system, match: {{ path: /system }}, upstream: system-roots }}
"#
    );
    let gw = TestGateway::start_in(dir, &yaml, false).await.unwrap();
    for _ in 0..2 {
        // twice: the second request reuses the pooled TLS connection
        let r = client::get(gw.addr(), "/secure").await;
        assert_eq!((r.status, r.text().as_str()), (200, "secure"));
        assert_eq!(r.header("x-client-cn").as_deref(), Some("client-1"), "the backend saw our client certificate");
    }
    assert_eq!(client::get(gw.addr(), "/by-name").await.status, 200, "server_name verified instead of the IP");
    assert_eq!(served.load(Ordering::SeqCst), 3);
    for path in ["/no-cert", "/pinned", "/system"] {
        let r = client::get(gw.addr(), path).await;
        assert_eq!((r.status, r.json()["code"].as_str()), (502, Some("upstream.unavailable")), "{path}");
    }
    assert_eq!(served.load(Ordering::SeqCst), 3, "no request was served over a connection that failed verification");
}

#[test]
fn tls_settings_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.yaml");
    std::fs::write(
        &path,
        "listeners: [{ name: p, bind: \"127.0.0.1:0\" }]\nupstreams:\n  a: { targets: [\"http://127.0.0.1:1\"], tls: { ca: x.pem } }\n  b: { targets: [\"https://127.0.0.1:1\"], tls: { cert: c.pem } }\n  c: { targets: [\"https://127.0.0.1:1\"], tls: { ca: missing.pem } }\nroutes: [{ name: r, match: { path: /x }, upstream: a }]\n",
    )
    .unwrap();
    let err = portcullis::config::load_runtime(&path, None).unwrap_err().to_string();
    assert!(err.contains("g.yaml:3:") && err.contains("tls applies to https:// targets"), "{err}");
    assert!(err.contains("g.yaml:4:") && err.contains("tls.cert and tls.key go together"), "{err}");
    assert!(err.contains("g.yaml:5:") && err.contains("missing.pem"), "{err}");
}
