//! Runs a [`RuleSet`] over one transaction, phase by phase, as ModSecurity does: targets,
//! transformations, operator, per-match actions (`setvar`, `ctl`, `capture`), chains,
//! `skipAfter`, and the disruptive action of a fully matched rule.

use crate::actions::{BodyProcessor, Ctl, Disruptive, Effect, EngineMode, RuleRef, SetOp, SetVar};
use crate::body::{self, BodyLimits};
use crate::cache::{Cache, has};
use crate::collect::{Data, Item, Pairs, Vars, excluded, name_parts, removed_for, values};
use crate::macros::{MacroVar, Template};
use crate::operator::leading_int;
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
struct State {
    mode: EngineMode,
    removed: Vec<RuleRef>,
    removed_targets: Vec<(RuleRef, Vec<Target>)>,
    processor: Option<Option<BodyProcessor>>,
    body_access: bool,
    force_body_variable: bool,
    matches: Vec<Match>,
    interruption: Option<Interruption>,
    allowed: bool,
    captures: Vec<Vec<u8>>,
    limits: BodyLimits,
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
        }
    }
}

static NO_VARS: std::sync::LazyLock<Vars> = std::sync::LazyLock::new(Vars::default);

/// One request (and optionally its response) going through the rules.
pub struct Transaction<'r, 'a> {
    rules: &'r RuleSet,
    data: Data<'a>,
    vars: Vars,
    st: State,
    cache: Cache,
    scratch: Scratch,
}

impl Drop for Transaction<'_, '_> {
    fn drop(&mut self) {
        std::mem::take(&mut self.cache).recycle();
    }
}

impl<'r, 'a> Transaction<'r, 'a> {
    pub fn new(rules: &'r RuleSet, req: Request<'a>, limits: BodyLimits) -> Self {
        let parsed = req.parse_head();
        let time_epoch =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        Transaction {
            rules,
            data: Data { req, parsed, resp: None },
            vars: Vars { time_epoch, ..Vars::default() },
            st: State::new(rules.engine, limits),
            cache: Cache::take(),
            scratch: Scratch::default(),
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
        Suspended { vars: std::mem::take(&mut self.vars), st: std::mem::replace(&mut self.st, State::new(EngineMode::Off, BodyLimits::default())) }
    }

    /// Continues a suspended transaction over the same request (views may be rebuilt).
    pub fn resume(rules: &'r RuleSet, req: Request<'a>, suspended: Suspended) -> Self {
        let parsed = req.parse_head();
        Transaction {
            rules,
            data: Data { req, parsed, resp: None },
            vars: suspended.vars,
            st: suspended.st,
            cache: Cache::take(),
            scratch: Scratch::default(),
        }
    }

    /// Phase 1: request line and headers.
    pub fn request_headers(&mut self) {
        self.run_phase(1);
    }

    /// Body processing, then phase 2.
    pub fn request_body(&mut self) {
        if let Some(p) = self.st.processor {
            self.data.parsed.processor = p;
        }
        if self.st.body_access {
            self.data.parsed.body = self.data.req.body;
            let ct = self.data.req.header("content-type");
            body::process(&mut self.data.parsed, ct, self.st.limits);
            self.cache.values_changed();
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
    pub fn response(&mut self, resp: Response<'a>) {
        self.data.resp = Some(resp);
        self.cache.values_changed();
        self.run_phase(3);
        self.run_phase(4);
    }

    /// Phase 5 (logging rules; never interrupts).
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
        let (Some(entries), Some(skips)) = (rules.phases.get(index), rules.skip_targets.get(index)) else { return };
        let mut i = 0;
        let mut skip_rules = 0u32;
        while let Some(entry) = entries.get(i) {
            if self.st.mode == EngineMode::Off || self.st.interruption.is_some() || (self.st.allowed && phase <= 2) {
                return;
            }
            i += 1;
            let Entry::Rule(rule) = entry else { continue };
            if skip_rules > 0 {
                skip_rules -= 1;
                continue;
            }
            if self.st.removed.iter().any(|r| r.covers(rule.id, &rule.actions.tags, rule.msg_literal())) {
                continue;
            }
            if !self.eval_rule(rule) {
                continue;
            }
            self.full_match(rule, phase);
            if let Some(Some(target)) = skips.get(i - 1) {
                i = *target;
            } else if let Some(n) = rule.actions.skip {
                skip_rules = n;
            }
        }
    }

    fn eval_rule(&mut self, rule: &Rule) -> bool {
        self.vars.matched_vars.clear();
        self.vars.rule_id = rule.id;
        let mut ctx = Ctx {
            rules: self.rules,
            data: &self.data,
            vars: &mut self.vars,
            st: &mut self.st,
            cache: &mut self.cache,
            scratch: &mut self.scratch,
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
                t.as_ref().map(|t| expand(&self.data, &self.vars, t)).map(|b| String::from_utf8_lossy(&b).into_owned())
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

struct Ctx<'c, 'a> {
    rules: &'c RuleSet,
    data: &'c Data<'a>,
    vars: &'c mut Vars,
    st: &'c mut State,
    cache: &'c mut Cache,
    scratch: &'c mut Scratch,
}

/// Buffers a link evaluation reuses (kept by the transaction, so a request allocates them once).
#[derive(Debug, Default)]
struct Scratch {
    /// The values of the link being evaluated (always empty between links).
    items: Vec<Item<'static>>,
    /// The values that matched, with the name they matched under.
    hits: Pairs,
    /// Per hit, its captures (links with `capture` only).
    hit_captures: Vec<Vec<Vec<u8>>>,
}

/// Empties `items` and hands its allocation to a list of another lifetime.
fn reuse<'b>(mut items: Vec<Item<'_>>) -> Vec<Item<'b>> {
    items.clear();
    items.into_iter().filter_map(|_| None).collect()
}

/// Evaluates one link: every target value through the transformations and the operator;
/// per matching value, MATCHED_VAR(S), captures and the link's own `setvar`/`ctl` run.
///
/// Every value is judged before any effect runs, as libmodsecurity collects a rule's
/// variables before it acts on a match; so TX and MATCHED_* values are read in place
/// instead of being copied first, and only matches are copied.
fn eval_link(ctx: &mut Ctx<'_, '_>, rule: &Rule, link: &Rule) -> bool {
    let (data, vars, st, scratch) = (ctx.data, &mut *ctx.vars, &mut *ctx.st, &mut *ctx.scratch);
    let Some(op) = &link.op else {
        run_effects(data, vars, st, link);
        return true;
    };
    if let Some(slot) = link.slot
        && !may_match_any(ctx.rules, data, ctx.cache, link, slot)
    {
        return false;
    }
    scratch.hits.clear();
    scratch.hit_captures.clear();
    {
        let vars: &Vars = vars;
        let arg: Cow<'_, [u8]> = match op.template() {
            Some(t) => expand_cow(data, vars, t),
            None => Cow::Borrowed(&[]),
        };
        let mut items = reuse(std::mem::take(&mut scratch.items));
        gather(data, vars, st, rule, link, &mut items);
        for item in &items {
            let matched: Option<Cow<'_, [u8]>> = match &item.value {
                // Values borrowed from the request go through the cache and the prefilter
                // (the cache is keyed by address: never for values that change, as TX's).
                Cow::Borrowed(src) if !link.actions.multi_match && !from_vars(item.var) => {
                    if link.slot.is_some_and(|slot| !has(ctx.cache.bits(ctx.rules, src, link.chain_id), slot)) {
                        continue;
                    }
                    let value = ctx.cache.transformed(ctx.rules, src, link.chain_id);
                    let caps = if link.actions.capture { Some(&mut st.captures) } else { None };
                    (op.matches(value, &arg, caps) != op.negated).then_some(Cow::Borrowed(value))
                }
                _ => check(op, link, &item.value, &arg, st),
            };
            let Some(value) = matched else { continue };
            scratch.hits.push(&name_parts(item.var, item.key.as_deref()), &value);
            if link.actions.capture {
                scratch.hit_captures.push(st.captures.clone());
            }
        }
        scratch.items = reuse(items);
    }
    for (n, (name, value)) in scratch.hits.iter().enumerate() {
        match &mut vars.matched_var {
            Some((last_name, last_value)) => {
                last_name.clear();
                last_name.extend_from_slice(name);
                last_value.clear();
                last_value.extend_from_slice(value);
            }
            None => vars.matched_var = Some((name.to_vec(), value.to_vec())),
        }
        vars.matched_vars.push(&[name], value);
        if link.actions.capture {
            let captures = scratch.hit_captures.get(n).map(Vec::as_slice).unwrap_or_default();
            for i in 0..10 {
                let key = TX_DIGITS.get(i).copied().unwrap_or_default();
                match captures.get(i) {
                    Some(c) => vars.tx_set(key, c),
                    None => vars.tx_remove(key),
                }
            }
        }
        run_effects(data, vars, st, link);
    }
    !scratch.hits.is_empty()
}

/// The TX names of the ten captures.
const TX_DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

/// Variables whose values change while rules run (never prefiltered as a whole).
fn from_vars(var: Var) -> bool {
    matches!(
        var,
        Var::Tx
            | Var::MatchedVar
            | Var::MatchedVarName
            | Var::MatchedVars
            | Var::MatchedVarsNames
            | Var::Rule
            | Var::TimeEpoch
    )
}

/// False when none of the link's literals occurs in any value of any variable it targets
/// (exclusions only remove values, so this holds for what it really inspects).
fn may_match_any(rules: &RuleSet, data: &Data<'_>, cache: &mut Cache, link: &Rule, slot: usize) -> bool {
    let targets = || link.targets.iter().filter(|t| !t.exclude);
    if targets().any(|t| t.count || from_vars(t.var)) || link.actions.multi_match {
        return true;
    }
    targets().any(|t| {
        cache.union_has(rules, t.var as u8, link.chain_id, slot, |each| {
            let mut found = Vec::new();
            let all = Target { var: t.var, selector: Selector::All, count: false, exclude: false };
            values(data, &NO_VARS, &all, &mut found);
            if t.var == Var::Xml {
                let attrs = Target { selector: Selector::XPath("//@*".into()), ..all };
                values(data, &NO_VARS, &attrs, &mut found);
            }
            for item in &found {
                match item.value {
                    Cow::Borrowed(v) => each(v),
                    // A value made on the fly (a number) has no stable address to cache under.
                    Cow::Owned(_) => return false,
                }
            }
            true
        })
    })
}

/// The values a link inspects, after its exclusions and any `ctl:ruleRemoveTarget*`.
fn gather<'d>(data: &'d Data<'_>, vars: &'d Vars, st: &State, rule: &Rule, link: &Rule, items: &mut Vec<Item<'d>>) {
    let removed = !st.removed_targets.is_empty();
    let mut exclusions: Vec<&Target> = Vec::new();
    if removed || link.targets.iter().any(|t| t.exclude) {
        exclusions.extend(link.targets.iter().filter(|t| t.exclude));
        exclusions.extend(removed_for(&st.removed_targets, rule.id, &rule.actions.tags, rule.msg_literal()));
    }
    for t in link.targets.iter().filter(|t| !t.exclude) {
        let start = items.len();
        values(data, if from_vars(t.var) { vars } else { &NO_VARS }, t, items);
        if !exclusions.is_empty() {
            let mut i = start;
            while i < items.len() {
                if items.get(i).is_some_and(|item| excluded(item, &exclusions)) {
                    items.remove(i);
                } else {
                    i += 1;
                }
            }
        }
        if t.count {
            let n = items.len() - start;
            items.truncate(start);
            items.push(Item {
                var: t.var,
                key: None,
                value: Cow::Owned(itoa::Buffer::new().format(n).as_bytes().to_vec()),
            });
        }
    }
}

/// Applies the link's transformations and runs the operator; returns the value that matched.
fn check<'v>(
    op: &crate::operator::Operator,
    link: &Rule,
    value: &'v [u8],
    arg: &[u8],
    st: &mut State,
) -> Option<Cow<'v, [u8]>> {
    let capture = link.actions.capture;
    let test = |v: &[u8], st: &mut State| {
        let caps = if capture { Some(&mut st.captures) } else { None };
        op.matches(v, arg, caps) != op.negated
    };
    let mut current: Cow<'v, [u8]> = Cow::Borrowed(value);
    if link.actions.multi_match && test(&current, st) {
        return Some(current);
    }
    for t in &link.transforms {
        if let Some(next) = t.apply(&current) {
            current = Cow::Owned(next);
            if link.actions.multi_match && test(&current, st) {
                return Some(current);
            }
        }
    }
    if link.actions.multi_match {
        return None;
    }
    test(&current, st).then_some(current)
}

fn run_effects(data: &Data<'_>, vars: &mut Vars, st: &mut State, link: &Rule) {
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
            built = String::from_utf8_lossy(&expand(data, vars, &sv.name)).to_ascii_lowercase();
            &built
        }
    };
    let value: Cow<'_, [u8]> = match sv.value.literal() {
        Some(v) => Cow::Borrowed(v.as_bytes()),
        None => Cow::Owned(expand(data, vars, &sv.value)),
    };
    match sv.op {
        SetOp::Delete => vars.tx_remove(name),
        SetOp::Set => vars.tx_set(name, &value),
        SetOp::Add | SetOp::Sub => {
            let current = vars.tx_get(name).map(leading_int).unwrap_or(0);
            let delta = leading_int(&value);
            let next = if sv.op == SetOp::Add { current.saturating_add(delta) } else { current.saturating_sub(delta) };
            let slot = vars.tx_slot(name);
            slot.clear();
            slot.extend_from_slice(itoa::Buffer::new().format(next).as_bytes());
        }
    }
}

/// Expands a template's macros; a template without macros is borrowed.
fn expand_cow<'t>(data: &Data<'_>, vars: &Vars, t: &'t Template) -> Cow<'t, [u8]> {
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
    let mut out = Vec::new();
    t.expand(&mut out, |mv: &MacroVar, out: &mut Vec<u8>| resolve(data, vars, mv, out));
    out
}

fn resolve(data: &Data<'_>, vars: &Vars, mv: &MacroVar, out: &mut Vec<u8>) {
    match (mv.var, mv.key.as_deref()) {
        (Var::Tx, Some(k)) => out.extend_from_slice(vars.tx_get(k).unwrap_or_default()),
        (Var::Rule, Some("id")) => out.extend_from_slice(vars.rule_id.to_string().as_bytes()),
        (var, key) => {
            let selector = key.map_or(Selector::All, |k| Selector::Key(k.to_string()));
            let target = Target { var, selector, count: false, exclude: false };
            let mut found = Vec::new();
            values(data, vars, &target, &mut found);
            if let Some(first) = found.first() {
                out.extend_from_slice(&first.value);
            }
        }
    }
}
