//! Macro expansion: `%{tx.score}`, `%{MATCHED_VAR}`, `%{REQUEST_HEADERS.host}`, `%{rule.id}`.

use crate::vars::Var;

/// A variable reference inside a macro: the variable and an optional member (lower-case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacroVar {
    pub var: Var,
    pub key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(String),
    Var(MacroVar),
}

/// A string with macros, split once at load time.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    pub parts: Vec<Part>,
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("%{") {
            let (before, after) = rest.split_at(start);
            let Some(end) = after.find('}') else {
                // No closing brace: the text stays literal, as ModSecurity leaves it.
                break;
            };
            if !before.is_empty() {
                parts.push(Part::Text(before.to_string()));
            }
            let inner = after.get(2..end).unwrap_or_default();
            let (name, key) = match inner.split_once(['.', ':']) {
                Some((n, k)) => (n, Some(k.to_ascii_lowercase())),
                None => (inner, None),
            };
            let var = Var::parse(name.trim()).ok_or_else(|| format!("unknown variable in macro %{{{inner}}}"))?;
            parts.push(Part::Var(MacroVar { var, key }));
            rest = after.get(end + 1..).unwrap_or_default();
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// The text when the template holds no macro.
    pub fn literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Text(t)] => Some(t),
            _ => None,
        }
    }

    /// The member when the template is exactly one `%{tx.member}` (CRS's score additions).
    pub fn single_tx(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [Part::Var(MacroVar { var: Var::Tx, key: Some(k) })] => Some(k),
            _ => None,
        }
    }

    /// Expands with `resolve` writing each variable's value.
    pub fn expand(&self, out: &mut Vec<u8>, mut resolve: impl FnMut(&MacroVar, &mut Vec<u8>)) {
        for part in &self.parts {
            match part {
                Part::Text(t) => out.extend_from_slice(t.as_bytes()),
                Part::Var(v) => resolve(v, out),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_text_and_variables() {
        let t = Template::parse("score %{tx.Anomaly_Score} from %{REMOTE_ADDR}!").unwrap();
        assert_eq!(t.parts.len(), 5);
        assert_eq!(t.parts[1], Part::Var(MacroVar { var: Var::Tx, key: Some("anomaly_score".into()) }));
        let mut out = Vec::new();
        t.expand(&mut out, |v, o| o.extend_from_slice(if v.var == Var::Tx { b"5" } else { b"1.2.3.4" }));
        assert_eq!(out, b"score 5 from 1.2.3.4!");
        assert_eq!(Template::parse("plain").unwrap().literal(), Some("plain"));
        assert!(Template::parse("%{nope.x}").is_err());
    }
}
