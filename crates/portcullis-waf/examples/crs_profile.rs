//! Runs one of the WAF bench requests (`get`, `post` or `sqli`, see benches/common) N times
//! through stock CRS PL1, for a profiler. Instructions per request, deterministic:
//!
//!     cargo build --release -p portcullis-waf --example crs_profile
//!     valgrind --tool=callgrind --toggle-collect='*common::run*' \
//!       target/release/examples/crs_profile get 100      # "Collected" / 100
//!
//! Per-rule time and operator calls: `bench/waf-rule-profile.sh` (the `rule-profile` feature).
//!
//! Time per request (noisy; `THRASH_KB=1024` to evict caches between requests):
//!
//!     taskset -c 1 target/release/examples/crs_profile get 10000
//!
//! `none` runs the eviction loop alone, whose time the others include: subtract it
//! (`THRASH_KB=1024 taskset -c 1 target/release/examples/crs_profile none 10000`).

#[path = "../benches/common/mod.rs"]
mod common;

use common::{GET_URI, HEADERS, POST_URI, SQLI_URI, order_json, post_headers, rules, run};
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "get".into());
    let n: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let Some(rules) = rules() else { return ExitCode::FAILURE };
    let body = order_json();
    let post = post_headers();
    let one = || match which.as_str() {
        "get" => run(&rules, b"GET", GET_URI, &HEADERS, b""),
        "sqli" => run(&rules, b"GET", SQLI_URI, &HEADERS, b""),
        _ => run(&rules, b"POST", POST_URI, &post, body.as_bytes()),
    };
    if !matches!(which.as_str(), "get" | "post" | "sqli" | "none") {
        eprintln!("usage: crs_profile get|post|sqli|none [N]");
        return ExitCode::FAILURE;
    }
    let start = std::time::Instant::now();
    let mut status = None;
    // THRASH_KB=1024 writes that much other memory between requests, as a gateway's network
    // stack and proxy do: the engine then runs from colder caches (see docs/performance.md).
    let kb: usize = std::env::var("THRASH_KB").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut junk = vec![0u8; kb * 1024];
    for i in 0..n {
        for b in junk.iter_mut().step_by(64) {
            *b = b.wrapping_add(i as u8);
        }
        if which != "none" {
            status = one();
        }
        // With the `rule-profile` feature: per-rule costs after ten warm-up requests.
        #[cfg(feature = "rule-profile")]
        if i == 9 {
            portcullis_waf::profile::reset();
        }
    }
    std::hint::black_box(&junk);
    eprintln!("{which}: status {status:?}, {:?} per request over {n}", start.elapsed() / n.max(1));
    #[cfg(feature = "rule-profile")]
    eprint!("{}", portcullis_waf::profile::report(u64::from(n.saturating_sub(10)), 40));
    ExitCode::SUCCESS
}
