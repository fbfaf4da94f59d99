//! The loader and the validator never panic, whatever the input.

mod common;

use common::HOMELAB_YAML;
use pgcluster_core::load::load;
use proptest::prelude::*;

/// Loads and, when that succeeds, validates every document; only panics fail.
fn exercise(input: &str) {
    if let Ok(docs) = load(input) {
        for doc in docs {
            let _ = doc.validate();
        }
    }
}

/// One edit of the text, by line or by character.
#[derive(Clone, Debug)]
enum Edit {
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    Indent(usize, usize),
    Replace(usize, char),
    Insert(usize, String),
}

fn edit() -> impl Strategy<Value = Edit> {
    let chars = prop::sample::select(vec![
        ':', '-', '[', ']', '{', '}', '"', '\'', '#', '&', '*', '!', '|', '>', ' ', '\n', '\t',
        '0', 'a', 'Z', '.', '/', '%', '@', '`', 'é',
    ]);
    let snippets = prop::sample::select(vec![
        "x: 1",
        ": :",
        "- -",
        "&a [*a]",
        "!!binary AAAA",
        "{",
        "]",
        "~",
        "\"\\u0000\"",
        "99999999999999999999999",
        "-1",
        "1e400",
        ".nan",
        "? [a]\n: b",
        "---",
        "...",
        "<<: *a",
    ]);
    prop_oneof![
        any::<usize>().prop_map(Edit::DeleteLine),
        any::<usize>().prop_map(Edit::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        (any::<usize>(), 0usize..6).prop_map(|(a, n)| Edit::Indent(a, n)),
        (any::<usize>(), chars).prop_map(|(a, c)| Edit::Replace(a, c)),
        (any::<usize>(), snippets).prop_map(|(a, s)| Edit::Insert(a, s.to_owned())),
    ]
}

fn apply(text: &str, edit: &Edit) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let n = lines.len().max(1);
    match edit {
        Edit::DeleteLine(i) if !lines.is_empty() => {
            lines.remove(i % n);
        }
        Edit::DuplicateLine(i) if !lines.is_empty() => {
            let l = lines[i % n].clone();
            lines.insert(i % n, l);
        }
        Edit::SwapLines(a, b) if !lines.is_empty() => lines.swap(a % n, b % n),
        Edit::Indent(i, k) if !lines.is_empty() => {
            let l = &mut lines[i % n];
            *l = format!("{}{}", " ".repeat(*k), l.trim_start());
        }
        Edit::Replace(pos, c) => {
            let mut chars: Vec<char> = text.chars().collect();
            if !chars.is_empty() {
                let p = pos % chars.len();
                chars[p] = *c;
            }
            return chars.into_iter().collect();
        }
        Edit::Insert(pos, s) => {
            let mut chars: Vec<char> = text.chars().collect();
            let p = pos % (chars.len() + 1);
            chars.splice(p..p, s.chars());
            return chars.into_iter().collect();
        }
        _ => {}
    }
    lines.join("\n")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary text never panics the loader or the validator.
    #[test]
    fn random_text(s in "\\PC{0,300}") {
        exercise(&s);
    }

    /// Raw bytes (read as lossy UTF-8, as a file would be) never panic anything.
    #[test]
    fn random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        exercise(&String::from_utf8_lossy(&bytes));
    }

    /// YAML-ish noise never panics either.
    #[test]
    fn random_yaml_tokens(tokens in prop::collection::vec(prop::sample::select(vec!["apiVersion: pgcluster.dev/v1alpha1\n", "kind: PostgresCluster\n", "spec:\n", "  instances: ", "-1\n", "  access:\n", "  - ", "from: {cidrs: [", "]}\n", "null\n", "---\n", "  ", "metadata: {name: a}\n", "[", "{", "\"", "&x ", "*x\n", "postgres: {parameters: {port: 1}}\n"]), 0..40)) {
        exercise(&tokens.concat());
    }

    /// The homelab example under random edits never panics anything.
    #[test]
    fn mutated_homelab(edits in prop::collection::vec(edit(), 1..6)) {
        let mut text = HOMELAB_YAML.to_owned();
        for e in &edits {
            text = apply(&text, e);
        }
        exercise(&text);
    }
}

/// Deep nesting and alias bombs are refused, not stack-overflowed or expanded forever.
#[test]
fn pathological_yaml() {
    exercise(&"[".repeat(100_000));
    exercise(&format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)));
    exercise(&"{a: ".repeat(10_000));
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x]\n");
    for i in 0..12 {
        let prev = if i == 0 {
            "a".to_owned()
        } else {
            format!("l{}", i - 1)
        };
        bomb.push_str(&format!("l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
    }
    exercise(&bomb);
}
