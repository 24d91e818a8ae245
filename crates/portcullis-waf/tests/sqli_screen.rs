#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! `@detectSQLi` skips libinjection for a lone (dotted) word or digit run, and for a word, a
//! dash and a digit run (`SKU-4100`; operator.rs `may_be_sqli`). Such a value is one token,
//! or three (word, operator, number), whose types make the fingerprint: these run
//! libinjection over every keyword of its table that is such a word (every type a word can
//! get), alone, dotted and before `-digits`, over plain words and digit runs, and check the
//! screen keeps what it must.

use libinjectionrs::sqli::sqli_data::SQL_KEYWORDS;
use portcullis_waf::operator::may_be_sqli;
use proptest::prelude::*;

fn libinjection(value: &[u8]) -> bool {
    libinjectionrs::SqliState::new(value, libinjectionrs::SqliFlags::FLAG_NONE).detect()
}

#[test]
fn no_keyword_alone_or_dotted_is_flagged() {
    let mut screened = 0;
    for k in SQL_KEYWORDS.iter().filter(|k| k.token_type != b'F') {
        let lower = k.word.to_ascii_lowercase();
        let forms = [
            k.word.to_string(),
            lower.clone(),
            format!("json.{lower}"),
            format!("json.items.array_0.{lower}"),
            format!("{lower}.x"),
            format!("x_{lower}.{lower}"),
        ];
        for w in forms {
            if may_be_sqli(w.as_bytes()) {
                continue;
            }
            screened += 1;
            assert!(!libinjection(w.as_bytes()), "libinjection flags {w:?}");
        }
        // The tokenizer splits a word after a keyword: such a word must go to libinjection.
        if k.token_type != b'n' && k.word.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            assert!(may_be_sqli(format!("{lower}.x").as_bytes()), "{lower}.x");
        }
    }
    // The table's words cover every type a word can have (keywords, functions, operators
    // like AND/OR/DIV, UNION, types, ...): a change that screened nothing would fail here.
    assert!(screened > 3000, "only {screened} forms were screened");
}

#[test]
fn no_keyword_before_a_dash_and_digits_is_flagged() {
    let (mut screened, mut types, mut word_types) =
        (0, std::collections::BTreeSet::new(), std::collections::BTreeSet::new());
    for k in SQL_KEYWORDS.iter() {
        // (Type F entries are the fingerprint blacklist, not words.)
        if k.token_type != b'F' && k.word.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            word_types.insert(k.token_type);
        }
        for w in [k.word.to_string(), k.word.to_ascii_lowercase()] {
            for digits in ["0", "1", "4100", "000042", "12345678901234567890"] {
                let v = format!("{w}-{digits}");
                if may_be_sqli(v.as_bytes()) {
                    continue;
                }
                screened += 1;
                types.insert(k.token_type);
                assert!(!libinjection(v.as_bytes()), "libinjection flags {v:?}");
            }
        }
    }
    // Every type a keyword that is a plain word has went through libinjection here.
    assert!(screened > 8000, "only {screened} forms were screened");
    assert_eq!(types, word_types);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]
    #[test]
    fn a_word_dash_digits_is_never_flagged(value in "[A-Za-z_][A-Za-z0-9_]{0,40}-[0-9]{1,20}") {
        prop_assert!(!may_be_sqli(value.as_bytes()), "screened: {value:?}");
        prop_assert!(!libinjection(value.as_bytes()), "libinjection flags {value:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]
    #[test]
    fn a_lone_word_or_digit_run_is_never_flagged(value in "[A-Za-z_][A-Za-z0-9_.]{0,40}|[0-9]{1,20}(\\.[0-9]{1,20})?") {
        if !may_be_sqli(value.as_bytes()) {
            prop_assert!(!libinjection(value.as_bytes()), "libinjection flags {value:?}");
        }
    }
}

#[test]
fn anything_else_goes_to_libinjection() {
    for v in [
        "1' OR '1'='1",
        "1 union select",
        "1fUNION",
        "0x1",
        "admin'--",
        "a b",
        "1e5",
        ".y",
        "select.x",
        "-1",
        "@@version",
        "a--1",
        "a-1-2",
        "a-1.5",
        "a-1e5",
        "a-",
        "a.b-1",
        "a-b",
        "1-1",
        "a -1",
        "",
    ] {
        assert_eq!(may_be_sqli(v.as_bytes()), !v.is_empty(), "{v:?}");
    }
    assert!(libinjection(b"1' OR '1'='1") && may_be_sqli(b"1' OR '1'='1"));
}
