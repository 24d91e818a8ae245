//! One normalization of the request path, used for routing, every check and forwarding, so
//! the gateway and the backend can never disagree about which resource was asked for.
//!
//! - percent-encoded unreserved characters are decoded (`%41` → `A`, `%2e` → `.`); other
//!   escapes are kept with upper-case hex (`%c3%a9` → `%C3%A9`);
//! - `//` collapses, `.` segments go, `..` removes the previous segment;
//! - refused: `%2f` and `%5c` (an encoded separator means something different to every
//!   backend), `%00` and other encoded control characters, raw `\`, raw control or non-ASCII
//!   bytes, malformed escapes, `..` above the root, and segments like `..;x` that some servlet
//!   containers treat as `..`.

use std::borrow::Cow;

/// Why a path was refused (all map to 400 `request.bad_path`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Not starting with `/` (e.g. `*` or an empty target).
    NotAbsolute,
    /// `%` not followed by two hex digits.
    BadEscape,
    /// `%2f` or `%5c`.
    EncodedSeparator,
    /// `%00`..`%1f`, `%7f`.
    EncodedControl,
    /// A raw byte that is not allowed in a path.
    BadByte,
    /// `..` above the root.
    AboveRoot,
    /// `..;` / `.;` path-parameter tricks.
    DotParameter,
}

impl PathError {
    /// For logs.
    pub fn as_str(self) -> &'static str {
        match self {
            PathError::NotAbsolute => "path is not absolute",
            PathError::BadEscape => "malformed percent-encoding",
            PathError::EncodedSeparator => "encoded '/' or '\\'",
            PathError::EncodedControl => "encoded control character",
            PathError::BadByte => "character not allowed in a path",
            PathError::AboveRoot => "dot-segments climb above the root",
            PathError::DotParameter => "dot-segment with a path parameter",
        }
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Bytes allowed raw in a path (RFC 3986 pchar plus '/'), apart from '%' which is checked.
fn is_path_byte(b: u8) -> bool {
    is_unreserved(b)
        || matches!(b, b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' | b':' | b'@' | b'/')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn upper_hex(nibble: u8) -> u8 {
    if nibble < 10 { b'0' + nibble } else { b'A' + nibble - 10 }
}

/// Normalizes an absolute path (no query). Borrowed when nothing changes.
pub fn normalize(raw: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    // Fast path: plain bytes, no escapes, no empty or dot segments.
    let mut simple = true;
    let mut prev = 0u8;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'%' {
            simple = false;
            break;
        }
        if !is_path_byte(b) {
            return Err(if b == b'\\' { PathError::EncodedSeparator } else { PathError::BadByte });
        }
        if prev == b'/' && (b == b'/' || (b == b'.' && dot_segment_at(bytes, i))) {
            simple = false;
            break;
        }
        prev = b;
    }
    if simple {
        return Ok(Cow::Borrowed(raw));
    }
    slow(bytes).map(Cow::Owned)
}

/// True when a segment starting at `i` (just after a '/') is `.` or `..`, possibly with `;`.
fn dot_segment_at(bytes: &[u8], i: usize) -> bool {
    let rest = bytes.get(i..).unwrap_or_default();
    let seg = rest.split(|b| *b == b'/').next().unwrap_or(rest);
    let name = seg.split(|b| *b == b';').next().unwrap_or(seg);
    name == b"." || name == b".."
}

fn slow(bytes: &[u8]) -> Result<String, PathError> {
    // 1. decode unreserved escapes, normalize the others, validate every byte
    let mut decoded: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let (Some(h), Some(l)) = (bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex))
            else {
                return Err(PathError::BadEscape);
            };
            let v = h * 16 + l;
            match v {
                b'/' | b'\\' => return Err(PathError::EncodedSeparator),
                0..=0x1f | 0x7f => return Err(PathError::EncodedControl),
                _ if is_unreserved(v) => decoded.push(v),
                _ => decoded.extend_from_slice(&[b'%', upper_hex(h), upper_hex(l)]),
            }
            i += 3;
            continue;
        }
        if !is_path_byte(b) {
            return Err(if b == b'\\' { PathError::EncodedSeparator } else { PathError::BadByte });
        }
        decoded.push(b);
        i += 1;
    }
    // 2. segments: drop empty and '.', apply '..'
    let mut out: Vec<&[u8]> = Vec::new();
    let mut trailing_slash = decoded.ends_with(b"/");
    for seg in decoded.split(|b| *b == b'/') {
        let name = seg.split(|b| *b == b';').next().unwrap_or(seg);
        if (name == b"." || name == b"..") && name.len() != seg.len() {
            return Err(PathError::DotParameter);
        }
        match seg {
            b"" => {}
            b"." => trailing_slash = true,
            b".." => {
                if out.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                trailing_slash = true;
            }
            s => {
                out.push(s);
                trailing_slash = decoded.ends_with(b"/");
            }
        }
    }
    let mut path = String::with_capacity(decoded.len());
    for seg in &out {
        path.push('/');
        // Every byte was checked to be ASCII above.
        path.push_str(std::str::from_utf8(seg).map_err(|_| PathError::BadByte)?);
    }
    if out.is_empty() || trailing_slash {
        path.push('/');
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        normalize(raw).unwrap_or_else(|e| panic!("{raw}: {e:?}")).into_owned()
    }

    #[test]
    fn plain_paths_are_borrowed() {
        assert!(matches!(normalize("/api/orders/42"), Ok(Cow::Borrowed(_))));
        assert!(matches!(normalize("/"), Ok(Cow::Borrowed(_))));
        assert!(matches!(normalize("/a/b/"), Ok(Cow::Borrowed(_))));
        assert!(matches!(normalize("/a/.well-known/x"), Ok(Cow::Borrowed(_))));
        assert!(matches!(normalize("/a/..b/x"), Ok(Cow::Borrowed(_))));
    }

    #[test]
    fn normalizes_to_one_spelling() {
        assert_eq!(ok("/api//x"), "/api/x");
        assert_eq!(ok("/api/./x"), "/api/x");
        assert_eq!(ok("/api/y/../x"), "/api/x");
        assert_eq!(ok("/%61pi/x"), "/api/x");
        assert_eq!(ok("/api/%2e%2E/api/x"), "/api/x");
        assert_eq!(ok("/a/%c3%a9"), "/a/%C3%A9");
        assert_eq!(ok("/a/%20b"), "/a/%20b");
        assert_eq!(ok("/a/b/.."), "/a/");
        assert_eq!(ok("/a/b/."), "/a/b/");
        assert_eq!(ok("//"), "/");
        assert_eq!(ok("/a/"), "/a/");
        assert_eq!(ok("/a//"), "/a/");
        assert_eq!(ok("/a/%7e"), "/a/~");
    }

    #[test]
    fn refuses_what_cannot_be_normalized_safely() {
        let cases = [
            ("/a%2fb", PathError::EncodedSeparator),
            ("/a%2Fb", PathError::EncodedSeparator),
            ("/a%5cb", PathError::EncodedSeparator),
            ("/a\\b", PathError::EncodedSeparator),
            ("/a%00", PathError::EncodedControl),
            ("/a%0d%0a", PathError::EncodedControl),
            ("/a%zz", PathError::BadEscape),
            ("/a%4", PathError::BadEscape),
            ("/a%", PathError::BadEscape),
            ("/..", PathError::AboveRoot),
            ("/a/../..", PathError::AboveRoot),
            ("/%2e%2e/etc/passwd", PathError::AboveRoot),
            ("/public/..;/admin", PathError::DotParameter),
            ("/public/.;/admin", PathError::DotParameter),
            ("/a b", PathError::BadByte),
            ("/a\u{e9}", PathError::BadByte),
            ("*", PathError::NotAbsolute),
            ("", PathError::NotAbsolute),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize(raw), Err(want), "{raw}");
        }
    }

    proptest::proptest! {
        /// Normalizing twice changes nothing, and the result never contains a dot segment,
        /// an empty segment or an encoded separator.
        #[test]
        fn idempotent_and_clean(raw in "/[a-z./%2-5cfFeE;]{0,24}") {
            if let Ok(once) = normalize(&raw) {
                let twice = normalize(&once).unwrap().into_owned();
                proptest::prop_assert_eq!(&twice, &once.to_string());
                proptest::prop_assert!(!once.contains("//"));
                proptest::prop_assert!(!once.contains("/./") && !once.contains("/../"));
                proptest::prop_assert!(!once.to_ascii_lowercase().contains("%2f"));
            }
        }
    }
}
