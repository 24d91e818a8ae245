//! The limiter sits on every request: it must stay far below a microsecond.
use criterion::{Criterion, criterion_group, criterion_main};
use portcullis_limit::{Bucket, Clock, KeyedLimiter, Rate, WindowCounter, hash_key};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let clock = Clock::new();
    let open = Bucket::new(Rate { per_second: 1e9, burst: u32::MAX });
    c.bench_function("bucket_check_allowed", |b| b.iter(|| black_box(open.check(clock.now()))));
    let tight = Bucket::new(Rate { per_second: 1.0, burst: 1 });
    c.bench_function("bucket_check_denied", |b| b.iter(|| black_box(tight.check(clock.now()))));
    c.bench_function("clock_now", |b| b.iter(|| black_box(clock.now())));

    let keyed = KeyedLimiter::new(Rate { per_second: 1e9, burst: u32::MAX }, 1 << 20);
    let hot = hash_key("203.0.113.7");
    c.bench_function("keyed_check_hot_key", |b| b.iter(|| black_box(keyed.check(hot, clock.now()))));
    c.bench_function("hash_key_ip", |b| {
        let ip: std::net::IpAddr = "203.0.113.7".parse().unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
        b.iter(|| black_box(hash_key(black_box(&ip))))
    });
    let window = WindowCounter::new(2000, 300_000_000_000, 1 << 20);
    c.bench_function("window_hit_hot_key", |b| b.iter(|| black_box(window.hit(hot, clock.now()))));
}

criterion_group!(benches, bench);
criterion_main!(benches);
