//! Token-bucket rate limiting with the semantics of AWS API Gateway's throttles.
//!
//! A [`Bucket`] holds `burst` tokens and refills at `rate` tokens per second; it starts full.
//! Each admitted request takes one token. The state is one theoretical arrival time (GCRA) in
//! an `AtomicU64`, updated with compare-and-swap, so concurrent callers can never admit more
//! than the bucket holds (no check-then-increment race) and a decision allocates nothing.
//!
//! Time is passed in explicitly as nanoseconds on a monotonic clock ([`Clock`]), which keeps
//! the math deterministic under test.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const NANOS_PER_SEC: f64 = 1_000_000_000.0;

/// Rate (tokens per second, fractional allowed) and burst (bucket size).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens added per second.
    pub per_second: f64,
    /// Bucket capacity: how many requests may pass at once after a quiet period.
    pub burst: u32,
}

/// Why a [`Rate`] cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateError {
    /// `rate` must be a finite number above zero (and at most one token per nanosecond).
    BadRate,
    /// `burst` must be at least 1.
    BadBurst,
}

impl std::fmt::Display for RateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RateError::BadRate => f.write_str("rate must be a number above 0 and at most 1e9 per second"),
            RateError::BadBurst => f.write_str("burst must be at least 1"),
        }
    }
}

impl std::error::Error for RateError {}

impl Rate {
    /// Checks the numbers and returns the rate.
    pub fn new(per_second: f64, burst: u32) -> Result<Rate, RateError> {
        if !per_second.is_finite() || per_second <= 0.0 || per_second > NANOS_PER_SEC {
            return Err(RateError::BadRate);
        }
        if burst == 0 {
            return Err(RateError::BadBurst);
        }
        Ok(Rate { per_second, burst })
    }

    /// Nanoseconds between two tokens.
    fn interval(&self) -> u64 {
        // Rate::new bounds per_second to (0, 1e9], so this is >= 1 and finite.
        (NANOS_PER_SEC / self.per_second).round().max(1.0) as u64
    }
}

/// The outcome of one [`Bucket::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The request took a token. `remaining` tokens are left right now.
    Allowed {
        /// Whole tokens left after this request.
        remaining: u32,
    },
    /// No token: the request must be refused. A token is available after `retry_after`.
    Denied {
        /// Time until one token is available again.
        retry_after: Duration,
    },
}

impl Decision {
    /// True when the request took a token.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed { .. })
    }
}

/// One token bucket. Cheap to share behind an `Arc`; all methods take `&self`.
#[derive(Debug)]
pub struct Bucket {
    interval: u64,
    /// burst × interval: how far the theoretical arrival time may run ahead of now.
    capacity: u64,
    rate: Rate,
    /// Theoretical arrival time of the next request, in clock nanoseconds. A value at or
    /// before `now` means the bucket is full.
    tat: AtomicU64,
}

impl Bucket {
    /// A full bucket.
    pub fn new(rate: Rate) -> Bucket {
        let interval = rate.interval();
        Bucket { interval, capacity: interval.saturating_mul(u64::from(rate.burst)), rate, tat: AtomicU64::new(0) }
    }

    /// The rate this bucket was made with.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Takes one token if there is one. `now` is nanoseconds from a [`Clock`].
    pub fn check(&self, now: u64) -> Decision {
        let mut current = self.tat.load(Ordering::Relaxed);
        loop {
            let tat = current.max(now);
            let new_tat = tat.saturating_add(self.interval);
            let ahead = new_tat - now;
            if ahead > self.capacity {
                // Not enough room: the earliest moment this request would fit.
                let wait = ahead - self.capacity;
                return Decision::Denied { retry_after: Duration::from_nanos(wait) };
            }
            match self.tat.compare_exchange_weak(current, new_tat, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => {
                    let remaining = (self.capacity - ahead) / self.interval;
                    return Decision::Allowed { remaining: u32::try_from(remaining).unwrap_or(u32::MAX) };
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Whole tokens available at `now`, without taking any.
    pub fn available(&self, now: u64) -> u32 {
        let tat = self.tat.load(Ordering::Relaxed).max(now);
        let used = tat - now;
        let free = self.capacity.saturating_sub(used) / self.interval;
        u32::try_from(free).unwrap_or(u32::MAX)
    }

    /// Time from `now` until at least one token is available (zero if one is).
    pub fn time_to_next_token(&self, now: u64) -> Duration {
        let tat = self.tat.load(Ordering::Relaxed).max(now);
        let needed = (tat - now).saturating_add(self.interval);
        Duration::from_nanos(needed.saturating_sub(self.capacity))
    }

    /// Nanoseconds between two tokens.
    pub fn interval_nanos(&self) -> u64 {
        self.interval
    }

    /// Copies the fill level of `other` into this bucket (used when a configuration reload
    /// keeps a bucket whose rate did not change, so a reload never refills anyone's budget).
    pub fn inherit(&self, other: &Bucket) {
        self.tat.store(other.tat.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

/// A monotonic nanosecond clock with its origin at creation. It can be moved forward
/// ([`Clock::advance`]) so that tests can cross rate windows and quota periods without
/// waiting; it never goes backwards.
#[derive(Debug)]
pub struct Clock {
    origin: Instant,
    skew: AtomicU64,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

impl Clock {
    /// A clock starting at zero now.
    pub fn new() -> Clock {
        Clock { origin: Instant::now(), skew: AtomicU64::new(0) }
    }

    /// Nanoseconds since the clock was made (plus any advance). Starts at one second so that
    /// a fresh bucket (theoretical arrival time 0) is full from the first call.
    pub fn now(&self) -> u64 {
        let elapsed = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        elapsed.saturating_add(1_000_000_000).saturating_add(self.skew.load(Ordering::Relaxed))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.skew.fetch_add(u64::try_from(by.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

mod keyed;
mod window;

pub use keyed::{KeyedLimiter, hash_key};
pub use window::{WindowCounter, WindowState};

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const T0: u64 = 1_000_000_000;

    fn bucket(rate: f64, burst: u32) -> Bucket {
        Bucket::new(Rate::new(rate, burst).unwrap())
    }

    fn admitted(b: &Bucket, n: u32, at: u64) -> u32 {
        (0..n).filter(|_| b.check(at).is_allowed()).count() as u32
    }

    #[test]
    fn burst_at_once_admits_exactly_burst() {
        // AWS: rate 10000, burst 5000, 10,000 requests within 1 ms -> 5,000 pass.
        let b = bucket(10_000.0, 5_000);
        assert_eq!(admitted(&b, 10_000, T0), 5_000);
    }

    #[test]
    fn refill_after_100ms_adds_rate_times_time() {
        // 5,000 arrive in the first millisecond, 5,000 more 100 ms later: 1,000 tokens have
        // been added by then, so 6,000 pass in all.
        let b = bucket(10_000.0, 5_000);
        assert_eq!(admitted(&b, 5_000, T0 + MS), 5_000);
        assert_eq!(admitted(&b, 5_000, T0 + 101 * MS), 1_000);
    }

    #[test]
    fn fractional_rate_refills_slowly() {
        let b = bucket(0.5, 1);
        assert!(b.check(T0).is_allowed());
        match b.check(T0 + 1_000 * MS) {
            Decision::Denied { retry_after } => assert_eq!(retry_after, Duration::from_secs(1)),
            d => panic!("expected denial, got {d:?}"),
        }
        assert!(b.check(T0 + 2_000 * MS).is_allowed());
    }

    #[test]
    fn remaining_and_retry_after_are_reported() {
        let b = bucket(10.0, 3);
        assert_eq!(b.check(T0), Decision::Allowed { remaining: 2 });
        assert_eq!(b.check(T0), Decision::Allowed { remaining: 1 });
        assert_eq!(b.check(T0), Decision::Allowed { remaining: 0 });
        assert_eq!(b.available(T0), 0);
        assert_eq!(b.time_to_next_token(T0), Duration::from_millis(100));
        assert_eq!(b.check(T0), Decision::Denied { retry_after: Duration::from_millis(100) });
        assert_eq!(b.available(T0 + 100 * MS), 1);
    }

    #[test]
    fn a_quiet_period_never_overfills() {
        let b = bucket(100.0, 5);
        assert_eq!(admitted(&b, 100, T0 + 3_600_000 * MS), 5);
    }

    #[test]
    fn invalid_rates_are_refused() {
        assert_eq!(Rate::new(0.0, 1), Err(RateError::BadRate));
        assert_eq!(Rate::new(f64::NAN, 1), Err(RateError::BadRate));
        assert_eq!(Rate::new(-1.0, 1), Err(RateError::BadRate));
        assert_eq!(Rate::new(1.0, 0), Err(RateError::BadBurst));
    }

    #[test]
    fn concurrent_callers_admit_exactly_burst() {
        let b = std::sync::Arc::new(bucket(0.001, 1_000));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || admitted(&b, 1_000, T0))
            })
            .collect();
        let total: u32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, 1_000);
    }

    #[test]
    fn inherit_keeps_the_fill_level() {
        let old = bucket(1.0, 10);
        admitted(&old, 10, T0);
        let new = bucket(1.0, 10);
        new.inherit(&old);
        assert!(!new.check(T0).is_allowed());
    }

    proptest::proptest! {
        /// Over any window, admitted <= burst + rate * window (the token-bucket bound).
        #[test]
        fn never_exceeds_the_token_bucket_bound(
            rate in 0.5f64..5_000.0,
            burst in 1u32..500,
            gaps in proptest::collection::vec(0u64..20 * MS, 1..400),
        ) {
            let b = bucket(rate, burst);
            let mut now = T0;
            let mut ok = 0u64;
            for g in &gaps {
                now += g;
                if b.check(now).is_allowed() { ok += 1; }
            }
            let window = (now - T0) as f64 / NANOS_PER_SEC;
            let bound = f64::from(burst) + rate * window + 1.0;
            proptest::prop_assert!((ok as f64) <= bound, "ok={ok} bound={bound}");
        }
    }
}
