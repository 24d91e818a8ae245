//! Request body processors: URL-encoded forms, JSON (flattened to arguments as ModSecurity
//! does), multipart (arguments, FILES and part headers) and XML (text and attribute values).

use crate::actions::BodyProcessor;
use crate::request::{Bytes, Parsed, parse_query};
use std::borrow::Cow;

/// Limits on what the processors accept.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Deepest JSON/XML nesting accepted; deeper bodies set REQBODY_ERROR.
    pub max_depth: usize,
    /// Most arguments taken from one body; the rest set REQBODY_ERROR.
    pub max_args: usize,
    /// The body was cut at the inspection limit: processors take what they can, and a
    /// document that ends early is not an error.
    pub partial: bool,
}

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits { max_depth: 64, max_args: 1000, partial: false }
    }
}

/// Runs the chosen processor over `p.body`, filling the phase-2 collections.
pub fn process<'a>(p: &mut Parsed<'a>, content_type: Option<&'a [u8]>, limits: BodyLimits) {
    p.body_parsed = true;
    let body = p.body;
    if body.is_empty() {
        return;
    }
    let result = match p.processor {
        None => Ok(()),
        Some(BodyProcessor::UrlEncoded) => {
            parse_query(body, &mut p.args_post);
            Ok(())
        }
        Some(BodyProcessor::Json) => crate::json::flatten(body, limits.partial, limits.max_depth, &mut p.args_post),
        Some(BodyProcessor::Multipart) => multipart(body, content_type.unwrap_or_default(), p),
        Some(BodyProcessor::Xml) => xml(body, limits, p),
    };
    if p.args_post.len() > limits.max_args {
        p.args_post.truncate(limits.max_args);
        p.body_error.get_or_insert_with(|| format!("more than {} arguments", limits.max_args));
    }
    match result {
        // A cut body ends inside something; that is the cut, not a malformed body.
        Err(e)
            if limits.partial && (e.contains("unterminated") || e.contains("unclosed") || e.contains("header end")) => {
        }
        Err(e) => p.body_error = Some(e),
        Ok(()) => {}
    }
}

/// The `boundary` parameter of a multipart Content-Type.
fn boundary(content_type: &[u8]) -> Option<&[u8]> {
    let at = memchr::memmem::find(&content_type.to_ascii_lowercase(), b"boundary=")?;
    let rest = content_type.get(at + 9..)?;
    let rest = rest.split(|&b| b == b';').next()?.trim_ascii();
    let rest = rest.strip_prefix(b"\"").and_then(|r| r.strip_suffix(b"\"")).unwrap_or(rest);
    (!rest.is_empty()).then_some(rest)
}

/// A `name=value` parameter of a Content-Disposition header; quoted values may hold `;` and
/// backslash-escaped quotes (unescaped into an owned value).
fn disposition_param<'a>(header: &'a [u8], param: &[u8]) -> Option<Bytes<'a>> {
    let mut rest = header.get(memchr::memchr(b';', header)? + 1..)?;
    loop {
        rest = rest.trim_ascii_start();
        let eq = memchr::memchr2(b'=', b';', rest)?;
        let key = rest.get(..eq)?.trim_ascii();
        if rest.get(eq) == Some(&b';') {
            rest = rest.get(eq + 1..)?;
            continue;
        }
        let after = rest.get(eq + 1..)?.trim_ascii_start();
        let (value, next): (Bytes<'a>, &'a [u8]) = if let Some(q) = after.strip_prefix(b"\"") {
            let mut v = Vec::new();
            let mut i = 0;
            let mut escaped = false;
            while let Some(&b) = q.get(i) {
                i += 1;
                match b {
                    b'\\' if matches!(q.get(i), Some(b'"' | b'\\')) => {
                        escaped = true;
                        v.extend(q.get(i).copied());
                        i += 1;
                    }
                    b'"' => break,
                    other => v.push(other),
                }
            }
            let raw = q.get(..i.saturating_sub(1)).unwrap_or_default();
            let value = if escaped { Cow::Owned(v) } else { Cow::Borrowed(raw) };
            (value, q.get(i..).unwrap_or_default())
        } else {
            let end = memchr::memchr(b';', after).unwrap_or(after.len());
            (Cow::Borrowed(after.get(..end).unwrap_or_default().trim_ascii()), after.get(end..).unwrap_or_default())
        };
        if key.eq_ignore_ascii_case(param) {
            return Some(value);
        }
        rest = next.get(memchr::memchr(b';', next)? + 1..)?;
    }
}

fn multipart<'a>(body: &'a [u8], content_type: &'a [u8], p: &mut Parsed<'a>) -> Result<(), String> {
    let boundary = boundary(content_type).ok_or("multipart: no boundary")?;
    let delimiter = [b"--", boundary].concat();
    let mut parts = memchr::memmem::find_iter(body, &delimiter).collect::<Vec<usize>>();
    if parts.is_empty() {
        return Err("multipart: boundary not found".into());
    }
    parts.push(body.len());
    for pair in parts.windows(2) {
        let (start, end) = match pair {
            [s, e] => (*s + delimiter.len(), *e),
            _ => continue,
        };
        let chunk = body.get(start..end).unwrap_or_default();
        if chunk.starts_with(b"--") {
            break;
        }
        let chunk = chunk.strip_prefix(b"\r\n").or_else(|| chunk.strip_prefix(b"\n")).unwrap_or(chunk);
        let chunk = chunk.strip_suffix(b"\r\n").or_else(|| chunk.strip_suffix(b"\n")).unwrap_or(chunk);
        let (head, content) = match memchr::memmem::find(chunk, b"\r\n\r\n") {
            Some(i) => (chunk.get(..i).unwrap_or_default(), chunk.get(i + 4..).unwrap_or_default()),
            None => match memchr::memmem::find(chunk, b"\n\n") {
                Some(i) => (chunk.get(..i).unwrap_or_default(), chunk.get(i + 2..).unwrap_or_default()),
                None => return Err("multipart: part without header end".into()),
            },
        };
        let mut name: Option<Bytes<'a>> = None;
        let mut filename: Option<Bytes<'a>> = None;
        let mut lines = Vec::new();
        for line in head.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            lines.push(line);
            if line.len() > 20 && line.get(..20).is_some_and(|h| h.eq_ignore_ascii_case(b"content-disposition:")) {
                name = disposition_param(line, b"name");
                filename = disposition_param(line, b"filename");
            }
        }
        let name = name.ok_or("multipart: part without a name")?;
        for line in lines {
            p.part_headers.push((name.clone(), Cow::Borrowed(line)));
        }
        match filename {
            Some(f) => {
                p.files.push((name.clone(), f));
                p.files_sizes.push((name, content.len()));
            }
            None => p.args_post.push((name, Cow::Borrowed(content))),
        }
    }
    Ok(())
}

/// Collects XML text nodes and attribute values (`XML:/*` and `XML://@*`). Refuses DTDs,
/// which are where entity expansion attacks live.
fn xml(body: &[u8], limits: BodyLimits, p: &mut Parsed<'_>) -> Result<(), String> {
    let mut text = Vec::new();
    let result = xml_scan(body, limits, &mut p.xml_attrs, &mut text);
    let text = crate::decode::html_entity(&text).unwrap_or(text);
    p.xml_text.push(text);
    result
}

fn xml_scan(body: &[u8], limits: BodyLimits, attrs: &mut Vec<Vec<u8>>, text: &mut Vec<u8>) -> Result<(), String> {
    let mut i = 0;
    let mut depth: usize = 0;
    while i < body.len() {
        let rest = body.get(i..).unwrap_or_default();
        if rest.first() != Some(&b'<') {
            let end = memchr::memchr(b'<', rest).unwrap_or(rest.len());
            text.extend_from_slice(rest.get(..end).unwrap_or_default());
            i += end;
            continue;
        }
        if rest.starts_with(b"<!--") {
            i += memchr::memmem::find(rest, b"-->").ok_or("XML: unterminated comment")? + 3;
        } else if rest.starts_with(b"<![CDATA[") {
            let end = memchr::memmem::find(rest, b"]]>").ok_or("XML: unterminated CDATA")?;
            text.extend_from_slice(rest.get(9..end).unwrap_or_default());
            i += end + 3;
        } else if rest.starts_with(b"<!") {
            return Err("XML: document type declarations are not accepted".into());
        } else if rest.starts_with(b"<?") {
            i += memchr::memmem::find(rest, b"?>").ok_or("XML: unterminated processing instruction")? + 2;
        } else {
            let end = tag_end(rest).ok_or("XML: unterminated tag")?;
            let tag = rest.get(1..end).unwrap_or_default();
            if tag.starts_with(b"/") {
                depth = depth.checked_sub(1).ok_or("XML: unbalanced end tag")?;
            } else {
                attributes(tag, attrs);
                if !tag.ends_with(b"/") {
                    depth += 1;
                    if depth > limits.max_depth {
                        return Err(format!("XML nesting deeper than {}", limits.max_depth));
                    }
                }
            }
            i += end + 1;
        }
    }
    if depth != 0 {
        return Err("XML: unclosed element".into());
    }
    Ok(())
}

/// Index of the `>` that closes a tag, skipping quoted attribute values.
fn tag_end(s: &[u8]) -> Option<usize> {
    let mut quote = None;
    for (i, &b) in s.iter().enumerate() {
        match (quote, b) {
            (None, b'"' | b'\'') => quote = Some(b),
            (Some(q), c) if c == q => quote = None,
            (None, b'>') => return Some(i),
            _ => {}
        }
    }
    None
}

fn attributes(tag: &[u8], out: &mut Vec<Vec<u8>>) {
    let mut rest = tag;
    while let Some(eq) = memchr::memchr(b'=', rest) {
        let after = rest.get(eq + 1..).unwrap_or_default().trim_ascii_start();
        let Some(&q) = after.first().filter(|q| **q == b'"' || **q == b'\'') else { break };
        let body = after.get(1..).unwrap_or_default();
        let end = memchr::memchr(q, body).unwrap_or(body.len());
        let value = body.get(..end).unwrap_or_default();
        out.push(crate::decode::html_entity(value).unwrap_or_else(|| value.to_vec()));
        rest = body.get(end + 1..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Request;

    fn parsed<'a>(ct: &'a [u8], body: &'a [u8]) -> Parsed<'a> {
        let r =
            Request { method: b"POST", uri: b"/", headers: vec![(b"content-type", ct)], body, ..Request::default() };
        let mut p = r.parse_head();
        p.body = body;
        process(&mut p, Some(ct), BodyLimits::default());
        p
    }

    fn args(p: &Parsed<'_>) -> Vec<(String, String)> {
        p.args_post
            .iter()
            .map(|(k, v)| (String::from_utf8_lossy(k).into(), String::from_utf8_lossy(v).into()))
            .collect()
    }

    #[test]
    fn json_flattens_like_modsecurity() {
        let p = parsed(b"application/json", br#"{"a":{"b":"x'1"},"c":[1,true,null]}"#);
        let got = args(&p);
        assert!(got.contains(&("json.a.b".into(), "x'1".into())));
        assert!(got.contains(&("json.c.array_0".into(), "1".into())));
        assert!(got.contains(&("json.c.array_1".into(), "true".into())));
        assert!(p.body_error.is_none());
        let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        assert!(parsed(b"application/json", deep.as_bytes()).body_error.unwrap().contains("deeper"));
        assert!(parsed(b"application/json", b"{bad").body_error.is_some());
    }

    #[test]
    fn multipart_parts_and_files() {
        let body = b"--XX\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nhello\r\n--XX\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x.php\"\r\nContent-Type: text/plain\r\n\r\n<?php\r\n--XX--\r\n";
        let p = parsed(b"multipart/form-data; boundary=XX", body);
        assert_eq!(args(&p), vec![("a".into(), "hello".into())]);
        assert_eq!(p.files[0].1.as_ref(), b"x.php");
        assert_eq!(p.files_sizes[0].1, 5);
        assert_eq!(p.part_headers.len(), 3);
        let body =
            b"--XX\r\nContent-Disposition: form-data; name=\"fi;le\"; filename=\"a\\\"b\"\r\n\r\nx\r\n--XX--\r\n";
        let p = parsed(b"multipart/form-data; boundary=XX", body);
        assert_eq!(p.files[0].0.as_ref(), b"fi;le");
        assert_eq!(p.files[0].1.as_ref(), b"a\"b");
    }

    #[test]
    fn xml_text_and_attributes() {
        let p = parsed(b"text/xml", b"<?xml version=\"1.0\"?><a x=\"1 &lt;\"><b>hi</b><![CDATA[<s>]]></a>");
        assert_eq!(p.xml_text, vec![b"hi<s>".to_vec()]);
        assert_eq!(p.xml_attrs, vec![b"1 <".to_vec()]);
        assert!(parsed(b"text/xml", b"<!DOCTYPE x [<!ENTITY a \"b\">]><x/>").body_error.is_some());
    }
}
