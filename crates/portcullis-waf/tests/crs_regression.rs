#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! CRS's own regression suite, in-process, as `portcullis waf test` runs it.

use portcullis_waf::ftw;
use std::path::PathBuf;

fn crs_dir() -> Option<PathBuf> {
    portcullis_waf::ftw::test_crs_dir()
}

#[test]
fn crs_regression_suite() {
    let Some(dir) = crs_dir() else { return };
    let rules = ftw::load_crs(&dir, ftw::TEST_SETUP).unwrap_or_else(|e| panic!("{e}"));
    let overrides = ftw::load_overrides(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crs-overrides.yaml")).unwrap();
    let outcomes = ftw::run(&dir.join("tests/regression/tests"), &overrides, |raw| ftw::exchange(&rules, raw)).unwrap();
    let report = ftw::report(&outcomes, true);
    println!("{report}");
    let passed = outcomes.iter().filter(|o| o.passed).count();
    assert!(outcomes.len() > 4000, "ran {} tests", outcomes.len());
    let overridden = outcomes.iter().filter(|o| o.overridden).count();
    println!("{passed} of {} passed ({overridden} with an override)", outcomes.len());
    // Target: >= 99% of the tests present; every failure is a regression until explained.
    let failed: Vec<String> =
        outcomes.iter().filter(|o| !o.passed).map(|o| format!("{}-{}", o.rule_id, o.test_id)).collect();
    assert!(failed.is_empty(), "failing CRS tests: {failed:?}");
    assert!(overridden * 100 < outcomes.len(), "more than 1% of the tests are overridden");
}
