//! Output formats shared by every command that prints data.

use clap::ValueEnum;
use serde::Serialize;

use crate::error::CliError;

/// How data is printed: a table or text for people, JSON or YAML for machines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Human-readable text or table.
    #[default]
    Text,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

/// Serializes `value` as JSON or YAML; `None` for [`OutputFormat::Text`].
pub fn to_machine<T: Serialize>(
    value: &T,
    format: OutputFormat,
) -> Result<Option<String>, CliError> {
    let failed = |format, source: Box<dyn std::error::Error + Send + Sync>| CliError::Output {
        format,
        source,
    };
    Ok(match format {
        OutputFormat::Text => None,
        OutputFormat::Json => Some(
            serde_json::to_string_pretty(value).map_err(|e| failed("JSON", Box::new(e)))? + "\n",
        ),
        OutputFormat::Yaml => {
            Some(serde_norway::to_string(value).map_err(|e| failed("YAML", Box::new(e)))?)
        }
    })
}
