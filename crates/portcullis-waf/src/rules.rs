//! The compiled rule set: rules by phase in file order, with markers resolved.

use crate::actions::{Actions, Disruptive, EngineMode};
use crate::operator::Operator;
use crate::transform::Transform;
use crate::vars::Target;
use std::sync::Arc;

/// One `SecRule`/`SecAction`, or a link of a chain.
///
/// `repr(C)`, in this order: what evaluating a link reads comes first (and [`Actions`] starts
/// with its own such fields), so a rule read from cold memory costs three or four cache lines
/// rather than most of its 370 bytes; what only logging reads comes last.
#[derive(Debug)]
#[repr(C)]
pub struct Rule {
    pub id: u32,
    pub phase: u8,
    /// Index into [`RuleSet::chains`] of this link's transformation chain.
    pub chain_id: usize,
    /// This link's bit in the prefilter, when its operator has literals.
    pub slot: Option<usize>,
    /// A second bit, for a second set of literals one of which the operator's matches also
    /// hold (see [`crate::prefilter::second_literals`]): a value needs both.
    pub also: Option<usize>,
    /// For a `multiMatch` link (never prefiltered: it matches between transformations), its
    /// operator's literals of two bytes or more, one of which a value must hold for the
    /// operator to run on it.
    pub screen: Option<Box<aho_corasick::AhoCorasick>>,
    /// Empty for `SecAction` (which always matches).
    pub targets: Vec<Target>,
    /// The next link of a chain.
    pub chain: Option<Box<Rule>>,
    /// Effective transformations (defaults applied unless `t:none`).
    pub transforms: Vec<Transform>,
    pub op: Option<Operator>,
    pub actions: Actions,
    pub file: Arc<str>,
    pub line: usize,
}

impl Rule {
    /// A rule or link not yet placed in a chain or given a prefilter slot.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: u32,
        phase: u8,
        targets: Vec<Target>,
        op: Option<Operator>,
        actions: Actions,
        transforms: Vec<Transform>,
        file: Arc<str>,
        line: usize,
    ) -> Rule {
        Rule {
            id,
            phase,
            targets,
            op,
            actions,
            transforms,
            chain: None,
            chain_id: 0,
            slot: None,
            also: None,
            screen: None,
            file,
            line,
        }
    }

    /// The prefilter slots a value must hold both of (the first twice when there is no
    /// second); none when the link has no literals.
    pub fn slots(&self) -> Option<[usize; 2]> {
        self.slot.map(|s| [s, self.also.unwrap_or(s)])
    }

    pub fn links(&self) -> impl Iterator<Item = &Rule> {
        std::iter::successors(Some(self), |r| r.chain.as_deref())
    }

    pub fn msg_literal(&self) -> Option<&str> {
        self.actions.msg.as_ref().and_then(|m| m.literal())
    }
}

#[derive(Debug)]
pub enum Entry {
    Rule(Arc<Rule>),
    /// A `SecMarker`; it appears in every phase.
    Marker(String),
}

/// Per-phase defaults from `SecDefaultAction`.
#[derive(Debug, Clone)]
pub struct PhaseDefaults {
    pub disruptive: Disruptive,
    pub log: bool,
    pub transforms: Vec<Transform>,
    pub status: Option<u16>,
}

impl Default for PhaseDefaults {
    fn default() -> Self {
        PhaseDefaults { disruptive: Disruptive::Pass, log: true, transforms: Vec::new(), status: None }
    }
}

/// One distinct transformation chain.
#[derive(Debug)]
pub struct ChainFilter {
    pub transforms: Vec<Transform>,
    /// The literals of this chain's rules alone, for values the chain changes (their scan
    /// need not look for every other chain's literals).
    pub literals: crate::prefilter::Literals,
    /// Value features (see `features`) in whose absence the chain leaves a value unchanged
    /// but for letter case, which the case-insensitive prefilter ignores.
    pub triggers: u16,
}

/// One case-insensitive automaton over the literals of every prefiltered rule of every
/// chain: a value is scanned once, and chains that leave it unchanged share the result.
#[derive(Debug, Default)]
pub struct Prefilter {
    pub literals: crate::prefilter::Literals,
    /// Number of slots, over all chains.
    pub slots: usize,
}

/// Everything the engine needs, immutable once built; shared across requests.
#[derive(Debug)]
pub struct RuleSet {
    /// Index 0..=4 for phases 1..=5.
    pub phases: [Vec<Entry>; 5],
    /// For each phase, what the rule loop reads first (see `plan`), with the index each
    /// entry's `skipAfter` continues at.
    pub plans: [crate::plan::Plan; 5],
    /// What the plans' gates look at (see `plan::GateGroup`).
    pub gates: crate::plan::Groups,
    pub defaults: [PhaseDefaults; 5],
    pub engine: EngineMode,
    pub components: Vec<String>,
    pub rule_count: usize,
    pub chains: Vec<ChainFilter>,
    pub prefilter: Prefilter,
    /// Phase 1's request-independent beginning, evaluated once (see `prelude`).
    pub prelude: Option<crate::prelude::Prelude>,
    /// Every file read and directory listed while loading (rule files, `Include`s and their
    /// globs' directories, `@pmFromFile` lists), sorted: a caller can tell from them whether
    /// loading again would give the same rules.
    pub sources: Vec<std::path::PathBuf>,
}

impl RuleSet {
    pub fn rules(&self) -> impl Iterator<Item = &Arc<Rule>> {
        self.phases.iter().flatten().filter_map(|e| match e {
            Entry::Rule(r) => Some(r),
            Entry::Marker(_) => None,
        })
    }

    pub fn rule(&self, id: u32) -> Option<&Arc<Rule>> {
        self.rules().find(|r| r.id == id)
    }

    /// Whether any rule runs over the response or in the logging phase (phases 3 to 5): a
    /// caller without any can skip [`crate::Transaction::response`] and reading bodies for it.
    pub fn inspects_responses(&self) -> bool {
        self.phases.iter().skip(2).flatten().any(|e| matches!(e, Entry::Rule(_)))
    }
}
