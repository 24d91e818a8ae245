//! Per-transaction cache for the prefilter and the transformations, keyed by the source
//! value's identity: values borrowed from the request do not move while the transaction
//! lives, and values with the same bytes (a JSON array's repeated codes and names, up to
//! [`MAX_SHARED`] bytes) share one identity, so what a chain makes of them is computed once:
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
use hashbrown::{DefaultHashBuilder, HashTable};
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

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

/// One identity: where its bytes are in [`Cache::text`] (when shared by content), and its
/// source facts once scanned.
#[derive(Debug, Clone, Copy)]
struct Identity {
    at: u32,
    len: u32,
    source: Option<Source>,
}

/// Identities whose entries are kept in the flat table (one row of chains each; a request
/// with more values keeps the rest in a map).
const FLAT_IDS: usize = 1024;

/// Longest value given an identity by content: repeated values are short (codes, names,
/// flags), and a long one would be hashed and copied for nothing.
pub const MAX_SHARED: usize = 256;

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
    /// Identities by the value's address and length.
    ids: Map<(usize, usize), u32>,
    /// Identities of values up to [`MAX_SHARED`] bytes by content (their bytes in `text`).
    by_content: HashTable<u32>,
    hasher: DefaultHashBuilder,
    identities: Vec<Identity>,
    text: Vec<u8>,
    /// Per (identity, chain): in a flat table for the first [`FLAT_IDS`] identities, in a
    /// map beyond.
    entries: Table<Entry>,
    more_entries: Map<(u32, usize), Entry>,
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

/// The bytes an identity shared by content was given for (empty for the others).
fn shared_bytes<'t>(identities: &[Identity], text: &'t [u8], id: u32) -> &'t [u8] {
    let Some(i) = identities.get(id as usize) else { return &[] };
    text.get(i.at as usize..(i.at + i.len) as usize).unwrap_or_default()
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
        let kept =
            [self.bytes.capacity(), self.text.capacity(), self.words.capacity() * 8, self.identities.capacity() * 16];
        if kept.iter().any(|&b| b > KEEP_BYTES) {
            return false;
        }
        self.ids.clear();
        self.by_content.clear();
        self.identities.clear();
        self.text.clear();
        self.entries.clear();
        self.more_entries.clear();
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

    /// The identity of `src` (borrowed from the request): the same for the same address, and
    /// for the same bytes up to [`MAX_SHARED`] long.
    #[inline]
    pub fn id(&mut self, src: &[u8]) -> u32 {
        match self.ids.get(&key(src)) {
            Some(id) => *id,
            None => self.first_sight(src),
        }
    }

    /// [`Cache::id`] for an address not seen before (kept out of line: the lookup is hot).
    #[inline(never)]
    fn first_sight(&mut self, src: &[u8]) -> u32 {
        let id = if src.len() <= MAX_SHARED { self.shared_id(src) } else { self.new_id(0, 0) };
        self.ids.insert(key(src), id);
        id
    }

    fn new_id(&mut self, at: usize, len: usize) -> u32 {
        let id = self.identities.len() as u32;
        self.identities.push(Identity { at: at as u32, len: len as u32, source: None });
        id
    }

    /// The identity of the bytes `src`, new when no value so far had them.
    fn shared_id(&mut self, src: &[u8]) -> u32 {
        let hash = self.hasher.hash_one(src);
        let Cache { by_content, identities, text, .. } = self;
        if let Some(id) = by_content.find(hash, |id| shared_bytes(identities, text, *id) == src) {
            return *id;
        }
        let at = self.text.len();
        self.text.extend_from_slice(src);
        let id = self.new_id(at, src.len());
        let Cache { by_content, hasher, identities, text, .. } = self;
        by_content.insert_unique(hash, id, |id| hasher.hash_one(shared_bytes(identities, text, *id)));
        id
    }

    fn entry(&self, rules: &RuleSet, (id, chain): (u32, usize)) -> Option<Entry> {
        match id as usize {
            i if i < FLAT_IDS && chain < rules.chains.len() => self.entries.get(i * rules.chains.len() + chain),
            _ => self.more_entries.get(&(id, chain)).copied(),
        }
    }

    fn set_entry(&mut self, rules: &RuleSet, (id, chain): (u32, usize), entry: Entry) {
        match id as usize {
            i if i < FLAT_IDS && chain < rules.chains.len() => {
                self.entries.insert(i * rules.chains.len() + chain, entry)
            }
            _ => _ = self.more_entries.insert((id, chain), entry),
        }
    }

    /// The bits of the source value itself (every chain's literals), scanned once.
    #[inline]
    fn source(&mut self, rules: &RuleSet, id: u32, src: &[u8]) -> Source {
        match self.identities.get(id as usize).and_then(|i| i.source) {
            Some(s) => s,
            None => self.scan_source(rules, id, src),
        }
    }

    #[inline(never)]
    fn scan_source(&mut self, rules: &RuleSet, id: u32, src: &[u8]) -> Source {
        let s = Source { features: features::of(src), bits: scan(&mut self.words, rules, None, src) };
        if let Some(i) = self.identities.get_mut(id as usize) {
            i.source = Some(s);
        }
        s
    }

    /// Applies `chain` to `src` (once per pair); the entry's value. `features` are `src`'s
    /// when the caller has them already (see [`crate::transform::Transform::apply_changed`]).
    fn apply(&mut self, rules: &RuleSet, id: u32, src: &[u8], chain: usize, mut features: Option<u16>) -> Value {
        let k = (id, chain);
        let entry = self.entry(rules, k).unwrap_or_default();
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
        self.set_entry(rules, k, Entry { value, ..entry });
        value
    }

    fn value<'s>(&'s self, src: &'s [u8], value: Value) -> &'s [u8] {
        match value {
            Value::At(at, len) => self.bytes.get(at as usize..(at + len) as usize).unwrap_or_default(),
            _ => src,
        }
    }

    /// Offset of the prefilter bits of `src` through `chain`.
    fn bits_of(&mut self, rules: &RuleSet, id: u32, src: &[u8], chain: usize) -> u32 {
        let triggers = rules.chains.get(chain).map_or(features::ALWAYS, |c| c.triggers);
        let s = self.source(rules, id, src);
        if features::leaves_unchanged(s.features, triggers) {
            return s.bits;
        }
        let k = (id, chain);
        if let Some(at) = self.entry(rules, k).and_then(|e| e.bits) {
            return at;
        }
        let value = self.apply(rules, id, src, chain, Some(s.features));
        let at = match value {
            // Unchanged after all: the chain's literals are among the source's.
            Value::Same | Value::Unknown => s.bits,
            Value::At(at, len) => {
                let v = self.bytes.get(at as usize..(at + len) as usize).unwrap_or_default();
                scan(&mut self.words, rules, Some(chain), v)
            }
        };
        if let Some(e) = self.entry(rules, k) {
            self.set_entry(rules, k, Entry { bits: Some(at), ..e });
        }
        at
    }

    /// The prefilter bits of `src` through `chain`.
    pub fn bits(&mut self, rules: &RuleSet, id: u32, src: &[u8], chain: usize) -> &[u64] {
        let at = self.bits_of(rules, id, src, chain);
        self.bits_at(rules, at)
    }

    /// `src` through the chain.
    pub fn transformed<'s>(&'s mut self, rules: &RuleSet, id: u32, src: &'s [u8], chain: usize) -> &'s [u8] {
        let value = self.apply(rules, id, src, chain, None);
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
            let id = self.id(v);
            let s = self.source(rules, id, v);
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

    /// True when no value of the variables of gate group `group` holds one of `slots` (each
    /// needed) through its chain; false when each may be held, or when a variable's union cannot be known without applying
    /// the chain (the full evaluation then decides). `values` gives a variable's values as for
    /// [`Cache::union_has`]. Once all are known, their union is kept for the group, which many
    /// rules share.
    pub fn unions_lack<'v>(
        &mut self,
        rules: &RuleSet,
        slots: &[usize],
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
        at != ANY && slots.iter().any(|&slot| !has(self.bits_at(rules, at), slot))
    }

    /// Whether every one of `slots` is set in the union of the chain's bits over `values` (all
    /// values of one variable, borrowed from the request), cached under `var` until
    /// [`Cache::values_changed`]. `values` gives every value, or returns false when it cannot;
    /// it may be called twice.
    pub fn union_has<'v>(
        &mut self,
        rules: &RuleSet,
        var: u8,
        chain: usize,
        slots: &[usize],
        mut values: impl FnMut(&mut dyn FnMut(&'v [u8])) -> bool,
    ) -> bool {
        let at = match self.cheap_union(rules, var, chain, &mut values) {
            Some(at) => at,
            None => {
                let acc = self.new_bits(rules);
                let complete = values(&mut |v: &'v [u8]| {
                    let id = self.id(v);
                    let bits = self.bits_of(rules, id, v, chain);
                    self.or_into(rules, acc, bits);
                });
                let acc = if complete { acc } else { ANY };
                self.unions.insert(union_index(chain, var), acc);
                acc
            }
        };
        at == ANY || slots.iter().all(|&slot| has(self.bits_at(rules, at), slot))
    }
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
