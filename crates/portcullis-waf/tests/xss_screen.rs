#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! `@detectXSS` skips libinjection for values without `<` and `=` (operator.rs
//! `may_be_xss`); these check that libinjection indeed never flags such a value, over the
//! bytes its HTML5 tokenizer treats specially, and that the screen lets real vectors through.

use portcullis_waf::operator::may_be_xss;
use proptest::prelude::*;

/// Bytes with a meaning to the tokenizer or the blacklists (quotes, slashes, `>`, `!`, `?`,
/// `%`, whitespace, NUL, high bytes) and letters of dangerous names (`on…`, `style`,
/// `javascript:`, `script`, `xmlns`, `import`, `entity`, `[if`), without `<` and `=`.
const ALPHABET: &[u8] = b" \t\n\x0b\x0c\r\x00\x80\xff/>\"'`!?%-[]:;&#()onerrstylejavscipxmlnsfoadIMPORTENTITY";

fn libinjection(value: &[u8]) -> bool {
    libinjectionrs::detect_xss(value).is_injection()
}

/// Pieces of values: single bytes of [`ALPHABET`] and whole dangerous words.
fn piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::sample::select(ALPHABET).prop_map(|b| vec![b]),
        proptest::sample::select(vec![
            "onerror",
            "onload",
            "style",
            "javascript:",
            "script",
            "xmlns",
            "src",
            "href",
            "!--",
            "[if",
            "xml",
            "import",
            "entity",
            "doctype",
            "svg",
            "alert(1)",
            "&#x3c;",
            "x:expression(",
            "vbscript:",
        ])
        .prop_map(|w| w.as_bytes().to_vec()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]
    #[test]
    fn without_lt_or_eq_libinjection_never_flags(pieces in proptest::collection::vec(piece(), 0..16)) {
        let value = pieces.concat();
        prop_assert!(!may_be_xss(&value));
        prop_assert!(!libinjection(&value), "libinjection flags {:?}", String::from_utf8_lossy(&value));
    }
}

#[test]
fn real_vectors_pass_the_screen_and_are_flagged() {
    for v in [
        "<script>alert(1)</script>",
        "x onerror=alert(1)",
        "\" onmouseover=alert(1) x=\"",
        "' style=x:expression(alert(1)) '",
        "<!DOCTYPE html>",
        "<img src=x onerror=alert(1)>",
        "` onload=alert(1) `",
    ] {
        assert!(may_be_xss(v.as_bytes()), "{v}");
        assert!(libinjection(v.as_bytes()), "{v}");
    }
}
