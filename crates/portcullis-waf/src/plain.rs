//! Literals for expressions built to catch evasions. CRS's command-injection and `javascript:`
//! rules spell each word with optional noise between its letters (`c["'\\]*a["'\\]*t`, or
//! `j(?:&#x0*9;)*a`): every match holds one of the words' first letters at best, which most
//! values hold, so the literal prefilter passes nearly every value to the expression.
//!
//! Such noise is made of bytes benign values seldom hold ([`NOISE`]: quotes, `$`, `\`,
//! brackets, `&`, `|`, control whitespace). A value without any of them matches the expression
//! only as the expression with those bytes taken out of every class and literal would match
//! it: the noise is gone and the words are plain strings again. So every match holds one of
//! the noise bytes or one of the plain expression's literals, a set that is a necessary set
//! for the expression itself ([`with_noise`]).

use regex_syntax::hir::{Class, ClassBytes, ClassBytesRange, ClassUnicode, ClassUnicodeRange, Hir, HirKind};

/// The bytes taken out: what CRS's evasion patterns put between letters.
pub const NOISE: &[u8] = b"\"'`$\\|&;()[]{}<>^\t\n\r\x0b\x0c";

/// `hir` with the [`NOISE`] bytes taken out of every class and literal; `None` when nothing
/// is left that it could match.
fn restrict(hir: &Hir) -> Option<Hir> {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Some(hir.clone()),
        HirKind::Literal(l) => (!l.0.iter().any(|b| NOISE.contains(b))).then(|| hir.clone()),
        HirKind::Class(Class::Bytes(c)) => {
            let mut left = c.clone();
            left.difference(&ClassBytes::new(NOISE.iter().map(|&b| ClassBytesRange::new(b, b))));
            (!left.ranges().is_empty()).then(|| Hir::class(Class::Bytes(left)))
        }
        HirKind::Class(Class::Unicode(c)) => {
            let mut left = c.clone();
            let noise = NOISE.iter().map(|&b| ClassUnicodeRange::new(char::from(b), char::from(b)));
            left.difference(&ClassUnicode::new(noise));
            (!left.ranges().is_empty()).then(|| Hir::class(Class::Unicode(left)))
        }
        HirKind::Capture(c) => restrict(&c.sub),
        HirKind::Repetition(r) => match restrict(&r.sub) {
            Some(sub) => Some(Hir::repetition(regex_syntax::hir::Repetition { sub: Box::new(sub), ..r.clone() })),
            // Nothing left to repeat: only the empty repetition remains, if allowed.
            None => (r.min == 0).then(Hir::empty),
        },
        HirKind::Concat(subs) => subs.iter().map(restrict).collect::<Option<Vec<Hir>>>().map(Hir::concat),
        HirKind::Alternation(subs) => {
            let left: Vec<Hir> = subs.iter().filter_map(restrict).collect();
            (!left.is_empty()).then(|| Hir::alternation(left))
        }
    }
}

/// A necessary set for `hir` from its plain form: the [`NOISE`] bytes, and `literals` of
/// the expression without them (`None` from `literals` means no set: then none here either;
/// an expression that needs a noise byte in every match gets the noise bytes alone).
pub fn with_noise(hir: &Hir, literals: impl FnOnce(&Hir) -> Option<Vec<Vec<u8>>>) -> Option<Vec<Vec<u8>>> {
    let mut set = match restrict(hir) {
        Some(plain) => literals(&plain)?,
        None => Vec::new(),
    };
    set.extend(NOISE.iter().map(|&b| vec![b]));
    set.sort();
    set.dedup();
    Some(set)
}

#[cfg(test)]
mod tests {
    use crate::prefilter::necessary_literals;

    fn words(set: &[Vec<u8>]) -> Vec<String> {
        set.iter()
            .filter(|l| l.len() > 1 || l.iter().all(u8::is_ascii_alphanumeric))
            .map(|l| String::from_utf8_lossy(l).into())
            .collect()
    }

    /// CRS 932230's shape: a word whose letters may be split by quotes, backslashes and
    /// `$var`s (or `||$x`).
    const SPLIT: &str = r#"(?i)\b(?:c["')\[\x5c]*(?:(?:(?:\|\||&&)[\s\x0b]*)?\$[!#\(\*\-0-9\?@_a-\{]*)?\x5c?a["')\[\x5c]*t|e["')\[\x5c]*n["')\[\x5c]*v)\b"#;

    #[test]
    fn a_split_word_is_found_whole_or_by_its_noise() {
        let set = necessary_literals(SPLIT).unwrap();
        assert_eq!(words(&set), ["cat", "env"]);
        assert!(set.contains(&b"$".to_vec()) && set.contains(&b"\\".to_vec()));
        // A set of letters alone stays the set when nothing plain is stronger.
        assert_eq!(
            necessary_literals("(?i)[a-c]x?").map(|s| words(&s)),
            Some(vec!["a".into(), "b".into(), "c".into()])
        );
        // An expression every match of which holds a noise byte gets the noise bytes only.
        assert_eq!(necessary_literals(r"[a-z]+\$\w").map(|s| words(&s)), Some(vec![]));
    }

    type Case = (&'static str, regex::bytes::Regex, Vec<Vec<u8>>);
    static CASES: std::sync::LazyLock<Vec<Case>> = std::sync::LazyLock::new(|| {
        [SPLIT, r"(?i)j(?:[\t\n\r]|&#x0*9;)*a(?:[\t\n\r]|&#x0*9;)*v", r#"(?:^|[;|&])\s*(?:cat|e'?n'?v)\b"#]
            .into_iter()
            .map(|p| (p, crate::operator::compile_regex(p, false).unwrap(), necessary_literals(p).unwrap()))
            .collect()
    });

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]
        #[test]
        fn a_match_holds_a_plain_literal_or_a_noise_byte(value in r#"[cateEnvN"')\[\\$|& x\t]{0,12}"#) {
            for (p, re, set) in CASES.iter() {
                if !re.is_match(value.as_bytes()) {
                    continue;
                }
                let lower = value.to_ascii_lowercase();
                proptest::prop_assert!(
                    set.iter().any(|l| lower.as_bytes().windows(l.len()).any(|w| w == l.as_slice())),
                    "{} on {:?}: {:?}", p, value, set
                );
            }
        }
    }
}
