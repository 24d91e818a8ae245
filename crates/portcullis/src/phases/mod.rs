//! The request phases, one module each, in the order `pipeline.rs` lists them.

pub mod auth;
pub mod cors;
pub mod hygiene;
pub mod identity;
pub mod ip_rules;
pub mod path;
pub mod policy;
pub mod response;
pub mod route;
pub mod sign;
pub mod throttle;
pub mod upstream_request;
pub mod validate;
pub mod waf;
pub mod waf_response;
