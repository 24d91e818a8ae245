//! JSON bodies flattened into arguments the way ModSecurity v3 names them: `json.a.b` for
//! object members, `json.list.array_0` for array elements (`json.items.array_0.sku`,
//! `json.array_0` at the top), `empty-key` for a member named `""`. One pass, no document
//! tree; string values without escapes are borrowed from the body. With `partial` (a body
//! cut at the inspection limit) the end of input is not an error: everything before it is
//! still inspected.

use crate::request::Bytes;
use std::borrow::Cow;

enum Frame {
    /// The length of the name before this level.
    Object {
        base: usize,
    },
    Array {
        base: usize,
        index: usize,
    },
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn ws(&mut self) {
        while matches!(self.s.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }

    fn string(&mut self) -> Result<Option<Bytes<'a>>, String> {
        // at the opening quote
        self.i += 1;
        let start = self.i;
        let mut owned: Option<Vec<u8>> = None;
        loop {
            let Some(&b) = self.s.get(self.i) else { return Ok(None) };
            match b {
                b'"' => {
                    let raw = self.s.get(start..self.i).unwrap_or_default();
                    self.i += 1;
                    return Ok(Some(match owned {
                        Some(v) => Cow::Owned(v),
                        None => Cow::Borrowed(raw),
                    }));
                }
                b'\\' => {
                    let buf = owned.get_or_insert_with(|| self.s.get(start..self.i).unwrap_or_default().to_vec());
                    let Some(&e) = self.s.get(self.i + 1) else { return Ok(None) };
                    self.i += 2;
                    match e {
                        b'"' | b'\\' | b'/' => buf.push(e),
                        b'b' => buf.push(8),
                        b'f' => buf.push(12),
                        b'n' => buf.push(b'\n'),
                        b'r' => buf.push(b'\r'),
                        b't' => buf.push(b'\t'),
                        b'u' => {
                            let Some(hex) = self.s.get(self.i..self.i + 4) else { return Ok(None) };
                            let code = std::str::from_utf8(hex)
                                .ok()
                                .and_then(|h| u32::from_str_radix(h, 16).ok())
                                .ok_or("JSON parsing error: bad \\u escape")?;
                            self.i += 4;
                            let ch = char::from_u32(code).unwrap_or('\u{fffd}');
                            let mut tmp = [0u8; 4];
                            buf.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
                        }
                        _ => return Err("JSON parsing error: bad escape".into()),
                    }
                }
                b if b < 0x20 => return Err("JSON parsing error: control character in string".into()),
                other => {
                    if let Some(buf) = owned.as_mut() {
                        buf.push(other);
                    }
                    self.i += 1;
                }
            }
        }
    }

    /// A number, `true`, `false` or `null`; `None` at the end of a partial input.
    fn scalar(&mut self) -> Result<Option<&'a [u8]>, String> {
        let start = self.i;
        while matches!(self.s.get(self.i), Some(b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' | b'+' | b'-' | b'.')) {
            self.i += 1;
        }
        let tok = self.s.get(start..self.i).unwrap_or_default();
        if self.i >= self.s.len() {
            return Ok(None);
        }
        let number = tok.first().is_some_and(|c| *c == b'-' || c.is_ascii_digit())
            && std::str::from_utf8(tok).ok().is_some_and(|t| t.parse::<f64>().is_ok());
        if matches!(tok, b"true" | b"false" | b"null") || number {
            Ok(Some(tok))
        } else {
            Err(format!("JSON parsing error: unexpected {:?} at byte {start}", String::from_utf8_lossy(tok)))
        }
    }
}

/// Flattens `body` into `out`. Errors name what is wrong; `partial` forgives the end.
pub fn flatten<'a>(
    body: &'a [u8],
    partial: bool,
    max_depth: usize,
    out: &mut Vec<(Bytes<'a>, Bytes<'a>)>,
) -> Result<(), String> {
    let mut p = Parser { s: body, i: 0 };
    let mut name = b"json".to_vec();
    let mut stack: Vec<Frame> = Vec::new();
    let truncated = || if partial { Ok(()) } else { Err("JSON parsing error: unexpected end of input".to_string()) };
    loop {
        // Expecting a value here (top level, after a key, or in an array).
        let Some(c) = p.peek() else { return truncated() };
        match c {
            b'{' | b'[' => {
                p.i += 1;
                if stack.len() >= max_depth {
                    return Err(format!("JSON nesting deeper than {max_depth}"));
                }
                let base = name.len();
                if c == b'{' {
                    stack.push(Frame::Object { base });
                    match p.peek() {
                        Some(b'}') => p.i += 1,
                        Some(b'"') => {
                            if !key(&mut p, &mut name, base)? {
                                return truncated();
                            }
                            continue;
                        }
                        None => return truncated(),
                        Some(_) => return Err("JSON parsing error: expected a key".into()),
                    }
                } else {
                    stack.push(Frame::Array { base, index: 0 });
                    match p.peek() {
                        Some(b']') => p.i += 1,
                        None => return truncated(),
                        Some(_) => {
                            name.extend_from_slice(b".array_0");
                            continue;
                        }
                    }
                }
                // An empty container: fall through to close it.
                stack.pop();
                name.truncate(base);
            }
            b'"' => match p.string()? {
                Some(v) => out.push((Cow::Owned(name.clone()), v)),
                None => return truncated(),
            },
            _ => match p.scalar()? {
                Some(tok) => {
                    out.push((Cow::Owned(name.clone()), Cow::Borrowed(if tok == b"null" { &[] } else { tok })))
                }
                None => return truncated(),
            },
        }
        // After a value: a comma (next key/element) or closers.
        loop {
            let Some(frame) = stack.last_mut() else {
                return match p.peek() {
                    None => Ok(()),
                    Some(_) => Err("JSON parsing error: trailing characters".into()),
                };
            };
            match (p.peek(), frame) {
                (None, _) => return truncated(),
                (Some(b','), Frame::Object { base }) => {
                    let base = *base;
                    p.i += 1;
                    name.truncate(base);
                    if p.peek() != Some(b'"') {
                        return if p.peek().is_none() {
                            truncated()
                        } else {
                            Err("JSON parsing error: expected a key".into())
                        };
                    }
                    if !key(&mut p, &mut name, base)? {
                        return truncated();
                    }
                    break;
                }
                (Some(b','), Frame::Array { base, index }) => {
                    p.i += 1;
                    *index += 1;
                    name.truncate(*base);
                    name.extend_from_slice(b".array_");
                    name.extend_from_slice(itoa::Buffer::new().format(*index).as_bytes());
                    break;
                }
                (Some(b'}'), Frame::Object { base }) | (Some(b']'), Frame::Array { base, .. }) => {
                    p.i += 1;
                    name.truncate(*base);
                    stack.pop();
                }
                (Some(other), _) => {
                    return Err(format!("JSON parsing error: unexpected {:?} at byte {}", other as char, p.i));
                }
            }
        }
    }
}

/// Reads `"key":` and appends `.key` to the name (`.empty-key` for `""`, as ModSecurity);
/// false at the end of a partial input.
fn key(p: &mut Parser<'_>, name: &mut Vec<u8>, base: usize) -> Result<bool, String> {
    let Some(k) = p.string()? else { return Ok(false) };
    name.truncate(base);
    name.push(b'.');
    name.extend_from_slice(if k.is_empty() { b"empty-key" } else { &k });
    match p.peek() {
        Some(b':') => {
            p.i += 1;
            Ok(true)
        }
        None => Ok(false),
        Some(_) => Err("JSON parsing error: expected ':'".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(body: &str, partial: bool) -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::new();
        flatten(body.as_bytes(), partial, 8, &mut out)?;
        Ok(out
            .into_iter()
            .map(|(k, v)| (String::from_utf8_lossy(&k).into(), String::from_utf8_lossy(&v).into()))
            .collect())
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn flattens_like_modsecurity() {
        let got = run(r#" {"a": {"b": "x\"1\u0041"}, "c": [1, true, null, {"d": -2.5e3}], "e": [], "f": {}} "#, false)
            .unwrap();
        assert_eq!(
            got,
            pairs(&[
                ("json.a.b", "x\"1A"),
                ("json.c.array_0", "1"),
                ("json.c.array_1", "true"),
                ("json.c.array_2", ""),
                ("json.c.array_3.d", "-2.5e3")
            ])
        );
        assert_eq!(run(r#""top""#, false).unwrap(), pairs(&[("json", "top")]));
        let nested = run(r#"[[1],[2,{"":3}]]"#, false).unwrap();
        let want =
            [("json.array_0.array_0", "1"), ("json.array_1.array_0", "2"), ("json.array_1.array_1.empty-key", "3")];
        assert_eq!(nested, pairs(&want));
        let items = run(r#"{"items":[{"sku":"a"},{"sku":"b"}],"n":1}"#, false).unwrap();
        let want = [("json.items.array_0.sku", "a"), ("json.items.array_1.sku", "b"), ("json.n", "1")];
        assert_eq!(items, pairs(&want));
    }

    #[test]
    fn malformed_and_deep_bodies_are_errors() {
        for bad in ["{bad", r#"{"a" 1}"#, r#"{"a":1,}"#, "[1 2]", r#"{"a":tru}"#, "{} x", r#"{"a":"\q"}"#, r#"{"a":1"#]
        {
            assert!(run(bad, false).is_err(), "{bad}");
        }
        assert!(run(&format!("{}1{}", "[".repeat(9), "]".repeat(9)), false).unwrap_err().contains("deeper"));
    }

    #[test]
    fn a_cut_body_keeps_what_came_before_the_cut() {
        let got = run(r#"{"q":"1' OR '1'='1","pad":"aaaa"#, true).unwrap();
        assert_eq!(got, pairs(&[("json.q", "1' OR '1'='1")]));
        assert!(run(r#"{"q":"1' OR '1'='1","pad":"aaaa"#, false).is_err());
    }
}
