//! Per-transaction cache for the prefilter and the transformations, keyed by the source
//! value's identity (it is borrowed from the request and does not move while the
//! transaction lives):
//!
//! - per source value: its byte features and the prefilter bits of the literals the one
//!   global automaton found in it; every chain that leaves the value unchanged (the common
//!   case for clean values) uses these bits;
//! - per (value, chain) otherwise: the transformed value and its own bits;
//! - per (variable, chain): the union over all the variable's values, so a rule whose
//!   literals occur in none of them is skipped without looking at any value.

use crate::features;
use crate::rules::RuleSet;
use std::borrow::Cow;
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

#[derive(Debug)]
struct Source {
    features: u16,
    bits: Box<[u64]>,
}

#[derive(Debug, Default)]
struct Entry {
    /// `Some(None)`: the chain leaves the value unchanged.
    value: Option<Option<Vec<u8>>>,
    bits: Option<Box<[u64]>>,
}

#[derive(Debug, Default)]
pub struct Cache {
    sources: Map<(usize, usize), Source>,
    entries: Map<(usize, usize, usize), Entry>,
    unions: Map<(u8, usize), Box<[u64]>>,
}

/// The slots of every literal of `ac` (`literal_slots` maps its patterns) found in `value`.
fn scan_with(
    slots: usize,
    ac: Option<&aho_corasick::AhoCorasick>,
    literal_slots: &[Vec<u32>],
    value: &[u8],
) -> Box<[u64]> {
    let mut bits = vec![0u64; slots.div_ceil(64)].into_boxed_slice();
    if let Some(ac) = ac {
        for m in ac.find_overlapping_iter(value) {
            for &slot in literal_slots.get(m.pattern().as_usize()).map(Vec::as_slice).unwrap_or_default() {
                if let Some(w) = bits.get_mut(slot as usize / 64) {
                    *w |= 1u64 << (slot % 64);
                }
            }
        }
    }
    bits
}

/// Every slot whose literal occurs in `value` (all chains).
fn scan(rules: &RuleSet, value: &[u8]) -> Box<[u64]> {
    let p = &rules.prefilter;
    scan_with(p.slots, p.automaton.as_ref(), &p.literal_slots, value)
}

/// The slots of `chain`'s rules whose literal occurs in `value`.
fn scan_chain(rules: &RuleSet, chain: usize, value: &[u8]) -> Box<[u64]> {
    match rules.chains.get(chain) {
        Some(c) => scan_with(rules.prefilter.slots, c.automaton.as_ref(), &c.literal_slots, value),
        None => scan(rules, value),
    }
}

fn apply(rules: &RuleSet, chain: usize, src: &[u8]) -> Option<Vec<u8>> {
    let mut value: Option<Vec<u8>> = None;
    for t in rules.chains.get(chain).map(|c| c.transforms.as_slice()).unwrap_or_default() {
        if let Some(next) = t.apply(value.as_deref().unwrap_or(src)) {
            value = Some(next);
        }
    }
    value
}

/// Whether `slot` is set in `bits`.
pub fn has(bits: &[u64], slot: usize) -> bool {
    bits.get(slot / 64).is_some_and(|w| w & (1u64 << (slot % 64)) != 0)
}

fn key(src: &[u8]) -> (usize, usize) {
    (src.as_ptr() as usize, src.len())
}

impl Cache {
    pub fn new() -> Cache {
        Cache {
            sources: Map::with_capacity_and_hasher(128, Default::default()),
            entries: Map::with_capacity_and_hasher(128, Default::default()),
            unions: Map::with_capacity_and_hasher(64, Default::default()),
        }
    }

    /// Drops what depends on the set of values (after the body adds arguments).
    pub fn values_changed(&mut self) {
        self.unions.clear();
    }

    /// The prefilter bits of `src` through `chain`; `None` when the chain changes `src`
    /// and the bits are those of the transformed value (then in the entry).
    fn source_bits(&mut self, rules: &RuleSet, src: &[u8], chain: usize) -> Option<&[u64]> {
        let triggers = rules.chains.get(chain).map_or(features::ALWAYS, |c| c.triggers);
        let s = self
            .sources
            .entry(key(src))
            .or_insert_with(|| Source { features: features::of(src), bits: scan(rules, src) });
        (s.features & triggers == 0).then_some(&*s.bits)
    }

    /// The prefilter bits of `src` through `chain`.
    pub fn bits(&mut self, rules: &RuleSet, src: &[u8], chain: usize) -> &[u64] {
        if self.source_bits(rules, src, chain).is_some() {
            return self.sources.get(&key(src)).map(|s| &*s.bits).unwrap_or_default();
        }
        let entry = self.entries.entry((src.as_ptr() as usize, src.len(), chain)).or_default();
        if entry.bits.is_none() {
            let value = entry.value.get_or_insert_with(|| apply(rules, chain, src));
            entry.bits = Some(scan_chain(rules, chain, value.as_deref().unwrap_or(src)));
        }
        entry.bits.as_deref().unwrap_or_default()
    }

    /// `src` through the chain.
    pub fn transformed<'s>(&'s mut self, rules: &RuleSet, src: &'s [u8], chain: usize) -> &'s [u8] {
        let entry = self.entries.entry((src.as_ptr() as usize, src.len(), chain)).or_default();
        entry.value.get_or_insert_with(|| apply(rules, chain, src)).as_deref().unwrap_or(src)
    }

    /// The union of the chain's bits over `values` (all values of one variable), cached under
    /// `var` until [`Cache::values_changed`].
    pub fn union<'v>(
        &mut self,
        rules: &RuleSet,
        var: u8,
        chain: usize,
        values: impl FnOnce() -> Vec<Cow<'v, [u8]>>,
    ) -> &[u64] {
        if !self.unions.contains_key(&(var, chain)) {
            let mut acc = vec![0u64; rules.prefilter.slots.div_ceil(64)].into_boxed_slice();
            for v in values() {
                let owned;
                let bits: &[u64] = match &v {
                    Cow::Borrowed(src) => self.bits(rules, src, chain),
                    Cow::Owned(own) => {
                        owned = scan_chain(rules, chain, apply(rules, chain, own).as_deref().unwrap_or(own));
                        &owned
                    }
                };
                for (a, b) in acc.iter_mut().zip(bits) {
                    *a |= b;
                }
            }
            self.unions.insert((var, chain), acc);
        }
        self.unions.get(&(var, chain)).map(|b| &**b).unwrap_or_default()
    }
}
