//! Quota periods (UTC day, ISO week, calendar month, optionally shifted) and the per-key
//! counter that enforces them.
//!
//! A counter packs the period it counts for (in minutes since the epoch) and the count into
//! one `AtomicU64` updated by compare-and-swap: concurrent requests admit exactly `limit`
//! per period, and the switch to a new period is part of the same atomic step.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

/// Length of a quota period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// 00:00 to 00:00 UTC (plus offset).
    Day,
    /// Monday 00:00 to Monday 00:00 UTC (plus offset).
    Week,
    /// The 1st 00:00 to the next 1st 00:00 UTC (plus offset).
    Month,
}

impl Period {
    /// As written in config.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
        }
    }
}

const DAY: i64 = 86_400;

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Civil year and month of a day number.
fn civil_month(days: i64) -> (i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m)
}

/// Start and end (unix seconds) of the period containing `now`, shifted by `offset` seconds
/// (a day period with offset 7200 runs 02:00 to 02:00 UTC).
pub fn bounds(now: i64, period: Period, offset: i64) -> (i64, i64) {
    let t = now - offset;
    let day = t.div_euclid(DAY);
    let (start, end) = match period {
        Period::Day => (day * DAY, (day + 1) * DAY),
        Period::Week => {
            // 1970-01-01 was a Thursday: Monday-based weekday = (days + 3) mod 7.
            let monday = day - (day + 3).rem_euclid(7);
            (monday * DAY, (monday + 7) * DAY)
        }
        Period::Month => {
            let (y, m) = civil_month(day);
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            (days_from_civil(y, m, 1) * DAY, days_from_civil(ny, nm, 1) * DAY)
        }
    };
    (start + offset, end + offset)
}

/// One key's quota count as this node knows it: the last total the store returned plus what
/// this node counted since, and that local part (the delta not yet added to the store).
///
/// Stores add deltas, never overwrite totals, so several gateway nodes (or a gateway and the
/// `keys` CLI) sharing one store count every request once. A delta that could not be written
/// (store down) stays pending and is added when the store is back.
#[derive(Debug, Default)]
pub struct QuotaCell {
    /// period start in minutes since the epoch (high 32 bits) | count (low 32 bits)
    packed: AtomicU64,
    /// the same packing: the period and how many of its requests the store has not seen
    pending: AtomicU64,
    /// flushes left during which the total is read back even with nothing to add, so a
    /// node that serves a key keeps learning what the other nodes counted for it
    watch: AtomicU8,
}

/// Flushes (seconds) a key is watched after this node last counted a request for it.
const WATCH_FLUSHES: u8 = 30;

fn pack(period_min: u32, used: u32) -> u64 {
    (u64::from(period_min) << 32) | u64::from(used)
}

fn unpack(v: u64) -> (u32, u32) {
    ((v >> 32) as u32, v as u32)
}

fn minutes(start: i64) -> u32 {
    u32::try_from(start.div_euclid(60)).unwrap_or(0)
}

fn saturate(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Adds `n` to a packed count of `period`; a count of an older period starts over.
fn add_in_period(cell: &AtomicU64, period: u32, n: u32) {
    let _ = cell.fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
        let (p, used) = unpack(cur);
        match p.cmp(&period) {
            std::cmp::Ordering::Equal => Some(pack(p, used.saturating_add(n))),
            std::cmp::Ordering::Less => Some(pack(period, n)),
            std::cmp::Ordering::Greater => None,
        }
    });
}

impl QuotaCell {
    /// A cell holding `used` requests of the period starting at `start`.
    pub fn restored(start: i64, used: u64) -> QuotaCell {
        QuotaCell {
            packed: AtomicU64::new(pack(minutes(start), saturate(used))),
            pending: AtomicU64::new(0),
            watch: AtomicU8::new(0),
        }
    }

    /// Counts one request in the period starting at `start` if fewer than `limit` were;
    /// returns how many remain, or `None` when the quota is used up.
    pub fn try_take(&self, start: i64, limit: u64) -> Option<u64> {
        let period = minutes(start);
        let limit = saturate(limit);
        let mut cur = self.packed.load(Ordering::Acquire);
        loop {
            let (p, used) = unpack(cur);
            let used = if p == period { used } else { 0 };
            if used >= limit {
                return None;
            }
            match self.packed.compare_exchange_weak(cur, pack(period, used + 1), Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    add_in_period(&self.pending, period, 1);
                    self.watch.store(WATCH_FLUSHES, Ordering::Relaxed);
                    return Some(u64::from(limit - used - 1));
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// Requests counted in the period starting at `start`.
    pub fn used(&self, start: i64) -> u64 {
        let (p, used) = unpack(self.packed.load(Ordering::Acquire));
        if p == minutes(start) { u64::from(used) } else { 0 }
    }

    /// Takes the requests counted here since the last flush: `(period start, count)`, or
    /// `None` when there are none. Give them back with [`QuotaCell::unflushed`] if the store
    /// cannot take them.
    pub fn take_pending(&self) -> Option<(i64, u64)> {
        let (p, n) = unpack(self.pending.swap(0, Ordering::AcqRel));
        if n > 0 {
            return Some((i64::from(p) * 60, u64::from(n)));
        }
        // Nothing to add, but still watched: a zero delta reads the total back.
        let watched = self.watch.fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| w.checked_sub(1)).is_ok();
        let (p, _) = unpack(self.packed.load(Ordering::Acquire));
        (watched && p > 0).then(|| (i64::from(p) * 60, 0))
    }

    /// Puts back a delta the store did not take (it is sent again with the next flush).
    pub fn unflushed(&self, start: i64, n: u64) {
        add_in_period(&self.pending, minutes(start), saturate(n));
    }

    /// Takes the store's total for a period: the count becomes that total plus what was
    /// counted here after the flush. A total for an older period is ignored.
    pub fn reconcile(&self, start: i64, total: u64) {
        let period = minutes(start);
        let _ = self.packed.fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
            let (p, _) = unpack(cur);
            if p > period {
                return None;
            }
            let (pp, pn) = unpack(self.pending.load(Ordering::Acquire));
            let local = if pp == period { pn } else { 0 };
            Some(pack(period, saturate(total).saturating_add(local)))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-23 20:14:41 UTC, a Monday
    const NOW: i64 = 1_795_464_881;

    #[test]
    fn day_week_month_bounds() {
        assert_eq!(bounds(NOW, Period::Day, 0), (1_795_392_000, 1_795_478_400)); // 2026-11-23 .. 24
        assert_eq!(bounds(NOW, Period::Week, 0), (1_795_392_000, 1_795_996_800)); // Mon 23rd .. Mon 30th
        assert_eq!(bounds(NOW, Period::Month, 0), (1_793_491_200, 1_796_083_200)); // Nov 1 .. Dec 1
        // offset: a day that starts at 22:00 UTC
        assert_eq!(bounds(NOW, Period::Day, -7200), (1_795_384_800, 1_795_471_200));
        // December rolls into the next year
        let dec = days_from_civil(2026, 12, 15) * DAY;
        assert_eq!(
            bounds(dec, Period::Month, 0),
            (days_from_civil(2026, 12, 1) * DAY, days_from_civil(2027, 1, 1) * DAY)
        );
        // leap February
        let feb = days_from_civil(2028, 2, 29) * DAY + 5;
        assert_eq!(bounds(feb, Period::Month, 0).1, days_from_civil(2028, 3, 1) * DAY);
    }

    #[test]
    fn civil_round_trip() {
        for d in [-1000i64, 0, 59, 365, 11_016, 20_000, 100_000] {
            let (y, m) = civil_month(d);
            let first = days_from_civil(y, m, 1);
            assert!(first <= d && d - first < 31, "{d}");
        }
    }

    #[test]
    fn a_cell_admits_limit_per_period_and_resets() {
        let c = QuotaCell::default();
        let (start, end) = bounds(NOW, Period::Day, 0);
        assert_eq!(c.try_take(start, 3), Some(2));
        assert_eq!(c.try_take(start, 3), Some(1));
        assert_eq!(c.try_take(start, 3), Some(0));
        assert_eq!(c.try_take(start, 3), None);
        assert_eq!(c.used(start), 3);
        assert_eq!(c.take_pending(), Some((start, 3)));
        assert_eq!(c.take_pending(), Some((start, 0)), "watched: the total is read back");
        assert_eq!(c.try_take(end, 3), Some(2), "the next period starts from zero");
        assert_eq!(c.used(start), 0);
    }

    #[test]
    fn concurrent_takes_admit_exactly_the_limit() {
        let c = std::sync::Arc::new(QuotaCell::default());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || (0..1000).filter(|_| c.try_take(60_000, 1234).is_some()).count())
            })
            .collect();
        let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(total, 1234);
    }

    #[test]
    fn deltas_flush_once_and_totals_from_other_nodes_are_taken() {
        let c = QuotaCell::default();
        for _ in 0..3 {
            c.try_take(60_000, 100);
        }
        let (start, n) = c.take_pending().unwrap();
        assert_eq!((start, n), (60_000, 3));
        c.try_take(60_000, 100); // counted while the flush is in flight
        c.reconcile(60_000, 50); // another node counted 47 more
        assert_eq!(c.used(60_000), 51);
        assert_eq!(c.take_pending(), Some((60_000, 1)), "only the request after the flush is pending");
        for _ in 0..WATCH_FLUSHES {
            assert_eq!(c.take_pending(), Some((60_000, 0)));
        }
        assert_eq!(c.take_pending(), None, "no longer watched after 30 idle flushes");
        // the store was down: the delta is put back and sent with the next flush
        c.unflushed(60_000, 1);
        c.try_take(60_000, 100);
        assert_eq!(c.take_pending(), Some((60_000, 2)));
        c.reconcile(0, 999);
        assert_eq!(c.used(60_000), 52, "a total for an older period is ignored");
    }

    #[test]
    fn restored_counts_continue() {
        let c = QuotaCell::restored(60_000, 10);
        assert_eq!(c.used(60_000), 10);
        assert_eq!(c.try_take(60_000, 11), Some(0));
        assert_eq!(c.try_take(60_000, 11), None);
    }
}
