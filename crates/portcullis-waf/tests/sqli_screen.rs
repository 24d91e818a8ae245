#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! `@detectSQLi` skips libinjection for a lone word or digit run (operator.rs
//! `may_be_sqli`). Such a value is one token, whose fingerprint is its type: these run
//! libinjection over every keyword of its table that is such a word (every type a word can
//! get), over plain words and digit runs, and check the screen keeps what it must.

use libinjectionrs::sqli::sqli_data::SQL_KEYWORDS;
use portcullis_waf::operator::may_be_sqli;
use proptest::prelude::*;

fn libinjection(value: &[u8]) -> bool {
    libinjectionrs::SqliState::new(value, libinjectionrs::SqliFlags::FLAG_NONE).detect()
}

#[test]
fn no_keyword_alone_is_flagged() {
    let mut words = 0;
    for k in SQL_KEYWORDS.iter().filter(|k| k.token_type != b'F') {
        for w in [k.word.to_string(), k.word.to_ascii_lowercase(), k.word.to_ascii_uppercase()] {
            if may_be_sqli(w.as_bytes()) {
                continue;
            }
            words += 1;
            assert!(!libinjection(w.as_bytes()), "libinjection flags the lone keyword {w:?}");
        }
    }
    // The table's words cover every type a word can have (keywords, functions, operators
    // like AND/OR/DIV, UNION, types, ...): a change that screened nothing would fail here.
    assert!(words > 1000, "only {words} keywords were screened");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]
    #[test]
    fn a_lone_word_or_digit_run_is_never_flagged(value in "[A-Za-z_][A-Za-z0-9_]{0,40}|[0-9]{1,40}") {
        prop_assert!(!may_be_sqli(value.as_bytes()));
        prop_assert!(!libinjection(value.as_bytes()), "libinjection flags {value:?}");
    }
}

#[test]
fn anything_else_goes_to_libinjection() {
    for v in
        ["1' OR '1'='1", "1 union select", "1fUNION", "0x1", "admin'--", "a b", "1e5", "x.y", "-1", "@@version", ""]
    {
        assert_eq!(may_be_sqli(v.as_bytes()), !v.is_empty(), "{v:?}");
    }
    assert!(libinjection(b"1' OR '1'='1") && may_be_sqli(b"1' OR '1'='1"));
}
