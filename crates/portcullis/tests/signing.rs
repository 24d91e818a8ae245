//! Request signing: the backend can prove a request came through the gateway. The Python and
//! Rust verifiers from docs/backend-verification.md are run against what the mock backend
//! really received, and against tampered copies.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests: a panic is a failed assertion

use jsonwebtoken::Algorithm;
use portcullis_testkit::client::{self, Opts, req};
use portcullis_testkit::tokens::{SigningKey, claims};
use portcullis_testkit::{MockUpstream, Recorded, TestGateway};
use serde_json::json;

mod documented {
    include!("../../../docs/examples/verify_signature.rs");
}

const SECRET: &str = "0123456789abcdef0123456789abcdef-signing";
const JWT_SECRET: &[u8] = b"jwt-secret-jwt-secret-jwt-secret!!";

fn docs(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

fn rust_verifies(r: &Recorded, body: &[u8], principal: Option<&str>) -> bool {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let lookup = |name: &str| -> Option<&str> {
        if name == "x-portcullis-principal" && principal.is_some() {
            return principal;
        }
        r.headers.get(name).and_then(|v| v.to_str().ok())
    };
    documented::verify(SECRET.as_bytes(), r.method.as_str(), &r.uri, lookup, body, now)
}

fn python_verifies(r: &Recorded, path: &str, body: &str) -> bool {
    use std::io::Write;
    let headers: serde_json::Map<String, serde_json::Value> =
        r.headers.iter().map(|(k, v)| (k.as_str().to_string(), json!(v.to_str().unwrap()))).collect();
    let input = json!({"secret": SECRET, "method": r.method.as_str(), "path": path, "headers": headers, "body": body});
    let mut child = std::process::Command::new("python3")
        .arg(docs("docs/examples/verify_signature.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs the documented verifier");
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    match String::from_utf8_lossy(&out.stdout).trim() {
        "valid" => true,
        "invalid" => false,
        other => panic!("verifier printed {other:?}"),
    }
}

#[test]
fn the_documented_examples_are_the_tested_ones() {
    let doc = std::fs::read_to_string(docs("docs/backend-verification.md")).unwrap();
    for f in ["docs/examples/verify_signature.py", "docs/examples/verify_signature.rs"] {
        let code = std::fs::read_to_string(docs(f)).unwrap();
        assert!(doc.contains(&code), "{f} must appear verbatim in docs/backend-verification.md");
    }
}

#[tokio::test]
async fn backends_can_verify_what_the_gateway_signed_and_spot_what_it_did_not() {
    let up = MockUpstream::start().await;
    let key = SigningKey::hmac(Algorithm::HS256, JWT_SECRET);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sign.key"), format!("{SECRET}\n")).unwrap();
    std::fs::write(dir.path().join("jwt.key"), JWT_SECRET).unwrap();
    let yaml = format!(
        r#"
listeners: [{{ name: public, bind: "127.0.0.1:0" }}]
log: {{ access: off }}
upstreams:
  up: {{ targets: ["{up}/base"], sign: {{ secret_file: sign.key }} }}
auth:
  jwt:
    main: {{ issuer: iss, audiences: [api], algorithms: [HS256], secret_file: jwt.key }}
routes:
  - {{ name: orders, match: {{ path: "/orders/*" }}, upstream: up, auth: {{ jwt: main }} }}
  - {{ name: open, match: {{ path: "/open" }}, upstream: up }}
"#,
        up = up.url()
    );
    let gw = TestGateway::start_in(dir, &yaml, false).await.unwrap();
    let token = key.sign(&claims("iss", "api", 300, json!({"scope": "orders:write", "tenant": "acme"})));
    let body = r#"{"item":"book","qty":1}"#;
    let r = client::send(
        gw.addr(),
        &Opts::default(),
        req("POST", "/orders/7?x=1")
            .header("authorization", format!("Bearer {token}"))
            .header("x-portcullis-signature", "v1=forged")
            .body(client::generated(body.len() as u64, 5, None))
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let got = up.requests()[0].clone();
    assert_eq!(got.uri, "/base/orders/7?x=1");
    assert_eq!(got.header_all("x-portcullis-signature").len(), 1, "the client's forged signature was replaced");
    let sent = String::from_utf8(got.body.to_vec()).unwrap();
    assert_eq!(sent.len(), body.len(), "a chunked body was read whole and forwarded");
    assert!(rust_verifies(&got, sent.as_bytes(), None), "Rust verifier accepts the signed request");
    assert!(python_verifies(&got, &got.uri, &sent), "Python verifier accepts the signed request");
    // Tampering with anything signed breaks the signature.
    assert!(!rust_verifies(&got, b"tampered", None));
    assert!(!python_verifies(&got, &got.uri, "tampered"));
    assert!(!python_verifies(&got, "/base/orders/8?x=1", &sent), "another path");
    assert!(!rust_verifies(&got, sent.as_bytes(), Some("admin")), "another principal");
    // An open route is signed too (empty identity lines).
    assert_eq!(client::get(gw.addr(), "/open").await.status, 200);
    let open = up.requests()[1].clone();
    assert!(rust_verifies(&open, b"", None));
    // A request that went around the gateway has no valid signature.
    let direct = client::send(up.addr(), &Opts::default(), req("GET", "/orders/7").body(client::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(direct.status, 200);
    let bypass = up.requests()[2].clone();
    assert!(!rust_verifies(&bypass, b"", None) && !python_verifies(&bypass, &bypass.uri, ""));
}
