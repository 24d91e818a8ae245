//! Loads SecLang files into a [`RuleSet`]: directives, chains, defaults, updates and removals,
//! `Include` with globs. Every error names `file:line`.

use crate::actions::{self, Disruptive, EngineMode, RuleRef};
use crate::lexer::{self, RawDirective};
use crate::operator::Operator;
use crate::prefilter::Literals;
use crate::rules::{ChainFilter, Entry, PhaseDefaults, Prefilter, Rule, RuleSet};
use crate::transform::Transform;
use crate::vars::{Target, parse_targets};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A load error with its place.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct LoadError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

enum Pending {
    Rule(Box<Rule>),
    Marker(String),
}

enum Update {
    AddTargets(RuleRef, Vec<Target>, Option<Vec<Target>>),
    Remove(RuleRef),
}

/// Collects directives from files and text, then builds the rule set.
pub struct Builder {
    entries: Vec<Pending>,
    updates: Vec<(Update, Arc<str>, usize)>,
    defaults: [PhaseDefaults; 5],
    engine: EngineMode,
    components: Vec<String>,
    depth: usize,
    /// Files read and directories listed so far (see [`RuleSet::sources`]).
    sources: Vec<PathBuf>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            entries: Vec::new(),
            updates: Vec::new(),
            defaults: Default::default(),
            engine: EngineMode::On,
            components: Vec::new(),
            depth: 0,
            sources: Vec::new(),
        }
    }
}

/// Config directives that Portcullis takes from its own configuration instead.
const CONFIGURED_ELSEWHERE: [&str; 22] = [
    "SecRequestBodyAccess",
    "SecRequestBodyLimit",
    "SecRequestBodyNoFilesLimit",
    "SecRequestBodyLimitAction",
    "SecRequestBodyJsonDepthLimit",
    "SecResponseBodyAccess",
    "SecResponseBodyMimeType",
    "SecResponseBodyLimit",
    "SecResponseBodyLimitAction",
    "SecArgumentSeparator",
    "SecArgumentsLimit",
    "SecCookieFormat",
    "SecUnicodeMapFile",
    "SecStatusEngine",
    "SecAuditEngine",
    "SecAuditLog",
    "SecAuditLogParts",
    "SecAuditLogType",
    "SecDebugLog",
    "SecDebugLogLevel",
    "SecTmpDir",
    "SecDataDir",
];

impl Builder {
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Notes that what was loaded depends on `dir`'s listing (a glob, CRS's `rules/`).
    pub fn listed(&mut self, dir: &Path) {
        self.sources.push(dir.to_path_buf());
    }

    /// Adds one file (Includes inside are followed relative to it).
    pub fn file(&mut self, path: &Path) -> Result<&mut Self, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|e| LoadError {
            file: path.display().to_string(),
            line: 0,
            message: format!("cannot read: {e}"),
        })?;
        self.sources.push(path.to_path_buf());
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        self.text(&path.display().to_string(), &text, &dir)
    }

    /// Adds rules given as text; `dir` resolves `Include` and `@pmFromFile` paths.
    pub fn text(&mut self, name: &str, text: &str, dir: &Path) -> Result<&mut Self, LoadError> {
        let file: Arc<str> = Arc::from(name);
        let err = |line: usize, message: String| LoadError { file: name.to_string(), line, message };
        let directives = lexer::directives(text).map_err(|(line, m)| err(line, m))?;
        for d in directives {
            let line = d.line;
            self.directive(d, &file, dir).map_err(|m| match m {
                DirectiveError::Here(m) => err(line, m),
                DirectiveError::Nested(e) => e,
            })?;
        }
        Ok(self)
    }

    fn directive(&mut self, d: RawDirective, file: &Arc<str>, dir: &Path) -> Result<(), DirectiveError> {
        let arg = |i: usize| {
            d.args.get(i).map(String::as_str).ok_or_else(|| format!("{} needs {} argument(s)", d.name, i + 1))
        };
        match d.name.as_str() {
            "SecRule" => {
                if d.args.len() > 3 {
                    return Err(format!("SecRule takes 2 or 3 arguments, got {}", d.args.len()).into());
                }
                let targets = parse_targets(arg(0)?)?;
                let op = Operator::parse_reading(arg(1)?, dir, &mut self.sources)?;
                let acts = actions::parse(&lexer::actions(d.args.get(2).map_or("", String::as_str))?)?;
                self.push_rule(targets, Some(op), acts, file, d.line)?;
            }
            "SecAction" => {
                let acts = actions::parse(&lexer::actions(arg(0)?)?)?;
                self.push_rule(Vec::new(), None, acts, file, d.line)?;
            }
            "SecMarker" => {
                self.ensure_no_open_chain()?;
                self.entries.push(Pending::Marker(arg(0)?.to_string()));
            }
            "SecDefaultAction" => {
                let acts = actions::parse(&lexer::actions(arg(0)?)?)?;
                let phase = acts.phase.ok_or("SecDefaultAction needs a phase")?;
                let disruptive = acts.disruptive.ok_or("SecDefaultAction needs a disruptive action")?;
                if acts.id.is_some() || !acts.effects.is_empty() || acts.chain || acts.skip_after.is_some() {
                    return Err("SecDefaultAction may not carry id, setvar, ctl, chain or skipAfter".into());
                }
                let slot = self.defaults.get_mut(usize::from(phase) - 1).ok_or("bad phase")?;
                *slot = PhaseDefaults {
                    disruptive,
                    log: acts.log.unwrap_or(true),
                    transforms: acts.transforms,
                    status: acts.status,
                };
            }
            "SecComponentSignature" => self.components.push(arg(0)?.to_string()),
            "SecRuleEngine" => {
                self.engine = match arg(0)?.to_ascii_lowercase().as_str() {
                    "on" => EngineMode::On,
                    "off" => EngineMode::Off,
                    "detectiononly" => EngineMode::DetectionOnly,
                    other => return Err(format!("SecRuleEngine: unknown mode {other}").into()),
                }
            }
            "SecRuleUpdateTargetById" | "SecRuleUpdateTargetByTag" | "SecRuleUpdateTargetByMsg" => {
                let which = match d.name.as_str() {
                    "SecRuleUpdateTargetById" => RuleRef::parse_ids(arg(0)?)?,
                    "SecRuleUpdateTargetByTag" => RuleRef::Tag(arg(0)?.to_string()),
                    _ => RuleRef::Msg(arg(0)?.to_string()),
                };
                let replaced = d.args.get(2).map(|r| parse_targets(r)).transpose()?;
                self.updates.push((Update::AddTargets(which, parse_targets(arg(1)?)?, replaced), file.clone(), d.line));
            }
            "SecRuleRemoveById" => {
                let ids = d.args.join(" ");
                self.updates.push((Update::Remove(RuleRef::parse_ids(&ids)?), file.clone(), d.line));
            }
            "SecRuleRemoveByTag" => {
                self.updates.push((Update::Remove(RuleRef::Tag(arg(0)?.to_string())), file.clone(), d.line))
            }
            "SecRuleRemoveByMsg" => {
                self.updates.push((Update::Remove(RuleRef::Msg(arg(0)?.to_string())), file.clone(), d.line))
            }
            "Include" | "include" => {
                if self.depth > 16 {
                    return Err("Include nested more than 16 deep".into());
                }
                let files = expand_include(dir, arg(0)?)?;
                // A glob's matches depend on its directory's listing.
                self.listed(dir.join(arg(0)?).parent().unwrap_or(dir));
                self.depth += 1;
                for f in files {
                    self.file(&f).map_err(DirectiveError::Nested)?;
                }
                self.depth -= 1;
            }
            name if CONFIGURED_ELSEWHERE.contains(&name) => {
                return Err(format!("{name} is set in the Portcullis configuration (waf:), not in rule files").into());
            }
            other => return Err(format!("unknown directive {other}").into()),
        }
        Ok(())
    }

    fn open_chain(&mut self) -> Option<&mut Rule> {
        let Some(Pending::Rule(last)) = self.entries.last_mut() else { return None };
        let mut link: &mut Rule = last;
        while link.chain.is_some() {
            link = link.chain.as_deref_mut()?;
        }
        link.actions.chain.then_some(link)
    }

    fn ensure_no_open_chain(&mut self) -> Result<(), String> {
        if self.open_chain().is_some() { Err("a chained rule must be followed by SecRule".into()) } else { Ok(()) }
    }

    fn push_rule(
        &mut self,
        targets: Vec<Target>,
        op: Option<Operator>,
        acts: actions::Actions,
        file: &Arc<str>,
        line: usize,
    ) -> Result<(), String> {
        let defaults = self.defaults.clone();
        let effective = |phase: u8, acts: &actions::Actions| {
            let d = defaults.get(usize::from(phase) - 1).cloned().unwrap_or_default();
            if acts.t_none { acts.transforms.clone() } else { [d.transforms, acts.transforms.clone()].concat() }
        };
        if let Some(parent) = self.open_chain() {
            if op.is_none() {
                return Err("a chained rule must be followed by SecRule, not SecAction".into());
            }
            if acts.id.is_some() || acts.phase.is_some() || acts.disruptive.is_some() || acts.skip_after.is_some() {
                return Err("a chain link may not set id, phase, a disruptive action or skipAfter".into());
            }
            let phase = parent.phase;
            let transforms = effective(phase, &acts);
            parent.chain =
                Some(Box::new(Rule::new(parent.id, phase, targets, op, acts, transforms, file.clone(), line)));
            return Ok(());
        }
        let id = acts.id.ok_or("rule has no id")?;
        let phase = acts.phase.unwrap_or(2);
        let transforms = effective(phase, &acts);
        self.entries.push(Pending::Rule(Box::new(Rule::new(
            id,
            phase,
            targets,
            op,
            acts,
            transforms,
            file.clone(),
            line,
        ))));
        Ok(())
    }

    /// Applies updates and removals, checks ids and markers, and freezes the set.
    pub fn build(mut self) -> Result<RuleSet, LoadError> {
        let here = |file: &Arc<str>, line: usize, message: String| LoadError { file: file.to_string(), line, message };
        if let Some(Pending::Rule(r)) = self.entries.last()
            && r.links().last().is_some_and(|l| l.actions.chain)
        {
            return Err(here(&r.file, r.line, "chain has no following rule".into()));
        }
        for (update, file, line) in std::mem::take(&mut self.updates) {
            let mut found = false;
            match update {
                Update::Remove(which) => self.entries.retain(|e| match e {
                    Pending::Rule(r) if which.covers(r) => {
                        found = true;
                        false
                    }
                    _ => true,
                }),
                Update::AddTargets(which, targets, replaced) => {
                    for e in &mut self.entries {
                        let Pending::Rule(r) = e else { continue };
                        if !which.covers(r) {
                            continue;
                        }
                        found = true;
                        if let Some(old) = &replaced {
                            r.targets.retain(|t| !old.iter().any(|o| o.same_as(t)));
                        }
                        r.targets.extend(targets.iter().cloned());
                    }
                }
            }
            if !found {
                return Err(here(&file, line, "no rule matches this update or removal".into()));
            }
        }
        let mut seen = HashSet::new();
        let mut phases: [Vec<Entry>; 5] = Default::default();
        let mut count = 0;
        let mut chains = ChainsBuilder::default();
        for e in &mut self.entries {
            if let Pending::Rule(r) = e {
                chains.intern(r);
            }
        }
        for e in self.entries {
            match e {
                Pending::Marker(m) => phases.iter_mut().for_each(|p| p.push(Entry::Marker(m.clone()))),
                Pending::Rule(r) => {
                    if !seen.insert(r.id) {
                        return Err(here(&r.file, r.line, format!("duplicate rule id {}", r.id)));
                    }
                    count += 1;
                    if let Some(p) = phases.get_mut(usize::from(r.phase) - 1) {
                        p.push(Entry::Rule(Arc::new(*r)));
                    }
                }
            }
        }
        let mut skip_targets: [Vec<Option<usize>>; 5] = Default::default();
        for (p, entries) in phases.iter().enumerate() {
            let mut targets = vec![None; entries.len()];
            for (i, e) in entries.iter().enumerate() {
                let Entry::Rule(r) = e else { continue };
                let Some(name) = &r.actions.skip_after else { continue };
                let at = entries.iter().enumerate().skip(i + 1).find(|(_, e)| match e {
                    Entry::Marker(m) => m == name,
                    Entry::Rule(other) => other.id.to_string() == *name,
                });
                let Some((j, _)) = at else {
                    return Err(here(&r.file, r.line, format!("skipAfter: no marker or rule {name} after this rule")));
                };
                if let Some(slot) = targets.get_mut(i) {
                    *slot = Some(j + 1);
                }
            }
            if let Some(slot) = skip_targets.get_mut(p) {
                *slot = targets;
            }
        }
        let plans = |phases: &[Vec<Entry>; 5], defaults: &[PhaseDefaults; 5]| {
            let mut plans: [crate::plan::Plan; 5] = Default::default();
            let mut groups = crate::plan::Groups::default();
            for (((plan, entries), skips), defaults) in plans.iter_mut().zip(phases).zip(&skip_targets).zip(defaults) {
                *plan = crate::plan::Plan::build(entries, skips, defaults, &mut groups);
            }
            (plans, groups)
        };
        let (first_plans, gates) = plans(&phases, &self.defaults);
        let mut rules = RuleSet {
            plans: first_plans,
            gates,
            phases,
            defaults: self.defaults,
            engine: self.engine,
            components: self.components,
            rule_count: count,
            chains: Vec::new(),
            prefilter: Prefilter::default(),
            prelude: None,
            sources: {
                let mut s = std::mem::take(&mut self.sources);
                s.sort();
                s.dedup();
                s
            },
        };
        // Prefilter literals only for rules a request can reach: with the prelude's TX, the
        // paranoia-level checks are decided here (see prelude.rs `reachable`). A rule left
        // without literals is still evaluated, in full, if a request reaches it after all.
        let reach = crate::prelude::reachable(&rules, &crate::engine::prelude(&rules));
        for (p, entries) in rules.phases.iter_mut().enumerate() {
            for (i, e) in entries.iter_mut().enumerate() {
                let reachable = reach.get(p).is_none_or(|r| r.get(i).copied().unwrap_or(true));
                if let (Entry::Rule(r), true) = (e, reachable)
                    && let Some(r) = Arc::get_mut(r)
                {
                    chains.slots(r).map_err(|m| here(&Arc::from("(prefilter)"), 0, m))?;
                }
            }
        }
        (rules.chains, rules.prefilter) = chains.finish().map_err(|m| here(&Arc::from("(prefilter)"), 0, m))?;
        (rules.plans, rules.gates) = plans(&rules.phases, &rules.defaults);
        let prelude = crate::engine::prelude(&rules);
        let never = crate::prelude::never_holding(&rules, &prelude);
        for (plan, never) in rules.plans.iter_mut().zip(&never) {
            plan.set_never(never);
        }
        rules.prelude = Some(prelude);
        Ok(rules)
    }
}

/// Interns transformation chains and gives every prefiltered link a slot.
#[derive(Default)]
struct ChainsBuilder {
    chains: Vec<Vec<Transform>>,
    /// (literal, slot) pairs.
    literals: Vec<(Vec<u8>, usize)>,
    slots: usize,
    /// Slot -> its chain.
    slot_chain: Vec<usize>,
}

impl ChainsBuilder {
    /// Gives every link of `rule` the id of its transformation chain.
    fn intern(&mut self, rule: &mut Rule) {
        let mut link = Some(rule);
        while let Some(r) = link {
            r.chain_id = match self.chains.iter().position(|t| *t == r.transforms) {
                Some(i) => i,
                None => {
                    self.chains.push(r.transforms.clone());
                    self.chains.len() - 1
                }
            };
            link = r.chain.as_deref_mut();
        }
    }

    /// Gives every link of `rule` that has literals a slot, or a screen when it is
    /// `multiMatch`.
    fn slots(&mut self, rule: &mut Rule) -> Result<(), String> {
        let mut link = Some(rule);
        while let Some(r) = link {
            let lits = r.op.as_ref().and_then(Operator::literals);
            if r.actions.multi_match {
                r.screen = crate::prefilter::screen(lits)?.map(Box::new);
            } else if let Some(lits) = lits {
                r.slot = Some(self.slot(lits, r.chain_id));
                r.also = r.op.as_ref().and_then(Operator::second_literals).map(|second| self.slot(second, r.chain_id));
            }
            link = r.chain.as_deref_mut();
        }
        Ok(())
    }

    /// A new slot for `lits` in `chain`'s automaton.
    fn slot(&mut self, lits: Vec<Vec<u8>>, chain: usize) -> usize {
        let slot = self.slots;
        self.literals.extend(lits.into_iter().map(|l| (l, slot)));
        self.slot_chain.push(chain);
        self.slots += 1;
        slot
    }

    fn finish(self) -> Result<(Vec<ChainFilter>, Prefilter), String> {
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        let mut literal_slots: Vec<Vec<u32>> = Vec::new();
        let mut index: std::collections::HashMap<Vec<u8>, usize> = std::collections::HashMap::new();
        for (lit, slot) in self.literals {
            match index.get(&lit) {
                Some(&i) => literal_slots.get_mut(i).into_iter().for_each(|s| s.push(slot as u32)),
                None => {
                    index.insert(lit.clone(), patterns.len());
                    patterns.push(lit);
                    literal_slots.push(vec![slot as u32]);
                }
            }
        }
        let mut chains = Vec::new();
        for (id, transforms) in self.chains.into_iter().enumerate() {
            // This chain's own literals: those of its links' slots.
            let mut own: Vec<(Vec<u8>, Vec<u32>)> = Vec::new();
            for (lit, slots) in patterns.iter().zip(&literal_slots) {
                let mine: Vec<u32> =
                    slots.iter().copied().filter(|s| self.slot_chain.get(*s as usize) == Some(&id)).collect();
                if !mine.is_empty() {
                    own.push((lit.clone(), mine));
                }
            }
            chains.push(ChainFilter {
                triggers: crate::features::triggers(&transforms),
                transforms,
                literals: Literals::build(own)?,
            });
        }
        let literals = Literals::build(patterns.into_iter().zip(literal_slots).collect())?;
        Ok((chains, Prefilter { literals, slots: self.slots }))
    }
}

enum DirectiveError {
    Here(String),
    Nested(LoadError),
}

impl From<String> for DirectiveError {
    fn from(m: String) -> Self {
        DirectiveError::Here(m)
    }
}

impl From<&str> for DirectiveError {
    fn from(m: &str) -> Self {
        DirectiveError::Here(m.to_string())
    }
}

/// Resolves an Include path relative to `dir`; `*` and `?` in the last component glob,
/// matches sorted by name. A glob matching nothing is an error, as is a missing file.
fn expand_include(dir: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    let path = dir.join(pattern);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
    if !name.contains(['*', '?']) {
        return Ok(vec![path]);
    }
    let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut out: Vec<PathBuf> = std::fs::read_dir(&parent)
        .map_err(|e| format!("Include {pattern}: {e}"))?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(|n| glob_match(name.as_bytes(), n.as_bytes())))
        .map(|e| e.path())
        .collect();
    out.sort();
    if out.is_empty() {
        return Err(format!("Include {pattern}: no file matches"));
    }
    Ok(out)
}

fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|k| glob_match(rest, name.get(k..).unwrap_or_default())),
        Some((b'?', rest)) => name.split_first().is_some_and(|(_, n)| glob_match(rest, n)),
        Some((c, rest)) => name.split_first().is_some_and(|(h, n)| h == c && glob_match(rest, n)),
    }
}

/// Loads files in the order given.
pub fn load_files(paths: &[PathBuf]) -> Result<RuleSet, LoadError> {
    let mut b = Builder::new();
    for p in paths {
        b.file(p)?;
    }
    b.build()
}

impl Disruptive {
    /// Whether this action ends the transaction when the rule matches.
    pub fn interrupts(self) -> bool {
        matches!(self, Disruptive::Deny | Disruptive::Drop | Disruptive::Redirect)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(text: &str) -> Result<RuleSet, LoadError> {
        let mut b = Builder::new();
        b.text("t.conf", text, Path::new("."))?;
        b.build()
    }

    #[test]
    fn chains_defaults_markers_and_updates() {
        let rs = build(
            "SecDefaultAction \"phase:2,log,pass,t:lowercase\"\n\
             SecRule ARGS \"@rx a\" \"id:1,phase:2,block,chain,skipAfter:END\"\n\
             \tSecRule ARGS_NAMES \"@rx b\" \"t:none\"\n\
             SecRule ARGS \"@rx c\" \"id:2,phase:2,pass\"\n\
             SecMarker END\n\
             SecRuleUpdateTargetById 2 \"!ARGS:x\"\n",
        )
        .unwrap();
        assert_eq!(rs.rule_count, 2);
        let r1 = rs.rule(1).unwrap();
        assert_eq!(r1.transforms, vec![crate::transform::Transform::Lowercase]);
        assert!(r1.chain.as_ref().unwrap().transforms.is_empty());
        assert_eq!(rs.rule(2).unwrap().targets.len(), 2);
        assert_eq!(rs.plans[1].steps[0].skip_to, Some(3));
        assert_eq!(rs.phases[0].len(), 1, "markers appear in every phase");
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = build("SecMarker A\n\nSecRule ARGS \"@bogus\" \"id:1\"\n").unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("t.conf", 3));
        assert!(e.to_string().starts_with("t.conf:3: unknown operator"));
        assert!(build("SecFoo x\n").unwrap_err().message.contains("unknown directive"));
        assert!(
            build("SecRule ARGS \"@rx a\" \"id:1\"\nSecRule ARGS \"@rx a\" \"id:1\"\n")
                .unwrap_err()
                .message
                .contains("duplicate")
        );
        assert!(build("SecRule ARGS \"@rx a\" \"id:1,skipAfter:NOPE\"\n").unwrap_err().message.contains("skipAfter"));
        assert!(build("SecRule ARGS \"@rx a\" \"id:1,chain\"\n").unwrap_err().message.contains("chain"));
        assert!(build("SecRuleRemoveById 5\n").unwrap_err().message.contains("no rule"));
        assert!(build("SecRequestBodyAccess On\n").unwrap_err().message.contains("Portcullis configuration"));
    }

    #[test]
    fn globs() {
        assert!(glob_match(b"*.conf", b"REQUEST-901.conf"));
        assert!(!glob_match(b"*.conf", b"x.conf.example"));
        assert!(glob_match(b"a?c", b"abc"));
    }
}
