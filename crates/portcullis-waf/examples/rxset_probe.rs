//! Would one multi-pattern pass beat running rules one by one? Puts every request-phase `@rx`
//! of stock CRS into one `regex::bytes::RegexSet` and times it on the values of the bench GET
//! (raw, untransformed) and on the 4 KB JSON body, against running each regex alone:
//!
//!     cargo run --release -p portcullis-waf --example rxset_probe
//!
//! Figures and what they mean: docs/performance.md, the WAF's fourth pass.

#[path = "../benches/common/mod.rs"]
#[allow(dead_code)] // this probe needs only the rules and the body
mod common;
use portcullis_waf::operator::OpKind;
fn main() {
    let Some(rules) = common::rules() else { return };
    let mut pats = Vec::new();
    let mut res = Vec::new();
    for link in rules.rules().filter(|r| r.phase <= 2).flat_map(|r| r.links()) {
        if let Some(OpKind::Rx(re)) = link.op.as_ref().map(|op| &op.kind) {
            pats.push(re.as_str().to_string());
            res.push(re.clone());
        }
    }
    eprintln!("{} request-phase @rx", pats.len());
    let t = std::time::Instant::now();
    let set = regex::bytes::RegexSetBuilder::new(&pats)
        .unicode(false)
        .dot_matches_new_line(true)
        .multi_line(true)
        .size_limit(1 << 30)
        .dfa_size_limit(256 << 20)
        .build();
    eprintln!("build {:?} ok={}", t.elapsed(), set.is_ok());
    let Ok(set) = set else { return };
    let vals: Vec<&[u8]> = vec![
        b"127.0.0.1:9200",
        b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        b"application/json, text/plain, */*",
        b"en-US,en;q=0.9",
        b"sid=3f9a1c7e5b2d40aa; theme=dark",
        b"/api/orders/42",
        b"expand",
        b"items",
        b"page",
        b"2",
        b"3f9a1c7e5b2d40aa",
        b"dark",
        b"sid",
        b"theme",
    ];
    for round in 0..3 {
        let t = std::time::Instant::now();
        let mut n = 0;
        for _ in 0..1000 {
            for v in &vals {
                n += set.matches(v).iter().count();
            }
        }
        let a = t.elapsed() / 1000;
        let t = std::time::Instant::now();
        let mut m = 0;
        for _ in 0..1000 {
            for v in &vals {
                for re in &res {
                    if re.is_match(v) {
                        m += 1;
                    }
                }
            }
        }
        let b = t.elapsed() / 1000;
        eprintln!(
            "round {round}: set {:?} per request's values ({} hits), each regex {:?} ({} hits)",
            a,
            n / 1000,
            b,
            m / 1000
        );
    }
    let body = common::order_json();
    let t = std::time::Instant::now();
    for _ in 0..100 {
        std::hint::black_box(set.matches(body.as_bytes()));
    }
    eprintln!("set on the 4 KB body: {:?}", t.elapsed() / 100);
}
