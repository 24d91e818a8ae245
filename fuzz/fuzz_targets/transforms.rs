//! Every transformation on arbitrary bytes, alone and chained (the first byte picks a chain).
#![no_main]
use libfuzzer_sys::fuzz_target;
use portcullis_waf::transform::Transform;

const NAMES: [&str; 29] = [
    "base64Decode",
    "base64DecodeExt",
    "base64Encode",
    "cmdLine",
    "compressWhitespace",
    "cssDecode",
    "escapeSeqDecode",
    "hexDecode",
    "hexEncode",
    "htmlEntityDecode",
    "jsDecode",
    "length",
    "lowercase",
    "normalizePath",
    "normalizePathWin",
    "removeComments",
    "removeCommentsChar",
    "removeNulls",
    "removeWhitespace",
    "replaceComments",
    "replaceNulls",
    "sha1",
    "trim",
    "trimLeft",
    "trimRight",
    "uppercase",
    "urlDecode",
    "urlDecodeUni",
    "utf8toUnicode",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, input)) = data.split_first() else { return };
    let all: Vec<Transform> = NAMES.iter().filter_map(|n| Transform::parse(n)).collect();
    for t in &all {
        let _ = t.apply(input);
    }
    let mut value = input.to_vec();
    for i in 0..4 {
        let t = all[(usize::from(pick) >> i) % all.len()];
        if let Some(next) = t.apply(&value) {
            value = next;
        }
    }
});
