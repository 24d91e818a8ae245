//! The go-ftw test file format (as CRS's regression tests use it) and override files.

use serde::Deserialize;
use std::collections::BTreeMap;

/// Any YAML scalar, kept as the text go-ftw would send.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    pub fn text(&self) -> String {
        match self {
            Scalar::Text(s) => s.clone(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct TestFile {
    pub rule_id: u32,
    #[serde(default)]
    pub tests: Vec<Test>,
}

#[derive(Debug, Deserialize)]
pub struct Test {
    pub test_id: u32,
    #[serde(default)]
    pub desc: Option<String>,
    #[serde(default)]
    pub stages: Vec<Stage>,
}

#[derive(Debug, Deserialize)]
pub struct Stage {
    pub input: Input,
    pub output: Output,
}

#[derive(Debug, Default, Deserialize)]
pub struct Input {
    #[serde(default)]
    pub dest_addr: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub method: Option<Scalar>,
    #[serde(default)]
    pub uri: Option<Scalar>,
    #[serde(default)]
    pub version: Option<Scalar>,
    #[serde(default)]
    pub headers: BTreeMap<String, Scalar>,
    #[serde(default)]
    pub data: Option<Scalar>,
    #[serde(default)]
    pub encoded_request: Option<String>,
    #[serde(default)]
    pub autocomplete_headers: Option<bool>,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct Output {
    #[serde(default)]
    pub status: Option<Status>,
    #[serde(default)]
    pub log: LogExpect,
    #[serde(default)]
    pub expect_error: Option<bool>,
    #[serde(default)]
    pub response_contains: Option<String>,
    #[serde(default)]
    pub retry_once: Option<bool>,
    /// Older test files put these at the top level of `output`.
    #[serde(default)]
    pub log_contains: Option<String>,
    #[serde(default)]
    pub no_log_contains: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Status {
    One(u16),
    Any(Vec<u16>),
}

impl Status {
    pub fn accepts(&self, code: u16) -> bool {
        match self {
            Status::One(s) => *s == code,
            Status::Any(list) => list.contains(&code),
        }
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct LogExpect {
    #[serde(default)]
    pub expect_ids: Vec<u32>,
    #[serde(default)]
    pub no_expect_ids: Vec<u32>,
    #[serde(default)]
    pub match_regex: Option<String>,
    #[serde(default)]
    pub no_match_regex: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct OverrideFile {
    #[serde(default)]
    pub test_overrides: Vec<Override>,
}

/// Replaces the expected output of the listed tests; `reason` must say why.
#[derive(Debug, Deserialize)]
pub struct Override {
    pub rule_id: u32,
    #[serde(default)]
    pub test_ids: Vec<u32>,
    pub reason: String,
    pub output: Output,
}
