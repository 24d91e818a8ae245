//! `portcullis waf test`: runs go-ftw-format regression tests (CRS's own suite) in-process,
//! judging each stage from the WAF log lines the engine writes, as go-ftw judges a server's.

pub mod http;
pub mod model;
pub mod wire;

use crate::body::BodyLimits;
use crate::engine::Transaction;
use crate::request::Response;
use crate::rules::RuleSet;
use model::{Output, OverrideFile, TestFile};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The CRS directory tests use: `PORTCULLIS_CRS`, else `../shared/crs` beside the checkout.
/// `None` (after saying so on stderr) when it is not there.
pub fn test_crs_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("PORTCULLIS_CRS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/crs"));
    if dir.join("rules").is_dir() && dir.join("tests/regression/tests").is_dir() {
        dir.canonicalize().ok()
    } else {
        eprintln!("\n*** SKIPPED: CRS not found at {} (set PORTCULLIS_CRS) ***\n", dir.display());
        None
    }
}

/// The setup rule CRS's test suite adds (crs/README.md): detection only, paranoia 4, the
/// test limits.
pub const TEST_SETUP: &str = "SecAction \"id:900005,phase:1,nolog,pass,ctl:ruleEngine=DetectionOnly,ctl:ruleRemoveById=910000,\
setvar:tx.blocking_paranoia_level=4,setvar:tx.crs_validate_utf8_encoding=1,\
setvar:tx.arg_name_length=100,setvar:tx.arg_length=400,setvar:tx.total_arg_length=64000,\
setvar:tx.max_num_args=255,setvar:tx.max_file_size=64100,setvar:tx.combined_file_sizes=65535\"\n";

/// Loads CRS from `dir` (crs-setup.conf.example or crs-setup.conf, then rules/*.conf) with
/// `extra` rules between setup and rules.
pub fn load_crs(dir: &Path, extra: &str) -> Result<RuleSet, crate::LoadError> {
    let mut b = crate::Builder::new();
    b.crs(dir, None, extra)?;
    b.build()
}

impl crate::Builder {
    /// Adds CRS from `dir` in its documented order: the setup file (`setup`, else the
    /// directory's `crs-setup.conf`, else its `.example`), then `extra` (settings that must run
    /// before CRS's initialization), then `rules/*.conf` by name.
    pub fn crs(&mut self, dir: &Path, setup: Option<&Path>, extra: &str) -> Result<&mut Self, crate::LoadError> {
        let b = self;
        let setup = match setup {
            Some(s) => Some(s.to_path_buf()),
            None => ["crs-setup.conf", "crs-setup.conf.example"].iter().map(|n| dir.join(n)).find(|p| p.is_file()),
        };
        if let Some(setup) = setup {
            b.file(&setup)?;
        }
        b.text("(test setup)", extra, dir)?;
        let rules_dir = if dir.join("rules").is_dir() { dir.join("rules") } else { dir.to_path_buf() };
        // Which setup file and rule files load depends on these listings.
        b.listed(dir);
        b.listed(&rules_dir);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&rules_dir)
            .map_err(|e| crate::LoadError { file: rules_dir.display().to_string(), line: 0, message: e.to_string() })?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "conf"))
            .collect();
        files.sort();
        for f in files {
            b.file(&f)?;
        }
        Ok(b)
    }
}

/// One test's verdict.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub file: String,
    pub rule_id: u32,
    pub test_id: u32,
    /// True when the test expects rule ids (positive), false when it only rules them out.
    pub positive: bool,
    pub passed: bool,
    pub overridden: bool,
    pub reason: String,
}

/// What an exchange produced: the status and the WAF log lines.
#[derive(Debug, Default)]
pub struct Exchange {
    pub error: bool,
    pub status: u16,
    pub log: Vec<String>,
    pub ids: Vec<u32>,
}

/// Runs one raw request through the engine (detection mode), with a response from the
/// `/reflect` backend convention.
pub fn exchange(rules: &RuleSet, raw: &[u8]) -> Exchange {
    let Ok(p) = wire::parse(raw) else {
        return Exchange { error: false, status: 400, ..Exchange::default() };
    };
    let req = p.request();
    let reflect = reflected(&p);
    let mut tx = Transaction::new(rules, req, BodyLimits::default());
    tx.request_headers();
    tx.request_body();
    let status = reflect.as_ref().map_or(200, |r| r.0);
    let headers: Vec<(&[u8], &[u8])> = match &reflect {
        Some((_, h, _)) => h.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())).collect(),
        None => vec![(b"Content-Type", b"text/plain")],
    };
    let body: &[u8] = reflect.as_ref().map_or(&[], |r| r.2.as_slice());
    tx.response(Response { status, protocol: b"HTTP/1.1", headers, body });
    tx.logging();
    let uri = String::from_utf8_lossy(&p.uri).into_owned();
    let log: Vec<String> = tx.matches().iter().map(|m| crate::log::line(m, "127.0.0.1", &uri, "test")).collect();
    let ids = tx.matches().iter().map(|m| m.rule.id).collect();
    Exchange { error: false, status, log, ids }
}

type Reflected = (u16, Vec<(String, String)>, Vec<u8>);

/// `POST /reflect` with `{"status":…, "headers":{…}, "body":"…"}` answers with exactly that.
fn reflected(p: &wire::Parsed) -> Option<Reflected> {
    if p.uri != b"/reflect" {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&p.body).ok()?;
    let status = v.get("status").and_then(serde_json::Value::as_u64).and_then(|s| u16::try_from(s).ok()).unwrap_or(200);
    let headers = v
        .get("headers")
        .and_then(serde_json::Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
        .unwrap_or_default();
    let body = v.get("body").and_then(serde_json::Value::as_str).unwrap_or_default().as_bytes().to_vec();
    Some((status, headers, body))
}

/// Judges an exchange in go-ftw's order; returns why it failed.
pub fn judge(out: &Output, ex: &Exchange) -> Result<(), String> {
    if out.expect_error == Some(true) {
        return if ex.error { Ok(()) } else { Err("expected an error, got an HTTP answer".into()) };
    }
    if let Some(s) = &out.status
        && !s.accepts(ex.status)
    {
        return Err(format!("status {} not expected ({s:?}); logged {:?}", ex.status, ex.ids));
    }
    let text = ex.log.join("\n");
    let text = text.as_bytes();
    let regex = |r: &str| {
        regex::bytes::RegexBuilder::new(r).unicode(false).build().map_err(|e| format!("bad regex in test: {e}"))
    };
    for r in out.log.match_regex.iter().chain(out.log_contains.iter()) {
        if !regex(r)?.is_match(text) {
            return Err(format!("log does not match {r}"));
        }
    }
    let missing: Vec<u32> = out.log.expect_ids.iter().copied().filter(|id| !ex.ids.contains(id)).collect();
    if !missing.is_empty() {
        return Err(format!("expected ids not logged: {missing:?} (logged {:?}, status {})", ex.ids, ex.status));
    }
    for r in out.log.no_match_regex.iter().chain(out.no_log_contains.iter()) {
        if regex(r)?.is_match(text) {
            return Err(format!("log matches {r}"));
        }
    }
    let unwanted: Vec<u32> = out.log.no_expect_ids.iter().copied().filter(|id| ex.ids.contains(id)).collect();
    if !unwanted.is_empty() {
        return Err(format!("ids logged that must not be: {unwanted:?}"));
    }
    Ok(())
}

/// Reads the overrides file: (rule id, test id) -> replacement output. Every entry needs a
/// reason.
pub fn load_overrides(path: &Path) -> Result<HashMap<(u32, u32), Output>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: OverrideFile = serde_saphyr::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut map = HashMap::new();
    for o in file.test_overrides {
        if o.reason.trim().is_empty() {
            return Err(format!("{}: override for rule {} has no reason", path.display(), o.rule_id));
        }
        for t in &o.test_ids {
            map.insert((o.rule_id, *t), o.output.clone());
        }
    }
    Ok(map)
}

/// Every `*.yaml` under `dir`, sorted.
pub fn test_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.filter_map(Result::ok) {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Runs every test under `tests` against `rules` with `send` doing the exchange.
pub fn run(
    tests: &Path,
    overrides: &HashMap<(u32, u32), Output>,
    mut send: impl FnMut(&[u8]) -> Exchange,
) -> Result<Vec<Outcome>, String> {
    let mut outcomes = Vec::new();
    for path in test_files(tests) {
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if !text.lines().any(|l| l.starts_with("tests:")) {
            continue;
        }
        let file: TestFile = serde_saphyr::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let group =
            path.parent().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        for test in &file.tests {
            let override_out = overrides.get(&(file.rule_id, test.test_id));
            let mut result = Ok(());
            let mut positive = false;
            for stage in &test.stages {
                let out = override_out.unwrap_or(&stage.output);
                positive |= !out.log.expect_ids.is_empty();
                let raw = match wire::build(&stage.input) {
                    Ok(r) => r,
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                };
                let mut verdict = judge(out, &send(&raw));
                if verdict.is_err() && out.retry_once == Some(true) {
                    verdict = judge(out, &send(&raw));
                }
                if verdict.is_err() {
                    result = verdict;
                    break;
                }
            }
            outcomes.push(Outcome {
                file: group.clone(),
                rule_id: file.rule_id,
                test_id: test.test_id,
                positive,
                passed: result.is_ok(),
                overridden: override_out.is_some(),
                reason: result.err().unwrap_or_default(),
            });
        }
    }
    Ok(outcomes)
}

/// Per rule file and total, positive and negative separately; ends with `N passed, M failed`.
pub fn report(outcomes: &[Outcome], show_failures: bool) -> String {
    let mut by_file: BTreeMap<&str, [usize; 4]> = BTreeMap::new();
    for o in outcomes {
        let slot = by_file.entry(&o.file).or_default();
        let i = usize::from(!o.passed) * 2 + usize::from(!o.positive);
        if let Some(c) = slot.get_mut(i) {
            *c += 1;
        }
    }
    let mut out = String::new();
    out.push_str(&format!("{:<45} {:>16} {:>16}\n", "rule file", "positive pass/all", "negative pass/all"));
    let mut total = [0usize; 4];
    for (file, c) in &by_file {
        let [pp, np, pf, nf] = *c;
        out.push_str(&format!("{file:<45} {:>16} {:>16}\n", format!("{pp}/{}", pp + pf), format!("{np}/{}", np + nf)));
        for (t, v) in total.iter_mut().zip(c) {
            *t += v;
        }
    }
    let [pp, np, pf, nf] = total;
    out.push_str(&format!("{:<45} {:>16} {:>16}\n", "TOTAL", format!("{pp}/{}", pp + pf), format!("{np}/{}", np + nf)));
    if show_failures {
        for o in outcomes.iter().filter(|o| !o.passed) {
            out.push_str(&format!("FAIL {}-{}: {}\n", o.rule_id, o.test_id, o.reason));
        }
    }
    out.push_str(&format!("{} passed, {} failed\n", pp + np, pf + nf));
    out
}
