//! Portcullis WAF: a SecLang (ModSecurity rule language) parser and rule engine that runs the
//! OWASP Core Rule Set. No HTTP, no async: the input is a request view, the output is the
//! matched rules and a verdict.

pub mod actions;
mod decode;
pub mod lexer;
pub mod load;
pub mod macros;
pub mod operator;
pub mod rules;
pub mod transform;
pub mod vars;

pub use load::{Builder, LoadError, load_files};
pub use rules::{Rule, RuleSet};
