//! Splits SecLang text into directives and a directive into its arguments.
//!
//! The rules follow Apache's configuration syntax, which ModSecurity inherits: a line ending in a
//! backslash continues on the next line, `#` starts a comment line, arguments are separated by
//! white space, and a double-quoted argument keeps every backslash except the one before a quote.

/// One directive with the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawDirective {
    pub line: usize,
    pub name: String,
    pub args: Vec<String>,
}

/// Splits a whole file into directives. Fails with the line of an unterminated quote.
pub fn directives(text: &str) -> Result<Vec<RawDirective>, (usize, String)> {
    let mut out = Vec::new();
    let mut pending = String::new();
    let mut start = 0;
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if pending.is_empty() {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            start = line_no;
        }
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            continue;
        }
        pending.push_str(line);
        let joined = std::mem::take(&mut pending);
        out.push(split_directive(&joined).map_err(|message| (start, message))?.with_line(start));
    }
    if !pending.is_empty() {
        let directive = split_directive(&pending).map_err(|message| (start, message))?;
        out.push(directive.with_line(start));
    }
    Ok(out)
}

impl RawDirective {
    fn with_line(mut self, line: usize) -> Self {
        self.line = line;
        self
    }
}

fn split_directive(text: &str) -> Result<RawDirective, String> {
    let mut words = words(text)?;
    if words.is_empty() {
        return Err("empty directive".into());
    }
    let name = words.remove(0);
    Ok(RawDirective { line: 0, name, args: words })
}

/// Splits on white space; `"..."` groups, with `\"` standing for a quote and every other
/// backslash kept as written (regular expressions rely on that).
pub fn words(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(first) = chars.next() else { break };
        let mut word = String::new();
        if first == '"' {
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' if chars.peek() == Some(&'"') => {
                        word.push('"');
                        chars.next();
                    }
                    '"' => {
                        closed = true;
                        break;
                    }
                    other => word.push(other),
                }
            }
            if !closed {
                return Err("unterminated double quote".into());
            }
        } else {
            word.push(first);
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                word.push(c);
            }
        }
        out.push(word);
    }
    Ok(out)
}

/// One `name` or `name:value` item of an action list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawAction {
    pub name: String,
    pub value: Option<String>,
}

/// Splits `id:1,phase:2,msg:'a, b',t:none` into actions. A value in single quotes may hold
/// commas; `\'` inside it stands for a quote.
pub fn actions(text: &str) -> Result<Vec<RawAction>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace() || *c == ',').is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut name = String::new();
        while let Some(c) = chars.next_if(|c| *c != ':' && *c != ',') {
            name.push(c);
        }
        let name = name.trim().to_string();
        let mut value = None;
        if chars.next_if_eq(&':').is_some() {
            while chars.next_if(|c| *c == ' ').is_some() {}
            let mut v = String::new();
            if chars.next_if_eq(&'\'').is_some() {
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        '\\' if chars.peek() == Some(&'\'') => {
                            v.push('\'');
                            chars.next();
                        }
                        '\'' => {
                            closed = true;
                            break;
                        }
                        other => v.push(other),
                    }
                }
                if !closed {
                    return Err(format!("unterminated single quote in action {name}"));
                }
                while chars.next_if(|c| *c != ',').is_some() {}
            } else {
                while let Some(c) = chars.next_if(|c| *c != ',') {
                    v.push(c);
                }
                v = v.trim_end().to_string();
            }
            value = Some(v);
        }
        if name.is_empty() {
            return Err("empty action name".into());
        }
        out.push(RawAction { name, value });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_lines_join_and_keep_the_start_line() {
        let text = "# comment\n\nSecRule ARGS \"@rx a\\\"b\\d\" \\\n    \"id:1,\\\n    phase:2\"\nSecMarker END\n";
        let d = directives(text).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].line, 3);
        assert_eq!(d[0].name, "SecRule");
        assert_eq!(d[0].args, vec!["ARGS", "@rx a\"b\\d", "id:1,    phase:2"]);
        assert_eq!(d[1].line, 6);
        assert_eq!(d[1].args, vec!["END"]);
    }

    #[test]
    fn unterminated_quote_names_the_line() {
        let err = directives("SecMarker A\nSecRule ARGS \"@rx a\n").unwrap_err();
        assert_eq!(err.0, 2);
    }

    #[test]
    fn actions_with_quoted_commas() {
        let a = actions("id:1, phase:2,msg:'a, b \\'c\\'',t:none,block,setvar:'tx.x=+%{tx.y}'").unwrap();
        let pairs: Vec<(String, Option<String>)> = a.into_iter().map(|a| (a.name, a.value)).collect();
        assert_eq!(
            pairs,
            vec![
                ("id".into(), Some("1".into())),
                ("phase".into(), Some("2".into())),
                ("msg".into(), Some("a, b 'c'".into())),
                ("t".into(), Some("none".into())),
                ("block".into(), None),
                ("setvar".into(), Some("tx.x=+%{tx.y}".into())),
            ]
        );
        assert!(actions("msg:'open").is_err());
    }
}
