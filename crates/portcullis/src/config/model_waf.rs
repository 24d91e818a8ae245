//! The `waf` section, `defaults.waf` and `routes[].waf`.

use super::units::Size;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The web application firewall: which rules, how much of a body, where its log goes, IP lists.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Waf {
    /// Stock OWASP Core Rule Set v4: the directory with `crs-setup.conf(.example)` and `rules/`.
    #[serde(default)]
    pub crs: Option<Crs>,
    /// Portcullis's compact built-in rules (SQLi/XSS with libinjection, traversal, scanners,
    /// oversized arguments). Default: on when `crs` is not set, off when it is.
    #[serde(default)]
    pub builtin: Option<bool>,
    /// More SecLang files loaded after the rules above (own rules, `SecRuleUpdateTargetById`
    /// exclusions), relative to the config file.
    #[serde(default)]
    pub rules: Vec<PathBuf>,
    /// Bytes of a request body the WAF reads and inspects (default 1MiB).
    #[serde(default)]
    pub body_limit: Option<Size>,
    /// A body over `body_limit`: `reject` (413 `waf.body_too_large`, the default) or
    /// `inspect_prefix` (inspect the first `body_limit` bytes, forward all of it).
    #[serde(default)]
    pub on_body_limit: Option<WafBodyLimit>,
    /// What of an upstream's answer the response phases (CRS 95x data leakage rules) inspect.
    #[serde(default)]
    pub response: WafResponse,
    /// Where the WAF log goes, one ModSecurity-style line per matched rule: `stderr` (default),
    /// `stdout`, `off`, or a file path (relative to the config file).
    #[serde(default)]
    pub log: Option<String>,
    /// Client addresses refused with 403 `waf.ip_denied`: CIDRs or addresses, or `file:PATH`
    /// (one per line, `#` comments). The longest matching prefix of both lists decides.
    #[serde(default)]
    pub ip_deny: Vec<String>,
    /// Client addresses exempt from `ip_deny` and from WAF rules (trusted scanners, monitors).
    #[serde(default)]
    pub ip_allow: Vec<String>,
}

impl Waf {
    /// Whether the built-in rules load: as set, else on exactly when no CRS is configured.
    pub fn builtin_enabled(&self) -> bool {
        self.builtin.unwrap_or(self.crs.is_none())
    }

    /// Whether any rules load at all (CRS, built-in or own files).
    pub fn has_rules(&self) -> bool {
        self.crs.is_some() || self.builtin_enabled() || !self.rules.is_empty()
    }
}

/// The WAF mode of routes that set none: `defaults.waf.mode`, else `block`.
pub fn default_waf_mode(defaults: Option<&WafDefaults>) -> WafMode {
    defaults.and_then(|d| d.mode).unwrap_or(WafMode::Block)
}

/// OWASP CRS settings.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Crs {
    /// CRS directory (relative to the config file).
    pub path: PathBuf,
    /// Paranoia level 1..4 (default 1): higher catches more and blocks more false positives.
    #[serde(default)]
    pub paranoia: Option<u8>,
    /// Inbound anomaly score at which a request is blocked (default 5: one critical match).
    #[serde(default)]
    pub inbound_threshold: Option<u32>,
    /// Outbound anomaly score at which a response is refused (default 4: one error-level
    /// data leakage match).
    #[serde(default)]
    pub outbound_threshold: Option<u32>,
    /// Your own `crs-setup.conf` (relative to the config file), used instead of the one in
    /// `path` (else `crs-setup.conf.example` there).
    #[serde(default)]
    pub setup: Option<PathBuf>,
}

/// `waf.response`: the response phases run over every upstream answer's status and headers;
/// its body is read ahead and inspected when its media type is listed.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WafResponse {
    /// Bytes of a response body read ahead and inspected (default 512KiB, 1KiB..64MiB); a
    /// longer body is inspected up to here and then streams on.
    #[serde(default)]
    pub body_limit: Option<Size>,
    /// Media types whose bodies are inspected (default `text/plain`, `text/html`, `text/xml`,
    /// `application/json`); `[]` inspects status and headers only.
    #[serde(default)]
    pub mime_types: Option<Vec<String>>,
}

/// What the WAF does on a route.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WafMode {
    /// Matching requests are refused (403 `waf.blocked`).
    Block,
    /// Matches are logged, requests pass.
    Detect,
    /// No inspection.
    Off,
}

/// What happens to a body larger than `waf.body_limit`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WafBodyLimit {
    /// 413 `waf.body_too_large`.
    Reject,
    /// Inspect the first `body_limit` bytes; forward the whole body.
    InspectPrefix,
}

/// `defaults.waf`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WafDefaults {
    /// Mode of routes that do not set one (default `block`).
    #[serde(default)]
    pub mode: Option<WafMode>,
}

/// A route's WAF settings: its mode and exclusions for false positives, without editing
/// rule files.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteWaf {
    /// `block`, `detect` or `off`; `defaults.waf.mode` when absent.
    #[serde(default)]
    pub mode: Option<WafMode>,
    /// Rule ids (or ranges `942100-942199`) that do not run on this route.
    #[serde(default)]
    pub exclude_rules: Vec<String>,
    /// Rule tags (`attack-sqli`, `paranoia-level/2`) whose rules do not run on this route.
    #[serde(default)]
    pub exclude_tags: Vec<String>,
    /// Variables a rule must not look at on this route.
    #[serde(default)]
    pub exclude_targets: Vec<WafTargetExclusion>,
}

/// One rule (or id range) and the variables it skips, in SecLang target syntax.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WafTargetExclusion {
    /// Rule id or range (`942100`, `942100-942999`).
    pub rule: String,
    /// Targets, e.g. `ARGS:password` or `REQUEST_COOKIES:/^_ga/|ARGS:json.note`.
    pub targets: String,
}
