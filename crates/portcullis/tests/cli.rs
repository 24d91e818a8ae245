//! The binary's command line: validate, version, and every example config.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests: a panic is a failed assertion

use std::process::Command;

fn portcullis(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis")).args(args).output().expect("run portcullis");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn examples() -> Vec<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("examples dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "toml" | "json")))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_validates() {
    let files = examples();
    assert!(files.len() >= 3, "examples/ should hold several configs: {files:?}");
    // Examples name certificates under certs/; validate each from a copy that has them.
    let pki = portcullis_testkit::Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    let (ca, _, _) = pki.write(&certs);
    std::fs::copy(&ca, certs.join("clients-ca.pem")).unwrap();
    for f in files {
        let copy = dir.path().join(f.file_name().unwrap());
        std::fs::copy(&f, &copy).unwrap();
        let (code, out, err) = portcullis(&["validate", "-c", copy.to_str().unwrap()]);
        assert_eq!(code, 0, "{}: {out}{err}", f.display());
    }
}

/// `portcullis validate` on a config file holding `yaml`: exit code, stderr, the file's path.
fn validate_text(yaml: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, yaml).unwrap();
    let (code, _, err) = portcullis(&["validate", "-c", bad.to_str().unwrap()]);
    (code, err, bad.display().to_string())
}

#[test]
fn validate_reports_file_and_line_and_fails() {
    let (code, err, file) = validate_text(
        "listeners: [{ name: public, bind: \"127.0.0.1:8080\" }]\nupstreams:\n  u: { targets: [\"http://127.0.0.1:1\"] }\nroutes:\n  - name: r\n    match: { path: /x }\n    upstream: nope\n  - name: r\n    match: { path: \"/y/{id\" }\n    upstream: u\n",
    );
    assert_eq!(code, 1);
    assert!(err.contains(&format!("{file}:7: upstream \"nope\" is not defined")), "{err}");
    assert!(err.contains(&format!("{file}:8: route name \"r\" is used twice")), "{err}");
    assert!(err.contains(&format!("{file}:9: ")), "{err}");

    let (code, err, _) = validate_text("listeners: []\nlimits:\n  max_body_byte: 1MiB\n");
    assert_eq!(code, 1);
    assert!(err.contains(":3:") && err.contains("max_body_byte"), "unknown keys are errors with their line: {err}");

    let (code, _, err) = portcullis(&["validate", "-c", "/nonexistent.yaml"]);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent.yaml:1: cannot read"), "{err}");
}

#[test]
fn toml_and_json_configs_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("c.toml");
    std::fs::write(&toml, "[[listeners]]\nname = \"p\"\nbind = \"127.0.0.1:0\"\n\n[upstreams.u]\ntargets = [\"http://127.0.0.1:1\"]\ntimeout = \"2s\"\n\n[[routes]]\nname = \"r\"\nupstream = \"u\"\nmatch = { path = \"/*\" }\n").unwrap();
    assert_eq!(portcullis(&["validate", "-c", toml.to_str().unwrap()]).0, 0);
    std::fs::write(&toml, "[[listeners]]\nname = \"p\"\nbind = \"127.0.0.1:0\"\n\n[[routes]]\nname = \"r\"\nupstream = \"gone\"\nmatch = { path = \"/*\" }\n").unwrap();
    let (code, _, err) = portcullis(&["validate", "-c", toml.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("c.toml:7: upstream \"gone\""), "{err}");

    let json = dir.path().join("c.json");
    std::fs::write(&json, "{\n  \"listeners\": [{\"name\": \"p\", \"bind\": \"127.0.0.1:0\"}],\n  \"limits\": {\"header_timeout\": \"forever\"}\n}\n").unwrap();
    let (code, _, err) = portcullis(&["validate", "-c", json.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("c.json:3:") && err.contains("forever"), "{err}");
}

#[test]
fn version_is_printed() {
    let (code, out, _) = portcullis(&["--version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("portcullis "), "{out}");
}

#[test]
fn waf_response_settings_are_checked_with_their_line() {
    let (code, err, file) = validate_text(
        "listeners: [{ name: public, bind: \"127.0.0.1:8080\" }]\nwaf:\n  response:\n    body_limit: 10\n    mime_types: [text/html, html]\n",
    );
    assert_eq!(code, 1);
    assert!(err.contains(&format!("{file}:4: ")) && err.contains("between 1KiB and 64MiB"), "{err}");
    assert!(err.contains(&format!("{file}:5: ")) && err.contains("\"html\" is not a media type"), "{err}");
}

#[test]
fn every_error_code_is_documented() {
    let api =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/api.md")).unwrap();
    for kind in portcullis::error::ErrorKind::ALL {
        let row = format!("| {} | `{}` |", kind.status().as_u16(), kind.code());
        assert!(api.contains(&row), "docs/api.md lacks the row {row}");
    }
}
