//! The WAF log line: one per logged match, in ModSecurity's shape so existing tooling (and
//! go-ftw) can read it: `[id "942100"] [msg "..."] [data "..."]`.

use crate::engine::Match;
use std::fmt::Write as _;

/// Longest `data` and `uri` fields written; the rest is cut with `...`.
const FIELD_MAX: usize = 256;

fn clean(text: &str, out: &mut String) {
    // Most fields (tags, messages, variable names) are printable ASCII with nothing to escape.
    let plain = |b: u8| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\';
    if let Some(head) = text.get(..text.len().min(FIELD_MAX))
        && head.bytes().all(plain)
    {
        out.push_str(head);
        if text.len() > FIELD_MAX {
            out.push_str("...");
        }
        return;
    }
    clean_chars(text, out);
}

/// Escapes `"`, `\\` and control characters, cuts after [`FIELD_MAX`] characters.
fn clean_chars(text: &str, out: &mut String) {
    for (n, c) in text.chars().enumerate() {
        if n >= FIELD_MAX {
            out.push_str("...");
            return;
        }
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

/// `ModSecurity: Warning. ... [id "942100"] [msg "..."] ...` for one match.
pub fn line(m: &Match, client: &str, uri: &str, unique_id: &str) -> String {
    let mut out = String::with_capacity(LINE_CAPACITY);
    append(m, client, uri, unique_id, &mut out);
    out
}

/// Room for a typical line: CRS's are 700–1,000 bytes (980170's with its expanded message).
pub const LINE_CAPACITY: usize = 1024;

/// [`line`] appended to `out` (no newline), so a request's lines share one buffer. Written with
/// `push_str` and itoa: a line goes out for every logged match of every request (through
/// `write!` it cost ~10K instructions, ~3% of a benign GET's WAF work in the gateway).
pub fn append(m: &Match, client: &str, uri: &str, unique_id: &str, out: &mut String) {
    let rule = &m.rule;
    let mut n = itoa::Buffer::new();
    for part in ["[client ", client, "] ModSecurity: Warning. Matched rule in phase ", n.format(m.phase), " against `"]
    {
        out.push_str(part);
    }
    clean(&m.var_name, out);
    for part in ["' [file \"", &rule.file, "\"] [line \""] {
        out.push_str(part);
    }
    out.push_str(n.format(rule.line));
    out.push_str("\"] [id \"");
    out.push_str(n.format(rule.id));
    out.push_str("\"]");
    let mut field = |name: &str, value: &str| {
        for part in [" [", name, " \""] {
            out.push_str(part);
        }
        clean(value, out);
        out.push_str("\"]");
    };
    if !m.msg.is_empty() {
        field("msg", &m.msg);
    }
    if !m.data.is_empty() {
        field("data", &m.data);
    }
    if let Some(s) = rule.actions.severity {
        field("severity", itoa::Buffer::new().format(s));
    }
    if let Some(v) = &rule.actions.ver {
        field("ver", v);
    }
    for t in rule.actions.tags.iter() {
        field("tag", t);
    }
    field("uri", uri);
    field("unique_id", unique_id);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_has_every_field_in_modsecurity_order() {
        let text =
            "\nSecRule ARGS \"@rx x\" \"id:7,phase:2,pass,msg:'m',severity:'CRITICAL',ver:'v1',tag:'a',tag:'b'\"\n";
        let mut b = crate::Builder::new();
        b.text("t.conf", text, std::path::Path::new(".")).unwrap();
        let rules = b.build().unwrap();
        let rule = rules.rule(7).unwrap().clone();
        let m = Match { rule, phase: 2, msg: "say \"x\"".into(), data: "d".into(), var_name: "ARGS:q".into() };
        assert_eq!(
            line(&m, "10.0.0.1", "/p?q=x", "u1"),
            "[client 10.0.0.1] ModSecurity: Warning. Matched rule in phase 2 against `ARGS:q' [file \"t.conf\"] \
             [line \"2\"] [id \"7\"] [msg \"say \\\"x\\\"\"] [data \"d\"] [severity \"2\"] [ver \"v1\"] [tag \"a\"] \
             [tag \"b\"] [uri \"/p?q=x\"] [unique_id \"u1\"]"
        );
    }

    #[test]
    fn the_plain_shortcut_writes_what_escaping_writes() {
        let long = "a".repeat(FIELD_MAX + 9);
        let cases = [
            "",
            "paranoia-level/1",
            "REQUEST_HEADERS:Host",
            &long[..FIELD_MAX],
            &long[..FIELD_MAX + 1],
            &long,
            "say \"hi\"",
            "back\\slash",
            "tab\there",
            "caf\u{e9} au lait",
        ];
        for text in cases {
            let (mut fast, mut slow) = (String::new(), String::new());
            clean(text, &mut fast);
            clean_chars(text, &mut slow);
            assert_eq!(fast, slow, "{text}");
        }
        let mut cut = String::new();
        clean(&long, &mut cut);
        assert!(cut.ends_with("...") && cut.len() == FIELD_MAX + 3);
    }
}
