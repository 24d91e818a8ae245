//! Request counts per key over a sliding window (for per-IP rate rules), bounded memory.
//!
//! Each key keeps a ring of 13 sub-window counts: the 12 slots one window spans, plus the
//! oldest slot, which the sliding window still partly covers and which is weighted by that
//! overlap (rounded up). The estimate can therefore be off only by how the requests of one
//! slot (1/12 of the window) were spread inside it, and it errs towards counting them. A key
//! is *over* when its estimate exceeds the limit, and stays over exactly as long as it does.
//! Counts saturate at 65,535 per slot, far above any useful limit.

use crate::keyed::KeyMap;
use std::sync::Mutex;

/// Slots per window.
const PER_WINDOW: u64 = 12;
const SLOTS: usize = PER_WINDOW as usize + 1;
const SHARDS: usize = 64;
// Shards are picked by the top 6 bits of a key (`key >> 58`).
const _: () = assert!(SHARDS == 1 << 6);

/// What the counter knows about one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowState {
    /// Estimated requests in the sliding window, this one included.
    pub rate: u64,
    /// When the key went over the limit (clock nanoseconds), if it is over.
    pub over_since: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Start of the current slot.
    start: u64,
    /// Index of the current slot in `counts`.
    head: u8,
    counts: [u16; SLOTS],
    /// When it went over (0: not over).
    over_since: u64,
}

/// Sliding-window counters keyed by 64-bit keys, at most `max_keys` of them.
#[derive(Debug)]
pub struct WindowCounter {
    slot: u64,
    limit: u64,
    per_shard: usize,
    shards: Box<[Mutex<KeyMap<Entry>>]>,
}

impl WindowCounter {
    /// `limit` requests per `window_nanos`, for at most `max_keys` keys.
    pub fn new(limit: u64, window_nanos: u64, max_keys: usize) -> WindowCounter {
        WindowCounter {
            slot: (window_nanos / PER_WINDOW).max(1),
            limit,
            per_shard: max_keys.div_ceil(SHARDS).max(1),
            shards: (0..SHARDS).map(|_| Mutex::new(KeyMap::default())).collect(),
        }
    }

    fn shard(&self, key: u64) -> &Mutex<KeyMap<Entry>> {
        #[allow(clippy::indexing_slicing)] // key >> 58 < 64 == SHARDS
        &self.shards[(key >> 58) as usize]
    }

    fn fresh(&self, now: u64) -> Entry {
        Entry { start: now - now % self.slot, head: 0, counts: [0; SLOTS], over_since: 0 }
    }

    /// Moves the ring forward to the slot containing `now`, clearing the slots passed.
    fn roll(&self, e: &mut Entry, now: u64) {
        let current = now - now % self.slot;
        if current <= e.start {
            return;
        }
        let steps = (current - e.start) / self.slot;
        if steps >= SLOTS as u64 {
            e.counts = [0; SLOTS];
        } else {
            for _ in 0..steps {
                e.head = (e.head + 1) % SLOTS as u8;
                if let Some(c) = e.counts.get_mut(usize::from(e.head)) {
                    *c = 0;
                }
            }
        }
        e.start = current;
    }

    fn estimate(&self, e: &Entry, now: u64) -> u64 {
        let oldest = usize::from((e.head + 1) % SLOTS as u8);
        let mut sum = 0u64;
        for (i, c) in e.counts.iter().enumerate() {
            if i != oldest {
                sum += u64::from(*c);
            }
        }
        // The oldest slot overlaps the window by (start + slot - now) of its length.
        let overlap = (e.start + self.slot).saturating_sub(now);
        let old = u128::from(e.counts.get(oldest).copied().unwrap_or(0));
        sum + ((old * u128::from(overlap)).div_ceil(u128::from(self.slot))) as u64
    }

    fn state(&self, e: &Entry, now: u64) -> WindowState {
        let rate = self.estimate(e, now);
        WindowState { rate, over_since: (rate > self.limit && e.over_since != 0).then_some(e.over_since) }
    }

    /// Counts one request for `key` and returns the state after it.
    pub fn hit(&self, key: u64, now: u64) -> WindowState {
        let Ok(mut map) = self.shard(key).lock() else { return WindowState { rate: 0, over_since: None } };
        if !map.contains_key(&key) && map.len() >= self.per_shard {
            self.make_room(&mut map, now);
        }
        let e = map.entry(key).or_insert_with(|| self.fresh(now));
        self.roll(e, now);
        if let Some(c) = e.counts.get_mut(usize::from(e.head)) {
            *c = c.saturating_add(1);
        }
        let rate = self.estimate(e, now);
        if rate > self.limit {
            if e.over_since == 0 {
                e.over_since = now;
            }
        } else {
            e.over_since = 0;
        }
        self.state(e, now)
    }

    fn make_room(&self, map: &mut KeyMap<Entry>, now: u64) {
        // Keys whose whole ring has slid out carry nothing.
        let horizon = self.slot * SLOTS as u64;
        map.retain(|_, e| now.saturating_sub(e.start) < horizon);
        if map.len() >= self.per_shard {
            // Never drop a key that is over the limit: that would unblock it.
            let victims: Vec<u64> = map.iter().filter(|(_, e)| e.over_since == 0).map(|(k, _)| *k).take(8).collect();
            for k in victims {
                map.remove(&k);
            }
        }
    }

    /// The state of `key` now, without counting.
    pub fn peek(&self, key: u64, now: u64) -> Option<WindowState> {
        let map = self.shard(key).lock().ok()?;
        let mut e = *map.get(&key)?;
        self.roll(&mut e, now);
        Some(self.state(&e, now))
    }

    /// Keys over the limit now, with their state.
    pub fn over(&self, now: u64) -> Vec<(u64, WindowState)> {
        let mut out = Vec::new();
        for s in self.shards.iter() {
            let Ok(map) = s.lock() else { continue };
            for (k, e) in map.iter() {
                let mut e = *e;
                self.roll(&mut e, now);
                let st = self.state(&e, now);
                if st.over_since.is_some() {
                    out.push((*k, st));
                }
            }
        }
        out
    }

    /// Raises `key`'s estimate to at least `rate` by counting the difference in the current
    /// slot (another cluster node saw the requests), and returns the state after it. The
    /// key then slides back under the limit like any other.
    pub fn raise_to(&self, key: u64, rate: u64, now: u64) -> WindowState {
        let Ok(mut map) = self.shard(key).lock() else { return WindowState { rate: 0, over_since: None } };
        if !map.contains_key(&key) && map.len() >= self.per_shard {
            self.make_room(&mut map, now);
        }
        let e = map.entry(key).or_insert_with(|| self.fresh(now));
        self.roll(e, now);
        let missing = rate.saturating_sub(self.estimate(e, now));
        if let Some(c) = e.counts.get_mut(usize::from(e.head)) {
            *c = c.saturating_add(u16::try_from(missing).unwrap_or(u16::MAX));
        }
        if self.estimate(e, now) > self.limit && e.over_since == 0 {
            e.over_since = now;
        }
        self.state(e, now)
    }

    /// Forgets `key` (an operator unblocking it).
    pub fn forget(&self, key: u64) -> bool {
        self.shard(key).lock().is_ok_and(|mut m| m.remove(&key).is_some())
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.shards.iter().filter_map(|s| s.lock().ok().map(|m| m.len())).sum()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;
    const T0: u64 = 1000 * SEC;

    /// The exact count of a hit list within (now - window, now].
    fn truth(hits: &[u64], now: u64, window: u64) -> u64 {
        hits.iter().filter(|t| **t <= now && **t + window > now).count() as u64
    }

    #[test]
    fn goes_over_and_comes_back_as_the_window_slides() {
        // 10 per 60 s; 11 hits at T0 .. T0+10 s
        let w = WindowCounter::new(10, 60 * SEC, 100);
        for i in 0..10 {
            assert!(w.hit(1, T0 + i * SEC).over_since.is_none());
        }
        let s = w.hit(1, T0 + 10 * SEC);
        assert_eq!(s.rate, 11);
        assert_eq!(s.over_since, Some(T0 + 10 * SEC));
        // 50 s later all 11 are still inside the window
        assert!(w.peek(1, T0 + 55 * SEC).unwrap().over_since.is_some());
        // once the first hits slide out, it is under again
        assert!(w.peek(1, T0 + 75 * SEC).unwrap().over_since.is_none());
        assert!(w.hit(2, T0).over_since.is_none(), "other keys are independent");
    }

    #[test]
    fn a_burst_cannot_hide_across_a_slot_boundary() {
        let w = WindowCounter::new(10, 60 * SEC, 100);
        let start = T0 - T0 % (60 * SEC);
        for _ in 0..10 {
            w.hit(7, start + 59 * SEC);
        }
        let s = w.hit(7, start + 61 * SEC);
        assert!(s.over_since.is_some(), "{s:?}");
    }

    #[test]
    fn the_estimate_tracks_the_exact_count_closely() {
        // Pseudo-random traffic; the estimate may exceed the truth by at most one slot's
        // requests and never undercounts by more than one slot's either.
        let window = 60 * SEC;
        let w = WindowCounter::new(u64::MAX, window, 100);
        let mut seed = 42u64;
        let mut hits = Vec::new();
        let mut now = T0;
        for _ in 0..3000 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            now += (seed >> 33) % (400_000_000);
            hits.push(now);
            let est = w.hit(3, now).rate;
            let exact = truth(&hits, now, window);
            let slot_hits =
                hits.iter().filter(|t| **t + window + window / 12 > now && **t + window <= now).count() as u64;
            assert!(
                est + slot_hits >= exact && est <= exact + slot_hits + 1,
                "est {est} exact {exact} slot {slot_hits}"
            );
        }
    }

    #[test]
    fn listing_and_forgetting() {
        let w = WindowCounter::new(1, 60 * SEC, 100);
        w.hit(5, T0);
        w.hit(5, T0);
        assert_eq!(w.over(T0).len(), 1);
        assert!(w.forget(5));
        assert!(w.over(T0).is_empty());
    }

    #[test]
    fn bounded_and_blocked_keys_are_kept() {
        let w = WindowCounter::new(100, 60 * SEC, 640);
        for _ in 0..200 {
            w.hit(u64::MAX, T0);
        }
        for k in 0..100_000u64 {
            w.hit(k.wrapping_mul(0x9e37_79b9_7f4a_7c15), T0 + k);
        }
        assert!(w.len() <= 640 + SHARDS, "{}", w.len());
        assert!(w.peek(u64::MAX, T0 + 100_000).unwrap().over_since.is_some(), "a blocked key survived the churn");
    }
}
