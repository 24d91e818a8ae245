//! Decoding transformations: URL, JavaScript, HTML entity, CSS, C escape sequences, and the
//! UTF-8 to `%uHHHH` rewrite. Each returns `None` when the input holds nothing to decode, so
//! the common clean value costs no allocation.

use memchr::memchr;

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn hex_pair(s: &[u8], at: usize) -> Option<u8> {
    Some(hex_val(*s.get(at)?)? << 4 | hex_val(*s.get(at + 1)?)?)
}

fn hex_quad(s: &[u8], at: usize) -> Option<u16> {
    Some(u16::from(hex_pair(s, at)?) << 8 | u16::from(hex_pair(s, at + 2)?))
}

/// A 16-bit code point reduced to one byte as ModSecurity does: full-width ASCII
/// (U+FF01..U+FF5E) maps to its ASCII twin, anything else keeps its low byte.
fn unicode_byte(code: u16) -> u8 {
    if (0xff01..=0xff5e).contains(&code) { (code - 0xfee0) as u8 } else { (code & 0xff) as u8 }
}

/// `urlDecode` (`uni == false`) and `urlDecodeUni` (also `%uHHHH`). `+` becomes a space;
/// invalid escapes stay as written.
pub fn url(input: &[u8], uni: bool) -> Option<Vec<u8>> {
    if memchr(b'%', input).is_none() && memchr(b'+', input).is_none() {
        return None;
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        match b {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let next = input.get(i + 1).copied();
                if uni && matches!(next, Some(b'u' | b'U')) {
                    if let Some(code) = hex_quad(input, i + 2) {
                        out.push(unicode_byte(code));
                        i += 6;
                        continue;
                    }
                } else if let Some(v) = hex_pair(input, i + 1) {
                    out.push(v);
                    i += 3;
                    continue;
                }
                out.push(b'%');
                i += 1;
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    Some(out)
}

/// `jsDecode`: `\uHHHH`, `\xHH`, the one-letter escapes, octal `\NNN`, and `\c` for any other c.
pub fn js(input: &[u8]) -> Option<Vec<u8>> {
    memchr(b'\\', input)?;
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let Some(&next) = input.get(i + 1) else {
            out.push(b'\\');
            break;
        };
        match next {
            b'u' | b'U' if hex_quad(input, i + 2).is_some() => {
                out.push(unicode_byte(hex_quad(input, i + 2).unwrap_or(0)));
                i += 6;
            }
            b'x' | b'X' if hex_pair(input, i + 2).is_some() => {
                out.push(hex_pair(input, i + 2).unwrap_or(0));
                i += 4;
            }
            b'0'..=b'7' => {
                let (value, used) = octal(input, i + 1);
                out.push(value);
                i += 1 + used;
            }
            _ => {
                out.push(simple_escape(next).unwrap_or(next));
                i += 2;
            }
        }
    }
    Some(out)
}

/// Up to three octal digits whose value fits a byte; returns the byte and the digits used.
fn octal(input: &[u8], at: usize) -> (u8, usize) {
    let mut value: u16 = 0;
    let mut used = 0;
    while used < 3 {
        match input.get(at + used) {
            Some(&d @ b'0'..=b'7') if value * 8 + u16::from(d - b'0') <= 0xff => {
                value = value * 8 + u16::from(d - b'0');
                used += 1;
            }
            _ => break,
        }
    }
    (value as u8, used)
}

fn simple_escape(c: u8) -> Option<u8> {
    Some(match c {
        b'a' => 0x07,
        b'b' => 0x08,
        b'f' => 0x0c,
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        b'v' => 0x0b,
        _ => return None,
    })
}

/// `escapeSeqDecode`: ANSI C escapes (`\n`, `\xHH`, `\NNN`, `\\`, `\?`, quotes); an unknown
/// escape keeps its backslash.
pub fn escape_seq(input: &[u8]) -> Option<Vec<u8>> {
    memchr(b'\\', input)?;
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        let next = input.get(i + 1).copied();
        match (b, next) {
            (b'\\', Some(b'x' | b'X')) if hex_pair(input, i + 2).is_some() => {
                out.push(hex_pair(input, i + 2).unwrap_or(0));
                i += 4;
            }
            (b'\\', Some(b'0'..=b'7')) => {
                let (value, used) = octal(input, i + 1);
                out.push(value);
                i += 1 + used;
            }
            (b'\\', Some(c @ (b'\\' | b'?' | b'\'' | b'"'))) => {
                out.push(c);
                i += 2;
            }
            (b'\\', Some(c)) if simple_escape(c).is_some() => {
                out.push(simple_escape(c).unwrap_or(c));
                i += 2;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

/// `cssDecode`: `\` + 1..6 hex digits (one following white space is eaten), `\` + newline is
/// removed, `\` + any other character is that character.
pub fn css(input: &[u8]) -> Option<Vec<u8>> {
    memchr(b'\\', input)?;
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let mut digits = 0;
        while digits < 6 && input.get(i + 1 + digits).copied().and_then(hex_val).is_some() {
            digits += 1;
        }
        if digits > 0 {
            let mut code: u32 = 0;
            for k in 0..digits {
                code = code * 16 + u32::from(input.get(i + 1 + k).copied().and_then(hex_val).unwrap_or(0));
            }
            let byte = if digits >= 4 && (0xff01..=0xff5e).contains(&code) {
                (code - 0xfee0) as u8
            } else {
                (code & 0xff) as u8
            };
            out.push(byte);
            i += 1 + digits;
            if matches!(input.get(i), Some(b' ' | b'\t' | b'\n' | b'\r' | 0x0c)) {
                i += 1;
            }
        } else {
            match input.get(i + 1) {
                Some(b'\n') => i += 2,
                Some(&c) => {
                    out.push(c);
                    i += 2;
                }
                None => i += 1,
            }
        }
    }
    Some(out)
}

/// `htmlEntityDecode`: `&#DDD;`, `&#xHH;` (the `;` may be missing) and the named entities
/// `quot amp lt gt nbsp`; a code point keeps its low byte, as ModSecurity does.
pub fn html_entity(input: &[u8]) -> Option<Vec<u8>> {
    memchr(b'&', input)?;
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        if b == b'&'
            && let Some((byte, used)) = entity(input.get(i + 1..).unwrap_or_default())
        {
            out.push(byte);
            i += 1 + used;
            continue;
        }
        out.push(b);
        i += 1;
    }
    Some(out)
}

fn entity(s: &[u8]) -> Option<(u8, usize)> {
    if s.first() == Some(&b'#') {
        let hex = matches!(s.get(1), Some(b'x' | b'X'));
        let start = if hex { 2 } else { 1 };
        let mut end = start;
        let mut code: u32 = 0;
        while let Some(&d) = s.get(end) {
            let v = if hex { hex_val(d) } else { d.is_ascii_digit().then(|| d - b'0') };
            let Some(v) = v else { break };
            code = code.saturating_mul(if hex { 16 } else { 10 }).saturating_add(u32::from(v));
            end += 1;
        }
        if end == start {
            return None;
        }
        let used = if s.get(end) == Some(&b';') { end + 1 } else { end };
        return Some(((code & 0xff) as u8, used));
    }
    const NAMED: [(&[u8], u8); 5] = [(b"quot", b'"'), (b"amp", b'&'), (b"lt", b'<'), (b"gt", b'>'), (b"nbsp", 0xa0)];
    for (name, byte) in NAMED {
        if s.len() >= name.len() && s.get(..name.len()).is_some_and(|p| p.eq_ignore_ascii_case(name)) {
            let used = if s.get(name.len()) == Some(&b';') { name.len() + 1 } else { name.len() };
            return Some((byte, used));
        }
    }
    None
}

/// `utf8toUnicode`: every valid multi-byte UTF-8 sequence becomes `%uHHHH` (lower-case hex);
/// ASCII and invalid bytes stay as they are.
pub fn utf8_to_unicode(input: &[u8]) -> Option<Vec<u8>> {
    if input.is_ascii() {
        return None;
    }
    let mut out = Vec::with_capacity(input.len() + 8);
    let mut rest = input;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                push_unicode(&mut out, valid);
                break;
            }
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                push_unicode(&mut out, std::str::from_utf8(valid).unwrap_or_default());
                let bad = e.error_len().unwrap_or(after.len());
                out.extend_from_slice(after.get(..bad).unwrap_or(after));
                rest = after.get(bad..).unwrap_or_default();
            }
        }
    }
    Some(out)
}

fn push_unicode(out: &mut Vec<u8>, s: &str) {
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c as u8);
        } else {
            let code = u32::from(c);
            out.extend_from_slice(format!("%u{:04x}", code & 0xffff).as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: Option<Vec<u8>>) -> Vec<u8> {
        v.unwrap()
    }

    #[test]
    fn url_decoding() {
        assert_eq!(s(url(b"a%20b+c%2", false)), b"a b c%2");
        assert_eq!(s(url(b"%u0041%uFF07%zz", true)), b"A'%zz");
        assert_eq!(s(url(b"%u0041", false)), b"%u0041");
        assert!(url(b"plain", true).is_none());
    }

    #[test]
    fn js_decoding() {
        assert_eq!(s(js(br"\u0061\x62\143\n\q\")), b"abc\nq\\");
        assert_eq!(s(js(br"\uff1c")), b"<");
    }

    #[test]
    fn escape_sequences() {
        assert_eq!(s(escape_seq(br"\x41\101\n\\\q")), b"AA\n\\\\q");
    }

    #[test]
    fn css_decoding() {
        assert_eq!(s(css(b"\\61 \\62\\\nc\\\"")), b"abc\"");
        assert_eq!(s(css(b"j\\61vascript")), b"javascript");
        assert_eq!(s(css(b"\\00003c")), b"<");
    }

    #[test]
    fn html_entities() {
        assert_eq!(s(html_entity(b"&lt;script&gt;&#x41;&#66&quot;&AMP;&bogus;")), b"<script>AB\"&&bogus;");
        assert_eq!(s(html_entity(b"&nbsp;")), vec![0xa0]);
    }

    #[test]
    fn utf8_becomes_percent_u() {
        assert_eq!(s(utf8_to_unicode("aé\u{ff1c}".as_bytes())), b"a%u00e9%uff1c");
        assert_eq!(s(utf8_to_unicode(b"a\xffb")), b"a\xffb");
        assert!(utf8_to_unicode(b"ascii").is_none());
    }
}
