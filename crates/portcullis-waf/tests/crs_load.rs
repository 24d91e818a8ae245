#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! Loads the stock OWASP CRS (from `PORTCULLIS_CRS`, default `../shared/crs` beside the
//! checkout) and checks every rule compiled.

use std::path::PathBuf;

fn crs_dir() -> Option<PathBuf> {
    portcullis_waf::ftw::test_crs_dir()
}

#[test]
fn stock_crs_loads_completely() {
    let Some(dir) = crs_dir() else { return };
    let mut files = vec![dir.join("crs-setup.conf.example")];
    let mut rules: Vec<PathBuf> = std::fs::read_dir(dir.join("rules"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    rules.sort();
    files.extend(rules);
    let set = portcullis_waf::load_files(&files).unwrap_or_else(|e| panic!("{e}"));
    // crs-setup's 900990 plus the 629 ids of rules/*.conf (crs/README.md).
    assert_eq!(set.rule_count, 630);
    assert_eq!(set.components, vec!["OWASP_CRS/4.28.0"]);
    assert!(set.rule(942100).is_some());
}
