//! CRS's regression suite over HTTP through the real gateway (`portcullis waf test --url`),
//! judged from the gateway's WAF log: checks end to end what the in-process run checks in
//! crates/portcullis-waf/tests/crs_regression.rs. The upstream answers `POST /reflect` as CRS's
//! test backend does, so the response rules (95x) run over real upstream answers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests: a panic is a failed assertion

use portcullis_testkit::{MockUpstream, TestGateway};
use portcullis_waf::ftw;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crs_regression_suite_over_http() {
    let Some(crs) = ftw::test_crs_dir() else { return };
    let up = MockUpstream::with(portcullis_testkit::reflect).await;
    let work = tempfile::tempdir().unwrap();
    let setup = std::fs::read_to_string(crs.join("crs-setup.conf.example")).unwrap() + ftw::TEST_SETUP;
    std::fs::write(work.path().join("ftw-setup.conf"), setup).unwrap();
    let yaml = format!(
        r#"
listeners: [{{ name: public, bind: "127.0.0.1:0" }}]
log: {{ access: off }}
upstreams: {{ up: {{ targets: ["{}"] }} }}
defaults: {{ waf: {{ mode: detect }}, throttle: {{ rate: 1000000, burst: 1000000 }} }}
waf:
  crs: {{ path: "{}", paranoia: 4, setup: ftw-setup.conf }}
  log: waf.log
routes: [{{ name: all, match: {{ path: "/*" }}, upstream: up }}]
"#,
        up.url(),
        crs.display()
    );
    let gw = TestGateway::start_in(work, &yaml, false).await.unwrap();
    let addr = gw.addr();
    let log = gw.dir().join("waf.log");
    let tests = crs.join("tests/regression/tests");
    let outcomes = tokio::task::spawn_blocking(move || {
        ftw::run(&tests, &Default::default(), |raw| ftw::http::exchange(addr, &log, raw)).unwrap()
    })
    .await
    .unwrap();
    let failures = |side: &str| -> (usize, Vec<String>) {
        let of_side: Vec<_> = outcomes.iter().filter(|o| o.file.starts_with(side)).collect();
        let failed = of_side.iter().filter(|o| !o.passed).map(|o| format!("{}-{}: {}", o.rule_id, o.test_id, o.reason));
        (of_side.len(), failed.collect())
    };
    let (requests, failed) = failures("REQUEST-");
    let (responses, failed_responses) = failures("RESPONSE-");
    println!("{}", ftw::report(&outcomes, false));
    println!("request-side failures over HTTP ({} of {requests}):\n{}", failed.len(), failed.join("\n"));
    println!(
        "response-side failures over HTTP ({} of {responses}):\n{}",
        failed_responses.len(),
        failed_responses.join("\n")
    );
    assert!(requests > 3900 && responses > 70, "{requests} request-side and {responses} response-side tests");
    // Most failures are requests the gateway's own hygiene refuses with 400 before the WAF
    // runs (they never reach a backend either); measured 47 of 3,958 (docs/performance.md).
    assert!(failed.len() * 100 <= requests * 2, "{} request-side failures over HTTP", failed.len());
    assert!(failed_responses.is_empty(), "response rules over HTTP: {failed_responses:?}");
}
