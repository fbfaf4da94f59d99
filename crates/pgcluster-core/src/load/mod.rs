//! Loading `PostgresCluster` objects from YAML or JSON text (no file access:
//! the caller reads the text).
//!
//! ```text
//! text --documents--> JSON values --kind check--> typed PostgresCluster + unknown fields as problems
//! ```
//!
//! Syntax errors carry the line and column; type errors carry the field path.
//! Unknown fields do not stop loading: they become [`ValidationError`]s with a
//! "did you mean" hint, reported together with validation's own problems by
//! [`LoadedCluster::validate`]. Loading never panics on any input.

mod unknown;

use kube::Resource;
use serde::Deserialize;
use serde_json::Value;

use crate::api::v1alpha1::PostgresCluster;
use crate::validate::{ValidationError, ValidationErrors, validate};
use crate::validated::ValidatedCluster;

/// One cluster object read from the input.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedCluster {
    /// Position of the document in the input (1-based).
    pub document: usize,
    /// The object, with unknown fields dropped.
    pub cluster: PostgresCluster,
    /// One problem per unknown field, each with a "did you mean" hint when a known field is close.
    pub unknown_fields: Vec<ValidationError>,
}

impl LoadedCluster {
    /// Validates the object; the unknown fields are reported first, together
    /// with every validation problem.
    pub fn validate(&self) -> Result<ValidatedCluster, ValidationErrors> {
        match validate(&self.cluster) {
            Ok(v) if self.unknown_fields.is_empty() => Ok(v),
            Ok(_) => Err(ValidationErrors {
                errors: self.unknown_fields.clone(),
            }),
            Err(e) => {
                let mut errors = self.unknown_fields.clone();
                errors.extend(e.errors);
                Err(ValidationErrors { errors })
            }
        }
    }
}

/// Why the input could not be read as `PostgresCluster` objects.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// The text is not valid YAML or JSON.
    #[error("failed to parse {format} at line {line}, column {column}: {message}")]
    Syntax {
        /// `YAML` or `JSON`
        format: &'static str,
        /// 1-based line
        line: usize,
        /// 1-based column
        column: usize,
        /// the parser's message
        message: String,
    },
    /// A field has the wrong type or value.
    #[error("document {document}: {path}: {message}\n    hint: {hint}")]
    Type {
        /// 1-based document position
        document: usize,
        /// field path, e.g. `spec.instances`
        path: String,
        /// what is wrong
        message: String,
        /// what to do
        hint: String,
    },
    /// The document is some other kind of object.
    #[error(
        "document {document} is `{kind}` (apiVersion `{api_version}`), not a PostgresCluster (apiVersion `pgcluster.dev/v1alpha1`)"
    )]
    WrongKind {
        /// 1-based document position
        document: usize,
        /// its kind, or `<none>`
        kind: String,
        /// its apiVersion, or `<none>`
        api_version: String,
    },
    /// The document is not a mapping.
    #[error("document {document} is not an object (a mapping of fields)")]
    NotAnObject {
        /// 1-based document position
        document: usize,
    },
    /// Nothing but whitespace and comments.
    #[error("the input contains no document")]
    Empty,
    /// Several clusters where one is expected.
    #[error("the input holds {count} clusters where one is expected; put one cluster in the file")]
    Several {
        /// how many
        count: usize,
    },
}

impl LoadError {
    /// Bounded category for metrics and messages.
    pub fn category(&self) -> &'static str {
        match self {
            LoadError::Syntax { .. } => "syntax",
            LoadError::Type { .. } => "type",
            LoadError::WrongKind { .. } => "wrong-kind",
            LoadError::NotAnObject { .. } => "not-an-object",
            LoadError::Empty => "empty",
            LoadError::Several { .. } => "several",
        }
    }
}

/// Reads every `PostgresCluster` in `input` (YAML with `---` separated
/// documents, a JSON object, several JSON objects, a JSON array, or a
/// `kind: List` with `items`).
pub fn load(input: &str) -> Result<Vec<LoadedCluster>, LoadError> {
    let documents = documents(input)?;
    if documents.is_empty() {
        return Err(LoadError::Empty);
    }
    documents
        .into_iter()
        .enumerate()
        .map(|(i, value)| load_value(i + 1, value))
        .collect()
}

/// Reads exactly one `PostgresCluster`; an input holding several is refused.
pub fn load_one(input: &str) -> Result<LoadedCluster, LoadError> {
    let mut all = load(input)?;
    if all.len() > 1 {
        return Err(LoadError::Several { count: all.len() });
    }
    all.pop().ok_or(LoadError::Empty)
}

/// Splits the input into JSON values, one per document, expanding arrays and Lists.
fn documents(input: &str) -> Result<Vec<Value>, LoadError> {
    let trimmed = input.trim_start();
    // JSON starts with `{"` or `[` followed by a JSON value; `{name: x}` is YAML flow style.
    let after_open = trimmed.get(1..).unwrap_or_default().trim_start();
    let looks_like_json = (trimmed.starts_with('{')
        && (after_open.starts_with('"') || after_open.starts_with('}')))
        || (trimmed.starts_with('[') && after_open.starts_with(['{', '[', '"', ']']));
    let raw = if looks_like_json {
        json_documents(input)?
    } else {
        yaml_documents(input)?
    };
    let mut out = Vec::new();
    for value in raw {
        match value {
            Value::Null => {}
            Value::Array(items) => out.extend(items),
            Value::Object(ref map)
                if map.get("kind").and_then(Value::as_str) == Some("List")
                    && map.get("items").is_some_and(Value::is_array) =>
            {
                if let Some(Value::Array(items)) = map.get("items") {
                    out.extend(items.iter().cloned());
                }
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

fn json_documents(input: &str) -> Result<Vec<Value>, LoadError> {
    serde_json::Deserializer::from_str(input)
        .into_iter::<Value>()
        .map(|value| {
            value.map_err(|e| LoadError::Syntax {
                format: "JSON",
                line: e.line(),
                column: e.column(),
                message: strip_position(&e.to_string()),
            })
        })
        .collect()
}

fn yaml_documents(input: &str) -> Result<Vec<Value>, LoadError> {
    let mut raw = Vec::new();
    {
        for doc in serde_norway::Deserializer::from_str(input) {
            let value = Value::deserialize(doc).map_err(|e| {
                let (line, column) = e
                    .location()
                    .map(|l| (l.line(), l.column()))
                    .unwrap_or((0, 0));
                LoadError::Syntax {
                    format: "YAML",
                    line,
                    column,
                    message: strip_position(&e.to_string()),
                }
            })?;
            raw.push(value);
        }
    }
    Ok(raw)
}

/// `... at line 3 column 5` -> `...` (the position is reported separately).
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

fn load_value(document: usize, mut value: Value) -> Result<LoadedCluster, LoadError> {
    let Some(map) = value.as_object() else {
        return Err(LoadError::NotAnObject { document });
    };
    let text = |key: &str| {
        map.get(key)
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .unwrap_or_else(|| "<none>".to_owned())
    };
    let (kind, api_version) = (text("kind"), text("apiVersion"));
    if kind != PostgresCluster::kind(&()) || api_version != PostgresCluster::api_version(&()) {
        return Err(LoadError::WrongKind {
            document,
            kind,
            api_version,
        });
    }
    // The CRD requires `spec` (the API server refuses an object without one,
    // and drops a null one before refusing it), so the loader does too:
    // `pgcluster validate` must not pass what `kubectl apply` then fails.
    // Every field inside it is optional: `spec: {}` means "all defaults".
    if map.get("spec").is_none_or(Value::is_null) {
        return Err(LoadError::Type {
            document,
            path: "spec".to_owned(),
            message:
                "missing field `spec` (required by the CRD; the API server refuses the object)"
                    .to_owned(),
            hint: "write `spec: {}` to take every default".to_owned(),
        });
    }
    stringify_parameters(&mut value);
    let mut unknown = Vec::new();
    let result: Result<PostgresCluster, _> = {
        let mut record = |path: serde_ignored::Path<'_>| unknown.push(unknown::segments(&path));
        let de = serde_ignored::Deserializer::new(value, &mut record);
        serde_path_to_error::deserialize(de)
    };
    let cluster = result.map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        LoadError::Type {
            document,
            hint: type_hint(&message),
            path,
            message,
        }
    })?;
    let unknown_fields = unknown
        .into_iter()
        .filter(|segments| !unknown::is_type_meta(segments))
        .map(|segments| unknown::problem(&segments))
        .collect();
    Ok(LoadedCluster {
        document,
        cluster,
        unknown_fields,
    })
}

/// `max_connections: 200` is what people write; parameters are strings in the API.
fn stringify_parameters(value: &mut Value) {
    if let Some(Value::Object(params)) = value.pointer_mut("/spec/postgres/parameters") {
        for v in params.values_mut() {
            match v {
                Value::Number(n) => *v = Value::String(n.to_string()),
                Value::Bool(b) => *v = Value::String(if *b { "on" } else { "off" }.to_owned()),
                _ => {}
            }
        }
    }
}

fn type_hint(message: &str) -> String {
    if message.contains("expected a string") {
        "quote the value, e.g. `\"10Gi\"` or `\"2s\"`".to_owned()
    } else if message.contains("unknown variant") {
        "use one of the values listed above (they are case-sensitive)".to_owned()
    } else if message.contains("missing field") {
        "add the field; `pgcluster init` prints a complete example".to_owned()
    } else {
        "see `pgcluster init` for an annotated example of every field".to_owned()
    }
}

#[cfg(test)]
mod tests;
