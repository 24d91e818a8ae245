//! Per-transaction cache for the prefilter and the transformations, keyed by the source
//! value's identity (it is borrowed from the request and does not move while the
//! transaction lives):
//!
//! - per source value: its byte features and the prefilter bits of the literals the one
//!   global automaton found in it; every chain that leaves the value unchanged (the common
//!   case for clean values) uses these bits;
//! - per (value, chain) otherwise: the transformed value and its own bits;
//! - per (variable, chain): the union over all the variable's values, so a rule whose
//!   literals occur in none of them is skipped without looking at any value;
//! - per variable: its values' features together and the union of their own bits, which is
//!   the (variable, chain) union of every chain that leaves all of them unchanged, known
//!   without applying the chain.

use crate::features;
use crate::rules::RuleSet;
use crate::vars::Var;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A multiply-rotate hasher for the small integer keys.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

type Map<K, V> = HashMap<K, V, BuildHasherDefault<KeyHasher>>;

#[derive(Debug, Clone, Copy)]
struct Source {
    features: u16,
    /// Offset of its bits in [`Cache::words`].
    bits: u32,
}

/// What a chain made of a value: not applied yet, no change, or bytes in [`Cache::bytes`].
#[derive(Debug, Clone, Copy, Default)]
enum Value {
    #[default]
    Unknown,
    Same,
    At(u32, u32),
}

/// Values by a small dense index, for one generation at a time: emptied without touching
/// them by starting the next generation (a request reads a few hundred of them).
#[derive(Debug, Default)]
struct Table<T> {
    cells: Vec<(u32, T)>,
    /// The generation valid cells carry; 0 before the first insert.
    live: u32,
}

impl<T: Copy + Default> Table<T> {
    fn get(&self, i: usize) -> Option<T> {
        self.cells.get(i).filter(|c| c.0 == self.live && self.live != 0).map(|c| c.1)
    }

    fn insert(&mut self, i: usize, value: T) {
        if self.live == 0 {
            self.live = 1;
        }
        if self.cells.len() <= i {
            self.cells.resize(i + 1, (0, T::default()));
        }
        if let Some(c) = self.cells.get_mut(i) {
            *c = (self.live, value);
        }
    }

    fn clear(&mut self) {
        self.live = self.live.wrapping_add(1);
        if self.live == 0 {
            self.cells.clear();
        }
    }
}

/// Number of variables.
const VARS: usize = Var::Xml as usize + 1;

/// Where a (chain, variable) pair's union is in [`Cache::unions`].
fn union_index(chain: usize, var: u8) -> usize {
    chain * VARS + usize::from(var)
}

/// One variable's values together: their features and the union of their own bits.
#[derive(Debug, Clone, Copy, Default)]
struct VarSource {
    features: u16,
    /// Offset of the union in [`Cache::words`], or [`ANY`].
    bits: u32,
}

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    value: Value,
    bits: Option<u32>,
}

/// Everything lives in flat arenas (bit sets in `words`, transformed values in `bytes`), so a
/// request costs no allocation per value once a thread's cache has grown, and a cache is
/// reused by the next transaction on the same thread.
#[derive(Debug, Default)]
pub struct Cache {
    sources: Map<(usize, usize), Source>,
    entries: Map<(usize, usize, usize), Entry>,
    unions: Table<u32>,
    var_sources: Table<VarSource>,
    /// Per gate group (see [`crate::plan::GateGroup`]): the union over its variables'
    /// unions.
    groups: Table<u32>,
    words: Vec<u64>,
    bytes: Vec<u8>,
}

/// A union that cannot be known (the variable has values without a stable address): every
/// slot may match.
const ANY: u32 = u32::MAX;
/// A buffer kept for the next transaction on the thread (this cache's arenas, the match
/// buffers) that grew beyond this many bytes (a huge body) is dropped instead.
pub(crate) const KEEP_BYTES: usize = 1 << 20;

/// Scans `value` for `chain`'s literals (every chain's when `chain` is `None`) into a new bit
/// set at the end of `words`; its offset.
fn scan(words: &mut Vec<u64>, rules: &RuleSet, chain: Option<usize>, value: &[u8]) -> u32 {
    let at = words.len();
    words.resize(at + width(rules), 0);
    let literals = match chain.and_then(|c| rules.chains.get(c)) {
        Some(c) => &c.literals,
        None => &rules.prefilter.literals,
    };
    literals.scan(value, words.get_mut(at..).unwrap_or_default());
    at as u32
}

/// Whether `slot` is set in `bits`.
pub fn has(bits: &[u64], slot: usize) -> bool {
    bits.get(slot / 64).is_some_and(|w| w & (1u64 << (slot % 64)) != 0)
}

fn key(src: &[u8]) -> (usize, usize) {
    (src.as_ptr() as usize, src.len())
}

fn width(rules: &RuleSet) -> usize {
    rules.prefilter.slots.div_ceil(64)
}

impl Cache {
    /// Empties the cache, keeping its capacity; false when it grew too large to be worth keeping.
    pub fn clear(&mut self) -> bool {
        if self.bytes.capacity() > KEEP_BYTES || self.words.capacity() > KEEP_BYTES / 8 {
            return false;
        }
        self.sources.clear();
        self.entries.clear();
        self.unions.clear();
        self.var_sources.clear();
        self.groups.clear();
        self.words.clear();
        self.bytes.clear();
        true
    }

    /// Drops what depends on the set of values (after the body adds arguments).
    pub fn values_changed(&mut self) {
        self.unions.clear();
        self.var_sources.clear();
        self.groups.clear();
    }

    /// A zeroed bit set at the end of `words`; its offset.
    fn new_bits(&mut self, rules: &RuleSet) -> u32 {
        let at = self.words.len();
        self.words.resize(at + width(rules), 0);
        at as u32
    }

    fn bits_at(&self, rules: &RuleSet, at: u32) -> &[u64] {
        let at = at as usize;
        self.words.get(at..at + width(rules)).unwrap_or_default()
    }

    /// The bits of the source value itself (every chain's literals), scanned once.
    fn source(&mut self, rules: &RuleSet, src: &[u8]) -> Source {
        if let Some(s) = self.sources.get(&key(src)) {
            return *s;
        }
        let s = Source { features: features::of(src), bits: scan(&mut self.words, rules, None, src) };
        self.sources.insert(key(src), s);
        s
    }

    /// Applies `chain` to `src` (once per pair); the entry's value. `features` are `src`'s
    /// when the caller has them already (see [`crate::transform::Transform::apply_changed`]).
    fn apply(&mut self, rules: &RuleSet, src: &[u8], chain: usize, mut features: Option<u16>) -> Value {
        let k = (src.as_ptr() as usize, src.len(), chain);
        let entry = self.entries.get(&k).copied().unwrap_or_default();
        if !matches!(entry.value, Value::Unknown) {
            return entry.value;
        }
        let mut value: Option<Vec<u8>> = None;
        for t in rules.chains.get(chain).map(|c| c.transforms.as_slice()).unwrap_or_default() {
            if let Some(next) = t.apply_changed(value.as_deref().unwrap_or(src), &mut features) {
                value = Some(next);
            }
        }
        let value = match value {
            None => Value::Same,
            Some(v) => {
                let at = self.bytes.len();
                self.bytes.extend_from_slice(&v);
                Value::At(at as u32, v.len() as u32)
            }
        };
        self.entries.insert(k, Entry { value, ..entry });
        value
    }

    fn value<'s>(&'s self, src: &'s [u8], value: Value) -> &'s [u8] {
        match value {
            Value::At(at, len) => self.bytes.get(at as usize..(at + len) as usize).unwrap_or_default(),
            _ => src,
        }
    }

    /// Offset of the prefilter bits of `src` through `chain`.
    fn bits_of(&mut self, rules: &RuleSet, src: &[u8], chain: usize) -> u32 {
        let triggers = rules.chains.get(chain).map_or(features::ALWAYS, |c| c.triggers);
        let s = self.source(rules, src);
        if features::leaves_unchanged(s.features, triggers) {
            return s.bits;
        }
        let k = (src.as_ptr() as usize, src.len(), chain);
        if let Some(at) = self.entries.get(&k).and_then(|e| e.bits) {
            return at;
        }
        let value = self.apply(rules, src, chain, Some(s.features));
        let at = match value {
            // Unchanged after all: the chain's literals are among the source's.
            Value::Same | Value::Unknown => s.bits,
            Value::At(at, len) => {
                let v = self.bytes.get(at as usize..(at + len) as usize).unwrap_or_default();
                scan(&mut self.words, rules, Some(chain), v)
            }
        };
        if let Some(e) = self.entries.get_mut(&k) {
            e.bits = Some(at);
        }
        at
    }

    /// The prefilter bits of `src` through `chain`.
    pub fn bits(&mut self, rules: &RuleSet, src: &[u8], chain: usize) -> &[u64] {
        let at = self.bits_of(rules, src, chain);
        self.bits_at(rules, at)
    }

    /// `src` through the chain.
    pub fn transformed<'s>(&'s mut self, rules: &RuleSet, src: &'s [u8], chain: usize) -> &'s [u8] {
        let value = self.apply(rules, src, chain, None);
        self.value(src, value)
    }

    /// The union of `chain`'s bits over the values of `var` when known without applying the
    /// chain: computed before, or the chain leaves all of them as they are (the variable's
    /// own union then serves, see [`Cache::var_source`]).
    fn known_union(&mut self, rules: &RuleSet, var: u8, chain: usize) -> Option<u32> {
        if let Some(at) = self.unions.get(union_index(chain, var)) {
            return Some(at);
        }
        let v = self.var_sources.get(usize::from(var))?;
        let triggers = rules.chains.get(chain).map_or(features::ALWAYS, |c| c.triggers);
        // Values without a stable address make every union unknowable, whatever the chain.
        if v.bits != ANY && !features::leaves_unchanged(v.features, triggers) {
            return None;
        }
        self.unions.insert(union_index(chain, var), v.bits);
        Some(v.bits)
    }

    /// [`Cache::known_union`], after computing `var`'s own union if needed.
    fn cheap_union<'v>(
        &mut self,
        rules: &RuleSet,
        var: u8,
        chain: usize,
        values: impl FnOnce(&mut dyn FnMut(&'v [u8])) -> bool,
    ) -> Option<u32> {
        if let Some(at) = self.known_union(rules, var, chain) {
            return Some(at);
        }
        self.var_source(rules, var, values);
        self.known_union(rules, var, chain)
    }

    /// Computes `var`'s own union and features once, from `values` (every value of it,
    /// borrowed from the request; false when it cannot give them all).
    fn var_source<'v>(&mut self, rules: &RuleSet, var: u8, values: impl FnOnce(&mut dyn FnMut(&'v [u8])) -> bool) {
        if self.var_sources.get(usize::from(var)).is_some() {
            return;
        }
        let acc = self.new_bits(rules);
        let mut features = 0;
        let complete = values(&mut |v: &'v [u8]| {
            let s = self.source(rules, v);
            features |= s.features;
            self.or_into(rules, acc, s.bits);
        });
        self.var_sources.insert(usize::from(var), VarSource { features, bits: if complete { acc } else { ANY } });
    }

    fn or_into(&mut self, rules: &RuleSet, acc: u32, bits: u32) {
        for i in 0..width(rules) {
            let w = self.words.get(bits as usize + i).copied().unwrap_or(0);
            if let Some(a) = self.words.get_mut(acc as usize + i) {
                *a |= w;
            }
        }
    }

    /// True when no value of the variables of gate group `group` holds `slot` through its
    /// chain; false when one may, or when a variable's union cannot be known without applying
    /// the chain (the full evaluation then decides). `values` gives a variable's values as for
    /// [`Cache::union_has`]. Once all are known, their union is kept for the group, which many
    /// rules share.
    pub fn unions_lack<'v>(
        &mut self,
        rules: &RuleSet,
        slot: usize,
        group: usize,
        mut values: impl FnMut(u8, &mut dyn FnMut(&'v [u8])) -> bool,
    ) -> bool {
        let Some(gate) = rules.gates.get(group) else { return false };
        let at = match self.groups.get(group) {
            Some(at) => at,
            None => {
                let acc = self.new_bits(rules);
                let mut rest = gate.vars;
                let mut any = false;
                while rest != 0 {
                    let var = rest.trailing_zeros() as u8;
                    rest &= rest - 1;
                    let Some(at) = self.cheap_union(rules, var, gate.chain, |each| values(var, each)) else {
                        return false;
                    };
                    match at {
                        ANY => any = true,
                        at => self.or_into(rules, acc, at),
                    }
                }
                let at = if any { ANY } else { acc };
                self.groups.insert(group, at);
                at
            }
        };
        at != ANY && !has(self.bits_at(rules, at), slot)
    }

    /// Whether `slot` is set in the union of the chain's bits over `values` (all values of
    /// one variable, borrowed from the request), cached under `var` until
    /// [`Cache::values_changed`]. `values` gives every value, or returns false when it cannot;
    /// it may be called twice.
    pub fn union_has<'v>(
        &mut self,
        rules: &RuleSet,
        var: u8,
        chain: usize,
        slot: usize,
        mut values: impl FnMut(&mut dyn FnMut(&'v [u8])) -> bool,
    ) -> bool {
        let at = match self.cheap_union(rules, var, chain, &mut values) {
            Some(at) => at,
            None => {
                let acc = self.new_bits(rules);
                let complete = values(&mut |v: &'v [u8]| {
                    let bits = self.bits_of(rules, v, chain);
                    self.or_into(rules, acc, bits);
                });
                let acc = if complete { acc } else { ANY };
                self.unions.insert(union_index(chain, var), acc);
                acc
            }
        };
        at == ANY || has(self.bits_at(rules, at), slot)
    }
}

#[cfg(test)]
mod tests {
    use super::Table;

    #[test]
    fn a_table_forgets_everything_at_each_generation_and_after_wrapping() {
        let mut t: Table<u32> = Table::default();
        assert_eq!(t.get(3), None);
        t.insert(3, 7);
        assert_eq!((t.get(3), t.get(2), t.get(4)), (Some(7), None, None));
        t.clear();
        assert_eq!(t.get(3), None);
        t.insert(1, 5);
        assert_eq!((t.get(1), t.get(3)), (Some(5), None));
        t.live = u32::MAX;
        t.insert(0, 9);
        t.clear();
        assert_eq!((t.get(0), t.get(1)), (None, None), "the generation wrapped");
        t.insert(2, 4);
        assert_eq!((t.get(0), t.get(2)), (None, Some(4)));
    }
}
