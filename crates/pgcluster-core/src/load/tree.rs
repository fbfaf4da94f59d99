//! The input text as a tree of nodes that remember their line, built under
//! limits so that no input can make the loader use much memory.
//!
//! ```text
//! text --saphyr events--> Node tree (positions, duplicate keys marked, aliases expanded under a cap)
//!      --to_json (live nodes only)--> serde_json::Value for serde
//! ```
//!
//! Limits, all refused with [`LoadError::Limit`]: the input size
//! ([`MAX_INPUT_BYTES`]), the nesting depth ([`MAX_DEPTH`]), the nodes built
//! ([`MAX_NODES`]) and the nodes copied by aliases ([`MAX_ALIAS_NODES`]), so an
//! alias-amplification document stops after a few thousand copies instead of
//! expanding into gigabytes.

use std::collections::{BTreeSet, HashMap};

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span, Tag};
use serde_json::Value;

use super::unknown::Segment;
use super::{LoadError, MAX_INPUT_BYTES};

/// Deepest nesting of mappings and sequences (a spec needs about 6).
pub const MAX_DEPTH: usize = 64;
/// Most nodes (scalars, mappings, sequences) one input may build, aliases included
/// (a spec has a few hundred).
pub const MAX_NODES: usize = 100_000;
/// Most nodes aliases (`*name`) may copy in one input.
pub const MAX_ALIAS_NODES: usize = 10_000;

/// Whether a node takes part in the object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum State {
    /// Part of the object.
    Live,
    /// A second value for a key already set (reported, never used).
    Duplicate,
    /// Dropped by the loader after its problem was reported.
    Pruned,
}

/// One value of the input with its position.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Node {
    /// 1-based line of the value (of the key, for a mapping entry's value written on the key's line).
    pub(super) line: usize,
    /// 1-based column.
    pub(super) column: usize,
    pub(super) value: NodeValue,
    pub(super) state: State,
}

/// The value of a node.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum NodeValue {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// One mapping entry.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Entry {
    /// The key as written.
    pub(super) key: String,
    /// 1-based line of the key.
    pub(super) key_line: usize,
    pub(super) node: Node,
}

impl Node {
    fn new(span: &Span, value: NodeValue) -> Self {
        Self {
            line: span.start.line(),
            column: span.start.col() + 1,
            value,
            state: State::Live,
        }
    }

    pub(super) fn is_live(&self) -> bool {
        self.state == State::Live
    }

    /// The live entry for `key`, if this is a mapping that has one.
    pub(super) fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            NodeValue::Map(entries) => entries
                .iter()
                .find(|e| e.key == key && e.node.is_live())
                .map(|e| &e.node),
            _ => None,
        }
    }

    /// The text of a scalar, as serde_json would print it.
    pub(super) fn scalar_text(&self) -> Option<String> {
        match &self.value {
            NodeValue::String(s) => Some(s.clone()),
            NodeValue::Number(n) => Some(n.to_string()),
            NodeValue::Bool(b) => Some(b.to_string()),
            NodeValue::Null => Some("null".to_owned()),
            _ => None,
        }
    }

    /// The live children, each with its segment as written in the input.
    fn live_children(&self) -> Box<dyn Iterator<Item = (Segment, &Node)> + '_> {
        match &self.value {
            NodeValue::Seq(items) => Box::new(
                items
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| n.is_live())
                    .map(|(i, n)| (Segment::Index(i), n)),
            ),
            NodeValue::Map(entries) => Box::new(
                entries
                    .iter()
                    .filter(|e| e.node.is_live())
                    .map(|e| (Segment::Key(e.key.clone()), &e.node)),
            ),
            _ => Box::new(std::iter::empty()),
        }
    }

    /// Follows `path` as serde sees the object (live nodes only, indices
    /// counted among live items) as far as it leads. Returns the deepest node
    /// reached, the same path as written in the input (original indices), and
    /// how many segments were followed.
    pub(super) fn resolve(&self, path: &[Segment]) -> (&Node, Vec<Segment>, usize) {
        let mut node = self;
        let mut written = Vec::new();
        for (followed, seg) in path.iter().enumerate() {
            let next = match seg {
                Segment::Key(k) => node
                    .live_children()
                    .find(|(s, _)| s == &Segment::Key(k.clone())),
                Segment::Index(i) => node
                    .live_children()
                    .filter(|(s, _)| matches!(s, Segment::Index(_)))
                    .nth(*i),
            };
            match next {
                Some((s, n)) => {
                    written.push(s);
                    node = n;
                }
                None => return (node, written, followed),
            }
        }
        (node, written, path.len())
    }

    /// The node at `path` (as serde sees it), for changing its state.
    pub(super) fn resolve_mut(&mut self, path: &[Segment]) -> Option<&mut Node> {
        let mut node = self;
        for seg in path {
            node = match (&mut node.value, seg) {
                (NodeValue::Map(entries), Segment::Key(k)) => entries
                    .iter_mut()
                    .find(|e| &e.key == k && e.node.is_live())
                    .map(|e| &mut e.node)?,
                (NodeValue::Seq(items), Segment::Index(i)) => {
                    items.iter_mut().filter(|n| n.is_live()).nth(*i)?
                }
                _ => return None,
            };
        }
        Some(node)
    }

    /// Whether this mapping has an entry `key` the loader pruned.
    pub(super) fn pruned_entry(&self, key: &str) -> bool {
        matches!(&self.value, NodeValue::Map(entries)
            if entries.iter().any(|e| e.key == key && e.node.state == State::Pruned))
    }

    /// Every duplicate key below this node: (path as written, line).
    pub(super) fn duplicates(&self, out: &mut Vec<(Vec<Segment>, usize)>) {
        fn walk(node: &Node, path: &mut Vec<Segment>, out: &mut Vec<(Vec<Segment>, usize)>) {
            match &node.value {
                NodeValue::Seq(items) => {
                    for (i, n) in items.iter().enumerate() {
                        path.push(Segment::Index(i));
                        walk(n, path, out);
                        path.pop();
                    }
                }
                NodeValue::Map(entries) => {
                    for e in entries {
                        path.push(Segment::Key(e.key.clone()));
                        if e.node.state == State::Duplicate {
                            out.push((path.clone(), e.key_line));
                        } else {
                            walk(&e.node, path, out);
                        }
                        path.pop();
                    }
                }
                _ => {}
            }
        }
        walk(self, &mut Vec::new(), out);
    }

    /// The live part of the tree as a JSON value (the depth is bounded by [`MAX_DEPTH`]).
    pub(super) fn to_json(&self) -> Value {
        match &self.value {
            NodeValue::Null => Value::Null,
            NodeValue::Bool(b) => Value::Bool(*b),
            NodeValue::Number(n) => Value::Number(n.clone()),
            NodeValue::String(s) => Value::String(s.clone()),
            NodeValue::Seq(items) => Value::Array(
                items
                    .iter()
                    .filter(|n| n.is_live())
                    .map(Node::to_json)
                    .collect(),
            ),
            NodeValue::Map(entries) => Value::Object(
                entries
                    .iter()
                    .filter(|e| e.node.is_live())
                    .map(|e| (e.key.clone(), e.node.to_json()))
                    .collect(),
            ),
        }
    }
}

/// Reads YAML text (one or several `---` documents) into one tree per document.
pub(super) fn parse_yaml(input: &str) -> Result<Vec<Node>, LoadError> {
    check_size(input)?;
    let mut budget = Budget::default();
    build(input, 0, &mut budget)
}

/// Reads a JSON value or a stream of them into one tree per value. serde_json
/// checks the syntax (its messages and positions); the YAML parser, which
/// reads JSON as YAML flow style, builds the trees with their lines.
pub(super) fn parse_json(input: &str) -> Result<Vec<Node>, LoadError> {
    check_size(input)?;
    let mut bounds = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(input).into_iter::<serde::de::IgnoredAny>();
    let mut start = 0;
    while let Some(item) = stream.next() {
        item.map_err(|e| LoadError::Syntax {
            format: "JSON",
            line: e.line(),
            column: e.column(),
            message: super::strip_position(&e.to_string()),
        })?;
        let end = stream.byte_offset();
        bounds.push((start, end));
        start = end;
    }
    let mut budget = Budget::default();
    let mut out = Vec::new();
    for (start, end) in bounds {
        // Tabs may only separate tokens in valid JSON (never inside strings),
        // and YAML is stricter about them: make them spaces, columns unchanged.
        let text = input[start..end].replace('\t', " ");
        let line_offset = input[..start].matches('\n').count();
        out.extend(build(&text, line_offset, &mut budget)?);
    }
    Ok(out)
}

fn check_size(input: &str) -> Result<(), LoadError> {
    if input.len() > MAX_INPUT_BYTES {
        return Err(LoadError::Limit {
            what: "the input",
            limit: format!("{} KiB", MAX_INPUT_BYTES / 1024),
            line: 0,
        });
    }
    Ok(())
}

/// Nodes built and copied so far in one input.
#[derive(Debug, Default)]
struct Budget {
    nodes: usize,
    alias_nodes: usize,
}

/// A collection being built.
struct Frame {
    span: Span,
    anchor: usize,
    /// Nodes in this collection so far, itself included.
    count: usize,
    kind: FrameKind,
}

enum FrameKind {
    Seq(Vec<Node>),
    Map {
        entries: Vec<Entry>,
        keys: BTreeSet<String>,
        /// The key read, waiting for its value.
        key: Option<(String, usize)>,
    },
}

fn syntax(line_offset: usize, e: &ScanError) -> LoadError {
    LoadError::Syntax {
        format: "YAML",
        line: e.marker().line() + line_offset,
        column: e.marker().col() + 1,
        message: e.info().to_owned(),
    }
}

fn limit(what: &'static str, limit: String, line: usize) -> LoadError {
    LoadError::Limit { what, limit, line }
}

fn build(input: &str, line_offset: usize, budget: &mut Budget) -> Result<Vec<Node>, LoadError> {
    let mut docs = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, (Node, usize)> = HashMap::new();
    let mut root: Option<Node> = None;
    for event in Parser::new_from_str(input) {
        let (event, mut span) = event.map_err(|e| syntax(line_offset, &e))?;
        span.start = saphyr_parser::Marker::new(
            span.start.index(),
            span.start.line() + line_offset,
            span.start.col(),
        );
        let line = span.start.line();
        let is_alias = matches!(event, Event::Alias(_));
        let is_seq = matches!(event, Event::SequenceStart(..));
        let done: Option<(Node, usize, usize)> = match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing => None,
            Event::DocumentStart(_) => {
                root = None;
                anchors.clear();
                None
            }
            Event::DocumentEnd => {
                // An empty document is null, like an explicit `~`.
                docs.push(root.take().unwrap_or(Node {
                    line,
                    column: 1,
                    value: NodeValue::Null,
                    state: State::Live,
                }));
                None
            }
            Event::Alias(id) => {
                let Some((node, count)) = anchors.get(&id) else {
                    return Err(LoadError::Syntax {
                        format: "YAML",
                        line,
                        column: span.start.col() + 1,
                        message: "alias to an unknown anchor".to_owned(),
                    });
                };
                budget.alias_nodes += count;
                if budget.alias_nodes > MAX_ALIAS_NODES {
                    return Err(limit(
                        "alias expansion (`*name`)",
                        format!("{MAX_ALIAS_NODES} copied nodes"),
                        line,
                    ));
                }
                let mut node = node.clone();
                node.line = line;
                node.column = span.start.col() + 1;
                Some((node, *count, 0))
            }
            Event::Scalar(text, style, anchor, tag) => {
                let value = scalar(&text, style, tag.as_deref(), line)?;
                Some((Node::new(&span, value), 1, anchor))
            }
            Event::SequenceStart(anchor, tag) | Event::MappingStart(anchor, tag) => {
                if let Some(tag) = tag.as_deref()
                    && !(tag.is_yaml_core_schema() && matches!(tag.suffix.as_str(), "seq" | "map"))
                {
                    return Err(unsupported_tag(tag, line));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(limit("nesting", format!("{MAX_DEPTH} levels"), line));
                }
                if let Some(Frame {
                    kind: FrameKind::Map { key: None, .. },
                    ..
                }) = stack.last()
                {
                    return Err(LoadError::Syntax {
                        format: "YAML",
                        line,
                        column: span.start.col() + 1,
                        message: "a mapping key must be a plain value, not a list or mapping"
                            .to_owned(),
                    });
                }
                let kind = if is_seq {
                    FrameKind::Seq(Vec::new())
                } else {
                    FrameKind::Map {
                        entries: Vec::new(),
                        keys: BTreeSet::new(),
                        key: None,
                    }
                };
                stack.push(Frame {
                    span,
                    anchor,
                    count: 1,
                    kind,
                });
                None
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let frame = stack
                    .pop()
                    .expect("the parser closes only collections it opened, so the stack has one");
                let value = match frame.kind {
                    FrameKind::Seq(items) => NodeValue::Seq(items),
                    FrameKind::Map { entries, .. } => NodeValue::Map(entries),
                };
                Some((Node::new(&frame.span, value), frame.count, frame.anchor))
            }
        };
        let Some((node, count, anchor)) = done else {
            continue;
        };
        if !is_alias {
            budget.nodes += 1;
        }
        if budget.nodes + budget.alias_nodes > MAX_NODES {
            return Err(limit("the input", format!("{MAX_NODES} values"), line));
        }
        if anchor != 0 {
            anchors.insert(anchor, (node.clone(), count));
        }
        match stack.last_mut() {
            None => root = Some(node),
            Some(parent) => {
                parent.count += count;
                match &mut parent.kind {
                    FrameKind::Seq(items) => items.push(node),
                    FrameKind::Map { entries, keys, key } => match key.take() {
                        None => {
                            let text = match node.value {
                                NodeValue::String(s) => s,
                                NodeValue::Null => "null".to_owned(),
                                other => Node {
                                    value: other,
                                    ..node
                                }
                                .scalar_text()
                                .unwrap_or_default(),
                            };
                            *key = Some((text, line));
                        }
                        Some((text, key_line)) => {
                            let mut node = node;
                            if !keys.insert(text.clone()) {
                                node.state = State::Duplicate;
                            }
                            entries.push(Entry {
                                key: text,
                                key_line,
                                node,
                            });
                        }
                    },
                }
            }
        }
    }
    Ok(docs)
}

fn unsupported_tag(tag: &Tag, line: usize) -> LoadError {
    LoadError::Syntax {
        format: "YAML",
        line,
        column: 0,
        message: format!("the tag `{tag}` is not supported; remove it"),
    }
}

/// Resolves a scalar as YAML 1.2's core schema does (as serde_norway did before):
/// quoted and block scalars are strings; plain ones may be null, booleans or numbers.
fn scalar(
    text: &str,
    style: ScalarStyle,
    tag: Option<&Tag>,
    line: usize,
) -> Result<NodeValue, LoadError> {
    if let Some(tag) = tag {
        if !tag.is_yaml_core_schema() {
            return Err(unsupported_tag(tag, line));
        }
        return Ok(match tag.suffix.as_str() {
            "str" => NodeValue::String(text.to_owned()),
            "null" | "bool" | "int" | "float" => plain(text),
            _ => return Err(unsupported_tag(tag, line)),
        });
    }
    Ok(match style {
        ScalarStyle::Plain => plain(text),
        _ => NodeValue::String(text.to_owned()),
    })
}

fn plain(text: &str) -> NodeValue {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return NodeValue::Null,
        "true" | "True" | "TRUE" => return NodeValue::Bool(true),
        "false" | "False" | "FALSE" => return NodeValue::Bool(false),
        _ => {}
    }
    if let Some(n) = integer(text) {
        return NodeValue::Number(n);
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    // `010` is a string in YAML 1.2 (not octal, not ten).
    let leading_zero =
        digits.len() > 1 && digits.starts_with('0') && digits.bytes().all(|b| b.is_ascii_digit());
    let float_chars = digits
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'));
    if !leading_zero
        && float_chars
        && digits.bytes().any(|b| b.is_ascii_digit())
        && let Ok(f) = text.parse::<f64>()
        && let Some(n) = serde_json::Number::from_f64(f)
    {
        return NodeValue::Number(n);
    }
    // `.inf` and `.nan` have no JSON form: they stay text, so a number field
    // refuses them instead of reading null.
    NodeValue::String(text.to_owned())
}

fn integer(text: &str) -> Option<serde_json::Number> {
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (radix, body) = if let Some(r) = digits.strip_prefix("0x") {
        (16, r)
    } else if let Some(r) = digits.strip_prefix("0o") {
        (8, r)
    } else if let Some(r) = digits.strip_prefix("0b") {
        (2, r)
    } else if digits.len() > 1 && digits.starts_with('0') {
        return None;
    } else {
        (10, digits)
    };
    if body.is_empty() || body.starts_with(['+', '-']) {
        return None;
    }
    let magnitude = u64::from_str_radix(body, radix).ok()?;
    if negative {
        let n = i64::try_from(magnitude)
            .ok()
            .map(|m| -m)
            .or((magnitude == 1 << 63).then_some(i64::MIN))?;
        Some(n.into())
    } else {
        Some(magnitude.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Node {
        let mut docs = parse_yaml(text).expect("parses");
        assert_eq!(docs.len(), 1);
        docs.remove(0)
    }

    /// Plain scalars resolve as YAML 1.2's core schema says; quoted ones stay text.
    #[test]
    fn scalars_resolve_like_the_core_schema() {
        let node = one(
            "a: [~, null, true, False, 12, -3, 0x1f, 1.5, 010, .nan, 'true', x, 99999999999999999999]",
        );
        let json = node.to_json();
        assert_eq!(
            json["a"],
            serde_json::json!([
                null, null, true, false, 12, -3, 31, 1.5, "010", ".nan", "true", "x", 1e20
            ])
        );
    }

    /// Lines are 1-based and follow the text.
    #[test]
    fn nodes_know_their_line() {
        let node = one("a: 1\nb:\n  c: [x,\n      y]\n");
        let (n, written, followed) = node.resolve(&[
            Segment::Key("b".into()),
            Segment::Key("c".into()),
            Segment::Index(1),
        ]);
        assert_eq!((n.line, followed), (4, 3));
        assert_eq!(written.len(), 3);
    }

    /// A second value for a key is kept apart and reported with its line.
    #[test]
    fn duplicate_keys_are_marked() {
        let node = one("a: 1\nb:\n  c: 1\n  c: 2\na: 3\n");
        assert_eq!(node.to_json(), serde_json::json!({"a": 1, "b": {"c": 1}}));
        let mut dups = Vec::new();
        node.duplicates(&mut dups);
        assert_eq!(dups.len(), 2);
        assert_eq!(dups[0].1, 4);
        assert_eq!(dups[1].1, 5);
    }

    /// Aliases copy their anchor, up to the cap.
    #[test]
    fn aliases_expand_under_a_cap() {
        let node = one("a: &a [1, 2]\nb: *a\n");
        assert_eq!(node.to_json()["b"], serde_json::json!([1, 2]));
        let bomb = format!(
            "a: &a [{}]\nb: [{}]\n",
            vec!["x"; 1000].join(","),
            vec!["*a"; 20].join(",")
        );
        assert!(matches!(
            parse_yaml(&bomb),
            Err(LoadError::Limit { line: 2, .. })
        ));
    }

    /// JSON values get their lines from their place in the stream.
    #[test]
    fn json_streams_keep_lines() {
        let docs = parse_json("{\"a\": 1}\n{\n\t\"b\": 2,\n\t\"b\": 3\n}\n").expect("parses");
        assert_eq!(docs.len(), 2);
        let mut dups = Vec::new();
        docs[1].duplicates(&mut dups);
        assert_eq!(dups[0].1, 4);
    }
}
