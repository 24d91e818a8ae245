//! The start of phase 1 that is the same for every request, run once per rule set.
//!
//! CRS begins every transaction by setting some fifty TX variables: `crs-setup.conf`'s
//! settings, then REQUEST-901's defaults for every setting left unset (`&TX:x "@eq 0"
//! "setvar:tx.x=..."`) and its zeroed scores. None of those rules reads the request, so
//! their outcome is known when the rules load; evaluated per request they were ~27 full rule
//! evaluations of a benign GET's ~135 (docs/performance.md, the WAF's fifth pass).
//!
//! [`Prelude`] is what those rules leave (TX, MATCHED_VAR(S)) and where the rule loop goes on.
//! It is the longest run of phase 1's first entries that read nothing but TX and MATCHED_*,
//! expand macros of nothing else, change nothing but TX (no `ctl`, no `skip`), and do not log
//! or interrupt; the first rule that fails any of that ends it, and everything after it runs
//! per request as before. A transaction whose exclusions (`remove_rules`, `remove_targets`)
//! reach a folded rule runs phase 1 from its first entry.

use crate::actions::{Effect, RuleRef};
use crate::collect::Vars;
use crate::macros::{Part, Template};
use crate::rules::Rule;
use crate::vars::{Target, Var};
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
