//! Portcullis WAF: a SecLang (ModSecurity rule language) parser and rule engine that runs the
//! OWASP Core Rule Set. No HTTP, no async: the input is a request view, the output is the
//! matched rules and a verdict.

pub mod actions;
pub mod body;
mod cache;
mod collect;
mod decode;
pub mod engine;
pub mod features;
pub mod ftw;
pub mod iplist;
mod json;
pub mod lexer;
mod link;
pub mod load;
pub mod log;
pub mod macros;
pub mod operator;
mod plain;
mod plan;
pub mod prefilter;
pub mod prelude;
#[cfg(feature = "rule-profile")]
pub mod profile;
pub mod request;
pub mod rules;
pub mod transform;
mod tx;
pub mod vars;

pub use body::BodyLimits;
pub use engine::{Interruption, Match, Transaction};
pub use load::{Builder, LoadError, load_files};
pub use request::{Request, Response};
pub use rules::{Rule, RuleSet};

/// Portcullis's own compact rule set (`waf.builtin`): libinjection SQLi/XSS on arguments,
/// body values and cookies, path traversal, scanner user agents, oversized arguments,
/// unparsable bodies. Each rule blocks on its own.
pub const BUILTIN_RULES: &str = include_str!("../rules/builtin.conf");
