//! Transformations (`t:`): the names ModSecurity knows, parsed once, applied to byte strings.

use crate::decode;
use crate::features;
use base64::Engine as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transform {
    Base64Decode,
    Base64DecodeExt,
    Base64Encode,
    CmdLine,
    CompressWhitespace,
    CssDecode,
    EscapeSeqDecode,
    HexDecode,
    HexEncode,
    HtmlEntityDecode,
    JsDecode,
    Length,
    Lowercase,
    NormalizePath,
    NormalizePathWin,
    RemoveComments,
    RemoveCommentsChar,
    RemoveNulls,
    RemoveWhitespace,
    ReplaceComments,
    ReplaceNulls,
    Sha1,
    Trim,
    TrimLeft,
    TrimRight,
    Uppercase,
    UrlDecode,
    UrlDecodeUni,
    Utf8ToUnicode,
}

const NAMES: [(&str, Transform); 29] = [
    ("base64decode", Transform::Base64Decode),
    ("base64decodeext", Transform::Base64DecodeExt),
    ("base64encode", Transform::Base64Encode),
    ("cmdline", Transform::CmdLine),
    ("compresswhitespace", Transform::CompressWhitespace),
    ("cssdecode", Transform::CssDecode),
    ("escapeseqdecode", Transform::EscapeSeqDecode),
    ("hexdecode", Transform::HexDecode),
    ("hexencode", Transform::HexEncode),
    ("htmlentitydecode", Transform::HtmlEntityDecode),
    ("jsdecode", Transform::JsDecode),
    ("length", Transform::Length),
    ("lowercase", Transform::Lowercase),
    ("normalizepath", Transform::NormalizePath),
    ("normalisepath", Transform::NormalizePath),
    ("normalizepathwin", Transform::NormalizePathWin),
    ("removecomments", Transform::RemoveComments),
    ("removecommentschar", Transform::RemoveCommentsChar),
    ("removenulls", Transform::RemoveNulls),
    ("removewhitespace", Transform::RemoveWhitespace),
    ("replacecomments", Transform::ReplaceComments),
    ("replacenulls", Transform::ReplaceNulls),
    ("sha1", Transform::Sha1),
    ("trim", Transform::Trim),
    ("trimleft", Transform::TrimLeft),
    ("trimright", Transform::TrimRight),
    ("uppercase", Transform::Uppercase),
    ("urldecode", Transform::UrlDecode),
    ("urldecodeuni", Transform::UrlDecodeUni),
];

impl Transform {
    /// The transformation for a `t:` name (case-insensitive, as ModSecurity accepts
    /// `base64decode` beside `base64Decode`). `none` is handled by the caller.
    pub fn parse(name: &str) -> Option<Transform> {
        let lower = name.to_ascii_lowercase();
        if lower == "utf8tounicode" {
            return Some(Transform::Utf8ToUnicode);
        }
        NAMES.iter().find(|(n, _)| *n == lower).map(|(_, t)| *t)
    }

    /// As [`Transform::apply`], skipped when `input` lacks every byte that could make this
    /// transformation change it. `features` holds `input`'s [`features::of`] once computed
    /// (start with `None`); it is reset when the value changes, so a chain computes it once
    /// per distinct value and only when a transformation asks.
    pub fn apply_changed(self, input: &[u8], features: &mut Option<u16>) -> Option<Vec<u8>> {
        if let Some(trig) = self.exact_triggers() {
            let have = *features.get_or_insert_with(|| features::of(input));
            if have & trig == 0 {
                return None;
            }
        }
        let out = self.apply(input);
        if out.is_some() {
            *features = None;
        }
        out
    }

    /// The [`features`] without which the transformation returns any value exactly as it is;
    /// `None` for those that may change any value (case changes, `cmdLine`'s lower-casing,
    /// decoders and hashes).
    fn exact_triggers(self) -> Option<u16> {
        match self {
            Transform::Lowercase | Transform::Uppercase | Transform::CmdLine => None,
            t => Some(features::triggers(&[t])).filter(|trig| trig & features::ALWAYS == 0),
        }
    }

    /// Applies the transformation; `None` means the value is unchanged.
    pub fn apply(self, input: &[u8]) -> Option<Vec<u8>> {
        match self {
            Transform::Base64Decode => Some(base64_decode(input)),
            Transform::Base64DecodeExt => Some(base64_decode(
                &input.iter().copied().filter(|b| !b.is_ascii_whitespace() && *b != b'.').collect::<Vec<u8>>(),
            )),
            Transform::Base64Encode => Some(base64::engine::general_purpose::STANDARD.encode(input).into_bytes()),
            Transform::CmdLine => Some(cmd_line(input)),
            Transform::CompressWhitespace => compress_whitespace(input),
            Transform::CssDecode => decode::css(input),
            Transform::EscapeSeqDecode => decode::escape_seq(input),
            Transform::HexDecode => Some(hex_decode(input)),
            Transform::HexEncode => hex::encode(input),
            Transform::HtmlEntityDecode => decode::html_entity(input),
            Transform::JsDecode => decode::js(input),
            Transform::Length => Some(input.len().to_string().into_bytes()),
            Transform::Lowercase => input.iter().any(u8::is_ascii_uppercase).then(|| input.to_ascii_lowercase()),
            Transform::Uppercase => input.iter().any(u8::is_ascii_lowercase).then(|| input.to_ascii_uppercase()),
            Transform::NormalizePath => normalize_path(input, false),
            Transform::NormalizePathWin => normalize_path(input, true),
            Transform::RemoveComments => remove_comments(input),
            Transform::RemoveCommentsChar => remove_comment_chars(input),
            Transform::RemoveNulls => memchr::memchr(0, input).map(|_| keep(input, |b| b != 0)),
            Transform::ReplaceNulls => {
                memchr::memchr(0, input).map(|_| input.iter().map(|&b| if b == 0 { b' ' } else { b }).collect())
            }
            Transform::RemoveWhitespace => input.iter().any(|&b| is_space(b)).then(|| keep(input, |b| !is_space(b))),
            Transform::ReplaceComments => replace_comments(input),
            Transform::Sha1 => {
                Some(ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, input).as_ref().to_vec())
            }
            Transform::Trim => trimmed(input, true, true),
            Transform::TrimLeft => trimmed(input, true, false),
            Transform::TrimRight => trimmed(input, false, true),
            Transform::UrlDecode => decode::url(input, false),
            Transform::UrlDecodeUni => decode::url(input, true),
            Transform::Utf8ToUnicode => decode::utf8_to_unicode(input),
        }
    }
}

mod hex {
    pub fn encode(input: &[u8]) -> Option<Vec<u8>> {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = Vec::with_capacity(input.len() * 2);
        for &b in input {
            out.extend(DIGITS.get(usize::from(b >> 4)));
            out.extend(DIGITS.get(usize::from(b & 15)));
        }
        Some(out)
    }
}

/// The bytes of `input` that `wanted` keeps, in a buffer sized once (a filtering iterator
/// collects into one that grows from nothing).
fn keep(input: &[u8], wanted: impl Fn(u8) -> bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    out.extend(input.iter().copied().filter(|&b| wanted(b)));
    out
}

/// White space as ModSecurity's transformations see it, including the non-breaking space.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | 0xa0)
}

fn trimmed(input: &[u8], left: bool, right: bool) -> Option<Vec<u8>> {
    let mut s = input;
    if left {
        while let [first, rest @ ..] = s {
            if !is_space(*first) {
                break;
            }
            s = rest;
        }
    }
    if right {
        while let [rest @ .., last] = s {
            if !is_space(*last) {
                break;
            }
            s = rest;
        }
    }
    (s.len() != input.len()).then(|| s.to_vec())
}

fn compress_whitespace(input: &[u8]) -> Option<Vec<u8>> {
    if !input.iter().any(|&b| is_space(b) && b != b' ') && !input.windows(2).any(|w| w == b"  ") {
        return None;
    }
    let mut out = Vec::with_capacity(input.len());
    let mut in_space = false;
    for &b in input {
        if is_space(b) {
            if !in_space {
                out.push(b' ');
            }
            in_space = true;
        } else {
            out.push(b);
            in_space = false;
        }
    }
    Some(out)
}

/// `cmdLine`: drops `\ " ' ^`, turns `,` `;` and white space runs into one space, removes
/// spaces before `/` and `(`, and lower-cases.
fn cmd_line(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut space = false;
    for &b in input {
        match b {
            b'"' | b'\'' | b'\\' | b'^' => {}
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | b',' | b';' => {
                if !space {
                    out.push(b' ');
                    space = true;
                }
            }
            b'/' | b'(' => {
                if space {
                    out.pop();
                }
                space = false;
                out.push(b);
            }
            other => {
                space = false;
                out.push(other.to_ascii_lowercase());
            }
        }
    }
    out
}

/// `replaceComments`: each `/* ... */` (an unterminated one runs to the end) becomes a space.
fn replace_comments(input: &[u8]) -> Option<Vec<u8>> {
    memchr::memmem::find(input, b"/*")?;
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input.get(i..i + 2) == Some(b"/*") {
            match memchr::memmem::find(input.get(i + 2..).unwrap_or_default(), b"*/") {
                Some(end) => i += 2 + end + 2,
                None => i = input.len(),
            }
            out.push(b' ');
        } else {
            out.extend(input.get(i).copied());
            i += 1;
        }
    }
    Some(out)
}

/// `removeComments`: removes `/* */` and `<!-- -->` comments, and everything after `--` or `#`.
fn remove_comments(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    let mut changed = false;
    while i < input.len() {
        let rest = input.get(i..).unwrap_or_default();
        if rest.starts_with(b"/*") || rest.starts_with(b"<!--") {
            let (close, open_len): (&[u8], usize) = if rest.starts_with(b"/*") { (b"*/", 2) } else { (b"-->", 4) };
            changed = true;
            match memchr::memmem::find(rest.get(open_len..).unwrap_or_default(), close) {
                Some(end) => i += open_len + end + close.len(),
                None => break,
            }
        } else if rest.starts_with(b"--") || rest.starts_with(b"#") {
            changed = true;
            break;
        } else {
            out.extend(rest.first().copied());
            i += 1;
        }
    }
    changed.then_some(out)
}

/// `removeCommentsChar`: deletes the comment markers `/*`, `*/`, `--` and `#`.
fn remove_comment_chars(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    let mut changed = false;
    while i < input.len() {
        let rest = input.get(i..).unwrap_or_default();
        if rest.starts_with(b"/*") || rest.starts_with(b"*/") || rest.starts_with(b"--") {
            i += 2;
            changed = true;
        } else if rest.starts_with(b"#") {
            i += 1;
            changed = true;
        } else {
            out.extend(rest.first().copied());
            i += 1;
        }
    }
    changed.then_some(out)
}

/// `normalizePath`/`normalizePathWin`: collapses `//`, removes `./` segments and resolves
/// `../` against the segments before it (never above the start).
fn normalize_path(input: &[u8], windows: bool) -> Option<Vec<u8>> {
    let converted;
    let src: &[u8] = if windows && memchr::memchr(b'\\', input).is_some() {
        converted = input.iter().map(|&b| if b == b'\\' { b'/' } else { b }).collect::<Vec<u8>>();
        &converted
    } else {
        input
    };
    if src.len() == input.len() && src == input && path_unchanged(src) {
        return None;
    }
    let out = resolve_path(src);
    (out != input).then_some(out)
}

/// True when [`resolve_path`] would give `src` back, known without building it: nothing to
/// collapse or resolve without `//` or a dot, and a value with no `/` at all is one segment,
/// kept as it is unless it is `.` or `..` (most JSON values and names have dots, no slash).
fn path_unchanged(src: &[u8]) -> bool {
    let no_slash = memchr::memchr(b'/', src).is_none();
    (no_slash && src != b"." && src != b"..")
        || (memchr::memmem::find(src, b"//").is_none() && memchr::memchr(b'.', src).is_none())
}

fn resolve_path(src: &[u8]) -> Vec<u8> {
    let absolute = src.first() == Some(&b'/');
    let trailing = src.ends_with(b"/") || src.ends_with(b"/.") || src.ends_with(b"/..") || src == b"." || src == b"..";
    let mut parts: Vec<&[u8]> = Vec::new();
    for seg in src.split(|&b| b == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                if parts.last().is_some_and(|p| *p != b"..") {
                    parts.pop();
                } else if !absolute {
                    parts.push(seg);
                }
            }
            other => parts.push(other),
        }
    }
    let mut out = Vec::with_capacity(src.len());
    if absolute {
        out.push(b'/');
    }
    for (n, part) in parts.iter().enumerate() {
        if n > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(part);
    }
    if trailing && !parts.is_empty() {
        out.push(b'/');
    }
    out
}

fn hex_decode(input: &[u8]) -> Vec<u8> {
    input
        .chunks(2)
        .filter_map(|pair| {
            let text = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(text, 16).ok()
        })
        .collect()
}

/// Decodes base64 leniently, as ModSecurity does: stops at the first byte outside the
/// alphabet (padding included); a last group of two or three symbols gives its bytes only when
/// its unused low bits are zero (a canonical encoding's end), a lone last symbol nothing.
fn base64_decode(input: &[u8]) -> Vec<u8> {
    fn sextet(b: u8) -> Option<u32> {
        Some(u32::from(match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    }
    let mut out = Vec::with_capacity(input.len() / 4 * 3 + 2);
    let mut acc = 0u32;
    let mut n = 0;
    for v in input.iter().map_while(|&b| sextet(b)) {
        acc = acc << 6 | v;
        n += 1;
        if n == 4 {
            out.extend_from_slice(&acc.to_be_bytes()[1..]);
            (acc, n) = (0, 0);
        }
    }
    match n {
        2 if acc & 0xf == 0 => out.push((acc >> 4) as u8),
        3 if acc & 0x3 == 0 => out.extend_from_slice(&((acc >> 2) as u16).to_be_bytes()),
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(tr: Transform, input: &str) -> String {
        String::from_utf8_lossy(&tr.apply(input.as_bytes()).unwrap_or_else(|| input.as_bytes().to_vec())).into_owned()
    }

    #[test]
    fn names_parse_case_insensitively() {
        assert_eq!(Transform::parse("urlDecodeUni"), Some(Transform::UrlDecodeUni));
        assert_eq!(Transform::parse("base64decode"), Some(Transform::Base64Decode));
        assert_eq!(Transform::parse("utf8toUnicode"), Some(Transform::Utf8ToUnicode));
        assert_eq!(Transform::parse("bogus"), None);
    }

    #[test]
    fn cmd_line_follows_the_reference_manual() {
        // ModSecurity's documented example: "c^ommand /c ..." style obfuscation is undone.
        assert_eq!(t(Transform::CmdLine, "C^OMMAND /C DIR"), "command/c dir");
        assert_eq!(t(Transform::CmdLine, "\"cmd\" ,; /c  echo ( x"), "cmd/c echo( x");
    }

    #[test]
    fn whitespace_and_comments() {
        assert_eq!(t(Transform::CompressWhitespace, "a \t\n b"), "a b");
        assert_eq!(t(Transform::RemoveWhitespace, "a \t b"), "ab");
        assert_eq!(t(Transform::ReplaceComments, "UNION/**/SELECT/* x"), "UNION SELECT ");
        assert_eq!(t(Transform::RemoveCommentsChar, "a/*b*/c--d#e"), "abcde");
        assert_eq!(t(Transform::RemoveComments, "a/*b*/c-- d"), "ac");
        assert_eq!(t(Transform::Trim, "  a b \t"), "a b");
    }

    #[test]
    fn paths() {
        assert_eq!(t(Transform::NormalizePath, "/a//b/./c/../d"), "/a/b/d");
        assert_eq!(t(Transform::NormalizePath, "json.items.array_0.sku"), "json.items.array_0.sku");
        assert_eq!(t(Transform::NormalizePath, ".."), "../");
        assert_eq!(t(Transform::NormalizePath, "/../../etc/passwd"), "/etc/passwd");
        assert_eq!(t(Transform::NormalizePath, "../../etc/passwd"), "../../etc/passwd");
        assert_eq!(t(Transform::NormalizePathWin, "C:\\a\\..\\b\\"), "C:/b/");
    }

    #[test]
    fn encodings_and_hashes() {
        assert_eq!(t(Transform::Length, "abcd"), "4");
        assert_eq!(t(Transform::HexEncode, "AB"), "4142");
        assert_eq!(t(Transform::HexDecode, "4142"), "AB");
        assert_eq!(t(Transform::Base64Decode, "VGVzdA==x"), "Test");
        assert_eq!(t(Transform::Base64Decode, "VGVzdCBDYXNl"), "Test Case");
        assert_eq!(t(Transform::Base64Encode, "Test"), "VGVzdA==");
        let sha = Transform::Sha1.apply(b"abc").unwrap();
        assert_eq!(
            String::from_utf8(Transform::HexEncode.apply(&sha).unwrap()).unwrap(),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(t(Transform::RemoveNulls, "a\0b"), "ab");
        assert_eq!(t(Transform::Lowercase, "AbC"), "abc");
    }

    #[test]
    fn the_unchanged_path_shortcut_agrees_with_resolving() {
        // Every string of up to 7 bytes over the bytes that matter to the resolution.
        let alphabet = [b'a', b'.', b'/'];
        let mut checked = 0;
        for len in 0..=7u32 {
            for mut n in 0..3usize.pow(len) {
                let mut s = Vec::new();
                for _ in 0..len {
                    s.push(alphabet[n % 3]);
                    n /= 3;
                }
                if path_unchanged(&s) {
                    assert_eq!(resolve_path(&s), s, "{}", String::from_utf8_lossy(&s));
                    checked += 1;
                }
            }
        }
        assert!(checked > 100);
    }

    /// The decoder as it was written over the `base64` crate: the reference for the own one.
    fn base64_reference(input: &[u8]) -> Vec<u8> {
        use base64::engine::general_purpose::STANDARD_NO_PAD;
        let end = input.iter().position(|b| !(b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/'));
        let body = input.get(..end.unwrap_or(input.len())).unwrap_or_default();
        let usable = body.len() - body.len() % 4;
        let mut out = STANDARD_NO_PAD.decode(body.get(..usable).unwrap_or_default()).unwrap_or_default();
        let tail = body.get(usable..).unwrap_or_default();
        if tail.len() >= 2
            && let Ok(extra) = STANDARD_NO_PAD.decode(tail)
        {
            out.extend_from_slice(&extra);
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn base64_decodes_as_the_reference(
            value in proptest::collection::vec(proptest::sample::select(b"AZaz09+/=QgwxY-. ".to_vec()), 0..24)
        ) {
            proptest::prop_assert_eq!(base64_decode(&value), base64_reference(&value));
        }
    }

    #[test]
    fn base64_edges() {
        for (input, want) in
            [("", ""), ("QQ", "A"), ("QR", ""), ("QUI", "AB"), ("QUJ", ""), ("QUJD", "ABC"), ("QUJD=x", "ABC")]
        {
            assert_eq!(base64_decode(input.as_bytes()), want.as_bytes(), "{input}");
            assert_eq!(base64_reference(input.as_bytes()), want.as_bytes(), "{input}");
        }
    }
}
