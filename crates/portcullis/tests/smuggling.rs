//! Request smuggling and framing attacks over raw TCP. Each test asserts that the upstream
//! never received a second (smuggled) request and that what it received was framed once,
//! unambiguously, by the gateway.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests: a panic is a failed assertion

use portcullis_testkit::client::{self, statuses};
use portcullis_testkit::{MockUpstream, TestGateway};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(3);

async fn setup() -> (MockUpstream, TestGateway) {
    let up = MockUpstream::start().await;
    let gw = TestGateway::start(&format!(
        r#"
listeners: [{{ name: public, bind: "127.0.0.1:0" }}]
log: {{ access: off }}
limits: {{ header_timeout: 2s }}
upstreams: {{ up: {{ targets: ["{}"] }} }}
routes:
  - {{ name: all, match: {{ path: "/*" }}, upstream: up }}
  - {{ name: small, match: {{ path: "/small" }}, upstream: up, limits: {{ max_body_bytes: 16 }} }}
"#,
        up.url()
    ))
    .await;
    (up, gw)
}

/// The upstream saw no smuggled request: no request for /admin, no stray request line in
/// the raw bytes, and at most `max` requests.
fn assert_clean(up: &MockUpstream, max: usize) {
    let reqs = up.requests();
    assert!(
        reqs.len() <= max,
        "upstream got {} requests: {:?}",
        reqs.len(),
        reqs.iter().map(|r| &r.uri).collect::<Vec<_>>()
    );
    for r in &reqs {
        assert!(!r.uri.contains("admin"), "smuggled request reached the upstream: {}", r.uri);
        assert!(
            !(r.headers.contains_key("content-length") && r.headers.contains_key("transfer-encoding")),
            "ambiguous framing forwarded"
        );
    }
    for raw in up.raw() {
        let text = String::from_utf8_lossy(&raw);
        let lines = text.matches(" HTTP/1.1\r\n").count();
        assert!(lines <= reqs.len(), "raw bytes hold more request lines than requests: {text:?}");
        assert!(!text.contains("GET /admin"), "smuggled bytes reached the upstream as a request: {text:?}");
    }
}

async fn attack(gw: &TestGateway, bytes: &str) -> String {
    String::from_utf8_lossy(&client::raw(gw.addr(), bytes.as_bytes(), WAIT).await).into_owned()
}

#[tokio::test]
async fn cl_te_both_orders_never_smuggle() {
    for first_cl in [true, false] {
        let (up, gw) = setup().await;
        let framing = if first_cl {
            "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n"
        } else {
            "Transfer-Encoding: chunked\r\nContent-Length: 6\r\n"
        };
        let smuggled = "GET /admin HTTP/1.1\r\nHost: localhost\r\n\r\n";
        let out =
            attack(&gw, &format!("POST /x HTTP/1.1\r\nHost: localhost\r\n{framing}\r\n0\r\n\r\n{smuggled}")).await;
        // Either refused, or served once with the body framed by Transfer-Encoding alone
        // and the connection closed: the trailing bytes are never parsed as a request.
        assert!(statuses(out.as_bytes()).len() <= 1, "{out}");
        assert_clean(&up, 1);
        if let Some(r) = up.requests().first() {
            assert_eq!(r.body_len, 0);
        }
    }
}

#[tokio::test]
async fn te_cl_payload_stays_a_body() {
    let (up, gw) = setup().await;
    let inner = "GET /admin HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let chunk = format!("{:x}\r\n{inner}\r\n0\r\n\r\n", inner.len());
    let out = attack(
        &gw,
        &format!(
            "POST /x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n{chunk}"
        ),
    )
    .await;
    assert!(statuses(out.as_bytes()).len() <= 1, "{out}");
    let reqs = up.requests();
    assert!(reqs.len() <= 1);
    if let Some(r) = reqs.first() {
        assert_eq!(r.uri, "/x");
        assert_eq!(&r.body[..], inner.as_bytes(), "the embedded request arrived as body bytes only");
        assert!(r.header("content-length").is_some() != r.header("transfer-encoding").is_some(), "framed once");
    }
    for r in &reqs {
        assert!(!r.uri.contains("admin"));
    }
}

#[tokio::test]
async fn conflicting_or_malformed_content_length_is_refused() {
    for framing in [
        "Content-Length: 5\r\nContent-Length: 6\r\n",
        "Content-Length: 5, 6\r\n",
        "Content-Length: +5\r\n",
        "Content-Length: -1\r\n",
        "Content-Length: 0x5\r\n",
    ] {
        let (up, gw) = setup().await;
        let out = attack(&gw, &format!("POST /x HTTP/1.1\r\nHost: localhost\r\n{framing}\r\nhelloGET /admin HTTP/1.1\r\nHost: localhost\r\n\r\n")).await;
        assert!(out.starts_with("HTTP/1.1 400"), "{framing:?}: {out}");
        assert_eq!(up.count(), 0, "{framing:?}");
        assert_clean(&up, 0);
    }
}

#[tokio::test]
async fn duplicate_equal_content_length_is_forwarded_once() {
    let (up, gw) = setup().await;
    let out = attack(&gw, "POST /x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello").await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let r = &up.requests()[0];
    assert_eq!(r.header_all("content-length"), vec!["5"]);
    assert_eq!(&r.body[..], b"hello");
}

#[tokio::test]
async fn obfuscated_transfer_encoding_is_refused() {
    for te in [
        "Transfer-Encoding : chunked\r\n",
        "Transfer-Encoding: chunked, identity\r\n",
        "Transfer-Encoding: xchunked\r\n",
        "Transfer-Encoding: identity\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
        "Transfer-Encoding:\x0bchunked\r\n",
        " Transfer-Encoding: chunked\r\n",
    ] {
        let (up, gw) = setup().await;
        let out = attack(&gw, &format!("POST /x HTTP/1.1\r\nHost: localhost\r\n{te}Content-Length: 5\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: localhost\r\n\r\n")).await;
        assert!(out.starts_with("HTTP/1.1 400"), "{te:?}: {out}");
        assert_clean(&up, 0);
    }
}

#[tokio::test]
async fn http10_with_transfer_encoding_is_refused() {
    let (up, gw) = setup().await;
    let out = attack(
        &gw,
        "POST /x HTTP/1.0\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 400") || out.starts_with("HTTP/1.0 400"), "{out}");
    assert_clean(&up, 0);
}

#[tokio::test]
async fn obs_fold_and_bad_header_names_are_refused() {
    for head in ["X-Foo: a\r\n b\r\n", "X Foo: a\r\n", "X-Foo\x01: a\r\n", "X-Foo: a\rb\r\n", ": novalue\r\n"] {
        let (up, gw) = setup().await;
        let out = attack(&gw, &format!("GET /x HTTP/1.1\r\nHost: localhost\r\n{head}\r\n")).await;
        assert!(out.starts_with("HTTP/1.1 400"), "{head:?}: {out}");
        assert_clean(&up, 0);
    }
}

#[tokio::test]
async fn bare_lf_requests_are_reframed_with_crlf() {
    let (up, gw) = setup().await;
    let out = attack(&gw, "GET /x HTTP/1.1\nHost: localhost\nConnection: close\n\n").await;
    // Accepted (RFC 9112 §2.2 allows a recipient to take LF as a line end) or refused; if
    // forwarded, the upstream sees one properly framed request.
    if out.starts_with("HTTP/1.1 200") {
        let raw = up.raw().concat();
        let text = String::from_utf8_lossy(&raw);
        assert!(text.starts_with("GET /x HTTP/1.1\r\n"), "{text:?}");
        assert!(!text.contains("\n\n") || text.contains("\r\n\r\n"));
    } else {
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    }
    assert_clean(&up, 1);
}

#[tokio::test]
async fn an_unread_refused_body_is_never_parsed_as_the_next_request() {
    let (up, gw) = setup().await;
    // Declared body over /small's 16-byte limit; its bytes are a request in disguise.
    let hidden = "GET /admin HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let out = attack(
        &gw,
        &format!("POST /small HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{hidden}", hidden.len()),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    assert_eq!(statuses(out.as_bytes()), vec![413], "only one response: the body was not taken as a request");
    assert_clean(&up, 0);
}

#[tokio::test]
async fn pipelined_requests_are_forwarded_one_by_one() {
    let (up, gw) = setup().await;
    let out = attack(
        &gw,
        "GET /one HTTP/1.1\r\nHost: localhost\r\n\r\nGET /two HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(out.as_bytes()), vec![200, 200]);
    let uris: Vec<String> = up.requests().iter().map(|r| r.uri.clone()).collect();
    assert_eq!(uris, vec!["/one", "/two"]);
}
