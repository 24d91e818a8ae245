#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! Phase 1's request-independent beginning is evaluated once per rule set (src/prelude.rs);
//! each case here would go wrong if the prelude folded a rule it must not, or were used for
//! a transaction it does not hold for.

use portcullis_waf::actions::RuleRef;
use portcullis_waf::{BodyLimits, Builder, Request, RuleSet, Transaction};
use std::path::Path;

fn rules(text: &str) -> RuleSet {
    let mut b = Builder::new();
    b.text("t.conf", text, Path::new(".")).unwrap();
    b.build().unwrap()
}

/// The rule that interrupted and the ids of the logged matches, with `remove` taken out of
/// this transaction (as a route's exclusion does).
fn run(rules: &RuleSet, uri: &str, remove: &[u32]) -> (Option<u32>, Vec<u32>) {
    let req =
        Request { method: b"GET", uri: uri.as_bytes(), protocol: b"HTTP/1.1", unique_id: "t", ..Request::default() };
    let mut tx = Transaction::new(rules, req, BodyLimits::default());
    for id in remove {
        tx.remove_rules(RuleRef::Ids(vec![(*id, *id)]));
    }
    tx.request_headers();
    if tx.interruption().is_none() {
        tx.request_body();
    }
    (tx.interruption().map(|i| i.rule_id), tx.matches().iter().map(|m| m.rule.id).collect())
}

/// CRS's shape: a setting, a default for an unset one, zeroed scores, then a check.
const SETUP: &str = "SecAction \"id:1,phase:1,pass,nolog,setvar:tx.level=2\"\n\
     SecRule &TX:threshold \"@eq 0\" \"id:2,phase:1,pass,nolog,setvar:tx.threshold=5\"\n\
     SecAction \"id:3,phase:1,pass,nolog,setvar:tx.score=0,setvar:tx.sum=%{tx.level}\"\n";

#[test]
fn the_folded_rules_leave_their_variables_for_every_request() {
    let r = rules(&format!(
        "{SETUP}SecRule TX:sum \"@eq 2\" \"chain,id:10,phase:1,deny,status:403\"\n\
         SecRule TX:threshold \"@eq 5\" \"t:none\"\n"
    ));
    for _ in 0..3 {
        assert_eq!(run(&r, "/", &[]).0, Some(10));
    }
}

#[test]
fn an_excluded_folded_rule_is_not_applied() {
    // Without rule 1, tx.sum expands to nothing; a transaction that removes it must not get
    // the prelude's variables (which hold rule 1's effect).
    let r = rules(&format!("{SETUP}SecRule TX:sum \"@eq 2\" \"id:10,phase:1,deny,status:403\"\n"));
    assert_eq!(run(&r, "/", &[]).0, Some(10));
    assert_eq!(run(&r, "/", &[1]).0, None, "rule 1 removed for this transaction");
    assert_eq!(run(&r, "/", &[]).0, Some(10), "the next transaction has the prelude again");
}

#[test]
fn a_logging_rule_ends_the_prelude_and_logs_every_time() {
    let r = rules(&format!("SecAction \"id:5,phase:1,pass,log,msg:'setup'\"\n{SETUP}"));
    for _ in 0..2 {
        assert_eq!(run(&r, "/", &[]).1, vec![5]);
    }
}

#[test]
fn a_rule_that_reads_the_request_ends_the_prelude() {
    // Rule 4 sets tx.level from the request; rule 5 after it (TX only) must see that value.
    let r = rules(&format!(
        "{SETUP}SecRule REQUEST_URI \"@beginsWith /admin\" \"id:4,phase:1,pass,nolog,setvar:tx.level=4\"\n\
         SecRule TX:level \"@eq 4\" \"id:5,phase:1,deny,status:403\"\n"
    ));
    assert_eq!(run(&r, "/admin/x", &[]).0, Some(5));
    assert_eq!(run(&r, "/public", &[]).0, None);
}

#[test]
fn a_macro_of_request_data_is_not_folded() {
    let r = rules(
        "SecAction \"id:1,phase:1,pass,nolog,setvar:tx.uri=%{REQUEST_URI}\"\n\
         SecRule TX:uri \"@streq /a\" \"id:2,phase:1,deny,status:403\"\n",
    );
    assert_eq!(run(&r, "/a", &[]).0, Some(2));
    assert_eq!(run(&r, "/b", &[]).0, None);
}

#[test]
fn a_folded_skip_after_jumps_for_every_request() {
    let r = rules(
        "SecAction \"id:1,phase:1,pass,nolog,setvar:tx.level=1\"\n\
         SecRule TX:level \"@lt 2\" \"id:2,phase:1,pass,nolog,skipAfter:END\"\n\
         SecRule REQUEST_URI \"@contains x\" \"id:3,phase:1,deny,status:403\"\n\
         SecMarker END\n\
         SecRule REQUEST_URI \"@contains y\" \"id:4,phase:1,deny,status:403\"\n",
    );
    assert_eq!(run(&r, "/x", &[]).0, None, "3 is skipped");
    assert_eq!(run(&r, "/y", &[]).0, Some(4));
    assert_eq!(run(&r, "/x", &[2]).0, Some(3), "without 2 nothing skips 3");
}

/// A paranoia-level style check on a variable only the prelude sets: decided at load.
const LEVELS: &str = "SecAction \"id:1,phase:1,pass,nolog,setvar:tx.level=1\"\n\
     SecRule REQUEST_URI \"@beginsWith /x\" \"id:2,phase:1,pass,nolog,setvar:tx.seen=1\"\n\
     SecRule TX:level \"@lt 2\" \"id:3,phase:2,pass,nolog,skipAfter:END\"\n\
     SecRule ARGS \"@rx evil\" \"id:4,phase:2,deny,status:403\"\n\
     SecMarker END\n\
     SecRule ARGS \"@rx worse\" \"id:5,phase:2,deny,status:403\"\n";

#[test]
fn rules_every_request_jumps_over_get_no_literals_but_still_run_when_reached() {
    let r = rules(LEVELS);
    assert!(r.rule(4).unwrap().slot.is_none(), "4 is unreachable: no prefilter slot");
    assert!(r.rule(5).unwrap().slot.is_some());
    assert_eq!(run(&r, "/?a=evil", &[]).0, None, "3 skips 4");
    assert_eq!(run(&r, "/?a=worse", &[]).0, Some(5));
    // A route that removes the check reaches 4, which is then evaluated in full.
    assert_eq!(run(&r, "/?a=evil", &[3]).0, Some(4));
    assert_eq!(run(&r, "/?a=fine", &[3]).0, None);
}

#[test]
fn a_check_on_a_variable_a_later_rule_writes_is_not_decided() {
    let r = rules(&LEVELS.replace("setvar:tx.seen=1", "setvar:tx.level=4"));
    assert!(r.rule(4).unwrap().slot.is_some(), "4 is reachable when rule 2 raises the level");
    assert_eq!(run(&r, "/x?a=evil", &[]).0, Some(4));
    assert_eq!(run(&r, "/y?a=evil", &[]).0, None);
    // A name built from macros (`tx.lev%{tx.rest}` is `tx.level` here) may be any name with
    // its literal beginning.
    let built = LEVELS
        .replace("setvar:tx.level=1", "setvar:tx.level=1,setvar:tx.rest=el")
        .replace("setvar:tx.seen=1", "setvar:tx.lev%{tx.rest}=4");
    let r = rules(&built);
    assert!(r.rule(4).unwrap().slot.is_some());
    assert_eq!(run(&r, "/x?a=evil", &[]).0, Some(4));
}
