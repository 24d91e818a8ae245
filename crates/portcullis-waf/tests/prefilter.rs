#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! The literal prefilter never hides a match: rules whose transformations can change any value
//! (base64Decode) and `multiMatch` rules, whose operator also sees the value before and between
//! transformations, match exactly as without a prefilter.

use portcullis_waf::{BodyLimits, Builder, Request, Transaction};
use std::path::Path;

const RULES: &str = r#"
SecRuleEngine On
SecRule ARGS:b64 "@rx secret_word" "id:1,phase:2,deny,status:403,t:none,t:base64Decode"
SecRule ARGS:mid "@rx secret_word" "id:2,phase:2,deny,status:403,multiMatch,t:none,t:base64Decode,t:sha1"
SecRule ARGS:raw "@rx (?i)secret_word" "id:3,phase:2,deny,status:403,multiMatch,t:none,t:removeWhitespace,t:sha1"
SecRule ARGS:plain "@rx secret_word" "id:4,phase:2,deny,status:403,multiMatch,t:none,t:lowercase"
SecRule ARGS:cmd "@rx (?i)\bc[\x22\x27\x5c]*a[\x22\x27\x5c]*t\b" "id:5,phase:2,deny,status:403,t:none,t:urlDecodeUni"
"#;

fn denied_by(arg: &str, value: &str) -> Option<u32> {
    let mut b = Builder::new();
    b.text("test", RULES, Path::new(".")).unwrap();
    let rules = b.build().unwrap();
    let uri = format!("/?{arg}={value}");
    let req = Request { method: b"GET", uri: uri.as_bytes(), protocol: b"HTTP/1.1", ..Request::default() };
    let mut tx = Transaction::new(&rules, req, BodyLimits::default());
    tx.request_headers();
    tx.request_body();
    tx.interruption().map(|i| i.rule_id)
}

#[test]
fn a_chain_that_changes_every_value_is_scanned_after_it_runs() {
    // "secret_word" base64-encoded: the raw value holds none of the literal's bytes in order.
    assert_eq!(denied_by("b64", "c2VjcmV0X3dvcmQ="), Some(1));
    assert_eq!(denied_by("b64", "aGVsbG8="), None);
}

#[test]
fn multi_match_sees_the_value_between_transformations() {
    // Matches after base64Decode only; the final value (a SHA-1) no longer holds it.
    assert_eq!(denied_by("mid", "c2VjcmV0X3dvcmQ="), Some(2));
    // Matches the raw value only (removeWhitespace changes it, sha1 hides it).
    assert_eq!(denied_by("raw", "SECRET_WORD%20x"), Some(3));
    assert_eq!(denied_by("plain", "xsecret_wordx"), Some(4));
    assert_eq!(denied_by("mid", "aGVsbG8="), None);
    assert_eq!(denied_by("raw", "nothing%20here"), None);
}

#[test]
fn a_word_split_by_noise_is_caught_though_its_plain_literal_is_not_there() {
    // The link's literals are "cat" and the noise bytes (crate::plain): c'a't holds no "cat".
    assert_eq!(denied_by("cmd", "c%27a%27t"), Some(5));
    assert_eq!(denied_by("cmd", "c%5Ca%22t"), Some(5));
    assert_eq!(denied_by("cmd", "CAT"), Some(5));
    assert_eq!(denied_by("cmd", "concatenate"), None);
    assert_eq!(denied_by("cmd", "c%27o%27t"), None);
}
