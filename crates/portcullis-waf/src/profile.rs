//! Per-rule cost, for finding where a request's time goes (cargo feature `rule-profile`, off
//! by default: without it none of this is compiled and the rule loop is unchanged). Every full
//! evaluation of a rule is timed and its operator calls counted, per thread;
//! `bench/waf-rule-profile.sh` runs the bench requests through stock CRS and prints the table.
//!
//! Rules the plan decides without evaluating them (see `plan.rs`) cost no time here; the first
//! rule that needs a value's prefilter scan or a chain's union pays for it, so a rule's time
//! includes work later rules share.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Instant;

#[derive(Debug, Default, Clone, Copy)]
struct Cost {
    nanos: u64,
    evaluations: u64,
    matches: u64,
    operator_calls: u64,
}

thread_local! {
    static COSTS: RefCell<HashMap<u32, Cost>> = RefCell::new(HashMap::new());
    static OPERATOR_CALLS: Cell<u64> = const { Cell::new(0) };
}

/// Counts one operator call.
pub(crate) fn operator_call() {
    OPERATOR_CALLS.with(|c| c.set(c.get() + 1));
}

/// Times one full evaluation of rule `id` (`evaluate` says whether it matched).
pub(crate) fn time(id: u32, evaluate: impl FnOnce() -> bool) -> bool {
    let calls = OPERATOR_CALLS.with(Cell::get);
    let start = Instant::now();
    let matched = evaluate();
    let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let calls = OPERATOR_CALLS.with(Cell::get) - calls;
    COSTS.with(|c| {
        let mut c = c.borrow_mut();
        let cost = c.entry(id).or_default();
        cost.nanos += nanos;
        cost.evaluations += 1;
        cost.matches += u64::from(matched);
        cost.operator_calls += calls;
    });
    matched
}

/// Forgets what this thread measured.
pub fn reset() {
    COSTS.with(|c| c.borrow_mut().clear());
}

/// This thread's rules by time, most first, at most `top` of them, as per-request averages
/// over `requests`: a header line, then `id  us  evaluations  matches  operator_calls`.
pub fn report(requests: u64, top: usize) -> String {
    let n = requests.max(1) as f64;
    let mut rows: Vec<(u32, Cost)> = COSTS.with(|c| c.borrow().iter().map(|(k, v)| (*k, *v)).collect());
    rows.sort_by_key(|(id, c)| (std::cmp::Reverse(c.nanos), *id));
    let total: u64 = rows.iter().map(|(_, c)| c.nanos).sum();
    let mut out = format!(
        "{} rules evaluated, {:.2} us per request in full evaluations\n{:>8} {:>9} {:>7} {:>7} {:>9}\n",
        rows.len(),
        total as f64 / n / 1000.0,
        "rule",
        "us/req",
        "evals",
        "matches",
        "op calls"
    );
    for (id, c) in rows.iter().take(top) {
        out.push_str(&format!(
            "{id:>8} {:>9.2} {:>7.2} {:>7.2} {:>9.1}\n",
            c.nanos as f64 / n / 1000.0,
            c.evaluations as f64 / n,
            c.matches as f64 / n,
            c.operator_calls as f64 / n
        ));
    }
    out
}
