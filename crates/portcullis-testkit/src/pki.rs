//! Test certificates made with rcgen: a CA, a server certificate for `localhost` and
//! 127.0.0.1, client certificates signed by the CA, and one signed by a stranger.

use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, SanType};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct Pem {
    /// Certificate.
    pub cert: String,
    /// Private key.
    pub key: String,
}

/// A small PKI for one test.
pub struct Pki {
    /// CA certificate.
    pub ca: Pem,
    /// Server certificate (`localhost`, 127.0.0.1, ::1).
    pub server: Pem,
    /// Client certificate `CN=client-1`, SAN `URI:spiffe://test/client-1`.
    pub client: Pem,
    /// A client certificate from a different CA.
    pub stranger: Pem,
}

fn ca(cn: &str) -> (Pem, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::default();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    let cert = p.self_signed(&key).expect("ca");
    let pem = Pem { cert: cert.pem(), key: key.serialize_pem() };
    (pem, Issuer::new(p, key))
}

fn leaf(issuer: &Issuer<'_, KeyPair>, cn: &str, sans: Vec<SanType>) -> Pem {
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.subject_alt_names = sans;
    let cert = p.signed_by(&key, issuer).expect("leaf");
    Pem { cert: cert.pem(), key: key.serialize_pem() }
}

impl Pki {
    /// Generates everything.
    pub fn new() -> Pki {
        let (ca_pem, issuer) = ca("Portcullis Test CA");
        let server = leaf(
            &issuer,
            "localhost",
            vec![
                SanType::DnsName("localhost".try_into().expect("dns")),
                SanType::IpAddress("127.0.0.1".parse().expect("ip")),
                SanType::IpAddress("::1".parse().expect("ip")),
            ],
        );
        let client = leaf(&issuer, "client-1", vec![SanType::URI("spiffe://test/client-1".try_into().expect("uri"))]);
        let (_, other) = ca("Someone Else's CA");
        let stranger = leaf(&other, "mallory", vec![]);
        Pki { ca: ca_pem, server, client, stranger }
    }

    /// Writes `ca.pem`, `server.pem`, `server.key` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
        let ca = dir.join("ca.pem");
        let cert = dir.join("server.pem");
        let key = dir.join("server.key");
        std::fs::write(&ca, &self.ca.cert).expect("write");
        std::fs::write(&cert, &self.server.cert).expect("write");
        std::fs::write(&key, &self.server.key).expect("write");
        (ca, cert, key)
    }

    /// A client config trusting the CA, offering ALPN `alpn`, with an optional client
    /// certificate.
    pub fn client_config(&self, identity: Option<&Pem>, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(self.ca.cert.as_bytes()).expect("ca pem")).expect("root");
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
        let mut cfg = match identity {
            Some(id) => {
                let certs = vec![CertificateDer::from_pem_slice(id.cert.as_bytes()).expect("cert")];
                let key = PrivateKeyDer::from_pem_slice(id.key.as_bytes()).expect("key");
                builder.with_client_auth_cert(certs, key).expect("client auth")
            }
            None => builder.with_no_client_auth(),
        };
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(cfg)
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}
