/// True when Portcullis signed this request. `header` looks a header up by lowercase name;
/// `path` is the path and query exactly as received; `now` is Unix seconds.
pub fn verify<'a>(
    secret: &[u8],
    method: &str,
    path: &str,
    header: impl Fn(&str) -> Option<&'a str>,
    body: &[u8],
    now: u64,
) -> bool {
    const IDENTITY: [&str; 4] =
        ["x-portcullis-principal", "x-portcullis-key-id", "x-portcullis-scopes", "x-portcullis-tenant"];
    let (Some(signature), Some(timestamp), Some(content)) = (
        header("x-portcullis-signature").and_then(|s| s.strip_prefix("v1=")),
        header("x-portcullis-timestamp"),
        header("x-portcullis-content-sha256"),
    ) else {
        return false;
    };
    let Ok(ts) = timestamp.parse::<u64>() else { return false };
    if now.abs_diff(ts) > 300 {
        return false;
    }
    let body_hash = hex::encode(ring::digest::digest(&ring::digest::SHA256, body));
    if content != "UNSIGNED-PAYLOAD" && content != body_hash {
        return false;
    }
    let mut lines = vec!["v1", method, path, timestamp, content, header("x-request-id").unwrap_or("")];
    lines.extend(IDENTITY.iter().map(|name| header(name).unwrap_or("")));
    let Ok(signature) = hex::decode(signature) else { return false };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    ring::hmac::verify(&key, lines.join("\n").as_bytes(), &signature).is_ok()
}
