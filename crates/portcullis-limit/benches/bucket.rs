//! The limiter sits on every request: it must stay far below a microsecond.
use criterion::{Criterion, criterion_group, criterion_main};
use portcullis_limit::{Bucket, Clock, Rate};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let clock = Clock::new();
    let open = Bucket::new(Rate::new(1e9, u32::MAX).unwrap_or(Rate { per_second: 1e9, burst: 1 }));
    c.bench_function("bucket_check_allowed", |b| b.iter(|| black_box(open.check(clock.now()))));
    let tight = Bucket::new(Rate { per_second: 1.0, burst: 1 });
    c.bench_function("bucket_check_denied", |b| b.iter(|| black_box(tight.check(clock.now()))));
    c.bench_function("clock_now", |b| b.iter(|| black_box(clock.now())));
}

criterion_group!(benches, bench);
criterion_main!(benches);
