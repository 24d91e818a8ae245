//! TLS termination: rustls with the ring provider, TLS 1.2 and 1.3 only, optional client
//! certificates verified against a CA bundle, and the verified certificate's identity for
//! later phases.

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

use crate::config::model::ClientAuthMode;

/// Paths and mode for one listener's TLS, already resolved against the config's directory.
#[derive(Debug, Clone)]
pub struct TlsFiles<'a> {
    /// Certificate chain (PEM).
    pub cert: &'a Path,
    /// Private key (PEM).
    pub key: &'a Path,
    /// Client CA bundle (PEM) when client certificates are requested.
    pub client_ca: Option<&'a Path>,
    /// Client certificate policy.
    pub mode: ClientAuthMode,
    /// Offer HTTP/2 through ALPN.
    pub http2: bool,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read certificates from {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("invalid PEM in {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate found in {}", path.display()));
    }
    Ok(certs)
}

/// Builds the rustls server config for one listener. Errors are one-line messages.
pub fn server_config(files: &TlsFiles<'_>) -> Result<Arc<ServerConfig>, String> {
    let certs = read_certs(files.cert)?;
    let key = PrivateKeyDer::from_pem_file(files.key)
        .map_err(|e| format!("cannot read a private key from {}: {e}", files.key.display()))?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    let builder = match (files.mode, files.client_ca) {
        (ClientAuthMode::None, _) => builder.with_no_client_auth(),
        (mode, Some(ca)) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certs(ca)? {
                roots.add(cert).map_err(|e| format!("unusable CA certificate in {}: {e}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let verifier = if mode == ClientAuthMode::Optional { verifier.allow_unauthenticated() } else { verifier };
            let verifier = verifier.build().map_err(|e| format!("client certificate verifier: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
        (_, None) => return Err("client_auth.mode optional/required needs client_auth.ca".into()),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not form a usable pair: {e}"))?;
    config.alpn_protocols =
        if files.http2 { vec![b"h2".to_vec(), b"http/1.1".to_vec()] } else { vec![b"http/1.1".to_vec()] };
    Ok(Arc::new(config))
}

/// What later phases may know about a TLS connection.
#[derive(Debug, Clone, Default)]
pub struct TlsInfo {
    /// Server name the client asked for (SNI), lowercased.
    pub sni: Option<String>,
    /// Negotiated ALPN protocol.
    pub alpn: Option<String>,
    /// The client certificate, present only when it was verified against the CA.
    pub client_cert: Option<ClientCert>,
}

/// Identity taken from a verified client certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientCert {
    /// Subject distinguished name, RFC 4514 style (`CN=svc,O=Example`).
    pub subject: String,
    /// Subject common name, when present.
    pub common_name: Option<String>,
    /// Subject alternative names: `DNS:x`, `URI:x`, `email:x`, `IP:x`.
    pub sans: Vec<String>,
    /// Hex SHA-256 of the DER certificate.
    pub fingerprint_sha256: String,
}

impl TlsInfo {
    /// Reads what a finished handshake tells us.
    pub fn from_connection(conn: &rustls::ServerConnection) -> TlsInfo {
        TlsInfo {
            sni: conn.server_name().map(str::to_ascii_lowercase),
            alpn: conn.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned()),
            client_cert: conn.peer_certificates().and_then(|c| c.first()).and_then(|c| parse_client_cert(c)),
        }
    }
}

/// Extracts subject, common name and SANs from a DER certificate.
pub fn parse_client_cert(der: &[u8]) -> Option<ClientCert> {
    use sha2::Digest;
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let subject = cert.subject();
    let common_name = subject.iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_string);
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(d) => sans.push(format!("DNS:{d}")),
                GeneralName::URI(u) => sans.push(format!("URI:{u}")),
                GeneralName::RFC822Name(e) => sans.push(format!("email:{e}")),
                GeneralName::IPAddress(ip) => {
                    let addr = match ip.len() {
                        4 => <[u8; 4]>::try_from(*ip).ok().map(|b| std::net::IpAddr::from(b).to_string()),
                        16 => <[u8; 16]>::try_from(*ip).ok().map(|b| std::net::IpAddr::from(b).to_string()),
                        _ => None,
                    };
                    if let Some(a) = addr {
                        sans.push(format!("IP:{a}"));
                    }
                }
                _ => {}
            }
        }
    }
    Some(ClientCert {
        subject: subject.to_string(),
        common_name,
        sans,
        fingerprint_sha256: hex::encode(sha2::Sha256::digest(der)),
    })
}
