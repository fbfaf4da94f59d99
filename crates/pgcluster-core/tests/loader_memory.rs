//! No input makes the loader allocate more than 100 MB: hostile documents
//! (alias bombs, deep nesting, huge flat lists, oversized input) and random
//! bytes are measured with a counting global allocator. One test only, so no
//! other test thread's allocations are counted.

mod common;

use peak_alloc::PeakAlloc;
use pgcluster_core::load::{MAX_INPUT_BYTES, load};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

/// The most the loader may allocate on top of what is live before it runs.
const LIMIT: usize = 100 * 1024 * 1024;

/// Loads and validates `input`, returning the peak allocation above the baseline.
fn peak_of(input: &str) -> usize {
    let base = ALLOC.current_usage();
    ALLOC.reset_peak_usage();
    if let Ok(docs) = load(input) {
        for doc in docs {
            let _ = doc.validate();
        }
    }
    ALLOC.peak_usage().saturating_sub(base)
}

/// Nested aliases: about 3 KB expanding to `1000 * 10^levels` nodes.
fn alias_bomb(levels: usize) -> String {
    let leaf = vec!["x"; 1000].join(", ");
    let mut text = format!("a: &a [{leaf}]\n");
    let mut prev = "a".to_owned();
    for i in 1..=levels {
        let refs = vec![format!("*{prev}"); 10].join(", ");
        text.push_str(&format!("x{i}: &l{i} [{refs}]\n"));
        prev = format!("l{i}");
    }
    text + "apiVersion: pgcluster.dev/v1alpha1\nkind: PostgresCluster\nmetadata: {name: bomb}\n"
}

/// Hostile inputs each stay under the limit; random bytes never panic and stay under it too.
#[test]
fn loader_memory_is_bounded() {
    let just_under = MAX_INPUT_BYTES - 200;
    let header = "apiVersion: pgcluster.dev/v1alpha1\nkind: PostgresCluster\nmetadata: {name: a}\nspec:\n  access:\n  - name: a\n    databases: [a]\n    roles: [a]\n    from:\n      cidrs: [";
    let hostile: Vec<(&str, String)> = vec![
        ("alias bomb, 4 levels", alias_bomb(4)),
        ("alias bomb, 6 levels", alias_bomb(6)),
        (
            "1 MiB flat list of numbers",
            format!("{header}{}]\n", "0,".repeat((just_under - header.len()) / 2)),
        ),
        (
            "1 MiB flat list of strings",
            format!("{header}{}]\n", "a,".repeat((just_under - header.len()) / 2)),
        ),
        (
            "1 MiB of unknown fields",
            (0..(just_under - 100) / 15)
                .map(|i| format!("  k{i:08}: 1\n"))
                .fold(
                    "apiVersion: pgcluster.dev/v1alpha1\nkind: PostgresCluster\nmetadata: {name: a}\nspec:\n".to_owned(),
                    |acc, line| acc + &line,
                ),
        ),
        (
            "1 MiB of wrong types",
            (0..(just_under - 200) / 22)
                .map(|i| format!("  - {{name: {i:>7}}}\n"))
                .fold(
                    "apiVersion: pgcluster.dev/v1alpha1\nkind: PostgresCluster\nmetadata: {name: a}\nspec:\n  roles:\n".to_owned(),
                    |acc, line| acc + &line,
                ),
        ),
        ("deep block nesting", "a:\n".to_owned() + &(1..1000).map(|i| format!("{}b:\n", " ".repeat(i))).collect::<String>()),
        ("deep flow nesting", "[".repeat(100_000)),
        ("oversized input", "# x\n".repeat(MAX_INPUT_BYTES / 2)),
        ("homelab", common::HOMELAB_YAML.to_owned()),
    ];
    let mut report = Vec::new();
    for (what, input) in &hostile {
        assert!(
            what.starts_with("oversized") || input.len() <= MAX_INPUT_BYTES,
            "{what} is {} bytes",
            input.len()
        );
        let peak = peak_of(input);
        report.push(format!("{what}: {} KiB", peak / 1024));
        assert!(
            peak < LIMIT,
            "{what}: peak {peak} bytes\n{}",
            report.join("\n")
        );
    }
    println!("peak allocation per input:\n  {}", report.join("\n  "));

    // Random bytes (as lossy UTF-8) and YAML-ish fragments.
    let mut runner = TestRunner::new(Config::with_cases(512));
    let fragments = prop::sample::select(vec![
        "&a [*a, *a]\n",
        "a: &b [x, x, x, x]\n",
        "b: [*b, *b, *b, *b, *b]\n",
        "- ",
        "[",
        "{",
        "a: 1\na: 2\n",
        "apiVersion: pgcluster.dev/v1alpha1\nkind: PostgresCluster\n",
        "metadata: {name: a}\n",
        "spec:\n  instances: x\n",
        "  ",
        "\n",
        "!!str ",
        "? [a]\n: b\n",
        "---\n",
        "\"\\u0000\"",
    ]);
    let input = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..4096)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        prop::collection::vec(fragments, 0..200).prop_map(|f| f.concat()),
    ];
    runner
        .run(&input, |text| {
            let peak = peak_of(&text);
            prop_assert!(peak < LIMIT, "peak {} bytes", peak);
            Ok(())
        })
        .expect("no input panics the loader or takes more than 100 MB");
}
