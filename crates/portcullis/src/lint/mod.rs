//! `portcullis lint`: governance checks for the misconfigurations behind real incidents.
//! Each finding has a stable id, a severity, the config path with its line, and a one-line
//! fix. Output as text, JSON, or SARIF 2.1.0 (for code-scanning tools).
//!
//! The checks read the parsed model (so they see what was written, not defaults filled in);
//! a file that parses but does not compile is reported as `PC000` errors.

mod checks;

use crate::config::Loaded;
use serde::Serialize;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Likely a mistake.
    Warning,
    /// A known incident pattern.
    Error,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }

    fn sarif_level(self) -> &'static str {
        match self {
            Severity::Info => "note",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// A check's identity (stable: tools and suppressions refer to it).
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// `PC001`…
    pub id: &'static str,
    /// Short kebab-case name.
    pub name: &'static str,
    /// What it looks for.
    pub description: &'static str,
}

/// One problem found.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Rule id.
    pub id: &'static str,
    /// Rule name.
    pub rule: &'static str,
    /// Severity.
    pub severity: Severity,
    /// Config path, e.g. `routes[3].throttle`.
    pub path: String,
    /// Config file.
    pub file: String,
    /// 1-based line of `path`.
    pub line: u64,
    /// What is wrong.
    pub message: String,
    /// How to fix it, in one line.
    pub fix: String,
}

/// Runs every check on a parsed config.
pub fn lint(loaded: &Loaded) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Err(errors) = crate::config::compile(loaded.clone(), None) {
        for e in errors.0 {
            out.push(Finding {
                id: "PC000",
                rule: "config-invalid",
                severity: Severity::Error,
                path: String::new(),
                file: e.file,
                line: e.line,
                message: e.message,
                fix: "see `portcullis validate`".into(),
            });
        }
    }
    out.extend(checks(loaded));
    out.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.line.cmp(&b.line)));
    out
}

/// The checks alone, without compiling the config (for `run`, which compiles it anyway).
pub fn checks(loaded: &Loaded) -> Vec<Finding> {
    let mut out = Vec::new();
    checks::run(&mut checks::Ctx { loaded, out: &mut out });
    out.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.line.cmp(&b.line)));
    out
}

/// Every rule, for SARIF's rule list and the docs.
pub fn rules() -> &'static [Rule] {
    checks::RULES
}

/// The exit code: 1 with errors (or warnings when `strict`), else 0.
pub fn exit_code(findings: &[Finding], strict: bool) -> u8 {
    let worst = findings.iter().map(|f| f.severity).max();
    match worst {
        Some(Severity::Error) => 1,
        Some(Severity::Warning) if strict => 1,
        _ => 0,
    }
}

/// `file:line: severity[ID]: message (fix: …)` lines and a summary.
pub fn text(findings: &[Finding]) -> String {
    let mut s = String::new();
    for f in findings {
        let path = if f.path.is_empty() { String::new() } else { format!(" {}", f.path) };
        s.push_str(&format!(
            "{}:{}: {}[{} {}]{path}: {}\n    fix: {}\n",
            f.file,
            f.line,
            f.severity.as_str(),
            f.id,
            f.rule,
            f.message,
            f.fix
        ));
    }
    let count = |sev| findings.iter().filter(|f| f.severity == sev).count();
    s.push_str(&format!(
        "{} errors, {} warnings, {} infos\n",
        count(Severity::Error),
        count(Severity::Warning),
        count(Severity::Info)
    ));
    s
}

/// The findings as a JSON array.
pub fn json(findings: &[Finding]) -> String {
    serde_json::to_string_pretty(findings).unwrap_or_else(|_| "[]".into())
}

/// A SARIF 2.1.0 log with one run.
pub fn sarif(findings: &[Finding]) -> String {
    let rules: Vec<serde_json::Value> = rules()
        .iter()
        .map(|r| {
            serde_json::json!({
                "id": r.id, "name": r.name,
                "shortDescription": { "text": r.description },
            })
        })
        .collect();
    let results: Vec<serde_json::Value> = findings
        .iter()
        .map(|f| {
            serde_json::json!({
                "ruleId": f.id,
                "level": f.severity.sarif_level(),
                "message": { "text": format!("{}: {} Fix: {}", f.path, f.message, f.fix) },
                "locations": [{ "physicalLocation": {
                    "artifactLocation": { "uri": f.file },
                    "region": { "startLine": f.line.max(1) },
                }}],
            })
        })
        .collect();
    let log = serde_json::json!({
        "version": "2.1.0",
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "runs": [{
            "tool": { "driver": {
                "name": "portcullis lint",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "results": results,
        }],
    });
    serde_json::to_string_pretty(&log).unwrap_or_default()
}
