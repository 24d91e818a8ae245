#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! The built-in rule set blocks the classic attacks and lets ordinary API calls through.

use portcullis_waf::{BodyLimits, Builder, Request, RuleSet, Transaction};
use std::path::Path;

fn rules() -> RuleSet {
    let mut b = Builder::new();
    b.text("builtin", portcullis_waf::BUILTIN_RULES, Path::new(".")).unwrap();
    b.build().unwrap()
}

fn verdict(rules: &RuleSet, method: &str, uri: &str, headers: &[(&str, &str)], body: &str) -> Option<(u32, u16)> {
    let req = Request {
        method: method.as_bytes(),
        uri: uri.as_bytes(),
        protocol: b"HTTP/1.1",
        headers: headers.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())).collect(),
        body: body.as_bytes(),
        remote_addr: "127.0.0.1",
        unique_id: "t",
        ..Request::default()
    };
    let mut tx = Transaction::new(rules, req, BodyLimits::default());
    tx.request_headers();
    if tx.interruption().is_none() {
        tx.request_body();
    }
    tx.interruption().map(|i| (i.rule_id, i.status))
}

#[test]
fn blocks_attacks() {
    let r = rules();
    assert_eq!(verdict(&r, "GET", "/items?id=1'%20OR%20'1'='1", &[], ""), Some((100100, 403)));
    assert_eq!(verdict(&r, "GET", "/search?q=%3Cscript%3Ealert(1)%3C/script%3E", &[], ""), Some((100200, 403)));
    assert_eq!(verdict(&r, "GET", "/files?name=..%2f..%2fetc%2fpasswd", &[], ""), Some((100020, 403)));
    assert_eq!(verdict(&r, "GET", "/", &[("User-Agent", "sqlmap/1.7")], ""), Some((100010, 403)));
    let json = [("Content-Type", "application/json")];
    assert_eq!(verdict(&r, "POST", "/login", &json, r#"{"user":"admin' --","pass":"x"}"#), Some((100101, 403)));
    assert_eq!(verdict(&r, "POST", "/c", &json, r#"{"text":"<img src=x onerror=alert(1)>"}"#), Some((100201, 403)));
    assert_eq!(verdict(&r, "POST", "/c", &json, r#"{"text": "#), Some((100400, 400)));
    let cookie = [("Cookie", "session=1' UNION SELECT password FROM users--")];
    assert_eq!(verdict(&r, "GET", "/", &cookie, ""), Some((100100, 403)));
}

#[test]
fn lets_ordinary_calls_through() {
    let r = rules();
    let browser =
        [("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"), ("Cookie", "sid=3f9a1c7e; theme=dark")];
    assert_eq!(verdict(&r, "GET", "/api/orders/42?expand=items&page=2", &browser, ""), None);
    assert_eq!(verdict(&r, "GET", "/search?q=O%27Brien%20and%20sons", &browser, ""), None);
    let json = [("Content-Type", "application/json")];
    let body = r#"{"orderId":"ord-1","items":[{"sku":"SKU-1","name":"T-shirt, size M","quantity":2}],"notes":"Leave it with the neighbour; thanks!"}"#;
    assert_eq!(verdict(&r, "POST", "/api/orders", &json, body), None);
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    assert_eq!(verdict(&r, "POST", "/profile", &form, "name=Anna+Schmidt&city=Berlin&bio=I+like+1%2B1"), None);
}
