//! Test fixtures for Portcullis integration tests: everything runs on real sockets on
//! 127.0.0.1 with port 0.
//!
//! - [`TestGateway`]: the gateway in-process, from a YAML string written to a temp dir;
//! - [`GatewayProcess`]: the real binary, for signals, exit codes and memory;
//! - [`MockUpstream`]: a backend that records what it received, parsed and as raw bytes, so
//!   a test can assert that an attack never reached it;
//! - [`ScriptedUpstream`]: a raw TCP backend that misbehaves on cue;
//! - [`client`]: HTTP/1.1, HTTP/2 and TLS requests, and a raw TCP client;
//! - [`RedisServer`]: a real `redis-server` on a free port, for cluster tests;
//! - [`Pki`]: a CA, a server certificate and client certificates made with rcgen;
//! - [`tokens`]: JWT signing keys (EC, Ed25519, RSA, HMAC), JWKS documents, tokens.

// Test support: a failed expectation here is a failed test, so panicking is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

pub mod client;
mod gateway;
mod pki;
mod redis;
mod scripted;
pub mod tokens;
mod upstream;

pub use gateway::{GatewayProcess, TestGateway, free_port};
pub use pki::Pki;
pub use redis::{RedisCluster, RedisServer};
pub use scripted::{ScriptedUpstream, Step};
pub use upstream::{MockUpstream, Recorded, Reply, reflect};

/// Polls `check` every 10 ms until it is true or `timeout` passes; returns the last result.
pub async fn eventually(timeout: std::time::Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Like [`eventually`] for checks that are themselves asynchronous (a request): tries
/// `check` every 20 ms until it is true or `timeout` passes.
pub async fn eventually_async<F: std::future::Future<Output = bool>>(
    timeout: std::time::Duration,
    mut check: impl FnMut() -> F,
) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
