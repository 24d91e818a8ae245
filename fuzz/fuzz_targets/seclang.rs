//! The SecLang parser and loader on arbitrary text: errors are fine, panics are not.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let mut b = portcullis_waf::Builder::new();
        if b.text("fuzz.conf", text, std::path::Path::new("/nonexistent")).is_ok() {
            let _ = b.build();
        }
    }
});
