//! Many token buckets, one per key (client IP, API key, header value), in bounded memory.
//!
//! Keys are 64-bit hashes made with a per-process random SipHash key ([`hash_key`]), so an
//! attacker cannot aim for collisions. State is one theoretical arrival time per key in a
//! sharded map. A bucket that is full again (its time is in the past) carries no
//! information, so it is dropped first when a shard reaches its share of the capacity: that
//! eviction changes no decision. Only when every entry of a shard still owes tokens are
//! entries evicted that do (a sample of 32, least indebted first); such a key may then get
//! up to one extra burst, which is the price of a bound an attacker cannot push.

use crate::{Decision, Rate};
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

const SHARDS: usize = 64;
// Shards are picked by the top 6 bits of a key (`key >> 58`).
const _: () = assert!(SHARDS == 1 << 6);
const SAMPLE: usize = 32;

/// Passes already-random 64-bit keys through unchanged.
#[derive(Default)]
pub(crate) struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A map keyed by [`hash_key`] output.
pub(crate) type KeyMap<V> = HashMap<u64, V, BuildHasherDefault<Identity>>;
type Map = KeyMap<u64>;

/// A 64-bit key for anything hashable, unpredictable to clients (random per process).
pub fn hash_key<K: Hash + ?Sized>(key: &K) -> u64 {
    static STATE: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    STATE.get_or_init(std::collections::hash_map::RandomState::new).hash_one(key)
}

/// Token buckets per key, all with the same rate, in at most `capacity` entries.
#[derive(Debug)]
pub struct KeyedLimiter {
    rate: Rate,
    interval: u64,
    capacity_nanos: u64,
    per_shard: usize,
    shards: Box<[Mutex<Map>]>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Identity")
    }
}

impl KeyedLimiter {
    /// Buckets of `rate`, at most `max_keys` of them (rounded up to a multiple of 64).
    pub fn new(rate: Rate, max_keys: usize) -> KeyedLimiter {
        let interval = crate::Bucket::new(rate).interval_nanos();
        let per_shard = max_keys.div_ceil(SHARDS).max(1);
        KeyedLimiter {
            rate,
            interval,
            capacity_nanos: interval.saturating_mul(u64::from(rate.burst)),
            per_shard,
            shards: (0..SHARDS).map(|_| Mutex::new(Map::default())).collect(),
        }
    }

    /// The rate of every bucket.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    fn shard(&self, key: u64) -> &Mutex<Map> {
        // The low bits pick the map slot; shard on the high bits.
        #[allow(clippy::indexing_slicing)] // key >> 58 < 64 == SHARDS
        &self.shards[(key >> 58) as usize]
    }

    /// Takes a token from `key`'s bucket if it has one.
    pub fn check(&self, key: u64, now: u64) -> Decision {
        let Ok(mut map) = self.shard(key).lock() else {
            // A poisoned shard means a panic elsewhere; refuse rather than admit blindly.
            return Decision::Denied { retry_after: Duration::from_secs(1) };
        };
        if !map.contains_key(&key) && map.len() >= self.per_shard {
            self.make_room(&mut map, now);
        }
        let tat = map.entry(key).or_insert(0);
        let base = (*tat).max(now);
        let new_tat = base.saturating_add(self.interval);
        let ahead = new_tat - now;
        if ahead > self.capacity_nanos {
            return Decision::Denied { retry_after: Duration::from_nanos(ahead - self.capacity_nanos) };
        }
        *tat = new_tat;
        let remaining = (self.capacity_nanos - ahead) / self.interval;
        Decision::Allowed { remaining: u32::try_from(remaining).unwrap_or(u32::MAX) }
    }

    /// Tokens left for `key` now, without taking one.
    pub fn available(&self, key: u64, now: u64) -> u32 {
        let tat = self.shard(key).lock().ok().and_then(|m| m.get(&key).copied()).unwrap_or(0).max(now);
        let free = self.capacity_nanos.saturating_sub(tat - now) / self.interval;
        u32::try_from(free).unwrap_or(u32::MAX)
    }

    fn make_room(&self, map: &mut Map, now: u64) {
        // Lossless first: full buckets say nothing.
        map.retain(|_, tat| *tat > now);
        if map.len() < self.per_shard {
            return;
        }
        // Every entry is in debt: drop the least indebted of a sample.
        let mut sample: Vec<(u64, u64)> = map.iter().take(SAMPLE).map(|(k, t)| (*k, *t)).collect();
        sample.sort_unstable_by_key(|(_, t)| *t);
        let drop = (map.len() + 1 - self.per_shard).max(1);
        for (k, _) in sample.into_iter().take(drop.max(SAMPLE / 4)) {
            map.remove(&k);
        }
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.shards.iter().filter_map(|s| s.lock().ok().map(|m| m.len())).sum()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every full bucket (lossless); returns how many keys remain.
    pub fn sweep(&self, now: u64) -> usize {
        let mut left = 0;
        for s in self.shards.iter() {
            if let Ok(mut m) = s.lock() {
                m.retain(|_, tat| *tat > now);
                left += m.len();
            }
        }
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_000_000_000;

    #[test]
    fn keys_have_separate_buckets() {
        let l = KeyedLimiter::new(Rate::new(1.0, 2).unwrap(), 1000);
        let (a, b) = (hash_key("a"), hash_key("b"));
        assert!(l.check(a, T0).is_allowed());
        assert!(l.check(a, T0).is_allowed());
        assert!(!l.check(a, T0).is_allowed());
        assert!(l.check(b, T0).is_allowed(), "b is not affected by a");
        assert_eq!(l.available(a, T0 + 1_000_000_000), 1);
    }

    #[test]
    fn memory_stays_bounded_under_key_rotation() {
        let l = KeyedLimiter::new(Rate::new(1.0, 5).unwrap(), 6_400);
        for i in 0..200_000u64 {
            l.check(hash_key(&i), T0 + i);
        }
        assert!(l.len() <= 6_400 + SHARDS, "{} keys held", l.len());
    }

    #[test]
    fn eviction_of_full_buckets_changes_no_decision() {
        // Rate 1000/s: after 10 ms a key's single token is back; its entry may go.
        let l = KeyedLimiter::new(Rate::new(1000.0, 1).unwrap(), 64);
        let hot = hash_key("hot");
        for i in 0..10_000u64 {
            let now = T0 + i * 1_000_000;
            l.check(hash_key(&i), now);
            if i % 50 == 0 {
                assert!(l.check(hot, now).is_allowed(), "hot key refused at {i}");
                assert!(!l.check(hot, now).is_allowed(), "hot key admitted twice at {i}");
            }
        }
    }

    #[test]
    fn hashes_are_stable_within_a_process_and_spread() {
        assert_eq!(hash_key("x"), hash_key("x"));
        assert_ne!(hash_key("x"), hash_key("y"));
    }

    #[test]
    fn concurrent_callers_on_one_key_admit_exactly_burst() {
        let l = std::sync::Arc::new(KeyedLimiter::new(Rate::new(0.001, 500).unwrap(), 1000));
        let key = hash_key("shared");
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || (0..500).filter(|_| l.check(key, T0).is_allowed()).count())
            })
            .collect();
        let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(total, 500);
    }
}
