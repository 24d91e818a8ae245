//! `waf.ip_deny`/`ip_allow` lookups with 100k+ entries: the cost must not grow with the list.

use criterion::{Criterion, criterion_group, criterion_main};
use ipnet::IpNet;
use portcullis_waf::iplist::{IpAction, IpList};
use std::hint::black_box;
use std::net::IpAddr;

fn list(n: u32) -> IpList {
    let mut l = IpList::default();
    for i in 0..n {
        // Spread over 10.0.0.0/8 as /32s, plus /24s and /16s of other ranges, and IPv6 /64s.
        l.add(IpNet::from(IpAddr::from((0x0a00_0000 + i * 37).to_be_bytes())), IpAction::Deny);
        if i % 10 == 0 {
            let net = IpNet::new(IpAddr::from((0xac10_0000 + (i << 8)).to_be_bytes()), 24).unwrap_or_default();
            l.add(net, IpAction::Deny);
            let v6 = IpNet::new(
                IpAddr::from((0x2001_0db8_0000_0000_0000_0000_0000_0000u128 + (u128::from(i) << 64)).to_be_bytes()),
                64,
            )
            .unwrap_or_default();
            l.add(v6, IpAction::Deny);
        }
    }
    l.add("10.0.0.0/8".parse().unwrap_or_default(), IpAction::Allow);
    l
}

fn bench(c: &mut Criterion) {
    for n in [1_000u32, 100_000] {
        let l = list(n);
        let hit: IpAddr = IpAddr::from((0x0a00_0000u32 + 37 * (n / 2)).to_be_bytes());
        let miss: IpAddr = "192.0.2.1".parse().unwrap_or(hit);
        let v6: IpAddr = "2001:db8:0:5::1".parse().unwrap_or(hit);
        c.bench_function(&format!("iplist_{n}_hit_v4"), |b| b.iter(|| l.lookup(black_box(hit))));
        c.bench_function(&format!("iplist_{n}_miss_v4"), |b| b.iter(|| l.lookup(black_box(miss))));
        c.bench_function(&format!("iplist_{n}_hit_v6"), |b| b.iter(|| l.lookup(black_box(v6))));
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
