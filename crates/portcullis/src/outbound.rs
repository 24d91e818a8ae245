//! A small HTTP/1.1 client for the gateway's own calls (JWKS documents, external
//! authorizers): one connection per call, one deadline over connect, TLS handshake, request
//! and the whole answer, and a cap on the answer's size. `https` uses rustls (ring) with the system roots or a configured CA
//! bundle; plain `http` is accepted only for loopback addresses.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use rustls_pki_types::pem::PemObject;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Where a call goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `https` (else plain http to loopback).
    pub https: bool,
    /// Host name or IP literal (no brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// `Host` header value.
    pub authority: String,
    /// Path and query sent.
    pub path_and_query: String,
}

impl Target {
    /// Parses an absolute URL. Plain `http` only to `localhost` or a loopback IP: a token
    /// key set fetched in clear over a network could be swapped by anyone on the path.
    pub fn parse(url: &str) -> Result<Target, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("{url:?} must start with https:// (or http:// to a loopback address)")),
        };
        let authority = uri.authority().ok_or_else(|| format!("{url:?} has no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!("{url:?}: credentials in the URL are not supported"));
        }
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_string();
        if !https {
            let loopback = host.eq_ignore_ascii_case("localhost")
                || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                return Err(format!("{url:?}: plain http is only allowed to a loopback address; use https"));
            }
        }
        Ok(Target {
            https,
            port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
            authority: authority.as_str().to_string(),
            path_and_query: uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
            host,
        })
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn system_roots() -> Arc<rustls::RootCertStore> {
    static ROOTS: OnceLock<Arc<rustls::RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::warn!("no system CA certificates found: https calls need a configured CA bundle");
            }
            Arc::new(roots)
        })
        .clone()
}

/// TLS settings for outbound calls: the CA bundle at `ca`, or the system roots.
pub fn tls_config(ca: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    tls_client(ca, None)
}

/// TLS settings trusting `ca` (or the system roots), presenting `identity` (certificate
/// chain and key, PEM) when given, offering HTTP/1.1 only.
pub fn tls_client(ca: Option<&Path>, identity: Option<(&Path, &Path)>) -> Result<Arc<ClientConfig>, String> {
    let roots = match ca {
        None => system_roots(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read CA certificates from {}: {e}", path.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("invalid PEM in {}: {e}", path.display()))?;
                roots.add(cert).map_err(|e| format!("unusable CA certificate in {}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("no certificate found in {}", path.display()));
            }
            Arc::new(roots)
        }
    };
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_root_certificates(roots);
    let mut config = match identity {
        None => config.with_no_client_auth(),
        Some((cert, key)) => {
            let chain: Vec<_> = rustls_pki_types::CertificateDer::pem_file_iter(cert)
                .map_err(|e| format!("cannot read {}: {e}", cert.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("invalid PEM in {}: {e}", cert.display()))?;
            let key = rustls_pki_types::PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("cannot read a private key from {}: {e}", key.display()))?;
            config.with_client_auth_cert(chain, key).map_err(|e| format!("client certificate and key: {e}"))?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Sends `GET` and returns the body of a 200 answer, all within `deadline`, refusing
/// bodies over `max_bytes`.
pub async fn get(
    target: &Target,
    tls: &Arc<ClientConfig>,
    deadline: Duration,
    max_bytes: usize,
) -> Result<Bytes, String> {
    call(target, tls, http::Method::GET, None, deadline, max_bytes).await
}

/// Sends `POST` with a JSON body and returns the body of a 200 answer, like [`get`].
pub async fn post_json(
    target: &Target,
    tls: &Arc<ClientConfig>,
    body: Bytes,
    deadline: Duration,
    max_bytes: usize,
) -> Result<Bytes, String> {
    call(target, tls, http::Method::POST, Some(body), deadline, max_bytes).await
}

async fn call(
    target: &Target,
    tls: &Arc<ClientConfig>,
    method: http::Method,
    body: Option<Bytes>,
    deadline: Duration,
    max_bytes: usize,
) -> Result<Bytes, String> {
    let call = async {
        let tcp = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|e| format!("connect to {}: {e}", target.authority))?;
        let _ = tcp.set_nodelay(true);
        let mut req = http::Request::builder()
            .method(method)
            .uri(target.path_and_query.as_str())
            .header(http::header::HOST, target.authority.as_str())
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::USER_AGENT, concat!("portcullis/", env!("CARGO_PKG_VERSION")));
        if body.is_some() {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        let req = req.body(Full::new(body.unwrap_or_default())).map_err(|e| format!("request: {e}"))?;
        if target.https {
            let name = ServerName::try_from(target.host.clone()).map_err(|e| format!("server name: {e}"))?;
            let tls = tokio_rustls::TlsConnector::from(tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS to {}: {e}", target.authority))?;
            exchange(tls, req, max_bytes).await
        } else {
            exchange(tcp, req, max_bytes).await
        }
    };
    tokio::time::timeout(deadline, call)
        .await
        .map_err(|_| format!("no complete answer from {} within {deadline:?}", target.authority))?
}

async fn exchange<S>(io: S, req: http::Request<Full<Bytes>>, max_bytes: usize) -> Result<Bytes, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(|e| format!("HTTP: {e}"))?;
    // The connection task ends with the exchange (the sender is dropped when we return).
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender.send_request(req).await.map_err(|e| format!("HTTP: {e}"))?;
    if resp.status() != http::StatusCode::OK {
        return Err(format!("answered {}", resp.status()));
    }
    let body = Limited::new(resp.into_body(), max_bytes)
        .collect()
        .await
        .map_err(|e| format!("reading the answer: {e} (limit {max_bytes} bytes)"))?;
    Ok(body.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback() {
        assert!(Target::parse("http://127.0.0.1:8080/jwks.json").is_ok());
        assert!(Target::parse("http://[::1]:8080/jwks.json").is_ok());
        assert!(Target::parse("http://localhost/jwks.json").is_ok());
        assert!(Target::parse("http://id.example.com/jwks.json").is_err());
        assert!(Target::parse("http://10.0.0.1/jwks.json").is_err());
        assert!(Target::parse("ftp://id.example.com/jwks.json").is_err());
        assert!(Target::parse("https://user:pw@id.example.com/").is_err());
        let t = Target::parse("https://id.example.com/.well-known/jwks.json?x=1").unwrap();
        assert_eq!((t.https, t.port, t.host.as_str()), (true, 443, "id.example.com"));
        assert_eq!(t.path_and_query, "/.well-known/jwks.json?x=1");
    }
}
