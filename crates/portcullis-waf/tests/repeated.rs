#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! Values with the same bytes share one identity in the transaction's cache (src/cache.rs),
//! and a link judges a repeated value once (src/link.rs): these cases would go wrong if a
//! copy were skipped where it must be judged, or reported once where each copy must be.

use portcullis_waf::{BodyLimits, Builder, Request, Transaction};
use std::path::Path;

/// The rule that blocked a GET of `uri` through `text`'s rules.
fn blocked_by(text: &str, uri: &str) -> Option<u32> {
    let mut b = Builder::new();
    b.text("t.conf", text, Path::new(".")).unwrap();
    let rules = b.build().unwrap();
    let req =
        Request { method: b"GET", uri: uri.as_bytes(), protocol: b"HTTP/1.1", unique_id: "t", ..Request::default() };
    let mut tx = Transaction::new(&rules, req, BodyLimits::default());
    tx.request_headers();
    if tx.interruption().is_none() {
        tx.request_body();
    }
    tx.interruption().map(|i| i.rule_id)
}

/// `rule` (counting its matches in TX:n), then a rule that blocks when TX:n is `n`.
fn counted(rule: &str, n: u32) -> String {
    format!("{rule}\nSecRule TX:n \"@eq {n}\" \"id:99,phase:2,deny,status:403\"\n")
}

#[test]
fn every_copy_of_a_matching_value_is_a_match() {
    let rule = "SecRule ARGS \"@rx evil\" \"id:1,phase:2,pass,nolog,setvar:tx.n=+1\"";
    assert_eq!(blocked_by(&counted(rule, 3), "/?a=evil&b=evil&c=evil"), Some(99));
    assert_eq!(blocked_by(&counted(rule, 2), "/?a=evil&b=good&c=evil"), Some(99));
}

#[test]
fn copies_are_matched_after_their_transformations() {
    let rule = "SecRule ARGS \"@rx evil\" \"id:1,phase:2,t:lowercase,pass,nolog,setvar:tx.n=+1\"";
    assert_eq!(blocked_by(&counted(rule, 3), "/?a=EVIL&b=EVIL&c=Evil"), Some(99));
    let multi = "SecRule ARGS \"@rx evil\" \"id:1,phase:2,t:lowercase,multiMatch,pass,nolog,setvar:tx.n=+1\"";
    assert_eq!(blocked_by(&counted(multi, 2), "/?a=EVIL&b=EVIL&c=good"), Some(99));
}

#[test]
fn a_value_one_rule_passed_is_judged_again_by_the_next() {
    let text = "SecRule ARGS \"@rx nothing\" \"id:1,phase:2,pass,nolog\"\n\
                SecRule ARGS \"@rx evil\" \"id:2,phase:2,t:none,deny,status:403\"\n";
    assert_eq!(blocked_by(text, "/?a=evil&b=evil"), Some(2));
    // The same without a literal to prefilter on (the operator alone decides).
    let text = "SecRule ARGS \"@detectSQLi\" \"id:1,phase:2,pass,nolog\"\n\
                SecRule ARGS \"@detectXSS\" \"id:2,phase:2,deny,status:403\"\n";
    assert_eq!(blocked_by(text, "/?a=%3Cscript%3Ealert(1)%3C/script%3E&b=%3Cscript%3Ealert(1)%3C/script%3E"), Some(2));
}

#[test]
fn a_copy_under_an_excluded_name_is_still_excluded() {
    let text = "SecRule ARGS|!ARGS:b \"@rx evil\" \"id:1,phase:2,pass,nolog,setvar:tx.n=+1\"\n\
                SecRule TX:n \"@eq 1\" \"id:99,phase:2,deny,status:403\"\n";
    assert_eq!(blocked_by(text, "/?a=evil&b=evil"), Some(99));
}

#[test]
fn values_beyond_the_flat_table_are_judged_too() {
    // Over a thousand distinct values: the last ones' transformations live in the map the
    // cache keeps past its flat table.
    let mut uri = String::from("/?");
    for i in 0..1500 {
        uri.push_str(&format!("a{i}=Value{i}&"));
    }
    let rule = "SecRule ARGS \"@rx evil\" \"id:1,phase:2,t:lowercase,pass,nolog,setvar:tx.n=+1\"";
    assert_eq!(blocked_by(&counted(rule, 2), &format!("{uri}x=EVIL&y=EVIL")), Some(99));
    assert_eq!(blocked_by(&counted(rule, 1), &format!("{uri}x=EVIL&y=good")), Some(99));
}
