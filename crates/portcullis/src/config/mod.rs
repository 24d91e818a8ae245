//! Configuration: file → model (`load`) → validated, immutable snapshot (`compile`).

pub mod compile;
pub(crate) mod compile_auth;
pub(crate) mod compile_limits;
pub mod compile_waf;
pub mod load;
pub mod locate;
pub mod model;
pub mod model_auth;
pub mod model_waf;
pub mod runtime;
pub mod units;

pub use compile::compile;
pub use load::{ConfigError, ConfigErrors, Format, Loaded, load_file, parse_str};
pub use runtime::Runtime;

/// The JSON Schema of the config file (pretty-printed), generated from the model.
pub fn schema() -> String {
    let mut schema = schemars::schema_for!(model::Config);
    schema.insert("title".into(), "Portcullis configuration".into());
    serde_json::to_string_pretty(&schema).unwrap_or_default()
}

/// Reads, validates and compiles a file in one step.
pub fn load_runtime(path: &std::path::Path, previous: Option<&Runtime>) -> Result<Runtime, ConfigErrors> {
    compile(load_file(path)?, previous)
}
