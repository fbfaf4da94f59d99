//! Loading `PostgresCluster` objects from YAML or JSON text (no file access:
//! the caller reads the text).
//!
//! ```text
//! text --tree (limits, positions, duplicate keys)--> one Node tree per document
//!      --kind check--> serde, repeated: each wrong type or value is reported and dropped
//!      --> typed PostgresCluster + problems (duplicate keys, wrong types and values,
//!          unknown fields), each with its field path and line
//! ```
//!
//! Problems in the fields do not stop loading: they are reported together
//! with validation's own problems by [`LoadedCluster::validate`], so one run
//! lists every mistake. Syntax errors and hostile input (past the size,
//! nesting or alias limits of `tree`) stop loading with a [`LoadError`].
//! Loading never panics on any input.

mod tree;
mod unknown;

use kube::Resource;
use serde_json::Value;

pub use tree::{MAX_ALIAS_NODES, MAX_DEPTH, MAX_NODES};

use crate::api::v1alpha1::PostgresCluster;
use crate::timing::Platform;
use crate::validate::{Check, ValidationError, ValidationErrors, validate_on};
use crate::validated::ValidatedCluster;
use tree::{Node, NodeValue};
use unknown::Segment;

/// The largest input read, in bytes (1 MiB: a spec is a few kilobytes; the
/// Kubernetes API server refuses objects past about 1.5 MiB anyway).
pub const MAX_INPUT_BYTES: usize = 1024 * 1024;

/// Most problems reported for one document before loading gives up on it.
const MAX_PROBLEMS: usize = 100;

/// One cluster object read from the input.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedCluster {
    /// Position of the document in the input (1-based).
    pub document: usize,
    /// The object, without unknown fields and without the values reported in `problems`.
    pub cluster: PostgresCluster,
    /// Duplicate keys, wrong types and values, and unknown fields (each with a
    /// "did you mean" hint when a known field is close), in that order; each
    /// with its field path and line.
    pub problems: Vec<ValidationError>,
    /// The document as read, to give validation problems their lines.
    source: Node,
}

impl LoadedCluster {
    /// Validates the object; the loader's problems are reported first,
    /// together with every validation problem, each with its line when the
    /// field is written in the input.
    pub fn validate(&self) -> Result<ValidatedCluster, ValidationErrors> {
        self.validate_on(Platform::Local)
    }

    /// [`LoadedCluster::validate`] with the defaults of `platform`.
    pub fn validate_on(&self, platform: Platform) -> Result<ValidatedCluster, ValidationErrors> {
        let mut errors = self.problems.clone();
        match validate_on(&self.cluster, platform) {
            Ok(v) if errors.is_empty() => return Ok(v),
            Ok(_) => {}
            Err(e) => {
                let dropped: Vec<Vec<Segment>> = self
                    .problems
                    .iter()
                    .filter(|p| {
                        matches!(
                            p.check,
                            Check::InvalidType | Check::UnknownValue | Check::MissingField
                        )
                    })
                    .filter_map(|p| unknown::parse(&p.path))
                    .collect();
                errors.extend(
                    e.errors
                        .into_iter()
                        .map(|p| self.locate(p))
                        .filter(|p| !follows_from(&dropped, &p.path)),
                );
            }
        }
        Err(ValidationErrors { errors })
    }

    /// Gives a validation problem the path and line as written in the input
    /// (list indices may differ when the loader dropped an item).
    fn locate(&self, mut problem: ValidationError) -> ValidationError {
        let Some(path) = unknown::parse(&problem.path) else {
            return problem;
        };
        let (node, mut written, followed) = self.source.resolve(&path);
        // A default (not written in the input) has no line of its own.
        if followed == path.len() && followed > 0 {
            problem.line = Some(node.line);
        }
        written.extend(path[followed..].iter().cloned());
        problem.path = unknown::render(&written);
        problem
    }
}

/// Whether a validation problem at `path` only follows from a value the loader
/// dropped (already reported): at or inside it, or at the object holding it
/// (an access rule's `from` left empty by a dropped `cidrs`). The spec's
/// sections themselves (`spec.services`) are not such objects.
fn follows_from(dropped: &[Vec<Segment>], path: &str) -> bool {
    let Some(path) = unknown::parse(path) else {
        return false;
    };
    dropped
        .iter()
        .any(|d| path.starts_with(d) || (path.len() >= 3 && d.starts_with(&path)))
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
    /// The input is past a limit that keeps hostile input from exhausting memory.
    #[error(
        "{what} is past the loader's limit of {limit}{}; a PostgresCluster spec is far smaller, so this input is refused",
        if *line > 0 { format!(" at line {line}") } else { String::new() }
    )]
    Limit {
        /// what is too large: the input, nesting, aliases
        what: &'static str,
        /// the limit, with its unit
        limit: String,
        /// 1-based line where it was reached (0: the input as a whole)
        line: usize,
    },
    /// The fields could not be read into a cluster at all (every problem found is listed).
    #[error("document {document}: {errors}")]
    Fields {
        /// 1-based document position
        document: usize,
        /// the problems, each with its path and line
        errors: ValidationErrors,
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
            LoadError::Limit { .. } => "limit",
            LoadError::Fields { .. } => "fields",
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
        .map(|(i, node)| load_node(i + 1, node))
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

/// Splits the input into trees, one per document, expanding arrays and Lists.
fn documents(input: &str) -> Result<Vec<Node>, LoadError> {
    let trimmed = input.trim_start();
    // JSON starts with `{"` or `[` followed by a JSON value; `{name: x}` is YAML flow style.
    let after_open = trimmed.get(1..).unwrap_or_default().trim_start();
    let looks_like_json = (trimmed.starts_with('{')
        && (after_open.starts_with('"') || after_open.starts_with('}')))
        || (trimmed.starts_with('[') && after_open.starts_with(['{', '[', '"', ']']));
    let raw = if looks_like_json {
        tree::parse_json(input)?
    } else {
        tree::parse_yaml(input)?
    };
    let mut out = Vec::new();
    for node in raw {
        let is_list = node.get("kind").and_then(Node::scalar_text).as_deref() == Some("List")
            && node
                .get("items")
                .is_some_and(|i| matches!(i.value, NodeValue::Seq(_)));
        match node.value {
            NodeValue::Null => {}
            NodeValue::Seq(items) => out.extend(items.into_iter().filter(Node::is_live)),
            NodeValue::Map(entries) if is_list => {
                if let Some(items) = entries
                    .into_iter()
                    .find(|e| e.key == "items" && e.node.is_live())
                    .and_then(|e| match e.node.value {
                        NodeValue::Seq(items) => Some(items),
                        _ => None,
                    })
                {
                    out.extend(items.into_iter().filter(Node::is_live));
                }
            }
            value => out.push(Node { value, ..node }),
        }
    }
    Ok(out)
}

/// `... at line 3 column 5` -> `...` (the position is reported separately).
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

fn load_node(document: usize, mut source: Node) -> Result<LoadedCluster, LoadError> {
    if !matches!(source.value, NodeValue::Map(_)) {
        return Err(LoadError::NotAnObject { document });
    }
    let text = |key: &str| {
        source
            .get(key)
            .and_then(Node::scalar_text)
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
    let mut problems = Vec::new();
    let mut duplicates = Vec::new();
    source.duplicates(&mut duplicates);
    for (path, line) in duplicates {
        let last = match path.last() {
            Some(Segment::Key(k)) => k.clone(),
            _ => String::new(),
        };
        problems.push(
            ValidationError::new(
                Check::DuplicateKey,
                unknown::render(&path),
                format!("the key `{last}` appears twice in the same mapping"),
                "keep one; the first value is the one checked below, and other tools may pick either",
            )
            .at_line(line),
        );
    }
    // The CRD requires `spec` (the API server refuses an object without one,
    // and drops a null one before refusing it), so the loader does too:
    // `pgcluster validate` must not pass what `kubectl apply` then fails.
    // Every field inside it is optional: `spec: {}` means "all defaults".
    if source
        .get("spec")
        .is_none_or(|n| matches!(n.value, NodeValue::Null))
    {
        problems.push(
            ValidationError::new(
                Check::MissingField,
                "spec".to_owned(),
                "missing field `spec` (required by the CRD; the API server refuses the object)",
                "write `spec: {}` to take every default",
            )
            .at_line(source.line),
        );
    }
    let (cluster, unknown) = deserialize(document, &mut source, &mut problems)?;
    for current in unknown {
        if unknown::is_type_meta(&current) {
            continue;
        }
        let (node, written, _) = source.resolve(&current);
        problems.push(unknown::problem(&written).at_line(node.line));
    }
    // In the order they are written, whatever found them.
    problems.sort_by_key(|p| p.line);
    Ok(LoadedCluster {
        document,
        cluster,
        problems,
        source,
    })
}

/// Deserializes the live part of the tree; each wrong type or value is
/// reported with its path and line, dropped from the tree, and serde runs
/// again, so every such mistake is found in one load. Returns the cluster and
/// the unknown fields (as serde saw their paths).
fn deserialize(
    document: usize,
    source: &mut Node,
    problems: &mut Vec<ValidationError>,
) -> Result<(PostgresCluster, Vec<Vec<Segment>>), LoadError> {
    let fail = |problems: &mut Vec<ValidationError>| LoadError::Fields {
        document,
        errors: ValidationErrors {
            errors: std::mem::take(problems),
        },
    };
    loop {
        let mut value = source.to_json();
        if let Value::Object(map) = &mut value
            && map.get("spec").is_none_or(Value::is_null)
        {
            // Every spec field is optional, so a missing or empty `spec` means "all defaults".
            map.insert("spec".to_owned(), Value::Object(serde_json::Map::new()));
        }
        stringify_parameters(&mut value);
        let mut unknown = Vec::new();
        let result: Result<PostgresCluster, _> = {
            let mut record = |path: serde_ignored::Path<'_>| unknown.push(unknown::segments(&path));
            let de = serde_ignored::Deserializer::new(value, &mut record);
            serde_path_to_error::deserialize(de)
        };
        let err = match result {
            Ok(cluster) => return Ok((cluster, unknown)),
            Err(err) => err,
        };
        let Some(path) = unknown::from_serde(err.path()) else {
            problems.push(ValidationError::new(
                Check::InvalidType,
                err.path().to_string(),
                err.inner().to_string(),
                type_hint(&err.inner().to_string()),
            ));
            return Err(fail(problems));
        };
        let message = err.into_inner().to_string();
        let (node, mut written, followed) = source.resolve(&path);
        let line = node.line;
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|m| m.strip_suffix('`'))
            .map(str::to_owned);
        let prune: Vec<Segment> = path[..followed].to_vec();
        match missing {
            // A required field this loop dropped: drop its object too, quietly.
            Some(field) if followed == path.len() && node.pruned_entry(&field) => {}
            Some(field) => {
                written.push(Segment::Key(field.clone()));
                problems.push(
                    ValidationError::new(
                        Check::MissingField,
                        unknown::render(&written),
                        format!("the required field `{field}` is missing"),
                        type_hint(&message),
                    )
                    .at_line(line),
                );
            }
            None => {
                let (check, hint) = classify(&message);
                problems.push(
                    ValidationError::new(check, unknown::render(&written), message, hint)
                        .at_line(line),
                );
            }
        }
        if prune.is_empty() || problems.len() >= MAX_PROBLEMS {
            return Err(fail(problems));
        }
        match source.resolve_mut(&prune) {
            Some(node) => node.state = tree::State::Pruned,
            None => return Err(fail(problems)),
        }
    }
}

/// The check and hint for a serde message.
fn classify(message: &str) -> (Check, String) {
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        let given = rest.split('`').next().unwrap_or_default();
        let expected: Vec<String> = rest
            .split_once("expected ")
            .map(|(_, e)| {
                e.trim_start_matches("one of ")
                    .split(", ")
                    .flat_map(|v| v.split(" or "))
                    .map(|v| v.trim_matches('`').to_owned())
                    .collect()
            })
            .unwrap_or_default();
        let hint = match unknown::suggest(given, &expected) {
            Some(best) => format!("did you mean `{best}`? (values are case-sensitive)"),
            None => "use one of the values listed (they are case-sensitive)".to_owned(),
        };
        (Check::UnknownValue, hint)
    } else {
        (Check::InvalidType, type_hint(message))
    }
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
    } else if message.contains("missing field") {
        "add the field; `pgcluster init` prints a complete example".to_owned()
    } else if message.contains("expected u32") || message.contains("expected i32") {
        "write a whole number without quotes, e.g. `3`".to_owned()
    } else if message.contains("expected a boolean") {
        "write `true` or `false`".to_owned()
    } else if message.contains("expected a sequence") {
        "write a list, e.g. `[a, b]` or one `- item` per line".to_owned()
    } else {
        "see `pgcluster init` for an annotated example of every field".to_owned()
    }
}

#[cfg(test)]
mod tests;
