//! The start of phase 1 that is the same for every request, run once per rule set.
//!
//! CRS begins every transaction by setting some fifty TX variables: `crs-setup.conf`'s
//! settings, then REQUEST-901's defaults for every setting left unset (`&TX:x "@eq 0"
//! "setvar:tx.x=..."`) and its zeroed scores. None of those rules reads the request, so
//! their outcome is known when the rules load; evaluated per request they were 25 of the ~135
//! full rule evaluations of a benign GET (docs/performance.md, the WAF's fifth pass).
//!
//! [`Prelude`] is what those rules leave (TX, MATCHED_VAR(S)) and where the rule loop goes on.
//! It is the longest run of phase 1's first entries that read nothing but TX and MATCHED_*,
//! expand macros of nothing else, change nothing but TX (no `ctl`, no `skip`), and do not log
//! or interrupt; the first rule that fails any of that ends it, and everything after it runs
//! per request as before. A transaction whose exclusions (`remove_rules`, `remove_targets`)
//! reach a folded rule runs phase 1 from its first entry.
//!
//! What the prelude leaves also decides, at load, CRS's paranoia-level checks of every phase
//! ([`reachable`]): at PL1 about half of CRS's rules are jumped over by every request, and
//! only rules a request can reach get prefilter literals (a smaller automaton and fewer bits
//! per value; docs/performance.md, fifth pass).

use crate::actions::{Effect, RuleRef};
use crate::collect::Vars;
use crate::macros::{Part, Template};
use crate::rules::{Entry, Rule, RuleSet};
use crate::vars::{Target, Var};
use std::collections::HashSet;
use std::sync::Arc;

/// Phase 1's request-independent beginning, evaluated.
#[derive(Debug, Default)]
pub struct Prelude {
    /// TX and MATCHED_VAR(S) after the folded rules.
    pub(crate) vars: Vars,
    /// The plan step the loop continues at.
    pub(crate) next: usize,
    /// The folded rules (to tell whether a transaction's exclusions reach one).
    pub(crate) rules: Vec<Arc<Rule>>,
}

impl Prelude {
    /// Whether this transaction's exclusions leave the folded rules as they are.
    pub(crate) fn applies(&self, removed: &[RuleRef], removed_targets: &[(RuleRef, Vec<Target>)]) -> bool {
        if removed.is_empty() && removed_targets.is_empty() {
            return true;
        }
        self.rules
            .iter()
            .all(|rule| !removed.iter().any(|r| r.covers(rule)) && !removed_targets.iter().any(|(r, _)| r.covers(rule)))
    }
}

/// The variables a folded rule may read: set by folded rules only.
fn constant_var(var: Var) -> bool {
    matches!(var, Var::Tx | Var::MatchedVar | Var::MatchedVarName | Var::MatchedVars | Var::MatchedVarsNames)
}

fn constant_template(t: &Template) -> bool {
    t.parts.iter().all(|p| match p {
        Part::Text(_) => true,
        Part::Var(mv) => constant_var(mv.var) || (mv.var == Var::Rule && mv.key.as_deref() == Some("id")),
    })
}

/// Whether every link of `rule` reads and writes only what the folded rules set, so its
/// outcome is the same for every request (its logging and disruptive action are checked
/// by evaluating it: see [`crate::engine`]'s `prelude`).
pub(crate) fn request_independent(rule: &Rule) -> bool {
    rule.links().all(|link| {
        let a = &link.actions;
        link.targets.iter().all(|t| constant_var(t.var))
            && link.op.as_ref().is_none_or(|op| op.template().is_none_or(constant_template))
            && a.skip.is_none()
            && a.effects.iter().all(|e| match e {
                Effect::SetVar(sv) => {
                    sv.collection == Var::Tx && constant_template(&sv.name) && constant_template(&sv.value)
                }
                Effect::Ctl(_) => false,
            })
    })
}

/// The TX variables rules other than the folded ones may write in the first `phases`
/// phases: names, and the literal beginnings of names built from macros
/// (`tx.header_name_920450_%{tx.0}`; an empty one when a name starts with a macro: any
/// variable then).
#[derive(Default)]
struct Written {
    names: HashSet<String>,
    prefixes: Vec<String>,
}

impl Written {
    fn of(rules: &RuleSet, prelude: &Prelude, phases: usize) -> Written {
        let mut w = Written::default();
        let folded = |r: &Arc<Rule>| prelude.rules.iter().any(|f| Arc::ptr_eq(f, r));
        for entry in rules.phases.iter().take(phases).flatten() {
            let Entry::Rule(rule) = entry else { continue };
            if folded(rule) {
                continue;
            }
            for link in rule.links() {
                if link.actions.capture {
                    w.names.extend((0..10).map(|d| d.to_string()));
                }
                for e in &link.actions.effects {
                    let Effect::SetVar(sv) = e else { continue };
                    if sv.collection != Var::Tx {
                        continue;
                    }
                    match (sv.name.literal(), sv.name.parts.first()) {
                        (Some(name), _) => {
                            w.names.insert(name.to_string());
                        }
                        (None, Some(Part::Text(t))) => w.prefixes.push(t.to_ascii_lowercase()),
                        (None, _) => w.prefixes.push(String::new()),
                    }
                }
            }
        }
        w
    }

    fn may_write(&self, name: &str) -> bool {
        self.names.contains(name) || self.prefixes.iter().any(|p| name.starts_with(p.as_str()))
    }
}

/// Per entry of every phase, whether its plan step is a TX comparison that cannot hold in a
/// transaction started from the prelude: its variable is one only the prelude sets (see
/// [`reachable`]), and the prelude leaves it so that the comparison fails.
pub(crate) fn never_holding(rules: &RuleSet, prelude: &Prelude) -> [Vec<bool>; 5] {
    decisions(rules, prelude).map(|phase| phase.into_iter().map(|d| d == Some(false)).collect())
}

/// Per plan step of every phase: the outcome of its TX comparison when the variable is one
/// only the prelude sets (the same for every request that starts from the prelude), `None`
/// for other steps. The request phases look at what rules of phases 1 and 2 may write; the
/// response and logging phases, which run after them, at what any rule may write.
fn decisions(rules: &RuleSet, prelude: &Prelude) -> [Vec<Option<bool>>; 5] {
    let (request, all) = (Written::of(rules, prelude, 2), Written::of(rules, prelude, 5));
    let mut out: [Vec<Option<bool>>; 5] = Default::default();
    for (phase, (decided, plan)) in out.iter_mut().zip(&rules.plans).enumerate() {
        let written = if phase < 2 { &request } else { &all };
        let known = |name: &str| (!written.may_write(name)).then(|| prelude.vars.tx.get(name));
        *decided = plan.steps.iter().map(|step| plan.decide(step, known)).collect();
    }
    out
}

/// Which entries of each phase a request can reach, index by index. A TX comparison of a
/// variable that only the prelude sets (CRS's paranoia-level checks: `TX:detection_paranoia_level
/// "@lt 2" "skipAfter:END-..."`) has the same outcome for every request; the rules its jump
/// passes over, and that no other path reaches, are unreachable. Everything else counts as
/// reachable: rules that may or may not jump reach both ways, and the entries before the
/// prelude's end are reachable (a transaction that cannot use the prelude runs them).
///
/// This only decides which rules get prefilter literals (load.rs); a rule without them is
/// evaluated in full whenever a request does reach it (a route's exclusion removing a
/// paranoia-level check, say), so a wrong answer here costs time, never a verdict.
pub(crate) fn reachable(rules: &RuleSet, prelude: &Prelude) -> [Vec<bool>; 5] {
    let decisions = decisions(rules, prelude);
    let mut out: [Vec<bool>; 5] = Default::default();
    for (phase, reach) in out.iter_mut().enumerate() {
        let (Some(entries), Some(plan)) = (rules.phases.get(phase), rules.plans.get(phase)) else { continue };
        let n = entries.len();
        let start = if phase == 0 { prelude.next.min(n) } else { 0 };
        *reach = vec![false; n + 1];
        reach.iter_mut().take(start + 1).for_each(|r| *r = true);
        for (i, (entry, step)) in entries.iter().zip(&plan.steps).enumerate().skip(start) {
            if !reach.get(i).copied().unwrap_or(false) {
                continue;
            }
            let rule = match entry {
                Entry::Rule(r) => Some(r),
                Entry::Marker(_) => None,
            };
            let target = step.skip_to.map_or(i + 1, |t| (t as usize).min(n));
            let decided = rule
                .filter(|r| r.chain.is_none() && r.actions.skip.is_none())
                .and_then(|_| decisions.get(phase).and_then(|d| d.get(i)).copied().flatten());
            let mut mark = |j: usize| {
                if let Some(r) = reach.get_mut(j) {
                    *r = true;
                }
            };
            match decided {
                Some(true) => mark(target),
                Some(false) => mark(i + 1),
                None if rule.is_some_and(|r| r.actions.skip.is_some()) => (i + 1..=n).for_each(mark),
                None => {
                    mark(i + 1);
                    mark(target);
                }
            }
        }
        reach.truncate(n);
    }
    out
}
