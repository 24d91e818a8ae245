//! A raw HTTP request through the built-in rules (request reading, every body processor,
//! the engine): verdicts vary, panics must not happen.
#![no_main]
use libfuzzer_sys::fuzz_target;
use portcullis_waf::{BodyLimits, Builder, RuleSet, Transaction};
use std::sync::LazyLock;

static RULES: LazyLock<RuleSet> = LazyLock::new(|| {
    let mut b = Builder::new();
    b.text("builtin", portcullis_waf::BUILTIN_RULES, std::path::Path::new(".")).ok();
    b.build().unwrap_or_else(|e| panic!("{e}"))
});

fuzz_target!(|data: &[u8]| {
    let Ok(p) = portcullis_waf::ftw::wire::parse(data) else { return };
    let req = p.request();
    for partial in [false, true] {
        let mut tx = Transaction::new(&RULES, req.clone(), BodyLimits { partial, ..BodyLimits::default() });
        tx.request_headers();
        tx.request_body();
        let _ = tx.interruption();
    }
});
