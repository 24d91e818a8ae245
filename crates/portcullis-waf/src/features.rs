//! Byte features of a value that decide whether a transformation can change it. A chain whose
//! transformations find none of their trigger features in a value leaves it as it is (letter
//! case aside), so the value's own prefilter scan serves that chain too.

use crate::transform::Transform;

pub const PCT: u16 = 1;
pub const PLUS: u16 = 1 << 1;
pub const AMP: u16 = 1 << 2;
pub const BSL: u16 = 1 << 3;
pub const NUL: u16 = 1 << 4;
pub const NONASCII: u16 = 1 << 5;
pub const WS: u16 = 1 << 6;
/// `*`: no comment starts or ends without one but `--`, `#` and `<!--`.
pub const STAR: u16 = 1 << 7;
/// The whole value is `.` or `..` (a dot elsewhere changes nothing without a `/`, which
/// is [`SLASH`]: JSON names and most values have dots).
pub const DOT: u16 = 1 << 8;
pub const SLASH: u16 = 1 << 9;
pub const CMD: u16 = 1 << 10;
pub const DASH: u16 = 1 << 11;
pub const HASH: u16 = 1 << 12;
/// The transformation may change any value.
pub const ALWAYS: u16 = 1 << 15;

const fn table() -> [u16; 256] {
    let mut t = [0u16; 256];
    let mut b = 0usize;
    while b < 256 {
        // Indexing is fine here: `b < 256` and this runs at compile time.
        #[allow(clippy::indexing_slicing)]
        let slot = &mut t[b];
        *slot = match b as u8 {
            b'%' => PCT,
            b'+' => PLUS,
            b'&' => AMP,
            b'\\' => BSL | CMD,
            0 => NUL,
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => WS,
            b'*' => STAR,
            b'-' => DASH,
            b'#' => HASH,
            b'/' => SLASH,
            b'"' | b'\'' | b'^' | b',' | b';' => CMD,
            0xa0 => NONASCII | WS,
            128..=255 => NONASCII,
            _ => 0,
        };
        b += 1;
    }
    t
}

static TABLE: [u16; 256] = table();

/// The features present in `value`.
pub fn of(value: &[u8]) -> u16 {
    let bytes = value.iter().fold(0, |acc, &b| acc | TABLE.get(usize::from(b)).copied().unwrap_or(0));
    if matches!(value, b"." | b"..") { bytes | DOT } else { bytes }
}

/// Whether a chain with these `triggers` leaves a value with these `features` unchanged but
/// for letter case. No value has [`ALWAYS`]: a chain that has it (base64Decode, sha1, ...)
/// changes any value.
pub fn leaves_unchanged(features: u16, triggers: u16) -> bool {
    triggers & ALWAYS == 0 && features & triggers == 0
}

/// The features that may make `chain` change a value (ignoring letter case).
pub fn triggers(chain: &[Transform]) -> u16 {
    chain.iter().fold(0, |acc, t| {
        acc | match t {
            Transform::Lowercase | Transform::Uppercase => 0,
            Transform::UrlDecode | Transform::UrlDecodeUni => PCT | PLUS,
            Transform::HtmlEntityDecode => AMP,
            Transform::JsDecode | Transform::CssDecode | Transform::EscapeSeqDecode => BSL,
            Transform::RemoveNulls | Transform::ReplaceNulls => NUL,
            Transform::Utf8ToUnicode => NONASCII,
            Transform::RemoveWhitespace
            | Transform::CompressWhitespace
            | Transform::Trim
            | Transform::TrimLeft
            | Transform::TrimRight => WS,
            // replaceComments acts on `/*` only; the others on `--`, `#` and `<!--` too.
            Transform::ReplaceComments => STAR,
            Transform::RemoveComments | Transform::RemoveCommentsChar => STAR | DASH | HASH,
            Transform::NormalizePath => DOT | SLASH,
            Transform::NormalizePathWin => DOT | SLASH | BSL,
            Transform::CmdLine => CMD | WS,
            Transform::Length
            | Transform::Sha1
            | Transform::HexEncode
            | Transform::HexDecode
            | Transform::Base64Decode
            | Transform::Base64DecodeExt
            | Transform::Base64Encode => ALWAYS,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: [Transform; 28] = [
        Transform::UrlDecode,
        Transform::UrlDecodeUni,
        Transform::HtmlEntityDecode,
        Transform::JsDecode,
        Transform::CssDecode,
        Transform::EscapeSeqDecode,
        Transform::RemoveNulls,
        Transform::ReplaceNulls,
        Transform::Utf8ToUnicode,
        Transform::RemoveWhitespace,
        Transform::CompressWhitespace,
        Transform::Trim,
        Transform::TrimLeft,
        Transform::TrimRight,
        Transform::ReplaceComments,
        Transform::RemoveComments,
        Transform::RemoveCommentsChar,
        Transform::NormalizePath,
        Transform::NormalizePathWin,
        Transform::CmdLine,
        Transform::Lowercase,
        Transform::Uppercase,
        Transform::Length,
        Transform::Sha1,
        Transform::HexEncode,
        Transform::HexDecode,
        Transform::Base64Decode,
        Transform::Base64Encode,
    ];

    #[test]
    fn a_dot_counts_for_paths_only_as_the_whole_value() {
        assert_eq!(of(b"json.items.array_0.sku") & DOT, 0);
        assert_ne!(of(b".") & DOT, 0);
        assert_ne!(of(b"..") & DOT, 0);
        let path = triggers(&[Transform::NormalizePath]);
        assert!(leaves_unchanged(of(b"4.12.0"), path));
        assert!(!leaves_unchanged(of(b".."), path));
        assert!(!leaves_unchanged(of(b"a/./b"), path));
    }

    proptest! {
        // The soundness the prefilter relies on: without its triggers, a transformation
        // leaves a value unchanged but for ASCII letter case.
        #[test]
        fn no_trigger_means_no_change(value in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..40),
            // Short values of the bytes transformations react to, so that the edge cases
            // (`.`, `..`, `a/./b`, `%2`, `&#x;`) come up often.
            proptest::collection::vec(proptest::sample::select(b"./\\a%2+ &#x;-*'\"<!".to_vec()), 0..8),
        ]) {
            let f = of(&value);
            for t in ALL {
                let trig = triggers(&[t]);
                if leaves_unchanged(f, trig) {
                    let out = t.apply(&value).unwrap_or_else(|| value.clone());
                    prop_assert!(out.eq_ignore_ascii_case(&value), "{t:?} changed {value:?} to {out:?}");
                }
                // What `apply_changed` skips is returned exactly as it is.
                let mut feats = None;
                if t.apply_changed(&value, &mut feats).is_none() {
                    let out = t.apply(&value).unwrap_or_else(|| value.clone());
                    prop_assert_eq!(&out, &value, "{:?} skipped but changes the value", t);
                }
            }
        }
    }
}
