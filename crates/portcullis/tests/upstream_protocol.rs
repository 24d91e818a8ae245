//! The gateway's HTTP/1.1 client against misbehaving upstreams: strict response framing,
//! no response desync on pooled connections, stale connections, early answers, interim
//! responses, chunked bodies with trailers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests: a panic is a failed assertion

use portcullis_testkit::client::{self, Conn, Opts, empty, full, generated, req};
use portcullis_testkit::{ScriptedUpstream, Step, TestGateway};
use std::time::Duration;

async fn gateway(upstream: &str) -> TestGateway {
    TestGateway::start(&format!(
        r#"
listeners: [{{ name: public, bind: "127.0.0.1:0" }}]
log: {{ access: off }}
upstreams: {{ up: {{ targets: ["{upstream}"], timeout: 3s, retries: 1 }} }}
routes: [{{ name: all, match: {{ path: "/*" }}, upstream: up }}]
"#
    ))
    .await
}

#[tokio::test]
async fn ambiguous_upstream_framing_is_a_502_not_a_desync() {
    for reply in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nPOISON"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nbad\r\n0\r\n\r\n",
    ] {
        let up = ScriptedUpstream::start(move |n, _| {
            if n == 0 { Step::reply(reply) } else { Step::reply(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nclean") }
        })
        .await;
        let gw = gateway(&up.url()).await;
        match client::send(gw.addr(), &Opts::default(), req("GET", "/a").body(empty()).unwrap()).await {
            Ok(r) => {
                assert_eq!(r.status, 502, "{}", String::from_utf8_lossy(reply));
                assert_eq!(r.json()["code"], "upstream.bad_response");
            }
            // A bad chunk is only found after the head went out: the response is cut off,
            // never completed with made-up framing.
            Err(e) => assert!(e.contains("closed") || e.contains("incomplete"), "{e}"),
        }
        let r2 = client::get(gw.addr(), "/b").await;
        assert_eq!(r2.text(), "clean", "a second request never gets the smuggled response");
        assert_eq!(up.connections(), 2, "the connection that misbehaved was not reused");
    }
}

#[tokio::test]
async fn junk_after_a_response_retires_the_connection() {
    // The first answer carries a second, unrequested response behind it.
    let up = ScriptedUpstream::start(|n, _| match n {
        0 => Step::reply(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nPOISON",
        ),
        _ => Step::reply(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nclean"),
    })
    .await;
    let gw = gateway(&up.url()).await;
    assert_eq!(client::get(gw.addr(), "/first").await.text(), "ok");
    let second = client::get(gw.addr(), "/second").await;
    assert_eq!(second.text(), "clean", "the queued junk was not delivered as the next answer");
    assert_eq!(up.connections(), 2, "the polluted connection was not reused");
}

#[tokio::test]
async fn pooled_connections_closed_by_the_upstream_are_replaced() {
    // Keep-alive advertised, then the upstream closes every connection after answering.
    let up =
        ScriptedUpstream::start(|_, _| Step::reply_and_close(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")).await;
    let gw = gateway(&up.url()).await;
    let mut c = Conn::open(gw.addr()).await;
    for i in 0..5 {
        let r = c.send(req("GET", &format!("/get{i}")).body(empty()).unwrap()).await.unwrap();
        assert_eq!(r.status, 200, "GET {i}");
        tokio::time::sleep(Duration::from_millis(20)).await; // let the FIN arrive
        let r = c.send(req("POST", &format!("/post{i}")).body(full("x")).unwrap()).await.unwrap();
        assert_eq!(r.status, 200, "POST {i}: probed and replaced, never sent on a dead connection");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let posts = up.heads().iter().filter(|h| h.starts_with("POST")).count();
    assert_eq!(posts, 5, "each POST reached the upstream exactly once");
}

#[tokio::test]
async fn an_early_answer_during_an_upload_reaches_the_client() {
    let up = ScriptedUpstream::start(|_, _| Step {
        reply: b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope".to_vec(),
        close: true,
        early: true,
    })
    .await;
    let gw = TestGateway::start(&format!(
        r#"
listeners: [{{ name: public, bind: "127.0.0.1:0" }}]
log: {{ access: off }}
limits: {{ max_body_bytes: 100MiB }}
waf: {{ on_body_limit: inspect_prefix }}
upstreams: {{ up: {{ targets: ["{}"], timeout: 5s }} }}
routes: [{{ name: all, match: {{ path: "/*" }}, upstream: up }}]
"#,
        up.url()
    ))
    .await;
    let started = std::time::Instant::now();
    let r = client::send(
        gw.addr(),
        &Opts::default(),
        req("POST", "/upload").body(generated(20 << 20, 64 << 10, None)).unwrap(),
    )
    .await;
    match r {
        Ok(r) => assert_eq!((r.status, r.text().as_str()), (413, "nope")),
        // the client may see its own upload cut once the answer came; never a hang or 504
        Err(e) => assert!(!e.contains("timed out"), "{e}"),
    }
    assert!(started.elapsed() < Duration::from_secs(4), "no waiting for the upload to finish");
}

#[tokio::test]
async fn interim_responses_are_skipped_and_trailers_pass() {
    let up = ScriptedUpstream::start(|_, _| {
        Step::reply(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-sum: 42\r\n\r\n")
    })
    .await;
    let gw = gateway(&up.url()).await;
    let mut c = Conn::open(gw.addr()).await;
    let r = c.send(req("GET", "/chunked").body(empty()).unwrap()).await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "hello world"));
    let r = c.send(req("GET", "/again").body(empty()).unwrap()).await.unwrap();
    assert_eq!(r.text(), "hello world");
    assert_eq!(up.connections(), 1, "a cleanly ended chunked body keeps the connection pooled");
}

#[tokio::test]
async fn upstream_head_limits() {
    let huge = format!("HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 0\r\n\r\n", "a".repeat(70_000));
    let up = ScriptedUpstream::start(move |_, _| Step::reply(huge.as_bytes())).await;
    let gw = gateway(&up.url()).await;
    let r = client::get(gw.addr(), "/").await;
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["code"], "upstream.bad_response");
}

#[tokio::test]
async fn close_delimited_and_head_responses() {
    let up = ScriptedUpstream::start(|_, head| {
        if head.starts_with("HEAD") {
            Step::reply(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        } else {
            Step::reply_and_close(b"HTTP/1.1 200 OK\r\n\r\nuntil close")
        }
    })
    .await;
    let gw = gateway(&up.url()).await;
    let mut c = Conn::open(gw.addr()).await;
    let r = c.send(req("HEAD", "/h").body(empty()).unwrap()).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length").as_deref(), Some("1000"));
    assert!(r.body.is_empty());
    let r = c.send(req("GET", "/c").body(empty()).unwrap()).await.unwrap();
    assert_eq!(r.text(), "until close");
}

#[tokio::test]
async fn an_upload_longer_than_the_upstream_timeout_is_not_cut() {
    let up = portcullis_testkit::MockUpstream::start().await;
    let gw = TestGateway::start(&format!(
        r#"
listeners: [{{ name: public, bind: "127.0.0.1:0" }}]
log: {{ access: off }}
limits: {{ body_timeout: 10s }}
upstreams: {{ up: {{ targets: ["{}"], timeout: 300ms }} }}
routes: [{{ name: all, match: {{ path: "/*" }}, upstream: up }}]
"#,
        up.url()
    ))
    .await;
    // ~1.2 s of upload against a 300 ms upstream timeout: the timeout is for the answer.
    let body = generated(10 * 1024, 1024, Some(Duration::from_millis(120)));
    let r = client::send(gw.addr(), &Opts::default(), req("POST", "/slow-upload").body(body).unwrap()).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(up.requests()[0].body_len, 10 * 1024);
}

#[tokio::test]
async fn an_upstream_that_stops_reading_and_never_answers_times_out() {
    // Never reads the body, never answers.
    let up = ScriptedUpstream::start(|_, _| Step { reply: Vec::new(), close: false, early: true }).await;
    let gw = TestGateway::start(&format!(
        r#"
listeners: [{{ name: public, bind: "127.0.0.1:0" }}]
log: {{ access: off }}
limits: {{ max_body_bytes: 200MiB, body_timeout: 60s }}
waf: {{ on_body_limit: inspect_prefix }}
upstreams: {{ up: {{ targets: ["{}"], timeout: 500ms }} }}
routes: [{{ name: all, match: {{ path: "/*" }}, upstream: up }}]
"#,
        up.url()
    ))
    .await;
    let started = std::time::Instant::now();
    let r = client::send(
        gw.addr(),
        &Opts::default(),
        req("POST", "/stuck").body(generated(100 << 20, 64 << 10, None)).unwrap(),
    )
    .await;
    if let Ok(r) = r {
        assert_eq!(r.status, 504);
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "bounded by the upstream timeout, took {:?}",
        started.elapsed()
    );
}
