#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! The rule loop's plan (src/plan.rs) decides rules without evaluating them; these cases
//! would go wrong if it decided one it must not.

use portcullis_waf::{BodyLimits, Builder, Request, RuleSet, Transaction};
use std::path::Path;

fn rules(text: &str) -> RuleSet {
    let mut b = Builder::new();
    b.text("t.conf", text, Path::new(".")).unwrap();
    b.build().unwrap()
}

fn blocked_by(rules: &RuleSet, uri: &str) -> Option<u32> {
    let req =
        Request { method: b"GET", uri: uri.as_bytes(), protocol: b"HTTP/1.1", unique_id: "t", ..Request::default() };
    let mut tx = Transaction::new(rules, req, BodyLimits::default());
    tx.request_headers();
    if tx.interruption().is_none() {
        tx.request_body();
    }
    tx.interruption().map(|i| i.rule_id)
}

/// A paranoia-level style check: TX:level below 2 skips the rule after it.
const LEVEL_CHECK: &str = "SecAction \"id:1,phase:1,pass,nolog,setvar:tx.level=1\"\n\
     SecRule TX:LEVEL \"@lt 2\" \"id:3,phase:1,pass,nolog,skipAfter:END\"\n\
     SecRule REQUEST_URI \"@contains x\" \"id:4,phase:1,deny,status:403\"\n\
     SecMarker END\n";

#[test]
fn a_tx_comparison_matches_and_skips() {
    let r = rules(LEVEL_CHECK);
    assert_eq!(blocked_by(&r, "/x"), None, "3 matches and skips 4");
    let r = rules(&LEVEL_CHECK.replace("tx.level=1", "tx.level=2"));
    assert_eq!(blocked_by(&r, "/x"), Some(4), "3 does not match");
    let r = rules(&LEVEL_CHECK.replace("tx.level=1", "tx.other=1"));
    assert_eq!(blocked_by(&r, "/x"), Some(4), "no TX:level, no match");
    let r = rules(&LEVEL_CHECK.replace("@lt 2", "!@lt 2"));
    assert_eq!(blocked_by(&r, "/x"), Some(4), "negated");
}

#[test]
fn a_decided_tx_match_leaves_matched_var_as_an_evaluated_one_does() {
    let after = |rule: &str| rules(&format!("{LEVEL_CHECK}{rule}\n"));
    let name = after("SecRule MATCHED_VAR_NAME \"@streq TX:level\" \"id:5,phase:1,deny,status:403\"");
    assert_eq!(blocked_by(&name, "/y"), Some(5));
    let value = after("SecRule MATCHED_VAR \"@streq 1\" \"id:5,phase:1,deny,status:403\"");
    assert_eq!(blocked_by(&value, "/y"), Some(5));
}

#[test]
fn a_removed_tx_target_is_not_compared() {
    let text = LEVEL_CHECK.replace(
        "SecRule TX:LEVEL",
        "SecAction \"id:2,phase:1,pass,nolog,ctl:ruleRemoveTargetById=3;TX:level\"\nSecRule TX:LEVEL",
    );
    assert_eq!(blocked_by(&rules(&text), "/x"), Some(4), "3 has no target left, so 4 runs");
}

#[test]
fn a_prefiltered_rule_sees_literals_its_transformations_make() {
    // The first rule of each chain computes the unions the second one's gate reads.
    let text = "SecRule ARGS \"@rx nothing-here\" \"id:10,phase:2,t:urlDecodeUni,pass\"\n\
         SecRule ARGS \"@rx evil\" \"id:11,phase:2,t:urlDecodeUni,deny,status:403\"\n\
         SecRule ARGS \"@rx good\" \"id:12,phase:2,deny,status:403\"\n";
    let r = rules(text);
    assert_eq!(blocked_by(&r, "/?a=%2565vil"), Some(11), "urlDecodeUni turns %65 into e");
    assert_eq!(blocked_by(&r, "/?a=harmless"), None);
    assert_eq!(blocked_by(&r, "/?a=harmless&b=GOOD"), None, "@rx is case-sensitive");
    assert_eq!(blocked_by(&r, "/?a=harmless&b=good"), Some(12));
}

#[test]
fn a_tx_count_check_sets_a_default_only_when_unset() {
    // CRS's setup rules: `&TX:x @eq 0` sets a default unless the operator configured one.
    let text = |setup: &str| {
        format!(
            "{setup}SecRule &TX:level \"@eq 0\" \"id:2,phase:1,pass,nolog,setvar:tx.level=5\"\n\
             SecRule TX:LEVEL \"@eq 5\" \"id:3,phase:1,deny,status:403\"\n\
             SecRule &TX:level \"!@eq 1\" \"id:4,phase:1,deny,status:403\"\n"
        )
    };
    assert_eq!(blocked_by(&rules(&text("")), "/"), Some(3), "unset: the default applies");
    let configured = text("SecAction \"id:1,phase:1,pass,nolog,setvar:tx.level=2\"\n");
    assert_eq!(blocked_by(&rules(&configured), "/"), None, "configured: left alone");
    let removed = text("SecAction \"id:1,phase:1,pass,nolog,setvar:tx.level=2,setvar:!tx.level\"\n");
    assert_eq!(blocked_by(&rules(&removed), "/"), Some(3), "deleted again: the default applies");
}

#[test]
fn a_target_naming_one_header_is_gated_on_that_headers_values() {
    // Rule 20 reads one header through a chain that changes values; its gate looks at that
    // header's values only, so it must still see what the chain makes of them, in any case
    // of the header's name, and nothing from other headers.
    let r = rules(
        "SecRule REQUEST_HEADERS:X-Filename \"@rx evil\\.php\" \"id:20,phase:1,t:lowercase,t:removeWhitespace,deny,status:403\"\n",
    );
    let blocked = |headers: &[(&[u8], &[u8])]| {
        let req = Request {
            method: b"GET",
            uri: b"/",
            protocol: b"HTTP/1.1",
            headers: headers.to_vec(),
            unique_id: "t",
            ..Request::default()
        };
        let mut tx = Transaction::new(&r, req, BodyLimits::default());
        tx.request_headers();
        tx.interruption().map(|i| i.rule_id)
    };
    assert_eq!(blocked(&[(b"x-filename", b"E V I L.PHP")]), Some(20), "lower-cased, spaces removed");
    assert_eq!(blocked(&[(b"Accept", b"x"), (b"X-FILENAME", b"a"), (b"X-Filename", b"evil.php")]), Some(20));
    assert_eq!(blocked(&[(b"Referer", b"evil.php"), (b"X-Filename", b"good.txt")]), None, "another header");
    assert_eq!(blocked(&[(b"User-Agent", b"evil.php")]), None, "no X-Filename at all");
}

#[test]
fn a_screened_multimatch_rule_sees_literals_a_transformation_makes() {
    // The screen ("../" must occur) is applied to each stage's value, not only the original.
    let r = rules("SecRule ARGS \"@rx \\.\\./\" \"id:30,phase:2,t:none,t:urlDecodeUni,multiMatch,deny,status:403\"\n");
    let screened = r.phases.iter().flatten().any(|e| match e {
        portcullis_waf::rules::Entry::Rule(rule) => rule.id == 30 && rule.screen.is_some(),
        portcullis_waf::rules::Entry::Marker(_) => false,
    });
    assert!(screened, "rule 30 gets a screen");
    // ARGS holds "x%2e%2e/y" (the query is decoded once): no "../" until urlDecodeUni.
    assert_eq!(blocked_by(&r, "/?a=x%252e%252e/y"), Some(30), "../ after urlDecodeUni");
    assert_eq!(blocked_by(&r, "/?a=harmless"), None);
}

#[test]
fn a_gate_decided_from_a_variables_own_values_still_sees_what_a_chain_makes() {
    // No rule before 40 computes a union through its chain: the gate has only the values' own
    // literals, which serve only when the chain cannot change any of them.
    let r = rules("SecRule ARGS \"@rx evil\" \"id:40,phase:2,t:urlDecodeUni,deny,status:403\"\n");
    assert_eq!(blocked_by(&r, "/?a=%2565vil"), Some(40), "urlDecodeUni turns %65 into e");
    assert_eq!(blocked_by(&r, "/?a=plain&b=%2565vil"), Some(40), "one value of two changes");
    assert_eq!(blocked_by(&r, "/?a=plain&b=evil"), Some(40), "unchanged values");
    assert_eq!(blocked_by(&r, "/?a=plain&b=%2565xil"), None);
}

#[test]
fn a_body_adds_values_the_gate_of_a_later_phase_sees() {
    // Phase 1 learns ARGS from the query alone; the body's arguments arrive before phase 2.
    let r = rules(
        "SecRule ARGS \"@rx nothing-here\" \"id:50,phase:1,pass\"\n\
         SecRule ARGS \"@rx evil\" \"id:51,phase:2,deny,status:403\"\n",
    );
    let req = Request {
        method: b"POST",
        uri: b"/?q=harmless",
        protocol: b"HTTP/1.1",
        headers: vec![(b"Content-Type", b"application/x-www-form-urlencoded")],
        body: b"a=evil",
        unique_id: "t",
        ..Request::default()
    };
    let mut tx = Transaction::new(&r, req, BodyLimits::default());
    tx.request_headers();
    assert_eq!(tx.interruption(), None);
    tx.request_body();
    assert_eq!(tx.interruption().map(|i| i.rule_id), Some(51));
}

#[test]
fn a_tx_check_the_prelude_decides_is_decided_only_for_transactions_that_used_it() {
    // Rules 1 and 2 are request-independent (the prelude): TX:level ends at 1, so rule 3
    // never holds after it. A transaction that removes rule 2 does not start from the
    // prelude, and TX:level is 5 there.
    let r = rules(
        "SecAction \"id:1,phase:1,pass,nolog,setvar:tx.level=5\"\n\
         SecAction \"id:2,phase:1,pass,nolog,setvar:tx.level=1\"\n\
         SecRule TX:LEVEL \"@ge 2\" \"id:3,phase:1,deny,status:403\"\n",
    );
    let run = |remove: Option<&str>| {
        let req = Request { method: b"GET", uri: b"/", protocol: b"HTTP/1.1", unique_id: "t", ..Request::default() };
        let mut tx = Transaction::new(&r, req, BodyLimits::default());
        if let Some(ids) = remove {
            tx.remove_rules(portcullis_waf::actions::RuleRef::parse_ids(ids).unwrap());
        }
        tx.request_headers();
        tx.interruption().map(|i| i.rule_id)
    };
    assert_eq!(run(None), None);
    assert_eq!(run(Some("2")), Some(3), "without rule 2, TX:level stays 5");
}

#[test]
fn a_tx_check_of_a_variable_a_later_rule_writes_is_not_decided_from_the_prelude() {
    let r = rules(
        "SecAction \"id:1,phase:1,pass,nolog,setvar:tx.level=1\"\n\
         SecRule REQUEST_URI \"@contains up\" \"id:2,phase:1,pass,nolog,setvar:tx.level=5\"\n\
         SecRule TX:LEVEL \"@ge 2\" \"id:3,phase:1,deny,status:403\"\n",
    );
    assert_eq!(blocked_by(&r, "/"), None);
    assert_eq!(blocked_by(&r, "/up"), Some(3));
}

#[test]
fn a_tx_name_made_with_a_newline_is_still_found_by_a_key_expression() {
    // Key expressions are multi-line: `^` matches after a newline in a name as well. TX
    // skips that search while no name holds a newline; one made from request data may.
    let text = "SecAction \"id:1,phase:2,pass,nolog,setvar:'tx.%{ARGS.n}=1'\"\n\
                SecRule TX:/^evil_/ \"@unconditionalMatch\" \"id:2,phase:2,deny,status:403\"\n";
    let r = rules(text);
    assert_eq!(blocked_by(&r, "/?n=evil_y"), Some(2));
    assert_eq!(blocked_by(&r, "/?n=x%0Aevil_y"), Some(2), "after the newline");
    assert_eq!(blocked_by(&r, "/?n=x_evil_y"), None);
}

#[test]
fn a_rule_with_two_literal_sets_needs_a_value_holding_both() {
    // "on" and "=" are both necessary (prefilter.rs, second_literals): the gate and the
    // per-value check each need both, but only within one value for a match.
    let text = "SecRule ARGS \"@rx (?i)[\\s\\\"';/]on[a-z]{3,50}\\s*=\" \"id:20,phase:2,deny,status:403\"\n";
    let r = rules(text);
    assert!(r.rule(20).unwrap().also.is_some(), "the rule has a second set");
    assert_eq!(blocked_by(&r, "/?a=%22onload%3Dx"), Some(20));
    assert_eq!(blocked_by(&r, "/?a=cotton%20on"), None, "no = anywhere");
    assert_eq!(blocked_by(&r, "/?a=x%3D1&b=%20onclick"), None, "each set in another value");
    assert_eq!(blocked_by(&r, "/?a=x%3D1&b=%20onclick%3D"), Some(20));
}
