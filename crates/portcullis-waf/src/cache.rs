//! Per-transaction cache of transformed values and their prefilter hits, keyed by the source
//! value's identity (it is borrowed from the request and does not move) and the chain.

use crate::rules::ChainFilter;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A multiply-rotate hasher for the (pointer, length, chain) keys.
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

#[derive(Debug, Default)]
pub struct Entry {
    /// The transformed value; `None` when the chain left it unchanged.
    pub value: Option<Vec<u8>>,
    /// Prefilter bits of the chain's rules whose literals occur, computed on first need.
    pub hits: Option<Vec<u64>>,
}

/// Whether the rule in `slot` may match (one of its literals occurs in `value`).
pub fn may_match(hits: &mut Option<Vec<u64>>, slot: usize, chain: &ChainFilter, value: &[u8]) -> bool {
    let hits = hits.get_or_insert_with(|| scan(chain, value));
    hits.get(slot / 64).is_some_and(|w| w & (1u64 << (slot % 64)) != 0)
}

fn scan(chain: &ChainFilter, value: &[u8]) -> Vec<u64> {
    let mut bits = vec![0u64; chain.slots.div_ceil(64)];
    if let Some(ac) = &chain.automaton {
        for m in ac.find_overlapping_iter(value) {
            for &slot in chain.literal_slots.get(m.pattern().as_usize()).map(Vec::as_slice).unwrap_or_default() {
                if let Some(w) = bits.get_mut(slot / 64) {
                    *w |= 1u64 << (slot % 64);
                }
            }
        }
    }
    bits
}

#[derive(Debug, Default)]
pub struct Cache {
    map: HashMap<(usize, usize, usize), Entry, BuildHasherDefault<KeyHasher>>,
}

impl Cache {
    /// The entry for `src` through `chain`, transforming on first use.
    pub fn entry(&mut self, src: &[u8], chain_id: usize, chain: &ChainFilter) -> &mut Entry {
        self.map.entry((src.as_ptr() as usize, src.len(), chain_id)).or_insert_with(|| {
            let mut value: Option<Vec<u8>> = None;
            for t in &chain.transforms {
                let input = value.as_deref().unwrap_or(src);
                if let Some(next) = t.apply(input) {
                    value = Some(next);
                }
            }
            Entry { value, hits: None }
        })
    }
}
