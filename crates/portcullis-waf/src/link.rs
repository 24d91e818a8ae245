//! One rule link over a transaction: the values its targets name (after exclusions), the
//! prefilter, the cached transformations, the operator, and per matching value the
//! MATCHED_VAR(S) bookkeeping, captures and the link's own effects.

use crate::cache::{Cache, has};
use crate::collect::{Data, Item, Pairs, Vars, excluded, name_parts, removed_for, values};
use crate::engine::{NO_VARS, State, expand_cow, run_effects};
use crate::rules::{Rule, RuleSet};
use crate::vars::{Selector, Target, Var};
use std::borrow::Cow;

pub(crate) struct Ctx<'c, 'a> {
    pub(crate) rules: &'c RuleSet,
    pub(crate) data: &'c Data<'a>,
    pub(crate) vars: &'c mut Vars,
    pub(crate) st: &'c mut State,
    pub(crate) cache: &'c mut Cache,
    pub(crate) scratch: &'c mut Scratch,
}

/// Buffers a link evaluation reuses (kept by the transaction, so a request allocates them once).
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    /// The values of the link being evaluated (always empty between links).
    items: Vec<Item<'static>>,
    /// The values that matched, with the name they matched under.
    pub(crate) hits: Pairs,
    /// Per hit, its captures (links with `capture` only): hit n's at n.
    hit_captures: Vec<Vec<Vec<u8>>>,
    /// The targets a link's values are checked against for exclusion (always empty between links).
    exclusions: Vec<&'static Target>,
    /// Per value identity (see [`Cache::id`]): the link evaluation that found it does not
    /// match, so a repeated value is judged once per link.
    missed: Vec<u32>,
    /// The current link evaluation's number in `missed` (0: none yet).
    evaluation: u32,
}

impl Scratch {
    /// Holds more than a reused buffer should keep (a match on a large body, a body of very
    /// many values).
    pub(crate) fn heavy(&self) -> bool {
        self.hits.heavy() || self.missed.capacity() > crate::cache::KEEP_BYTES / 4
    }

    /// Starts a link evaluation: no value is known to miss.
    fn next_evaluation(&mut self) {
        self.evaluation = self.evaluation.wrapping_add(1);
        if self.evaluation == 0 {
            self.missed.clear();
            self.evaluation = 1;
        }
    }

    fn missed(&self, id: u32) -> bool {
        self.missed.get(id as usize) == Some(&self.evaluation)
    }

    fn miss(&mut self, id: u32) {
        let i = id as usize;
        if self.missed.len() <= i {
            self.missed.resize(i + 1, 0);
        }
        if let Some(m) = self.missed.get_mut(i) {
            *m = self.evaluation;
        }
    }
}

/// Empties `items` and hands its allocation to a list of another type, here always the same
/// type of another lifetime (collecting an emptied vector's iterator into one of the same
/// layout reuses its allocation).
#[allow(clippy::unnecessary_filter_map)] // `filter` could not change the type
fn reuse<T, U>(mut items: Vec<T>) -> Vec<U> {
    items.clear();
    items.into_iter().filter_map(|_| None).collect()
}

/// XML's attribute values, which a union over `XML` covers besides its nodes.
static XML_ATTRS: std::sync::LazyLock<Target> = std::sync::LazyLock::new(|| Target {
    var: Var::Xml,
    selector: Selector::XPath("//@*".into()),
    count: false,
    exclude: false,
});

/// Evaluates one link: every target value through the transformations and the operator;
/// per matching value, MATCHED_VAR(S), captures and the link's own `setvar`/`ctl` run.
///
/// Every value is judged before any effect runs, as libmodsecurity collects a rule's
/// variables before it acts on a match; so TX and MATCHED_* values are read in place
/// instead of being copied first, and only matches are copied.
pub(crate) fn eval_link(ctx: &mut Ctx<'_, '_>, rule: &Rule, link: &Rule) -> bool {
    let (data, vars, st, scratch) = (ctx.data, &mut *ctx.vars, &mut *ctx.st, &mut *ctx.scratch);
    let Some(op) = &link.op else {
        run_effects(data, vars, st, link);
        return true;
    };
    // Targets none of whose values holds one of the link's literals are not even gathered.
    let live = match link.slots() {
        Some(slots) => may_match(ctx.rules, data, ctx.cache, &mut scratch.items, link, slots),
        None => Some(u64::MAX),
    };
    let Some(live) = live else { return false };
    // `hit_captures` is not cleared: hit n's captures are at n, the rest is stale and unread
    // (its buffers are reused).
    scratch.hits.clear();
    scratch.next_evaluation();
    {
        let vars: &Vars = vars;
        let arg: Cow<'_, [u8]> = match op.template() {
            Some(t) => expand_cow(data, vars, t),
            None => Cow::Borrowed(&[]),
        };
        let mut items = reuse(std::mem::take(&mut scratch.items));
        let mut exclusions = reuse(std::mem::take(&mut scratch.exclusions));
        exclusions_of(st, rule, link, &mut exclusions);
        gather(data, vars, link, live, &mut items, &exclusions);
        scratch.exclusions = reuse(exclusions);
        for item in &items {
            // Values borrowed from the request have an identity in the cache (never values
            // that change, as TX's): one that missed already misses again (the operator's
            // argument is fixed for the evaluation, and a miss sets no capture).
            let id = match &item.value {
                Cow::Borrowed(src) if !from_vars(item.var) => Some(ctx.cache.id(src)),
                _ => None,
            };
            if id.is_some_and(|id| scratch.missed(id)) {
                continue;
            }
            let matched: Option<Cow<'_, [u8]>> = match (&item.value, id) {
                // They go through the cache and the prefilter.
                (Cow::Borrowed(src), Some(id)) if !link.actions.multi_match => {
                    if let Some(slots) = link.slots() {
                        let bits = ctx.cache.bits(ctx.rules, id, src, link.chain_id);
                        if !slots.iter().all(|&s| has(bits, s)) {
                            scratch.miss(id);
                            continue;
                        }
                    }
                    let value = ctx.cache.transformed(ctx.rules, id, src, link.chain_id);
                    let caps = if link.actions.capture { Some(&mut st.captures) } else { None };
                    (op.matches(value, &arg, caps) != op.negated).then_some(Cow::Borrowed(value))
                }
                _ => check(op, link, &item.value, &arg, st),
            };
            let Some(value) = matched else {
                if let Some(id) = id {
                    scratch.miss(id);
                }
                continue;
            };
            scratch.hits.push(&name_parts(item.var, item.key.as_deref()), &value);
            if link.actions.capture {
                match scratch.hit_captures.get_mut(scratch.hits.len() - 1) {
                    Some(slot) => slot.clone_from(&st.captures),
                    None => scratch.hit_captures.push(st.captures.clone()),
                }
            }
        }
        scratch.items = reuse(items);
    }
    for (n, (name, value)) in scratch.hits.iter().enumerate() {
        record_match(&mut vars.matched_var, &mut vars.matched_vars, &[name], value);
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

/// Records one matching value as MATCHED_VAR, MATCHED_VAR_NAME and one of MATCHED_VARS
/// (`name` in parts, as [`name_parts`] gives it), reusing the previous value's buffers.
pub(crate) fn record_match(last: &mut Option<(Vec<u8>, Vec<u8>)>, all: &mut Pairs, name: &[&[u8]], value: &[u8]) {
    match last {
        Some((last_name, last_value)) => {
            last_name.clear();
            name.iter().for_each(|p| last_name.extend_from_slice(p));
            last_value.clear();
            last_value.extend_from_slice(value);
        }
        None => *last = Some((name.concat(), value.to_vec())),
    }
    all.push(name, value);
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

/// The link's targets that may match: bit n for target n (targets from the 64th on always
/// may), clear when none of the link's literals occurs in any value of its variable.
/// Exclusions only remove values, so a clear bit holds for what the target really inspects.
/// None when no target may match; all set when the link cannot be gated.
fn may_match(
    rules: &RuleSet,
    data: &Data<'_>,
    cache: &mut Cache,
    buffer: &mut Vec<Item<'static>>,
    link: &Rule,
    slots: [usize; 2],
) -> Option<u64> {
    if !may_gate(link) {
        return Some(u64::MAX);
    }
    let mut live = 0u64;
    let mut any = false;
    for (n, t) in link.targets.iter().enumerate().filter(|(_, t)| !t.exclude) {
        if n >= 64 || may_hold(rules, data, cache, buffer, t, link.chain_id, slots) {
            live |= 1u64.checked_shl(n as u32).unwrap_or(0);
            any = true;
        }
    }
    any.then_some(live)
}

/// Whether a value of `t` may hold a literal of each of `slots` through `chain`: for a target
/// naming one member (`REQUEST_HEADERS:X-Filename`), that member's values, often none;
/// otherwise the union over all values of its variable (which may hold the two in different
/// values: only a sign that a value may hold both).
fn may_hold(
    rules: &RuleSet,
    data: &Data<'_>,
    cache: &mut Cache,
    buffer: &mut Vec<Item<'static>>,
    t: &Target,
    chain: usize,
    slots: [usize; 2],
) -> bool {
    if matches!(t.selector, Selector::Key(_)) {
        let mut found = reuse(std::mem::take(buffer));
        values(data, &NO_VARS, t, &mut found);
        let any = found.iter().any(|item| match item.value {
            Cow::Borrowed(v) => {
                let id = cache.id(v);
                let bits = cache.bits(rules, id, v, chain);
                slots.iter().all(|&s| has(bits, s))
            }
            Cow::Owned(_) => true,
        });
        *buffer = reuse(found);
        return any;
    }
    cache.union_has(rules, t.var as u8, chain, &slots, |each| each_value(data, buffer, t.var, each))
}

/// Gives every value of `var` (XML's attributes too) to `each`; false when some value was
/// made on the fly (a number) and has no stable address to cache under.
fn each_value<'d>(
    data: &'d Data<'_>,
    buffer: &mut Vec<Item<'static>>,
    var: Var,
    each: &mut dyn FnMut(&'d [u8]),
) -> bool {
    let mut found = reuse(std::mem::take(buffer));
    let all = Target { var, selector: Selector::All, count: false, exclude: false };
    values(data, &NO_VARS, &all, &mut found);
    if var == Var::Xml {
        values(data, &NO_VARS, &XML_ATTRS, &mut found);
    }
    let mut complete = true;
    for item in &found {
        match item.value {
            Cow::Borrowed(v) => each(v),
            Cow::Owned(_) => complete = false,
        }
    }
    *buffer = reuse(found);
    complete
}

/// The plan's gate (see plan.rs): true when no value of its variables holds one of its slots
/// through its chain, as far as that is known without applying the chain.
pub(crate) fn gate_lacks(
    rules: &RuleSet,
    data: &Data<'_>,
    cache: &mut Cache,
    scratch: &mut Scratch,
    (slots, group): (&[usize], usize),
) -> bool {
    let buffer = &mut scratch.items;
    cache.unions_lack(rules, slots, group, |var, each| {
        Var::from_index(var).is_some_and(|var| each_value(data, buffer, var, each))
    })
}

/// Whether a prefiltered link's literals can rule it out from the unions of its variables'
/// values: not when it counts, reads variables that change while rules run, or matches
/// between transformations.
pub(crate) fn may_gate(link: &Rule) -> bool {
    !(link.actions.multi_match || link.targets.iter().filter(|t| !t.exclude).any(|t| t.count || from_vars(t.var)))
}

/// The link's exclusions and any `ctl:ruleRemoveTarget*` for its rule.
fn exclusions_of<'l>(st: &'l State, rule: &Rule, link: &'l Rule, exclusions: &mut Vec<&'l Target>) {
    if !st.removed_targets.is_empty() || link.targets.iter().any(|t| t.exclude) {
        exclusions.extend(link.targets.iter().filter(|t| t.exclude));
        exclusions.extend(removed_for(&st.removed_targets, rule));
    }
}

/// The values a link inspects from the targets in `live` (see [`may_match`]), less those
/// `exclusions` name.
fn gather<'d>(
    data: &'d Data<'_>,
    vars: &'d Vars,
    link: &Rule,
    live: u64,
    items: &mut Vec<Item<'d>>,
    exclusions: &[&Target],
) {
    for (n, t) in link.targets.iter().enumerate() {
        if t.exclude || (n < 64 && live & (1u64 << n) == 0) {
            continue;
        }
        let start = items.len();
        values(data, if from_vars(t.var) { vars } else { &NO_VARS }, t, items);
        if !exclusions.is_empty() {
            let mut i = start;
            while i < items.len() {
                if items.get(i).is_some_and(|item| excluded(item, exclusions)) {
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
        // A screened link's operator cannot match a value without one of its literals.
        if link.screen.as_ref().is_some_and(|s| !s.is_match(v)) {
            return false;
        }
        let caps = if capture { Some(&mut st.captures) } else { None };
        op.matches(v, arg, caps) != op.negated
    };
    let mut current: Cow<'v, [u8]> = Cow::Borrowed(value);
    if link.actions.multi_match && test(&current, st) {
        return Some(current);
    }
    let mut features = None;
    for t in &link.transforms {
        if let Some(next) = t.apply_changed(&current, &mut features) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuse_keeps_the_allocation() {
        let mut items: Vec<Item<'static>> = Vec::with_capacity(32);
        items.push(Item { var: Var::Args, key: None, value: Cow::Borrowed(b"x") });
        let owned = b"y".to_vec();
        let mut other: Vec<Item<'_>> = reuse(items);
        assert!(other.is_empty() && other.capacity() >= 32);
        other.push(Item { var: Var::Args, key: None, value: Cow::Borrowed(&owned) });
        let back: Vec<Item<'static>> = reuse(other);
        assert!(back.is_empty() && back.capacity() >= 32);
    }
}
