//! Maps a config path such as `routes[2].upstream` to the line it was written on, so that
//! semantic errors found after parsing still say `file:line`. YAML and JSON (a YAML subset)
//! are walked as parser events; TOML through its spanned document tree.

use serde_saphyr::granit_parser::{Event, Parser};
use std::collections::HashMap;

/// Path → 1-based line.
#[derive(Debug, Default, Clone)]
pub struct Locator {
    lines: HashMap<String, u64>,
}

impl Locator {
    /// The line of `path`, or of its nearest ancestor that has one, or 1.
    pub fn line_of(&self, path: &str) -> u64 {
        let mut p = path;
        loop {
            if let Some(line) = self.lines.get(p) {
                return *line;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return 1,
            }
        }
    }

    /// Builds the map from YAML or JSON text. Text that does not parse gives an empty map
    /// (the deserializer reports that error with its own position).
    pub fn from_yaml(text: &str) -> Locator {
        let mut walker = Walker::default();
        for item in Parser::new_from_str(text) {
            let Ok((event, span)) = item else { break };
            let line = span.start.line() as u64;
            match event {
                Event::Scalar(value, ..) => walker.scalar(&value, line),
                Event::Alias(_) => walker.scalar("", line),
                Event::MappingStart(..) => walker.open(false, line),
                Event::SequenceStart(..) => walker.open(true, line),
                Event::MappingEnd | Event::SequenceEnd => walker.close(),
                _ => {}
            }
        }
        Locator { lines: walker.lines }
    }

    /// Builds the map from TOML text.
    pub fn from_toml(text: &str) -> Locator {
        let mut lines = HashMap::new();
        if let Ok(root) = toml::de::DeTable::parse(text) {
            let starts = line_starts(text);
            toml_table(root.get_ref(), "", text, &starts, &mut lines);
        }
        Locator { lines }
    }
}

fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() { key.to_string() } else { format!("{parent}.{key}") }
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

#[derive(Default)]
struct Walker {
    stack: Vec<Frame>,
    lines: HashMap<String, u64>,
}

impl Walker {
    /// The path of the node that starts now, if it is a value (not a mapping key).
    fn value_path(&mut self) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                Some(p)
            }
            Some(Frame::Map { path, key }) => key.take().map(|k| join_key(path, &k)),
        }
    }

    fn scalar(&mut self, value: &str, line: u64) {
        if let Some(Frame::Map { path, key }) = self.stack.last_mut()
            && key.is_none()
        {
            // A mapping key: remember it and where it was written.
            let p = join_key(path, value);
            self.lines.entry(p).or_insert(line);
            *key = Some(value.to_string());
            return;
        }
        if let Some(p) = self.value_path() {
            self.lines.entry(p).or_insert(line);
        }
    }

    fn open(&mut self, seq: bool, line: u64) {
        let path = if let Some(Frame::Map { key: None, .. }) = self.stack.last() {
            // A complex (non-scalar) key: track it under a name nothing refers to.
            if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
                *key = Some("?".into());
            }
            "?".to_string()
        } else {
            self.value_path().unwrap_or_default()
        };
        self.lines.entry(path.clone()).or_insert(line);
        self.stack.push(if seq { Frame::Seq { path, next: 0 } } else { Frame::Map { path, key: None } });
    }

    fn close(&mut self) {
        self.stack.pop();
    }
}

fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect()
}

/// 1-based line of a byte offset.
pub fn line_at(starts: &[usize], offset: usize) -> u64 {
    starts.partition_point(|s| *s <= offset) as u64
}

fn toml_table(table: &toml::de::DeTable<'_>, path: &str, text: &str, starts: &[usize], out: &mut HashMap<String, u64>) {
    for (key, value) in table {
        let p = join_key(path, key.get_ref());
        out.entry(p.clone()).or_insert(line_at(starts, key.span().start));
        toml_value(value.get_ref(), &p, text, starts, out);
    }
}

fn toml_value(value: &toml::de::DeValue<'_>, path: &str, text: &str, starts: &[usize], out: &mut HashMap<String, u64>) {
    match value {
        toml::de::DeValue::Table(t) => toml_table(t, path, text, starts, out),
        toml::de::DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let p = format!("{path}[{i}]");
                out.entry(p.clone()).or_insert(line_at(starts, item.span().start));
                toml_value(item.get_ref(), &p, text, starts, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_paths_have_lines() {
        let text = "listeners:\n  - name: a\n    bind: x\nroutes:\n  - name: r1\n    upstream: u\n  - name: r2\n    match:\n      path: /x\n    upstream: v\n";
        let l = Locator::from_yaml(text);
        assert_eq!(l.line_of("listeners[0].bind"), 3);
        assert_eq!(l.line_of("routes[1].upstream"), 10);
        assert_eq!(l.line_of("routes[1].match.path"), 9);
        assert_eq!(l.line_of("routes[1].nothing"), 7);
        assert_eq!(l.line_of("nothing.at.all"), 1);
    }

    #[test]
    fn json_is_located_as_yaml() {
        let text = "{\n  \"routes\": [\n    {\"name\": \"a\",\n     \"upstream\": \"u\"}\n  ]\n}\n";
        let l = Locator::from_yaml(text);
        assert_eq!(l.line_of("routes[0].upstream"), 4);
    }

    #[test]
    fn toml_paths_have_lines() {
        let text = "[[routes]]\nname = \"a\"\nupstream = \"u\"\n\n[[routes]]\nname = \"b\"\nupstream = \"v\"\n[upstreams.v]\ntargets = [\"http://x\"]\n";
        let l = Locator::from_toml(text);
        assert_eq!(l.line_of("routes[1].upstream"), 7);
        assert_eq!(l.line_of("upstreams.v.targets"), 9);
    }
}
