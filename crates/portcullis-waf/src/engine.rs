//! Runs a [`RuleSet`] over one transaction, phase by phase, as ModSecurity does: targets,
//! transformations, operator, per-match actions (`setvar`, `ctl`, `capture`), chains,
//! `skipAfter`, and the disruptive action of a fully matched rule.

use crate::actions::{BodyProcessor, Ctl, Disruptive, Effect, EngineMode, RuleRef, SetOp, SetVar};
use crate::body::{self, BodyLimits};
use crate::cache::Cache;
use crate::collect::{Data, Vars, values};
use crate::link::{Ctx, Scratch, eval_link, gate_lacks};
use crate::macros::{MacroVar, Template};
use crate::operator::leading_int;
use crate::plan::{Kind, Plan, Verdict};
use crate::prelude::Prelude;
use crate::request::{Request, Response};
use crate::rules::{Entry, PhaseDefaults, Rule, RuleSet};
use crate::vars::{Selector, Target, Var};
use std::borrow::Cow;
use std::sync::Arc;

/// A rule that matched and logs.
#[derive(Debug, Clone)]
pub struct Match {
    pub rule: Arc<Rule>,
    pub phase: u8,
    pub msg: String,
    pub data: String,
    /// The variable that matched last (`ARGS:id`).
    pub var_name: String,
}

/// The transaction ends here: the rule and the status the client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interruption {
    pub rule_id: u32,
    pub status: u16,
    pub action: Disruptive,
}

/// What survives between phase 1 and phase 2 when the caller cannot keep the transaction
/// (its request view borrows data the caller changes in between): TX variables, removals,
/// mode, matches. Resume with the same request.
#[derive(Debug)]
pub struct Suspended {
    vars: Vars,
    st: State,
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) mode: EngineMode,
    pub(crate) removed: Vec<RuleRef>,
    pub(crate) removed_targets: Vec<(RuleRef, Vec<Target>)>,
    pub(crate) processor: Option<Option<BodyProcessor>>,
    pub(crate) body_access: bool,
    pub(crate) force_body_variable: bool,
    pub(crate) matches: Vec<Match>,
    pub(crate) interruption: Option<Interruption>,
    pub(crate) allowed: bool,
    pub(crate) captures: Vec<Vec<u8>>,
    pub(crate) limits: BodyLimits,
    /// Phase 1 started from the rule set's prelude (see plan.rs, `Kind::TxNum`'s `never`).
    pub(crate) from_prelude: bool,
}

impl State {
    fn new(mode: EngineMode, limits: BodyLimits) -> State {
        State {
            mode,
            removed: Vec::new(),
            removed_targets: Vec::new(),
            processor: None,
            body_access: true,
            force_body_variable: false,
            matches: Vec::new(),
            interruption: None,
            allowed: false,
            captures: Vec::new(),
            limits,
            from_prelude: false,
        }
    }
}

pub(crate) static NO_VARS: std::sync::LazyLock<Vars> = std::sync::LazyLock::new(Vars::default);

/// One request (and optionally its response) going through the rules.
pub struct Transaction<'r, 'a> {
    rules: &'r RuleSet,
    data: Data<'a>,
    vars: Vars,
    st: State,
    reused: Reused,
}

/// Memory a transaction uses and the next one on the same thread reuses: the value cache, the
/// link buffers and the variables' tables (a request then allocates almost nothing for them
/// once warm). At most [`POOLED`] per thread, each bounded (see `Cache::clear`, `Vars::clear`).
#[derive(Debug, Default)]
struct Reused {
    cache: Cache,
    scratch: Scratch,
    /// Emptied variables of an earlier transaction (their TX map keeps its table).
    vars: Option<Vars>,
}

thread_local! {
    static POOL: std::cell::RefCell<Vec<Reused>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Kept per thread (one per transaction in flight on it is plenty).
const POOLED: usize = 4;

impl Reused {
    fn take() -> Reused {
        POOL.with(|p| p.borrow_mut().pop()).unwrap_or_default()
    }

    fn recycle(mut self) {
        if self.cache.clear() && !self.scratch.heavy() {
            POOL.with(|p| {
                let mut p = p.borrow_mut();
                if p.len() < POOLED {
                    p.push(self);
                }
            });
        }
    }
}

impl Drop for Transaction<'_, '_> {
    fn drop(&mut self) {
        let mut reused = std::mem::take(&mut self.reused);
        // After `suspend`, `vars` is an empty placeholder: nothing worth keeping.
        if self.vars.tx.capacity() > 0 {
            let mut vars = std::mem::take(&mut self.vars);
            reused.vars = vars.clear().then_some(vars);
        }
        reused.recycle();
    }
}

impl<'r, 'a> Transaction<'r, 'a> {
    pub fn new(rules: &'r RuleSet, req: Request<'a>, limits: BodyLimits) -> Self {
        let parsed = req.parse_head();
        let time_epoch =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let mut reused = Reused::take();
        let mut vars = reused.vars.take().unwrap_or_else(Vars::with_room);
        vars.time_epoch = time_epoch;
        Transaction {
            rules,
            data: Data { req, parsed, resp: None },
            vars,
            st: State::new(rules.engine, limits),
            reused,
        }
    }

    /// Overrides the rule set's engine mode (a route in `detect` mode runs DetectionOnly).
    pub fn set_mode(&mut self, mode: EngineMode) {
        self.st.mode = mode;
    }

    /// Says the body given to [`Transaction::request_body`] is only the first part of it (cut
    /// at the inspection limit): a document ending early is then not a body error.
    pub fn set_body_partial(&mut self, partial: bool) {
        self.st.limits.partial = partial;
    }

    /// Removes rules for this transaction (like `ctl:ruleRemoveById`).
    pub fn remove_rules(&mut self, which: RuleRef) {
        self.st.removed.push(which);
    }

    /// Removes targets from rules for this transaction (like `ctl:ruleRemoveTargetById`).
    pub fn remove_targets(&mut self, which: RuleRef, targets: Vec<Target>) {
        self.st.removed_targets.push((which, targets));
    }

    /// Keeps the state for [`Transaction::resume`]; the value cache is dropped (it is keyed
    /// by addresses the caller may reuse).
    pub fn suspend(mut self) -> Suspended {
        Suspended {
            vars: std::mem::take(&mut self.vars),
            st: std::mem::replace(&mut self.st, State::new(EngineMode::Off, BodyLimits::default())),
        }
    }

    /// Continues a suspended transaction over the same request (views may be rebuilt).
    pub fn resume(rules: &'r RuleSet, req: Request<'a>, suspended: Suspended) -> Self {
        let parsed = req.parse_head();
        Transaction {
            rules,
            data: Data { req, parsed, resp: None },
            vars: suspended.vars,
            st: suspended.st,
            reused: Reused::take(),
        }
    }

    /// Phase 1: request line and headers.
    #[inline(never)] // one symbol per phase in profiles (callgrind --toggle-collect)
    pub fn request_headers(&mut self) {
        self.run_phase(1);
    }

    /// Body processing, then phase 2.
    #[inline(never)] // one symbol per phase in profiles (callgrind --toggle-collect)
    pub fn request_body(&mut self) {
        if let Some(p) = self.st.processor {
            self.data.parsed.processor = p;
        }
        if self.st.body_access {
            self.data.parsed.body = self.data.req.body;
            let ct = self.data.req.header("content-type");
            body::process(&mut self.data.parsed, ct, self.st.limits);
            self.reused.cache.values_changed();
            // REQUEST_BODY holds the raw body except for XML and multipart bodies, which are
            // inspected through their parsed values (as CRS's tests expect: an XML element name
            // is not an argument), unless a rule forces it.
            let p = &mut self.data.parsed;
            p.body_variable = self.st.force_body_variable
                || !matches!(p.processor, Some(BodyProcessor::Xml | BodyProcessor::Multipart));
        }
        self.run_phase(2);
    }

    /// Phases 3 and 4 over a response.
    #[inline(never)] // one symbol per phase in profiles (callgrind --toggle-collect)
    pub fn response(&mut self, resp: Response<'a>) {
        self.data.resp = Some(resp);
        self.reused.cache.values_changed();
        self.run_phase(3);
        self.run_phase(4);
    }

    /// Phase 5 (logging rules; never interrupts).
    #[inline(never)] // one symbol per phase in profiles (callgrind --toggle-collect)
    pub fn logging(&mut self) {
        self.run_phase(5);
    }

    pub fn interruption(&self) -> Option<Interruption> {
        self.st.interruption
    }

    pub fn matches(&self) -> &[Match] {
        &self.st.matches
    }

    pub fn mode(&self) -> EngineMode {
        self.st.mode
    }

    /// A TX variable (for example `blocking_inbound_anomaly_score`).
    pub fn tx(&self, key: &str) -> Option<&[u8]> {
        self.vars.tx_get(&key.to_ascii_lowercase())
    }

    /// The request body error, if the body processor refused the body.
    pub fn body_error(&self) -> Option<&str> {
        self.data.parsed.body_error.as_deref()
    }

    fn run_phase(&mut self, phase: u8) {
        let rules = self.rules;
        let index = usize::from(phase) - 1;
        let (Some(entries), Some(plan)) = (rules.phases.get(index), rules.plans.get(index)) else { return };
        let mut i = if phase == 1 { self.prelude() } else { 0 };
        let mut skip_rules = 0u32;
        while i < plan.steps.len() {
            if self.st.mode == EngineMode::Off || self.st.interruption.is_some() || (self.st.allowed && phase <= 2) {
                return;
            }
            i = self.step(phase, entries, plan, i, &mut skip_rules);
        }
    }

    /// Starts phase 1 from the rule set's [`Prelude`] when this transaction's exclusions
    /// leave it valid: its variables, and the step to go on at.
    fn prelude(&mut self) -> usize {
        let Some(p) = &self.rules.prelude else { return 0 };
        if !p.applies(&self.st.removed, &self.st.removed_targets) {
            return 0;
        }
        self.vars.tx.clone_from(&p.vars.tx);
        self.vars.matched_var.clone_from(&p.vars.matched_var);
        self.vars.matched_vars.clone_from(&p.vars.matched_vars);
        self.vars.rule_id = p.vars.rule_id;
        self.st.from_prelude = true;
        p.next
    }

    /// Runs the entry at step `i` of `phase` (its entries and plan); the step to run next.
    fn step(&mut self, phase: u8, entries: &[Entry], plan: &Plan, i: usize, skip_rules: &mut u32) -> usize {
        let Some(step) = plan.steps.get(i) else { return usize::MAX };
        let next = i + 1;
        if step.kind == Kind::Marker {
            return next;
        }
        if *skip_rules > 0 {
            *skip_rules -= 1;
            return next;
        }
        // The plan decides most rules without reading them (see plan.rs); the rule itself is
        // read only to be removed by a `ctl`, or evaluated.
        let rule = || match entries.get(i) {
            Some(Entry::Rule(rule)) => Some(rule),
            _ => None,
        };
        if !self.st.removed.is_empty() && rule().is_none_or(|rule| self.st.removed.iter().any(|r| r.covers(rule))) {
            return next;
        }
        let (rules, data, reused) = (self.rules, &self.data, &mut self.reused);
        let lacks =
            |slots: &[usize], group| gate_lacks(rules, data, &mut reused.cache, &mut reused.scratch, (slots, group));
        match plan.verdict(step, &mut self.vars, lacks, &self.st.removed_targets, self.st.from_prelude) {
            Verdict::NoMatch => return next,
            Verdict::Done => {}
            Verdict::Full => {
                let Some(rule) = rule() else { return next };
                #[cfg(feature = "rule-profile")]
                let matched = crate::profile::time(rule.id, || self.eval_rule(rule));
                #[cfg(not(feature = "rule-profile"))]
                let matched = self.eval_rule(rule);
                if !matched {
                    return next;
                }
                self.full_match(rule, phase);
                if let (None, Some(n)) = (step.skip_to, rule.actions.skip) {
                    *skip_rules = n;
                }
            }
        }
        step.skip_to.map_or(next, |target| target as usize)
    }

    fn eval_rule(&mut self, rule: &Rule) -> bool {
        self.vars.matched_vars.clear();
        self.vars.rule_id = rule.id;
        let mut ctx = Ctx {
            rules: self.rules,
            data: &self.data,
            vars: &mut self.vars,
            st: &mut self.st,
            cache: &mut self.reused.cache,
            scratch: &mut self.reused.scratch,
        };
        rule.links().all(|link| eval_link(&mut ctx, rule, link))
    }

    fn full_match(&mut self, rule: &Arc<Rule>, phase: u8) {
        let fallback = PhaseDefaults::default();
        let defaults = self.rules.defaults.get(usize::from(phase) - 1).unwrap_or(&fallback);
        let mut action = rule.actions.disruptive.unwrap_or(defaults.disruptive);
        if action == Disruptive::Block {
            action = defaults.disruptive;
        }
        if rule.actions.log.unwrap_or(defaults.log) {
            let expand = |t: &Option<Template>| {
                let bytes = expand(&self.data, &self.vars, t.as_ref()?);
                // Valid UTF-8 (nearly always) keeps its buffer; only invalid bytes are copied.
                Some(String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
            };
            self.st.matches.push(Match {
                rule: rule.clone(),
                phase,
                msg: expand(&rule.actions.msg).unwrap_or_default(),
                data: expand(&rule.actions.logdata).unwrap_or_default(),
                var_name: self
                    .vars
                    .matched_var
                    .as_ref()
                    .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
                    .unwrap_or_default(),
            });
        }
        if self.st.mode != EngineMode::On {
            return;
        }
        match action {
            Disruptive::Deny | Disruptive::Drop | Disruptive::Redirect => {
                let status = rule.actions.status.or(defaults.status).unwrap_or(403);
                self.st.interruption = Some(Interruption { rule_id: rule.id, status, action });
            }
            Disruptive::Allow => self.st.allowed = true,
            Disruptive::Pass | Disruptive::Block => {}
        }
    }
}

/// Evaluates phase 1's request-independent beginning once, for the rule set (see prelude.rs).
pub(crate) fn prelude(rules: &RuleSet) -> Prelude {
    let (Some(entries), Some(plan)) = (rules.phases.first(), rules.plans.first()) else { return Prelude::default() };
    let mut tx = Transaction::new(rules, Request::default(), BodyLimits::default());
    // A rule that would interrupt in blocking mode ends the prelude, whatever the mode.
    tx.st.mode = EngineMode::On;
    let (mut i, mut skip_rules, mut folded) = (0, 0u32, Vec::new());
    while let Some(entry) = entries.get(i) {
        let rule = match entry {
            Entry::Rule(rule) if crate::prelude::request_independent(rule) => Some(rule),
            Entry::Rule(_) => break,
            Entry::Marker(_) => None,
        };
        let (before, matches) = (tx.vars.clone(), tx.st.matches.len());
        let next = tx.step(1, entries, plan, i, &mut skip_rules);
        let st = &tx.st;
        let beyond_tx = st.matches.len() != matches
            || st.interruption.is_some()
            || st.allowed
            || skip_rules > 0
            || st.mode != EngineMode::On
            || !st.removed.is_empty()
            || !st.removed_targets.is_empty()
            || st.processor.is_some()
            || !st.body_access
            || st.force_body_variable;
        if beyond_tx {
            tx.vars = before;
            break;
        }
        folded.extend(rule.cloned());
        i = next;
    }
    Prelude { vars: std::mem::take(&mut tx.vars), next: i, rules: folded }
}

pub(crate) fn run_effects(data: &Data<'_>, vars: &mut Vars, st: &mut State, link: &Rule) {
    for effect in &link.actions.effects {
        match effect {
            Effect::SetVar(sv) => setvar(data, vars, sv),
            Effect::Ctl(ctl) => match ctl {
                Ctl::RuleEngine(m) => st.mode = *m,
                Ctl::RuleRemove(r) => st.removed.push(r.clone()),
                Ctl::RuleRemoveTarget(r, t) => st.removed_targets.push((r.clone(), t.clone())),
                Ctl::RequestBodyProcessor(p) => st.processor = Some(Some(*p)),
                Ctl::RequestBodyAccess(on) => st.body_access = *on,
                Ctl::ForceRequestBodyVariable(on) => st.force_body_variable = *on,
                Ctl::Audit => {}
            },
        }
    }
}

fn setvar(data: &Data<'_>, vars: &mut Vars, sv: &SetVar) {
    if sv.collection != Var::Tx {
        return;
    }
    // Names are lower-cased when parsed; only a name built from macros needs it here.
    let built;
    let name: &str = match sv.name.literal() {
        Some(n) => n,
        None => {
            let mut bytes = expand(data, vars, &sv.name);
            bytes.make_ascii_lowercase();
            built = String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            &built
        }
    };
    let value = || -> Cow<'_, [u8]> {
        match sv.value.literal() {
            Some(v) => Cow::Borrowed(v.as_bytes()),
            None => Cow::Owned(expand(data, vars, &sv.value)),
        }
    };
    match sv.op {
        SetOp::Delete => vars.tx_remove(name),
        SetOp::Set => {
            let value = value();
            vars.tx_set(name, &value);
        }
        SetOp::Add | SetOp::Sub => {
            let current = vars.tx_get(name).map(leading_int).unwrap_or(0);
            // `+%{tx.critical_anomaly_score}`: read in place, not expanded into a new buffer.
            let delta = match sv.value.single_tx() {
                Some(key) => vars.tx_get(key).map(leading_int).unwrap_or(0),
                None => leading_int(&value()),
            };
            let next = if sv.op == SetOp::Add { current.saturating_add(delta) } else { current.saturating_sub(delta) };
            vars.tx_set(name, itoa::Buffer::new().format(next).as_bytes());
        }
    }
}

/// Expands a template's macros; a template without macros is borrowed.
pub(crate) fn expand_cow<'t>(data: &Data<'_>, vars: &Vars, t: &'t Template) -> Cow<'t, [u8]> {
    match t.literal() {
        Some(text) => Cow::Borrowed(text.as_bytes()),
        None => Cow::Owned(expand(data, vars, t)),
    }
}

/// Expands a template's macros against the transaction.
fn expand(data: &Data<'_>, vars: &Vars, t: &Template) -> Vec<u8> {
    if let Some(text) = t.literal() {
        return text.as_bytes().to_vec();
    }
    // Room for CRS's expansions (names like tx.header_name_920450_accept-language, scores)
    // without growing from nothing.
    let mut out = Vec::with_capacity(64);
    t.expand(&mut out, |mv: &MacroVar, out: &mut Vec<u8>| resolve(data, vars, mv, out));
    out
}

fn resolve(data: &Data<'_>, vars: &Vars, mv: &MacroVar, out: &mut Vec<u8>) {
    match (mv.var, mv.key.as_deref()) {
        (Var::Tx, Some(k)) => out.extend_from_slice(vars.tx_get(k).unwrap_or_default()),
        (Var::Rule, Some("id")) => out.extend_from_slice(itoa::Buffer::new().format(vars.rule_id).as_bytes()),
        (var, key) => {
            let selector = key.map_or(Selector::All, |k| Selector::Key(k.into()));
            let target = Target { var, selector, count: false, exclude: false };
            let mut found = Vec::new();
            values(data, vars, &target, &mut found);
            if let Some(first) = found.first() {
                out.extend_from_slice(&first.value);
            }
        }
    }
}
