//! Resident memory per key at one million keys (run: cargo bench -p portcullis-limit --bench memory).
use portcullis_limit::{KeyedLimiter, Rate, WindowCounter, hash_key};

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    pages * 4096
}

fn main() {
    const KEYS: u64 = 1_000_000;
    let t0 = 1_000_000_000u64;
    let before = rss_bytes();
    let keyed = KeyedLimiter::new(Rate { per_second: 0.001, burst: 10 }, KEYS as usize);
    for k in 0..KEYS {
        keyed.check(hash_key(&k), t0);
    }
    let after = rss_bytes();
    println!("KeyedLimiter: {} keys, {:.1} bytes/key", keyed.len(), (after - before) as f64 / keyed.len() as f64);

    let before = rss_bytes();
    let window = WindowCounter::new(2000, 300_000_000_000, KEYS as usize);
    for k in 0..KEYS {
        window.hit(hash_key(&(k, 1u8)), t0);
    }
    let after = rss_bytes();
    println!("WindowCounter: {} keys, {:.1} bytes/key", window.len(), (after - before) as f64 / window.len() as f64);
}
