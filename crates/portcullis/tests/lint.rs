//! `portcullis lint`: every check triggers on a config with the pattern and stays quiet on the
//! same config without it; exit codes; the SARIF 2.1.0 shape.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests: a panic is a failed assertion

use std::process::Command;

/// A config that passes every check: `{routes}`, `{top}` and `{up}` are filled per case.
fn config(top: &str, up: &str, routes: &str) -> String {
    format!(
        r#"listeners: [{{ name: p, bind: "127.0.0.1:0" }}]
admin: {{ bind: "127.0.0.1:0" }}
global: {{ throttle: {{ rate: 1000, burst: 1000 }} }}
upstreams:
  u: {{ targets: ["http://127.0.0.1:9"], timeout: 5s, max_concurrency: 100 {up} }}
{top}
routes:
  - {{ name: orders, match: {{ methods: [GET], path: /orders }}, upstream: u, throttle: {{ rate: 50, burst: 50 }} }}
{routes}
"#
    )
}

fn lint_ids(yaml: &str, files: &[(&str, &str)]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    for (n, c) in files {
        std::fs::write(dir.path().join(n), c).unwrap();
    }
    let path = dir.path().join("g.yaml");
    std::fs::write(&path, yaml).unwrap();
    let loaded = portcullis::config::load_file(&path).unwrap();
    portcullis::lint::lint(&loaded).into_iter().map(|f| f.id.to_string()).collect()
}

#[test]
fn each_check_triggers_on_its_pattern_and_only_then() {
    let clean = config("", "", "");
    assert_eq!(lint_ids(&clean, &[]), Vec::<String>::new(), "the base config is clean");
    let login_ok = "  - { name: login, match: { methods: [POST], path: /auth/login }, upstream: u, throttle: { rate: 5, burst: 10, per: ip } }";
    let secret = ("s.key", "0123456789abcdef0123456789abcdef");
    // (rule, config with the pattern, the same without it)
    let cases: Vec<(&str, String, String)> = vec![
        (
            "PC001",
            config(
                "",
                "",
                "  - { name: big, match: { path: /big }, upstream: u, throttle: { rate: 1000, burst: 10 } }",
            ),
            config("", "", "  - { name: big, match: { path: /big }, upstream: u, throttle: { rate: 999, burst: 10 } }"),
        ),
        ("PC002", clean.replace("global: { throttle: { rate: 1000, burst: 1000 } }\n", ""), clean.clone()),
        (
            "PC003",
            config("", "", "  - { name: d, match: { path: /d }, upstream: u }"),
            config("", "", "  - { name: d, match: { path: /d }, upstream: u, throttle: { rate: 5, burst: 5 } }"),
        ),
        ("PC004", config("", "", &login_ok.replace(", per: ip", "")), config("", "", login_ok)),
        (
            "PC004",
            config(
                "",
                "",
                "  - { name: pay, match: { path: /pay }, upstream: u, throttle: { rate: 5, burst: 5 }, sensitive: true }",
            ),
            config(
                "",
                "",
                "  - { name: tokens, match: { path: /tokens }, upstream: u, throttle: { rate: 5, burst: 5 }, sensitive: false }",
            ),
        ),
        (
            "PC005",
            clean.replace("admin: { bind: \"127.0.0.1:0\" }", "admin: { bind: \"0.0.0.0:9901\" }"),
            clean.clone(),
        ),
        (
            "PC006",
            config(
                "plans: { p: { quota: { limit: 9, period: day } } }",
                "",
                &login_ok.replace("per: ip }", "per: ip }, auth: { api_key: true }"),
            ),
            config("", "", login_ok),
        ),
        (
            "PC007",
            config(
                "auth: { external: { a: { url: \"http://127.0.0.1:7/x\", cache_ttl: 600s } } }",
                "",
                "  - { name: x, match: { path: /x }, upstream: u, throttle: { rate: 5, burst: 5 }, auth: { external: a } }",
            ),
            config(
                "auth: { external: { a: { url: \"http://127.0.0.1:7/x\", cache_ttl: 60s } } }",
                "",
                "  - { name: x, match: { path: /x }, upstream: u, throttle: { rate: 5, burst: 5 }, auth: { external: a } }",
            ),
        ),
        (
            "PC008",
            config(
                "",
                "",
                "  - { name: up, match: { methods: [PUT], path: /f }, upstream: u, throttle: { rate: 5, burst: 5 }, limits: { max_body_bytes: 50MiB } }",
            ),
            config(
                "",
                "",
                "  - { name: up, match: { methods: [PUT], path: /f }, upstream: u, throttle: { rate: 5, burst: 5 }, limits: { max_body_bytes: 5MiB } }",
            ),
        ),
        ("PC009", clean.replace(", timeout: 5s", ""), clean.clone()),
        (
            "PC010",
            clean.replace("http://127.0.0.1:9", "http://10.0.0.9:9"),
            config("", ", sign: { secret_file: s.key }", "").replace("http://127.0.0.1:9", "http://10.0.0.9:9"),
        ),
        (
            "PC011",
            config("clients: { trusted_proxies: [\"0.0.0.0/0\"] }", "", ""),
            config("clients: { trusted_proxies: [\"10.0.0.0/8\"] }", "", ""),
        ),
        (
            "PC012",
            clean.replace("bind: \"127.0.0.1:0\" }]", "bind: \"0.0.0.0:8080\" }]"),
            config("ip_rules: [{ name: per-ip, limit: 2000, window: 5m }]", "", "")
                .replace("bind: \"127.0.0.1:0\" }]", "bind: \"0.0.0.0:8080\" }]"),
        ),
        (
            "PC013",
            config("", "", &login_ok.replace("per: ip }", "per: ip }, log: { sample: 0.1 }")),
            config("", "", login_ok),
        ),
        (
            "PC014",
            config("policy: { allow_ips: [\"10.0.0.0/8\"] }", "", ""),
            config("policy: { allow_ips: [\"10.0.0.0/8\"], dry_run: true }", "", ""),
        ),
        (
            "PC015",
            config(
                "auth: { jwt: { j: { issuer: i, audiences: [a], algorithms: [HS256, RS256], secret_file: s.key } } }",
                "",
                "",
            ),
            config(
                "auth: { jwt: { j: { issuer: i, audiences: [a], algorithms: [HS256], secret_file: s.key } } }",
                "",
                "",
            ),
        ),
        (
            "PC016",
            config("plans: { free: { throttle: { rate: 1, burst: 1 } } }", "", ""),
            config("plans: { free: { throttle: { rate: 1, burst: 1 }, quota: { limit: 100, period: day } } }", "", ""),
        ),
        (
            "PC017",
            config("defaults: { waf: { mode: detect } }", "", ""),
            config("defaults: { waf: { mode: block } }", "", ""),
        ),
        (
            "PC017",
            config(
                "",
                "",
                "  - { name: raw, match: { path: /raw }, upstream: u, throttle: { rate: 5, burst: 5 }, waf: { mode: off } }",
            ),
            config(
                "",
                "",
                "  - { name: raw, match: { path: /raw }, upstream: u, throttle: { rate: 5, burst: 5 }, waf: { mode: block } }",
            ),
        ),
        ("PC017", config("waf: { builtin: false }", "", ""), config("waf: { builtin: true }", "", "")),
        (
            "PC018",
            config("waf: { ip_allow: [\"0.0.0.0/0\"] }", "", ""),
            config("waf: { ip_allow: [\"10.0.0.7\"] }", "", ""),
        ),
        (
            "PC019",
            config("state: { store: \"redis://127.0.0.1:6379\", on_failure: open }", "", ""),
            config("state: { store: \"redis://127.0.0.1:6379\", on_failure: local }", "", ""),
        ),
        (
            "PC020",
            config("state: { store: \"redis+cluster://127.0.0.1:7000,10.0.0.5:7000\" }", "", ""),
            config("state: { store: \"rediss://:pw@10.0.0.5:6379\" }", "", ""),
        ),
    ];
    for (id, bad, good) in &cases {
        let found = lint_ids(bad, &[secret]);
        assert!(found.iter().any(|f| f == id), "{id} should trigger on:\n{bad}\nfound {found:?}");
        let quiet = lint_ids(good, &[secret]);
        assert!(!quiet.iter().any(|f| f == id), "{id} should not trigger on:\n{good}\nfound {quiet:?}");
    }
    let ids: std::collections::BTreeSet<&str> = cases.iter().map(|c| c.0).collect();
    assert_eq!(ids.len(), portcullis::lint::rules().len() - 1, "every rule but PC000 has a case");
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/lint.md")).unwrap();
    for r in portcullis::lint::rules() {
        assert!(doc.contains(&format!("| `{}` | `{}` |", r.id, r.name)), "docs/lint.md lists {}", r.id);
    }
}

fn portcullis(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis")).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn exit_codes_and_sarif() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let clean = write("clean.yaml", &config("", "", ""));
    let warn = write("warn.yaml", &config("", "", "").replace(", timeout: 5s", ""));
    let error = write("error.yaml", &config("clients: { trusted_proxies: [\"::/0\"] }", "", ""));
    let broken = write("broken.yaml", "listeners: [ nope");
    assert_eq!(portcullis(&["lint", "-c", &clean]).0, 0);
    assert_eq!(portcullis(&["lint", "-c", &warn]).0, 0, "warnings pass without --strict");
    assert_eq!(portcullis(&["lint", "-c", &warn, "--strict"]).0, 1);
    let (code, text) = portcullis(&["lint", "-c", &error]);
    assert_eq!(code, 1);
    assert!(
        text.contains("error.yaml:") && text.contains("error[PC011 trust-everyone] clients.trusted_proxies[0]"),
        "{text}"
    );
    assert!(text.contains("fix: "), "{text}");
    assert_eq!(portcullis(&["lint", "-c", &broken]).0, 2, "unreadable config");
    assert_eq!(portcullis(&["lint", "-c", "/nonexistent.yaml"]).0, 2);

    let (_, json) = portcullis(&["lint", "-c", &error, "--format", "json"]);
    let findings: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(findings[0]["id"], "PC011");
    assert_eq!(findings[0]["severity"], "error");
    assert!(findings[0]["line"].as_u64().unwrap() >= 1);

    let (_, sarif) = portcullis(&["lint", "-c", &error, "--format", "sarif"]);
    let log: serde_json::Value = serde_json::from_str(&sarif).unwrap();
    assert_eq!(log["version"], "2.1.0");
    let run = &log["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    assert!(rules.iter().any(|r| r["id"] == "PC011"));
    let result = run["results"].as_array().unwrap().iter().find(|r| r["ruleId"] == "PC011").unwrap();
    assert_eq!(result["level"], "error");
    let region = &result["locations"][0]["physicalLocation"]["region"];
    assert_eq!(region["startLine"], 6, "the line of trusted_proxies in the file");
}

#[test]
fn run_prints_findings_and_strict_refuses_errors() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.yaml");
    let port = portcullis_testkit::free_port();
    let yaml = config("clients: { trusted_proxies: [\"0.0.0.0/0\"] }", "", "")
        .replace("127.0.0.1:0\" }]", &format!("127.0.0.1:{port}\" }}]"));
    std::fs::write(&path, yaml).unwrap();
    let bin = env!("CARGO_BIN_EXE_portcullis");
    let out = Command::new(bin).args(["run", "--no-watch", "--strict", "-c"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "--strict refuses to start on lint errors");
    assert!(String::from_utf8_lossy(&out.stderr).contains("PC011"));

    let mut child = Command::new(bin)
        .args(["run", "--no-watch", "-c"])
        .arg(&path)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Drain stderr for the child's whole life (a closed pipe would break its logging).
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut seen = false;
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
        if line.contains("PC011") {
            seen = true;
            break;
        }
    }
    let started = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        || (0..200).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen, "the finding is logged at startup");
    assert!(started, "without --strict the gateway starts anyway");
}

#[test]
fn the_published_schema_is_current_and_every_example_fits_it() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let published = std::fs::read_to_string(root.join("docs/config.schema.json")).unwrap();
    let (code, printed) = portcullis(&["schema"]);
    assert_eq!(code, 0);
    assert_eq!(printed.trim(), published.trim(), "regenerate with `portcullis schema > docs/config.schema.json`");
    let schema: serde_json::Value = serde_json::from_str(&published).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let mut checked = 0;
    for entry in std::fs::read_dir(root.join("examples")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let value: serde_json::Value = match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => serde_saphyr::from_str(&text).unwrap(),
            Some("toml") => toml::from_str(&text).unwrap(),
            Some("json") => serde_json::from_str(&text).unwrap(),
            _ => continue,
        };
        let errors: Vec<String> =
            validator.iter_errors(&value).map(|e| format!("{}: {e}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        checked += 1;
    }
    assert!(checked >= 3);
    // The schema rejects what the loader rejects: an unknown key, a wrong type.
    for bad in [r#"{"listeners": [], "rotues": []}"#, r#"{"routes": [{"name": 1}]}"#] {
        let v: serde_json::Value = serde_json::from_str(bad).unwrap();
        assert!(!validator.is_valid(&v), "{bad}");
    }
}
