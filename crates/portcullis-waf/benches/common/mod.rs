//! The three requests of ../shared/bench/waf-bench.sh (a browser-like GET, a 4 KB JSON POST with
//! ~180 values, a blocked SQLi GET), each with the response phases over the bench upstream's
//! answer when not blocked, and stock CRS PL1 in blocking mode, shared by the criterion
//! bench (benches/crs.rs) and the profiling example (examples/crs_profile.rs).

use portcullis_waf::{BodyLimits, Request, Response, RuleSet, Transaction};
use std::path::PathBuf;

pub const GET_URI: &[u8] = b"/api/orders/42?expand=items&page=2";
pub const SQLI_URI: &[u8] = b"/api/orders/42?id=1'%20OR%20'1'='1";
pub const POST_URI: &[u8] = b"/api/orders";

pub const HEADERS: [(&[u8], &[u8]); 5] = [
    (b"Host", b"127.0.0.1:9200"),
    (b"User-Agent", b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
    (b"Accept", b"application/json, text/plain, */*"),
    (b"Accept-Language", b"en-US,en;q=0.9"),
    (b"Cookie", b"sid=3f9a1c7e5b2d40aa; theme=dark"),
];

/// The order document of waf-bench.sh: items until the next would pass 4096 bytes, then notes
/// fill it up to 4096.
pub fn order_json() -> String {
    let item = |k: usize| {
        let colour = ["blue", "green", "grey"].get(k % 3).copied().unwrap_or("blue");
        let amount = 12.5 + 3.25 * k as f64;
        format!(
            r#"{{"sku":"SKU-{}","name":"Organic cotton t-shirt, size M, colour {colour}","quantity":{},"unitPrice":{{"amount":{amount},"currency":"EUR"}},"attributes":{{"size":"M","material":"cotton","fit":"regular"}},"tags":["summer","basics"]}}"#,
            4100 + k,
            1 + k % 3
        )
    };
    let doc = |n: usize, notes: &str| {
        let items: Vec<String> = (0..n).map(item).collect();
        format!(
            r#"{{"orderId":"ord-2026-000042","currency":"EUR","createdAt":"2026-11-23T18:04:11Z","customer":{{"id":"cus-7731","name":"Anna Schmidt","email":"anna.schmidt@example.com","address":{{"street":"Hauptstrasse 12","city":"Berlin","postalCode":"10115","country":"DE"}}}},"items":[{}],"shipping":{{"method":"standard","carrier":"DHL","days":3}},"payment":{{"method":"card","last4":"4242","status":"authorized"}},"notes":"{notes}","metadata":{{"source":"web","campaign":"autumn-sale","clientVersion":"4.12.0"}}}}"#,
            items.join(",")
        )
    };
    let mut n = 1;
    while doc(n + 1, "").len() <= 4096 {
        n += 1;
    }
    let words = "Please leave the parcel with the neighbour if nobody is at home. ".repeat(20);
    let room = 4096usize.saturating_sub(doc(n, "").len());
    doc(n, words.get(..room).unwrap_or(&words))
}

pub fn rules() -> Option<RuleSet> {
    let dir = std::env::var_os("PORTCULLIS_CRS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/crs"));
    if !dir.join("rules").is_dir() {
        eprintln!("*** SKIPPED: no CRS at {} (set PORTCULLIS_CRS) ***", dir.display());
        return None;
    }
    // CRS_REMOVE="920450 930000-930999": those rules removed after loading, so that a profile
    // with and without them gives their cost (bench/waf-rule-cost.sh).
    let loaded = match std::env::var("CRS_REMOVE") {
        Ok(ids) => {
            let mut b = portcullis_waf::Builder::new();
            let removed =
                b.crs(&dir, None, "").and_then(|b| b.text("(CRS_REMOVE)", &format!("SecRuleRemoveById {ids}"), &dir));
            removed.map(|_| ()).and_then(|()| b.build())
        }
        Err(_) => portcullis_waf::ftw::load_crs(&dir, ""),
    };
    match loaded {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("CRS does not load: {e}");
            None
        }
    }
}

#[inline(never)] // a profiler can count exactly this call (`--toggle-collect`)
pub fn run(rules: &RuleSet, method: &[u8], uri: &[u8], headers: &[(&[u8], &[u8])], body: &[u8]) -> Option<u16> {
    let req = Request {
        method,
        uri,
        protocol: b"HTTP/1.1",
        headers: headers.to_vec(),
        body,
        remote_addr: "127.0.0.1",
        remote_port: 40000,
        server_port: 9200,
        unique_id: "bench",
    };
    let mut tx = Transaction::new(rules, req, BodyLimits::default());
    tx.request_headers();
    if tx.interruption().is_none() {
        tx.request_body();
    }
    // The bench upstream's answer, through the response phases as the gateway runs them.
    if tx.interruption().is_none() {
        let headers = vec![(&b"Content-Type"[..], &b"application/json"[..]), (b"Content-Length", b"11")];
        tx.response(Response { status: 200, protocol: b"HTTP/1.1", headers, body: br#"{"ok":true}"# });
        tx.logging();
    }
    tx.interruption().map(|i| i.status)
}

/// The headers of the JSON POST: the browser's and the body's type and length.
pub fn post_headers() -> Vec<(&'static [u8], &'static [u8])> {
    let mut h = HEADERS.to_vec();
    h.push((b"Content-Type", b"application/json"));
    h.push((b"Content-Length", b"4096"));
    h
}
