//! Reading a config file: format by extension, parse errors with `file:line`.

use super::locate::{Locator, line_at};
use super::model::Config;
use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a config file, always with the file and line it points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file as the user named it.
    pub file: String,
    /// 1-based line.
    pub line: u64,
    /// What is wrong and, where useful, how to fix it.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

/// All problems found in one file (validation reports every error, not just the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl ConfigErrors {
    /// One error.
    pub fn one(file: &str, line: u64, message: impl Into<String>) -> ConfigErrors {
        ConfigErrors(vec![ConfigError { file: file.to_string(), line, message: message.into() }])
    }
}

/// The file formats a config may be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.yaml` / `.yml` (and anything else).
    Yaml,
    /// `.toml`.
    Toml,
    /// `.json`.
    Json,
}

impl Format {
    /// The format a file name implies.
    pub fn of(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("toml") => Format::Toml,
            Some("json") => Format::Json,
            _ => Format::Yaml,
        }
    }
}

/// A parsed file: the model, where each key was written, and the source name.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The parsed model.
    pub config: Config,
    /// Path → line map for semantic errors.
    pub locator: Locator,
    /// The file as the user named it (for messages).
    pub file: String,
    /// The file's path, for resolving relative paths inside it.
    pub path: PathBuf,
}

impl Loaded {
    /// An error at a config path such as `routes[2].upstream`.
    pub fn error_at(&self, path: &str, message: impl Into<String>) -> ConfigError {
        ConfigError { file: self.file.clone(), line: self.locator.line_of(path), message: message.into() }
    }

    /// Resolves a path written in the config relative to the config file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            return p.to_path_buf();
        }
        match self.path.parent() {
            Some(dir) => dir.join(p),
            None => p.to_path_buf(),
        }
    }
}

/// Reads and parses a file.
pub fn load_file(path: &Path) -> Result<Loaded, ConfigErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors::one(&file, 1, format!("cannot read: {e}")))?;
    parse_str(&text, Format::of(path), path)
}

/// Parses text as if read from `path`.
pub fn parse_str(text: &str, format: Format, path: &Path) -> Result<Loaded, ConfigErrors> {
    let file = path.display().to_string();
    let (config, locator) = match format {
        Format::Yaml => {
            let options = serde_saphyr::options! { with_snippet: false };
            let config = serde_saphyr::from_str_with_options::<Config>(text, options).map_err(|e| {
                let line = e.location().map(|l| l.line()).filter(|l| *l > 0).unwrap_or(1);
                ConfigErrors::one(&file, line, yaml_message(&e))
            })?;
            (config, Locator::from_yaml(text))
        }
        Format::Json => {
            let config = serde_json::from_str::<Config>(text)
                .map_err(|e| ConfigErrors::one(&file, e.line().max(1) as u64, strip_position(&e.to_string())))?;
            (config, Locator::from_yaml(text))
        }
        Format::Toml => {
            let config = toml::from_str::<Config>(text).map_err(|e| {
                let starts: Vec<usize> =
                    std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
                let line = e.span().map(|s| line_at(&starts, s.start)).unwrap_or(1);
                ConfigErrors::one(&file, line, e.message().trim().to_string())
            })?;
            (config, Locator::from_toml(text))
        }
    };
    Ok(Loaded { config, locator, file, path: path.to_path_buf() })
}

/// serde-saphyr's message without its own "at line X column Y" suffix (we print the line).
fn yaml_message(e: &serde_saphyr::Error) -> String {
    strip_position(&e.without_snippet().to_string())
}

fn strip_position(msg: &str) -> String {
    let cut = [" at line ", " at ", " line "]
        .iter()
        .filter_map(|m| msg.rfind(m))
        .find(|i| msg[*i..].contains("line") && msg[*i..].chars().any(|c| c.is_ascii_digit()));
    match cut {
        Some(i) => msg[..i].trim_end_matches([',', ' ']).to_string(),
        None => msg.to_string(),
    }
}
