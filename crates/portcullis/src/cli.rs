//! Command-line interface (parsing only; `main.rs` dispatches).

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Portcullis, a secure-by-default API gateway.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway with a config file (reloads on SIGHUP and on file change).
    Run {
        /// Config file (.yaml, .toml or .json).
        #[arg(short, long)]
        config: PathBuf,
        /// Do not watch the config files (reload with SIGHUP or the admin API only).
        #[arg(long)]
        no_watch: bool,
        /// Refuse to start when `portcullis lint` finds errors (they are printed either way).
        #[arg(long)]
        strict: bool,
    },
    /// Check a config file: exit 0 when valid, else print `file:line: message` and exit 1.
    Validate {
        /// Config file.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Check a config for dangerous patterns: exit 0 without errors, 1 with errors (or
    /// warnings under --strict), 2 when the config cannot be read.
    Lint {
        /// Config file.
        #[arg(short, long)]
        config: PathBuf,
        /// `text` (default), `json` or `sarif` (2.1.0).
        #[arg(long, default_value = "text")]
        format: LintFormat,
        /// Warnings fail too.
        #[arg(long)]
        strict: bool,
    },
    /// Print the JSON Schema of the config file (docs/config.schema.json), for editors.
    Schema,
    /// Start a demo backend and the gateway with examples/demo.yaml, and print curl lines.
    Demo,
    /// Manage API keys in the store the config names.
    Keys {
        /// Config file (its `state.store` is used).
        #[arg(short, long, global = true)]
        config: Option<PathBuf>,
        /// What to do.
        #[command(subcommand)]
        action: KeysAction,
    },
    /// WAF tools.
    Waf {
        /// What to do.
        #[command(subcommand)]
        action: WafAction,
    },
}

/// `portcullis waf` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum WafAction {
    /// Run go-ftw regression tests (CRS's own suite): in-process by default (detection mode,
    /// paranoia 4, CRS's test setup rule), or over HTTP against a running gateway with --url.
    /// Prints pass/fail per rule file, positive and negative tests apart, then `N passed, M
    /// failed`; exit 0 when nothing failed.
    Test {
        /// CRS directory (crs-setup.conf(.example) and rules/).
        #[arg(long)]
        rules: PathBuf,
        /// Directory of go-ftw YAML test files (searched recursively).
        #[arg(long)]
        tests: PathBuf,
        /// go-ftw overrides file (every entry needs a reason).
        #[arg(long)]
        overrides: Option<PathBuf>,
        /// One JSON object per test, then the totals.
        #[arg(long)]
        json: bool,
        /// List every failed test with the reason.
        #[arg(long)]
        failures: bool,
        /// Send the requests to a running gateway at this address (host:port) instead.
        #[arg(long, requires = "log")]
        url: Option<String>,
        /// The gateway's WAF log file (`waf.log`), read for the verdicts in --url mode.
        #[arg(long)]
        log: Option<PathBuf>,
    },
}

/// Output of `portcullis lint`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LintFormat {
    /// `file:line: severity[ID rule] path: message` and a fix line.
    Text,
    /// A JSON array of findings.
    Json,
    /// SARIF 2.1.0.
    Sarif,
}

/// `portcullis keys` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum KeysAction {
    /// Create a key (printed once) for a client on a plan.
    Create {
        /// Plan name.
        #[arg(long)]
        plan: String,
        /// Who the key is for.
        #[arg(long)]
        name: String,
    },
    /// List keys (ids, plans, states; never the keys).
    List,
    /// Move a key to another plan, or disable / enable / revoke it.
    Update {
        /// Key id.
        id: String,
        /// New plan.
        #[arg(long)]
        plan: Option<String>,
        /// active, disabled or revoked.
        #[arg(long)]
        status: Option<String>,
    },
    /// Revoke a key for good.
    Revoke {
        /// Key id.
        id: String,
    },
}
