//! `portcullis waf test`: CRS's regression suite (go-ftw format) against the WAF, in-process
//! or over HTTP against a running gateway.

use crate::cli::WafAction;
use portcullis_waf::ftw::{self, Exchange, Outcome};
use std::net::ToSocketAddrs;
use std::process::ExitCode;

fn json(outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    for o in outcomes {
        let line = serde_json::json!({
            "file": o.file, "rule_id": o.rule_id, "test_id": o.test_id, "positive": o.positive,
            "passed": o.passed, "overridden": o.overridden, "reason": o.reason,
        });
        out.push_str(&line.to_string());
        out.push('\n');
    }
    let passed = outcomes.iter().filter(|o| o.passed).count();
    out.push_str(&serde_json::json!({ "passed": passed, "failed": outcomes.len() - passed }).to_string());
    out
}

/// Runs a `portcullis waf` subcommand.
pub fn run(action: &WafAction) -> ExitCode {
    let WafAction::Test { rules, tests, overrides, json: as_json, failures, url, log } = action;
    let overrides = match overrides.as_deref().map(ftw::load_overrides).transpose() {
        Ok(o) => o.unwrap_or_default(),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let result = match (url, log) {
        (Some(url), Some(log)) => {
            let Some(addr) = url.trim_start_matches("http://").to_socket_addrs().ok().and_then(|mut a| a.next()) else {
                eprintln!("--url {url}: not a host:port");
                return ExitCode::from(2);
            };
            ftw::run(tests, &overrides, |raw| ftw::http::exchange(addr, log, raw))
        }
        _ => {
            let set = match ftw::load_crs(rules, ftw::TEST_SETUP) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            ftw::run(tests, &overrides, |raw| -> Exchange { ftw::exchange(&set, raw) })
        }
    };
    let outcomes = match result {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if *as_json {
        println!("{}", json(&outcomes));
    } else {
        print!("{}", ftw::report(&outcomes, *failures));
    }
    if outcomes.iter().all(|o| o.passed) { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
