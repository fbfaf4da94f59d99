use super::*;
use crate::validate::Check;

const HOMELAB: &str = include_str!("../../../../examples/homelab.yaml");

/// The reference homelab loads and validates.
#[test]
fn homelab_loads_and_validates() {
    let loaded = load_one(HOMELAB).expect("homelab.yaml loads");
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    let v = loaded.validate().expect("homelab.yaml is valid");
    assert_eq!(v.instances, 2);
    assert_eq!(v.access.rules.len(), 3);
}

/// Syntax errors carry line and column.
#[test]
fn yaml_syntax_error_has_position() {
    let err =
        load("apiVersion: pgcluster.dev/v1alpha1\nkind: [PostgresCluster\n").expect_err("bad YAML");
    assert!(
        matches!(
            err,
            LoadError::Syntax {
                format: "YAML",
                line: 3,
                ..
            }
        ),
        "{err:?}"
    );
    let err = load("{\"kind\": }").expect_err("bad JSON");
    assert!(
        matches!(
            err,
            LoadError::Syntax {
                format: "JSON",
                line: 1,
                column: 10,
                ..
            }
        ),
        "{err:?}"
    );
}

/// Type errors carry the field path and line, and do not stop loading.
#[test]
fn type_error_has_path_and_line() {
    let loaded = load_one("apiVersion: pgcluster.dev/v1alpha1\nkind: PostgresCluster\nmetadata: {name: a}\nspec:\n  access:\n    - name: x\n      from: {cidrs: 5}\n      databases: []\n      roles: []\n")
        .expect("a wrong type is a problem, not a load failure");
    let p = &loaded.problems[0];
    assert_eq!(
        (p.path.as_str(), p.check, p.line),
        ("spec.access[0].from.cidrs", Check::InvalidType, Some(7))
    );
    assert_eq!(
        p.hint,
        "write a list, e.g. `[a, b]` or one `- item` per line"
    );
}

/// An object that cannot be built at all lists what was found.
#[test]
fn unbuildable_object_lists_its_problems() {
    let err = load("apiVersion: pgcluster.dev/v1alpha1\nkind: PostgresCluster\nmetadata: 5\n")
        .expect_err("metadata must be a mapping");
    match err {
        LoadError::Fields {
            document: 1,
            errors,
        } => {
            assert!(errors.has_path("metadata"), "{errors}");
        }
        other => panic!("{other:?}"),
    }
}

/// Other kinds are refused by name.
#[test]
fn other_kinds_are_refused() {
    let err = load("apiVersion: v1\nkind: ConfigMap\n").expect_err("not ours");
    assert!(matches!(err, LoadError::WrongKind { ref kind, .. } if kind == "ConfigMap"));
    assert_eq!(load("# nothing\n"), Err(LoadError::Empty));
    assert!(matches!(
        load("- 1\n- 2\n"),
        Err(LoadError::NotAnObject { document: 1 })
    ));
}

/// Multi-document YAML, JSON streams and arrays all load.
#[test]
fn several_documents() {
    let one = "apiVersion: pgcluster.dev/v1alpha1\nkind: PostgresCluster\nmetadata: {name: a, namespace: b}\nspec: {}\n";
    let all = load(&format!("---\n{one}---\n{one}---\n")).expect("two docs");
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].document, 2);
    let json = r#"{"apiVersion":"pgcluster.dev/v1alpha1","kind":"PostgresCluster","metadata":{"name":"a"},"spec":{}}"#;
    assert_eq!(load(&format!("{json}\n{json}")).expect("stream").len(), 2);
    assert_eq!(
        load(&format!("[{json},{json},{json}]"))
            .expect("array")
            .len(),
        3
    );
    assert!(matches!(
        load_one(&format!("{json}{json}")),
        Err(LoadError::Several { count: 2 })
    ));
}

/// Unknown fields are collected with paths and reported along with validation problems.
#[test]
fn unknown_fields_are_reported_with_validation_problems() {
    let input = "apiVersion: pgcluster.dev/v1alpha1\nkind: PostgresCluster\nmetadata: {name: a}\nspec:\n  instance: 3\n  instances: 12\n";
    let loaded = load_one(input).expect("loads despite the unknown field");
    assert_eq!(loaded.problems.len(), 1);
    let errors = loaded.validate().expect_err("two problems");
    assert_eq!(errors.errors[0].path, "spec.instance");
    assert_eq!(errors.errors[0].hint, "did you mean `instances`?");
    assert_eq!(errors.errors[0].line, Some(5));
    assert_eq!(errors.errors[1].line, Some(6));
    assert!(errors.has_path("spec.instances"));
}

/// Numeric and boolean parameter values are read as strings.
#[test]
fn parameter_values_may_be_numbers() {
    let input = "apiVersion: pgcluster.dev/v1alpha1\nkind: PostgresCluster\nmetadata: {name: a}\nspec:\n  postgres:\n    parameters: {max_connections: 200, jit: false}\n";
    let loaded = load_one(input).expect("loads");
    let params = loaded.cluster.spec.postgres.expect("set").parameters;
    assert_eq!(params["max_connections"], "200");
    assert_eq!(params["jit"], "off");
}

/// YAML flow style that is not JSON still loads.
#[test]
fn yaml_flow_style_is_not_mistaken_for_json() {
    let all =
        load("{apiVersion: pgcluster.dev/v1alpha1, kind: PostgresCluster, metadata: {name: a}, spec: {}}")
            .expect("flow-style YAML");
    assert_eq!(all.len(), 1);
}

/// `spec` is required, as in the CRD (the API server refuses an object
/// without it; checked on a real one by the pgcluster-k8s e2e tests); an
/// empty `spec` takes every default.
#[test]
fn spec_is_required_and_may_be_empty() {
    let head = "apiVersion: pgcluster.dev/v1alpha1\nkind: PostgresCluster\nmetadata: {name: a}\n";
    for input in [
        head.to_owned(),
        format!("{head}spec:\n"),
        format!("{head}spec: null\n"),
    ] {
        let loaded = load_one(&input).expect("loads, with a problem");
        let problem = loaded
            .problems
            .iter()
            .find(|p| p.path == "spec")
            .unwrap_or_else(|| panic!("no problem at spec: {:?}", loaded.problems));
        assert!(problem.hint.contains("spec: {}"), "{problem:?}");
    }
    let loaded = load_one(&format!("{head}spec: {{}}\n")).expect("an empty spec loads");
    assert_eq!(loaded.validate().expect("and validates").instances, 2);
}
