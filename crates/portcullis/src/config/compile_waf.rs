//! `waf`, `defaults.waf` and `routes[].waf` → the compiled rule set, IP lists and per-route
//! modes and exclusions.

use super::compile::Ctx;
use super::model::{self, RouteWaf, WafBodyLimit, WafMode};
use crate::observe::waf_log::WafLog;
use portcullis_waf::actions::RuleRef;
use portcullis_waf::iplist::{IpAction, IpList};
use portcullis_waf::vars::{Target, parse_targets};
use portcullis_waf::{Builder, RuleSet};
use std::path::PathBuf;
use std::sync::Arc;

/// The compiled `waf` section.
#[derive(Debug)]
pub struct WafRt {
    /// The rules; `None` when no rules are configured (builtin off and no CRS).
    pub rules: Option<Arc<RuleSet>>,
    /// What they were loaded from (to keep them over a reload that changes none of it).
    pub loaded: Option<LoadedRules>,
    /// Body bytes inspected.
    pub body_limit: u64,
    /// What a larger body gets.
    pub on_body_limit: WafBodyLimit,
    /// What the response phases read of an upstream's answer.
    pub response: WafResponseRt,
    /// The WAF log.
    pub log: Arc<WafLog>,
    /// `ip_deny` and `ip_allow`.
    pub ips: Arc<IpList>,
}

/// The compiled `waf.response`.
#[derive(Debug, Clone)]
pub struct WafResponseRt {
    /// Body bytes read ahead and inspected.
    pub body_limit: usize,
    /// Media types (lower case, no parameters) whose bodies are inspected.
    pub mime_types: Vec<String>,
}

impl WafResponseRt {
    /// Whether a body of this `Content-Type` is inspected (parameters and case ignored).
    pub fn inspects(&self, content_type: &[u8]) -> bool {
        let essence = content_type.split(|&b| b == b';').next().unwrap_or_default().trim_ascii();
        self.mime_types.iter().any(|m| m.as_bytes().eq_ignore_ascii_case(essence))
    }
}

/// The media types whose response bodies are inspected by default: ModSecurity's recommended
/// set and JSON, what APIs answer with (and leak SQL errors or stack traces in).
const RESPONSE_MIME_TYPES: [&str; 4] = ["text/plain", "text/html", "text/xml", "application/json"];

/// A route's WAF mode and exclusions.
#[derive(Debug, Clone)]
pub struct RouteWafRt {
    /// Block, detect or off.
    pub mode: WafMode,
    /// Rules removed on this route.
    pub remove: Vec<RuleRef>,
    /// Targets removed from rules on this route.
    pub remove_targets: Vec<(RuleRef, Vec<Target>)>,
}

/// Settings CRS reads from TX before its initialization runs (id outside CRS's ranges).
fn crs_settings(paranoia: u8, inbound: u32, outbound: u32) -> String {
    format!(
        "SecAction \"id:99000,phase:1,pass,nolog,t:none,setvar:tx.blocking_paranoia_level={paranoia},\
         setvar:tx.inbound_anomaly_score_threshold={inbound},setvar:tx.outbound_anomaly_score_threshold={outbound}\"\n"
    )
}

/// What the rules are loaded from, resolved and checked: CRS (directory, setup file,
/// settings), the built-in rules, own rule files.
#[derive(Debug, PartialEq)]
struct RuleInputs {
    crs: Option<(PathBuf, Option<PathBuf>, String)>,
    builtin: bool,
    files: Vec<PathBuf>,
}

/// The rules a snapshot runs and where they came from, so a reload that changes neither the
/// settings nor any file they were read from keeps them instead of compiling CRS again
/// (~0.8 s of CPU).
#[derive(Debug)]
pub struct LoadedRules {
    inputs: RuleInputs,
    /// SHA-256 over the rule set's sources (file contents, directory listings).
    digest: Option<[u8; 32]>,
}

fn rule_inputs(cx: &mut Ctx, w: &model::Waf, watched: &mut Vec<PathBuf>) -> Option<RuleInputs> {
    let mut inputs = RuleInputs { crs: None, builtin: w.builtin_enabled(), files: Vec::new() };
    if let Some(crs) = &w.crs {
        let paranoia = crs.paranoia.unwrap_or(1);
        let threshold = crs.inbound_threshold.unwrap_or(5);
        let outbound = crs.outbound_threshold.unwrap_or(4);
        cx.require(
            "waf.crs",
            &[
                ("paranoia", (1..=4).contains(&paranoia), "between 1 and 4"),
                ("inbound_threshold", threshold >= 1, "at least 1"),
                ("outbound_threshold", outbound >= 1, "at least 1"),
            ],
        );
        let dir = cx.resolve(&crs.path);
        if !dir.join("rules").is_dir() {
            cx.err(
                "waf.crs.path",
                format!("{} has no rules/ directory (expected the OWASP CRS v4 layout)", dir.display()),
            );
            return None;
        }
        let setup = crs.setup.as_ref().map(|s| cx.resolve(s));
        watched.extend(setup.clone());
        inputs.crs = Some((dir, setup, crs_settings(paranoia, threshold, outbound)));
    }
    for f in &w.rules {
        let path = cx.resolve(f);
        watched.push(path.clone());
        inputs.files.push(path);
    }
    Some(inputs)
}

fn load_rules(
    cx: &mut Ctx,
    w: &model::Waf,
    watched: &mut Vec<PathBuf>,
    previous: Option<&WafRt>,
) -> (Option<Arc<RuleSet>>, Option<LoadedRules>) {
    let Some(inputs) = rule_inputs(cx, w, watched) else { return (None, None) };
    if inputs.crs.is_none() && !inputs.builtin && inputs.files.is_empty() {
        return (None, None);
    }
    if let Some((Some(rules), Some(loaded))) = previous.map(|p| (p.rules.as_ref(), p.loaded.as_ref()))
        && loaded.inputs == inputs
        && loaded.digest.is_some()
        && digest(&rules.sources) == loaded.digest
    {
        return (Some(rules.clone()), Some(LoadedRules { inputs, digest: loaded.digest }));
    }
    let mut b = Builder::new();
    if let Some((dir, setup, settings)) = &inputs.crs
        && let Err(e) = b.crs(dir, setup.as_deref(), settings)
    {
        cx.err("waf.crs.path", format!("CRS does not load: {e}"));
        return (None, None);
    }
    if inputs.builtin
        && let Err(e) = b.text("(builtin rules)", portcullis_waf::BUILTIN_RULES, std::path::Path::new("."))
    {
        cx.err("waf.builtin", format!("built-in rules do not load: {e}"));
        return (None, None);
    }
    for (i, path) in inputs.files.iter().enumerate() {
        if let Err(e) = b.file(path) {
            cx.err(&format!("waf.rules[{i}]"), format!("rule file does not load: {e}"));
            return (None, None);
        }
    }
    match b.build() {
        Ok(r) => {
            let digest = digest(&r.sources);
            (Some(Arc::new(r)), Some(LoadedRules { inputs, digest }))
        }
        Err(e) => {
            cx.err("waf", format!("rules do not load: {e}"));
            (None, None)
        }
    }
}

/// SHA-256 over each source's path and its contents (a file) or sorted names (a directory);
/// `None` when one cannot be read (the rules are then loaded again).
fn digest(sources: &[PathBuf]) -> Option<[u8; 32]> {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for path in sources {
        h.update(path.as_os_str().as_encoded_bytes());
        h.update([0]);
        if path.is_dir() {
            let mut names: Vec<_> = std::fs::read_dir(path).ok()?.filter_map(|e| Some(e.ok()?.file_name())).collect();
            names.sort();
            for n in names {
                h.update(n.as_encoded_bytes());
                h.update([0]);
            }
        } else {
            let bytes = std::fs::read(path).ok()?;
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(&bytes);
        }
    }
    Some(h.finalize().into())
}

fn ip_lists(cx: &mut Ctx, w: &model::Waf, watched: &mut Vec<PathBuf>) -> IpList {
    let mut list = IpList::default();
    for (field, entries, action) in
        [("ip_deny", &w.ip_deny, IpAction::Deny), ("ip_allow", &w.ip_allow, IpAction::Allow)]
    {
        for (i, entry) in entries.iter().enumerate() {
            let p = format!("waf.{field}[{i}]");
            if let Some(file) = entry.strip_prefix("file:") {
                let path = cx.resolve(std::path::Path::new(file));
                match std::fs::read_to_string(&path) {
                    Ok(text) => match portcullis_waf::iplist::parse_file(&text) {
                        Ok(nets) => nets.into_iter().for_each(|n| list.add(n, action)),
                        Err((line, msg)) => cx.err(&p, format!("{}:{line}: {msg}", path.display())),
                    },
                    Err(e) => cx.err(&p, format!("cannot read {}: {e}", path.display())),
                }
                watched.push(path);
            } else {
                match portcullis_waf::iplist::parse_net(entry) {
                    Ok(n) => list.add(n, action),
                    Err(msg) => cx.err(&p, msg),
                }
            }
        }
    }
    list
}

fn waf_log(cx: &mut Ctx, target: Option<&str>) -> WafLog {
    match target.unwrap_or("stderr") {
        "stderr" => WafLog::Stderr,
        "stdout" => WafLog::Stdout,
        "off" => WafLog::Off,
        file => {
            let path = cx.resolve(std::path::Path::new(file));
            match std::fs::OpenOptions::new().create(true).append(true).open(&path) {
                Ok(f) => WafLog::File(std::sync::Mutex::new(f)),
                Err(e) => {
                    cx.err("waf.log", format!("cannot open {}: {e}", path.display()));
                    WafLog::Off
                }
            }
        }
    }
}

/// The `waf` section. Files it reads are added to `watched` (a change reloads); the rules of
/// `previous` are kept when nothing they were loaded from changed.
pub(super) fn waf(cx: &mut Ctx, cfg: &model::Config, watched: &mut Vec<PathBuf>, previous: Option<&WafRt>) -> WafRt {
    let w = &cfg.waf;
    let body_limit = w.body_limit.map_or(1 << 20, |s| s.0);
    cx.require("waf", &[("body_limit", (1024..=64 << 20).contains(&body_limit), "between 1KiB and 64MiB")]);
    let (rules, loaded) = load_rules(cx, w, watched, previous);
    WafRt {
        rules,
        loaded,
        body_limit,
        on_body_limit: w.on_body_limit.unwrap_or(WafBodyLimit::Reject),
        response: response(cx, &w.response),
        log: Arc::new(waf_log(cx, w.log.as_deref())),
        ips: Arc::new(ip_lists(cx, w, watched)),
    }
}

fn response(cx: &mut Ctx, r: &model::WafResponse) -> WafResponseRt {
    let body_limit = r.body_limit.map_or(512 << 10, |s| s.0);
    cx.require("waf.response", &[("body_limit", (1024..=64 << 20).contains(&body_limit), "between 1KiB and 64MiB")]);
    let mime_types: Vec<String> = match &r.mime_types {
        None => RESPONSE_MIME_TYPES.iter().map(|m| m.to_string()).collect(),
        Some(list) => list.iter().map(|m| m.trim().to_ascii_lowercase()).collect(),
    };
    for (i, m) in mime_types.iter().enumerate() {
        let valid = m.split_once('/').is_some_and(|(t, s)| !t.is_empty() && !s.is_empty() && !m.contains([';', ' ']));
        if !valid {
            cx.err(&format!("waf.response.mime_types[{i}]"), format!("{m:?} is not a media type like text/html"));
        }
    }
    WafResponseRt { body_limit: usize::try_from(body_limit).unwrap_or(usize::MAX), mime_types }
}

/// A route's WAF settings over `defaults.waf`.
pub(super) fn route_waf(cx: &mut Ctx, p: &str, r: Option<&RouteWaf>, cfg: &model::Config) -> RouteWafRt {
    let default_mode = model::default_waf_mode(cfg.defaults.waf.as_ref());
    let mut out = RouteWafRt {
        mode: r.and_then(|r| r.mode).unwrap_or(default_mode),
        remove: Vec::new(),
        remove_targets: Vec::new(),
    };
    let Some(r) = r else { return out };
    for (i, ids) in r.exclude_rules.iter().enumerate() {
        match RuleRef::parse_ids(ids) {
            Ok(refs) => out.remove.push(refs),
            Err(e) => cx.err(&format!("{p}.waf.exclude_rules[{i}]"), e),
        }
    }
    out.remove.extend(r.exclude_tags.iter().map(|t| RuleRef::Tag(t.clone())));
    for (i, t) in r.exclude_targets.iter().enumerate() {
        let at = format!("{p}.waf.exclude_targets[{i}]");
        match (RuleRef::parse_ids(&t.rule), parse_targets(&t.targets)) {
            (Ok(rule), Ok(targets)) => out.remove_targets.push((rule, targets)),
            (Err(e), _) => cx.err(&format!("{at}.rule"), e),
            (_, Err(e)) => cx.err(&format!("{at}.targets"), e),
        }
    }
    out
}
