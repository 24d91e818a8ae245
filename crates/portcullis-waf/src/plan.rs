//! The rule loop's first look at each entry of a phase: one small array per phase, built once
//! per rule set, that decides the common cases without touching the rule itself.
//!
//! A request walks every rule of a phase, and most of them do not match. Reading a rule means
//! reading its `Arc`, its targets, operator and actions: some ten cache lines per rule from all
//! over the heap, which in a busy gateway are cold (docs/performance.md, the WAF's third and
//! fourth passes). The plan answers first, from about one line per rule:
//!
//! - [`Kind::Gate`]: the first link is prefiltered; when none of its variables' values holds
//!   one of its literals (the per-request unions in the cache), the rule cannot match. A
//!   union not computed yet is taken from the variable's own values when the link's chain
//!   cannot change any of them; otherwise the full evaluation computes it;
//! - [`Kind::TxNum`]: the first link compares one TX variable, or whether it exists, with a
//!   constant (CRS's paranoia level checks and setup defaults, ~140 per request); it is
//!   decided here, and when the rule is a quiet, single-link `pass` (no log, no effects) its
//!   match is recorded here too.
//!
//! Everything else, and every case the plan cannot decide, goes the full way (`eval_rule`);
//! the plan only ever skips work whose outcome it knows.

use crate::actions::{Disruptive, RuleRef};
use crate::collect::{Vars, name_parts};
use crate::link::record_match;
use crate::operator::{NumCmp, OpKind, leading_int};
use crate::rules::{Entry, PhaseDefaults, Rule};
use crate::vars::{Selector, Target, Var};

/// What the loop knows about one entry without reading it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    Marker,
    /// Evaluate the rule.
    Full,
    /// The first link's prefilter `slot` over the values its [`GateGroup`] `group` names
    /// (numbered in [`Groups`]: many rules share one, and the union over its variables is
    /// computed once per request); and its second slot ([`NO_SLOT`] when it has none), which
    /// some value must hold as well.
    Gate {
        slot: u32,
        also: u32,
        group: u32,
    },
    /// The first link is `TX:name @cmp n`, or with `count` `&TX:name @cmp n` (CRS's "set a
    /// default unless configured" rules); the name is at `name` in [`Plan::names`]. `quiet`
    /// when a match needs nothing but MATCHED_VAR(S) and the phase's `skipAfter` jump.
    /// `never` when, in a transaction that started from the rule set's prelude, the
    /// comparison cannot hold: only the prelude sets the variable, and not so that it holds
    /// (CRS's checks for paranoia levels above the configured one; see prelude.rs).
    TxNum {
        name: (u32, u16),
        cmp: NumCmp,
        n: i64,
        negated: bool,
        count: bool,
        quiet: bool,
        never: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Step {
    pub(crate) kind: Kind,
    pub(crate) id: u32,
    /// The entry index to continue at after a full match (`skipAfter`), resolved at load.
    pub(crate) skip_to: Option<u32>,
}

/// What a gate looks at: the values of the variables in the bit mask `vars` (bit n = `Var` n;
/// there are more than 64) through transformation chain `chain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GateGroup {
    pub(crate) chain: usize,
    pub(crate) vars: u128,
}

/// The gate groups of a rule set, numbered across its phases.
#[derive(Debug, Default)]
pub struct Groups {
    numbers: std::collections::HashMap<GateGroup, u32>,
    list: Vec<GateGroup>,
}

impl Groups {
    fn number(&mut self, group: GateGroup) -> u32 {
        let next = self.list.len() as u32;
        *self.numbers.entry(group).or_insert_with(|| {
            self.list.push(group);
            next
        })
    }

    pub(crate) fn get(&self, n: usize) -> Option<&GateGroup> {
        self.list.get(n)
    }
}

/// One phase's steps, parallel to its entries.
#[derive(Debug, Default)]
pub struct Plan {
    pub(crate) steps: Vec<Step>,
    /// The TX names of the [`Kind::TxNum`] steps, back to back.
    names: String,
}

/// What the plan decided about a rule.
#[derive(Debug, PartialEq)]
pub(crate) enum Verdict {
    /// It cannot match: go on with the next entry.
    NoMatch,
    /// It matched and everything a match does is done: continue at the step's skip target.
    Done,
    /// Evaluate it.
    Full,
}

impl Plan {
    /// The plan of one phase; `skips` holds each entry's `skipAfter` target.
    pub(crate) fn build(
        entries: &[Entry],
        skips: &[Option<usize>],
        defaults: &PhaseDefaults,
        groups: &mut Groups,
    ) -> Plan {
        let mut plan = Plan::default();
        for (i, e) in entries.iter().enumerate() {
            let skip_to = skips.get(i).copied().flatten().map(|j| j as u32);
            let step = match e {
                Entry::Marker(_) => Step { kind: Kind::Marker, id: 0, skip_to },
                Entry::Rule(rule) => Step { kind: plan.kind_of(rule, defaults, groups), id: rule.id, skip_to },
            };
            plan.steps.push(step);
        }
        plan
    }

    fn kind_of(&mut self, rule: &Rule, defaults: &PhaseDefaults, groups: &mut Groups) -> Kind {
        if let Some(kind) = gate(rule, groups) {
            return kind;
        }
        let Some(op) = &rule.op else { return Kind::Full };
        let (OpKind::Num(cmp, arg), [t]) = (&op.kind, rule.targets.as_slice()) else { return Kind::Full };
        let (Some(arg), Selector::Key(name)) = (arg.literal(), &t.selector) else { return Kind::Full };
        let a = &rule.actions;
        if t.var != Var::Tx || t.exclude || a.multi_match || a.capture || !rule.transforms.is_empty() {
            return Kind::Full;
        }
        let Ok(len) = u16::try_from(name.len()) else { return Kind::Full };
        let action = match a.disruptive.unwrap_or(defaults.disruptive) {
            Disruptive::Block => defaults.disruptive,
            other => other,
        };
        // A count's match is recorded under the name `TX` with the count as value: left to
        // the full evaluation.
        let quiet = !t.count
            && rule.chain.is_none()
            && a.effects.is_empty()
            && a.skip.is_none()
            && action == Disruptive::Pass
            && !a.log.unwrap_or(defaults.log);
        let at = self.names.len() as u32;
        self.names.push_str(name);
        let n = leading_int(arg.as_bytes());
        Kind::TxNum { name: (at, len), cmp: *cmp, n, negated: op.negated, count: t.count, quiet, never: false }
    }

    /// Decides a step from the transaction's variables and, for a [`Kind::Gate`], `lacks`
    /// (given its slot and group: true when no value can hold the slot, see
    /// `link::gate_lacks`). Once a `ctl:ruleRemoveTarget*` has removed some TX target
    /// (`removed`), perhaps a [`Kind::TxNum`] step's one target, those steps go the full way.
    /// `from_prelude`: the transaction started from the rule set's prelude.
    pub(crate) fn verdict(
        &self,
        step: &Step,
        vars: &mut Vars,
        lacks: impl FnOnce(&[usize], usize) -> bool,
        removed: &[(RuleRef, Vec<Target>)],
        from_prelude: bool,
    ) -> Verdict {
        match step.kind {
            Kind::TxNum { .. } if removed.iter().any(|(_, ts)| ts.iter().any(|t| t.var == Var::Tx)) => Verdict::Full,
            Kind::TxNum { never: true, .. } if from_prelude => Verdict::NoMatch,
            Kind::Marker => Verdict::NoMatch,
            Kind::Full => Verdict::Full,
            Kind::Gate { slot, also, group } => {
                let also = if also == NO_SLOT { slot } else { also };
                if lacks(&[slot as usize, also as usize], group as usize) { Verdict::NoMatch } else { Verdict::Full }
            }
            Kind::TxNum { quiet, .. } => {
                let name = self.tx_name(step).unwrap_or_default();
                let Vars { tx, matched_var, matched_vars, rule_id, .. } = vars;
                let found = tx.get(name);
                if !tx_matches(step.kind, found) {
                    return Verdict::NoMatch;
                }
                let (true, Some(value)) = (quiet, found) else { return Verdict::Full };
                // What `eval_rule` would leave: this rule's id, its one match.
                matched_vars.clear();
                *rule_id = step.id;
                record_match(matched_var, matched_vars, &name_parts(Var::Tx, Some(name.as_bytes())), value);
                Verdict::Done
            }
        }
    }

    /// Marks the [`Kind::TxNum`] steps at the indexes `never` flags as never holding (see
    /// the variant).
    pub(crate) fn set_never(&mut self, never: &[bool]) {
        for (step, &no) in self.steps.iter_mut().zip(never) {
            if let Kind::TxNum { never, .. } = &mut step.kind {
                *never = no;
            }
        }
    }

    /// The TX variable a [`Kind::TxNum`] step compares.
    fn tx_name(&self, step: &Step) -> Option<&str> {
        let Kind::TxNum { name: (at, len), .. } = step.kind else { return None };
        self.names.get(at as usize..at as usize + usize::from(len))
    }

    /// Whether a [`Kind::TxNum`] step's first link matches when its variable is known in
    /// advance: `known` gives the variable's value (`Some(None)` when unset) or `None` when
    /// it is not known. `None` for other steps and unknown variables.
    pub(crate) fn decide<'a>(&self, step: &Step, known: impl Fn(&str) -> Option<Option<&'a [u8]>>) -> Option<bool> {
        Some(tx_matches(step.kind, known(self.tx_name(step)?)?))
    }
}

/// Whether a [`Kind::TxNum`] comparison holds for the variable's value (`None`: unset, which
/// never matches unless counted).
fn tx_matches(kind: Kind, found: Option<&[u8]>) -> bool {
    let Kind::TxNum { cmp, n, negated, count, .. } = kind else { return false };
    let a = match (count, found) {
        (true, _) => i64::from(found.is_some()),
        (false, Some(value)) => leading_int(value),
        (false, None) => return false,
    };
    cmp.holds(a, n) != negated
}

/// [`Kind::Gate`]'s `also` for a rule without a second slot.
const NO_SLOT: u32 = u32::MAX;

/// A gate for a rule whose first link is prefiltered and reads only request variables
/// (`may_match_any` in link.rs holds the same conditions for the full path).
fn gate(rule: &Rule, groups: &mut Groups) -> Option<Kind> {
    let slot = u32::try_from(rule.slot?).ok()?;
    if rule.op.is_none() || !crate::link::may_gate(rule) {
        return None;
    }
    let mut vars = 0u128;
    for t in rule.targets.iter().filter(|t| !t.exclude) {
        vars |= 1u128.checked_shl(u32::from(t.var as u8))?;
    }
    let group = groups.number(GateGroup { chain: rule.chain_id, vars });
    let also = rule.also.map_or(Some(NO_SLOT), |s| u32::try_from(s).ok())?;
    Some(Kind::Gate { slot, also, group })
}

#[cfg(test)]
mod tests {
    /// The loop reads a rule's targets on every evaluation: a regex selector is boxed so
    /// that a target stays half a cache line (it was 72 bytes with the regex inline).
    #[test]
    fn what_the_loop_reads_stays_small() {
        assert!(std::mem::size_of::<crate::vars::Target>() <= 32);
        assert!(std::mem::size_of::<super::Step>() <= 48);
    }
}
