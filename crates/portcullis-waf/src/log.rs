//! The WAF log line: one per logged match, in ModSecurity's shape so existing tooling (and
//! go-ftw) can read it: `[id "942100"] [msg "..."] [data "..."]`.

use crate::engine::Match;
use std::fmt::Write as _;

/// Longest `data` and `uri` fields written; the rest is cut with `...`.
const FIELD_MAX: usize = 256;

fn clean(text: &str, out: &mut String) {
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
    let rule = &m.rule;
    let mut out = String::with_capacity(256);
    let _ = write!(out, "[client {client}] ModSecurity: Warning. Matched rule in phase {} against `", m.phase);
    clean(&m.var_name, &mut out);
    let _ = write!(out, "' [file \"{}\"] [line \"{}\"] [id \"{}\"]", rule.file, rule.line, rule.id);
    let mut field = |name: &str, value: &str| {
        let _ = write!(out, " [{name} \"");
        clean(value, &mut out);
        out.push_str("\"]");
    };
    if !m.msg.is_empty() {
        field("msg", &m.msg);
    }
    if !m.data.is_empty() {
        field("data", &m.data);
    }
    if let Some(s) = rule.actions.severity {
        field("severity", &s.to_string());
    }
    if let Some(v) = &rule.actions.ver {
        field("ver", v);
    }
    for t in rule.actions.tags.iter() {
        field("tag", t);
    }
    field("uri", uri);
    field("unique_id", unique_id);
    out
}
