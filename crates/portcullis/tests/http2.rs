//! HTTP/2 limits: concurrent streams per connection, and the rapid-reset flood
//! (CVE-2023-44487), driven with a raw h2 client.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests: a panic is a failed assertion

use portcullis_testkit::{MockUpstream, Reply, TestGateway};
use std::time::Duration;

async fn gateway(up: &MockUpstream, limits: &str) -> TestGateway {
    TestGateway::start(&format!(
        r#"
listeners: [{{ name: public, bind: "127.0.0.1:0" }}]
log: {{ access: off }}
limits: {{ {limits} }}
upstreams: {{ up: {{ targets: ["{}"] }} }}
routes: [{{ name: all, match: {{ path: "/*" }}, upstream: up }}]
"#,
        up.url()
    ))
    .await
}

async fn h2_client(addr: std::net::SocketAddr) -> h2::client::SendRequest<bytes::Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

fn get(path: &str) -> http::Request<()> {
    http::Request::get(format!("http://localhost{path}")).body(()).unwrap()
}

#[tokio::test]
async fn concurrent_streams_are_capped_per_connection() {
    let up = MockUpstream::with(|_| Reply::ok("slow").delay(Duration::from_millis(300))).await;
    let gw = gateway(&up, "h2_max_concurrent_streams: 2").await;
    let client = h2_client(gw.addr()).await;
    tokio::time::sleep(Duration::from_millis(200)).await; // let the server's SETTINGS arrive
    let mut tasks = Vec::new();
    for i in 0..6 {
        let mut c = client.clone().ready().await.unwrap();
        let (resp, _) = c.send_request(get(&format!("/{i}")), true).unwrap();
        tasks.push(tokio::spawn(async move { resp.await.map(|r| r.status().as_u16()) }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 200);
    }
    assert_eq!(up.count(), 6);
    assert!(up.max_inflight() <= 2, "the upstream saw {} at once from one connection", up.max_inflight());
}

#[tokio::test]
async fn a_rapid_reset_flood_closes_the_connection() {
    let up = MockUpstream::with(|_| Reply::ok("x").delay(Duration::from_millis(200))).await;
    let gw = gateway(&up, "h2_max_pending_resets: 20, h2_max_concurrent_streams: 1000").await;
    let client = h2_client(gw.addr()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut c = client.ready().await.unwrap();
    // HEADERS + RST_STREAM pairs in bursts, as the CVE-2023-44487 attack sends them.
    let mut sent = 0;
    for i in 0..5000 {
        match c.send_request(get(&format!("/r{i}")), true) {
            Ok((_, mut stream)) => {
                stream.send_reset(h2::Reason::CANCEL);
                sent += 1;
            }
            Err(_) => break,
        }
        if i % 200 == 199 {
            tokio::task::yield_now().await;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let closed = match c.ready().await {
        Err(_) => true,
        Ok(mut c) => match c.send_request(get("/after-flood"), true) {
            Err(_) => true,
            Ok((resp, _)) => tokio::time::timeout(Duration::from_secs(2), resp).await.map_or(true, |r| r.is_err()),
        },
    };
    assert!(closed, "the server should end a connection that resets streams in a loop ({sent} sent)");
    assert!(up.count() < 100, "the flood barely reached the upstream ({} of {sent} did)", up.count());
    let r = portcullis_testkit::client::get(gw.addr(), "/after").await;
    assert_eq!(r.status, 200, "other clients are still served");
}
