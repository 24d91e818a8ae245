//! `portcullis demo`: a built-in backend plus the gateway on `examples/demo.yaml`, with curl
//! lines that show what the gateway does. Runs until Ctrl-C.

use crate::config::{self, Format};
use crate::{StartError, server, state};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;

/// The demo config, embedded so the demo runs from any directory.
pub const DEMO_YAML: &str = include_str!("../../../examples/demo.yaml");

/// Answers the demo routes with small JSON documents.
async fn backend(req: http::Request<Incoming>) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let body = match (method.as_str(), path.as_str()) {
        ("GET", p) if p.starts_with("/api/orders/") => {
            let id = p.trim_start_matches("/api/orders/");
            serde_json::json!({ "order": id, "status": "shipped", "served_by": "demo-backend" })
        }
        ("POST", "/api/upload") => {
            let n = req.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
            serde_json::json!({ "received_bytes": n })
        }
        _ => {
            serde_json::json!({ "method": method.as_str(), "path": path, "served_by": "demo-backend" })
        }
    };
    let mut resp = http::Response::new(Full::new(Bytes::from(body.to_string() + "\n")));
    resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    Ok(resp)
}

/// Serves the demo backend on `listener` forever.
pub async fn serve_backend(listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(backend))
                .await;
        });
    }
}

fn backend_addr(rt: &config::Runtime) -> Option<SocketAddr> {
    let target = rt.loaded.config.upstreams.get("demo")?.targets.first()?;
    let t = crate::proxy::upstream::parse_target(target).ok()?;
    Some(SocketAddr::new(t.host.parse().ok()?, t.port))
}

fn print_guide(gw: SocketAddr, admin: Option<SocketAddr>) {
    let base = format!("http://{gw}");
    println!(
        r#"
Portcullis demo: gateway on {base}, demo backend behind it.

  # 1. A normal request, proxied to the backend (note x-request-id and RateLimit headers)
  curl -i {base}/api/orders/42

  # 2. Flood one route: /about has its own bucket (1 req/s, burst 3), so it answers 429 ...
  for i in 1 2 3 4 5 6; do curl -s -o /dev/null -w '%{{http_code}} ' {base}/about; done; echo
  #    ... while every other route keeps answering from its own bucket:
  curl -s {base}/api/orders/7

  # 3. A body over the route's 64 KiB limit is refused with 413 before it reaches the backend
  head -c 100000 /dev/zero | curl -s -i --data-binary @- {base}/api/upload

  # 4. Path tricks are refused, never normalized differently from the backend (400)
  curl -s -i --path-as-is '{base}/api/orders/..%2f..%2fadmin'

  # 5. No route, wrong method: problem+json with a stable code
  curl -s {base}/nope; curl -s -X DELETE {base}/api/orders/1

  # 6. Attacks meet the built-in WAF (no CRS needed): 403 waf.blocked, the backend never sees
  #    them, and the WAF log (stderr) names the rule: [id "100100"] [msg "SQL injection"]
  curl -s "{base}/api/orders/42?id=1'%20OR%20'1'='1"
  curl -s "{base}/api/orders/42?q=%3Cscript%3Ealert(1)%3C/script%3E"
"#
    );
    if let Some(a) = admin {
        println!("  # 7. Metrics\n  curl -s http://{a}/metrics | grep -E 'portcullis_(requests|waf_matches)'\n");
    }
    println!("Press Ctrl-C to stop.");
}

/// Runs the demo until Ctrl-C.
pub async fn run() -> Result<(), StartError> {
    let loaded = config::parse_str(DEMO_YAML, Format::Yaml, Path::new("examples/demo.yaml"))?;
    let rt = config::compile(loaded, None)?;
    let addr = backend_addr(&rt)
        .ok_or_else(|| std::io::Error::other("examples/demo.yaml must name a loopback target for upstream 'demo'"))?;
    let backend = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("demo backend cannot bind {addr}: {e}")))?;
    let backend_task = tokio::spawn(serve_backend(backend));
    let gw = state::Gateway::new(rt)?;
    let running = server::Running::start(gw).await?;
    let public = running.listeners.first().map(|(_, a)| *a).unwrap_or(addr);
    print_guide(public, running.admin);
    let _ = tokio::signal::ctrl_c().await;
    running.shutdown().await;
    backend_task.abort();
    Ok(())
}
