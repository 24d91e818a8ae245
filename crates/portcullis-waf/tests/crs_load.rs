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

#[test]
fn a_rule_set_names_every_file_and_listing_it_was_read_from() {
    let Some(dir) = crs_dir() else { return };
    let set = portcullis_waf::ftw::load_crs(&dir, "").unwrap();
    let has = |p: PathBuf| set.sources.contains(&p);
    assert!(has(dir.join("crs-setup.conf.example")) && has(dir.join("rules/REQUEST-942-APPLICATION-ATTACK-SQLI.conf")));
    assert!(has(dir.join("rules/sql-errors.data")) && has(dir.join("rules/lfi-os-files.data")), "@pmFromFile lists");
    assert!(has(dir.clone()) && has(dir.join("rules")), "the listings that chose the files");
    let conf = set.sources.iter().filter(|p| p.extension().is_some_and(|e| e == "conf")).count();
    let rule_files = std::fs::read_dir(dir.join("rules")).unwrap();
    let rule_files = rule_files.filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|e| e == "conf")).count();
    assert_eq!(conf, rule_files, "every rule file (the setup file is a .example)");
}
