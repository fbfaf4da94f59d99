//! Unknown fields: their paths, and a "did you mean" from the fields the API has
//! at that place (read from the generated CRD schema, so it never drifts).

use std::sync::OnceLock;

use kube::CustomResourceExt;
use serde_json::Value;

use crate::api::v1alpha1::PostgresCluster;
use crate::validate::{Check, ValidationError};

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Segment {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// Fields of the object itself (spec and status come from the schema).
const ROOT_FIELDS: &[&str] = &["apiVersion", "kind", "metadata", "spec", "status"];
/// Fields of `metadata` a user may write.
const METADATA_FIELDS: &[&str] = &[
    "name",
    "namespace",
    "labels",
    "annotations",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "finalizers",
    "generateName",
    "managedFields",
    "ownerReferences",
    "selfLink",
];

/// Converts serde_ignored's path into segments (wrappers such as `Some` vanish).
pub(super) fn segments(path: &serde_ignored::Path<'_>) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut cur = path;
    loop {
        match cur {
            serde_ignored::Path::Root => break,
            serde_ignored::Path::Seq { parent, index } => {
                out.push(Segment::Index(*index));
                cur = parent;
            }
            serde_ignored::Path::Map { parent, key } => {
                out.push(Segment::Key(key.clone()));
                cur = parent;
            }
            serde_ignored::Path::Some { parent }
            | serde_ignored::Path::NewtypeStruct { parent }
            | serde_ignored::Path::NewtypeVariant { parent } => cur = parent,
        }
    }
    out.reverse();
    out
}

/// `apiVersion` and `kind` at the root are checked before deserializing.
pub(super) fn is_type_meta(segments: &[Segment]) -> bool {
    matches!(segments, [Segment::Key(k)] if k == "apiVersion" || k == "kind")
}

/// Renders segments as `spec.access[1].from.cidr` (keys that are not plain
/// names as `labels["app.kubernetes.io/name"]`, as validation writes them).
pub(super) fn render(segments: &[Segment]) -> String {
    let mut out = String::new();
    for s in segments {
        match s {
            Segment::Key(k) if out.is_empty() && !k.is_empty() => out.push_str(k),
            Segment::Key(k) => out = crate::validate::key_path(&out, k),
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Parses a path as [`render`] and validation write it; `None` when it is not one.
pub(super) fn parse(path: &str) -> Option<Vec<Segment>> {
    let mut out = Vec::new();
    let mut chars = path.chars().peekable();
    let mut name = String::new();
    let flush = |name: &mut String, out: &mut Vec<Segment>| {
        if !name.is_empty() {
            out.push(Segment::Key(std::mem::take(name)));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '.' => flush(&mut name, &mut out),
            '[' => {
                flush(&mut name, &mut out);
                if chars.peek() == Some(&'"') {
                    chars.next();
                    let mut key = String::new();
                    loop {
                        match chars.next()? {
                            '"' => break,
                            '\\' => match chars.next()? {
                                'n' => key.push('\n'),
                                't' => key.push('\t'),
                                'r' => key.push('\r'),
                                '0' => key.push('\0'),
                                other => key.push(other),
                            },
                            other => key.push(other),
                        }
                    }
                    out.push(Segment::Key(key));
                    if chars.next()? != ']' {
                        return None;
                    }
                } else {
                    let mut digits = String::new();
                    for d in chars.by_ref() {
                        if d == ']' {
                            break;
                        }
                        digits.push(d);
                    }
                    out.push(Segment::Index(digits.parse().ok()?));
                }
            }
            other => name.push(other),
        }
    }
    flush(&mut name, &mut out);
    Some(out)
}

/// Converts serde_path_to_error's path into segments; `None` for a step that is
/// neither a key nor an index.
pub(super) fn from_serde(path: &serde_path_to_error::Path) -> Option<Vec<Segment>> {
    path.iter()
        .map(|s| match s {
            serde_path_to_error::Segment::Seq { index } => Some(Segment::Index(*index)),
            serde_path_to_error::Segment::Map { key } => Some(Segment::Key(key.clone())),
            _ => None,
        })
        .collect()
}

/// The problem reported for an unknown field at `segments`.
pub(super) fn problem(segments: &[Segment]) -> ValidationError {
    let path = render(segments);
    let (parent, last) = match segments.split_last() {
        Some((Segment::Key(k), parent)) => (parent, k.as_str()),
        _ => (segments, ""),
    };
    let known = known_fields(parent);
    let hint = match suggest(last, &known) {
        Some(best) => format!("did you mean `{best}`?"),
        None if known.is_empty() => "remove it".to_owned(),
        None => format!("remove it; fields here are: {}", known.join(", ")),
    };
    ValidationError::new(
        Check::UnknownField,
        path,
        format!("unknown field `{last}`"),
        hint,
    )
}

/// The closest known name, if one is close enough to be a typo.
pub(super) fn suggest(unknown: &str, known: &[String]) -> Option<String> {
    let norm = |s: &str| {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect::<String>()
    };
    let u = norm(unknown);
    known
        .iter()
        .map(|k| {
            let n = norm(k);
            let score = if n == u {
                1.0
            } else {
                strsim::normalized_damerau_levenshtein(&u, &n)
            };
            (score, k)
        })
        .filter(|(score, _)| *score >= 0.6)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k.clone())
}

/// Field names the API has under `parent` (empty when the place is not an object with fixed fields).
fn known_fields(parent: &[Segment]) -> Vec<String> {
    match parent {
        [] => ROOT_FIELDS.iter().map(|s| (*s).to_owned()).collect(),
        [Segment::Key(m)] if m == "metadata" => {
            METADATA_FIELDS.iter().map(|s| (*s).to_owned()).collect()
        }
        _ => {
            let mut node = schema();
            for seg in parent {
                let next = match seg {
                    Segment::Key(k) => node
                        .get("properties")
                        .and_then(|p| p.get(k))
                        .or_else(|| node.get("additionalProperties")),
                    Segment::Index(_) => node.get("items"),
                };
                match next {
                    Some(n) => node = n,
                    None => return Vec::new(),
                }
            }
            node.get("properties")
                .and_then(Value::as_object)
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default()
        }
    }
}

/// The openAPIV3Schema of the CRD (computed once).
fn schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let crd = serde_json::to_value(PostgresCluster::crd()).unwrap_or_default();
        crd.pointer("/spec/versions/0/schema/openAPIV3Schema")
            .cloned()
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Segment {
        Segment::Key(s.to_owned())
    }

    /// Typos get the closest field of the same object as a suggestion.
    #[test]
    fn suggestions_come_from_the_schema() {
        let p = problem(&[key("spec"), key("storage"), key("storageclass")]);
        assert_eq!(p.path, "spec.storage.storageclass");
        assert_eq!(p.hint, "did you mean `storageClass`?");
        let p = problem(&[
            key("spec"),
            key("access"),
            Segment::Index(1),
            key("from"),
            key("cidr"),
        ]);
        assert_eq!(p.path, "spec.access[1].from.cidr");
        assert_eq!(p.hint, "did you mean `cidrs`?");
        let p = problem(&[key("spec"), key("instance")]);
        assert_eq!(p.hint, "did you mean `instances`?");
        let p = problem(&[key("metadata"), key("namepsace")]);
        assert_eq!(p.hint, "did you mean `namespace`?");
    }

    /// Paths as validation writes them parse back into the same segments.
    #[test]
    fn paths_round_trip() {
        for path in [
            "spec.access[1].from.cidrs[0]",
            "spec.monitoring.labels[\"app.kubernetes.io/name\"]",
            "spec.postgres.parameters.max_connections",
            "metadata.name",
        ] {
            let segments = parse(path).expect("a path");
            assert_eq!(render(&segments), path);
        }
        assert_eq!(parse("a[x]"), None);
    }

    /// Far-off names list the fields instead of guessing.
    #[test]
    fn no_wild_guesses() {
        let p = problem(&[key("spec"), key("replication"), key("zzzzzz")]);
        assert!(
            p.hint.starts_with("remove it; fields here are: "),
            "{}",
            p.hint
        );
        assert!(p.hint.contains("maxFailoverLag"));
    }
}
