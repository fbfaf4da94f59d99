//! The image references agree everywhere: `images.env` (what
//! `scripts/build-images` tags its archives with), pgcluster-core's defaults
//! (what the renderers and the controller use), the kustomize base, the
//! OpenTofu module, and every `registry/...` reference in the manifests,
//! module, examples, docs and README.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pgcluster_core::defaults::{
    DEFAULT_CONTROLLER_IMAGE, DEFAULT_IMAGE_REPOSITORY, DEFAULT_POSTGRES_VERSION, default_image,
};
use pgcluster_core::postgres::SUPPORTED_MAJORS;
use pgcluster_k8s::controller::install;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `KEY=value` lines of images.env (the script reads it the same way).
fn images_env() -> BTreeMap<String, String> {
    read("images.env")
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn env_value(env: &BTreeMap<String, String>, key: &str) -> String {
    env.get(key)
        .unwrap_or_else(|| panic!("images.env has no {key}"))
        .clone()
}

/// The majors the script builds an image for.
fn built_majors(env: &BTreeMap<String, String>) -> Vec<u32> {
    env_value(env, "PGCLUSTER_IMAGE_MAJORS")
        .split_whitespace()
        .map(|m| m.parse().unwrap())
        .collect()
}

fn split_reference(reference: &str) -> (&str, &str) {
    reference
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{reference} has no tag"))
}

#[test]
fn images_env_matches_the_rust_defaults() {
    let env = images_env();
    assert_eq!(
        env_value(&env, "PGCLUSTER_POSTGRES_REPOSITORY"),
        DEFAULT_IMAGE_REPOSITORY
    );
    assert_eq!(
        env_value(&env, "PGCLUSTER_CONTROLLER_IMAGE"),
        DEFAULT_CONTROLLER_IMAGE
    );
    assert_eq!(install::CONTROLLER_IMAGE, DEFAULT_CONTROLLER_IMAGE);
    let (_, tag) = split_reference(DEFAULT_CONTROLLER_IMAGE);
    assert_eq!(tag, env!("CARGO_PKG_VERSION"));
}

/// Every built major is supported and has a Debian suite, and the default
/// version's image is one the script builds (a spec without `image` runs).
#[test]
fn the_default_version_has_an_image() {
    let env = images_env();
    let majors = built_majors(&env);
    for major in &majors {
        assert!(SUPPORTED_MAJORS.contains(major), "{major} is not supported");
        assert!(
            env.contains_key(&format!("PGCLUSTER_SUITE_{major}")),
            "images.env: no PGCLUSTER_SUITE_{major}"
        );
    }
    assert!(
        majors.contains(&DEFAULT_POSTGRES_VERSION),
        "the default version {DEFAULT_POSTGRES_VERSION} has no image in images.env ({majors:?})"
    );
    assert_eq!(
        default_image(DEFAULT_POSTGRES_VERSION),
        format!(
            "{}:{DEFAULT_POSTGRES_VERSION}",
            env_value(&env, "PGCLUSTER_POSTGRES_REPOSITORY")
        )
    );
}

/// kustomize's `images:` names the controller image and keeps its tag (an
/// identity by default, so the plain assembly in controller_manifests.rs stays
/// what kustomize produces); the rendered Deployment carries it.
#[test]
fn kustomization_and_deployment_name_the_controller_image() {
    let k: serde_json::Value =
        serde_norway::from_str(&read("kubernetes/controller/kustomization.yaml")).unwrap();
    let (name, tag) = split_reference(DEFAULT_CONTROLLER_IMAGE);
    let images = k["images"].as_array().expect("kustomization has images:");
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!(images[0]["name"], name);
    assert_eq!(images[0]["newTag"], tag);
    assert!(
        images[0].get("newName").is_none_or(|n| n == name),
        "{images:?}"
    );
    assert!(
        read("kubernetes/controller/deployment.yaml")
            .contains(&format!("image: {DEFAULT_CONTROLLER_IMAGE}\n"))
    );
}

/// The `default = ...` of a variable block in an HCL file (`None` for null).
fn hcl_default(text: &str, variable: &str) -> Option<String> {
    let start = text
        .find(&format!("variable \"{variable}\" {{"))
        .unwrap_or_else(|| panic!("no variable {variable}"));
    let block = &text[start..];
    let block = &block[..block.find("\n}").unwrap()];
    let line = block
        .lines()
        .find(|l| l.trim_start().starts_with("default "))
        .unwrap_or_else(|| panic!("variable {variable} has no default"));
    let value = line.split_once('=').unwrap().1.trim();
    (value != "null").then(|| value.trim_matches('"').to_owned())
}

#[test]
fn opentofu_module_defaults_are_the_same() {
    let vars = read("terraform/modules/postgresql-cluster/variables.tf");
    assert_eq!(
        hcl_default(&vars, "controller_image").as_deref(),
        Some(DEFAULT_CONTROLLER_IMAGE)
    );
    // null: the controller derives the image from the version.
    assert_eq!(hcl_default(&vars, "postgres_image"), None);
    assert_eq!(
        hcl_default(&vars, "postgres_version"),
        Some(DEFAULT_POSTGRES_VERSION.to_string())
    );
    let main = read("terraform/modules/postgresql-cluster/main.tf");
    assert!(main.contains("${var.controller_image}"));
    assert!(main.contains("image = var.postgres_image"));
}

/// Files a user reads or applies.
fn deliverables() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| {
                ["yaml", "yml", "tf", "md", "json"].contains(&e.to_str().unwrap_or(""))
            }) {
                out.push(path);
            }
        }
    }
    let mut out = vec![
        repo().join("README.md"),
        repo().join("scripts/build-images"),
    ];
    for dir in ["kubernetes", "terraform", "examples", "docs"] {
        walk(&repo().join(dir), &mut out);
    }
    out
}

/// Every reference into the images' registry namespace is one the script
/// builds: the controller image, `<repository>:<major>` for a built major, a
/// `<major>` placeholder, or a bare repository.
#[test]
fn every_reference_in_the_deliverables_is_built() {
    let env = images_env();
    let majors = built_majors(&env);
    let repository = env_value(&env, "PGCLUSTER_POSTGRES_REPOSITORY");
    let (controller_repository, _) = split_reference(DEFAULT_CONTROLLER_IMAGE);
    let mut prefixes = vec![
        format!("{}/", repository.rsplit_once('/').unwrap().0),
        format!("{}/", controller_repository.rsplit_once('/').unwrap().0),
    ];
    prefixes.dedup();
    let allowed = |reference: &str| {
        reference == DEFAULT_CONTROLLER_IMAGE
            || reference == controller_repository
            || reference == repository
            || reference == format!("{repository}:<major>")
            || majors
                .iter()
                .any(|m| reference == format!("{repository}:{m}"))
    };
    let mut wrong = vec![];
    let mut seen = 0;
    for file in deliverables() {
        let text = std::fs::read_to_string(&file).unwrap();
        for prefix in &prefixes {
            for (at, _) in text.match_indices(prefix.as_str()) {
                let reference: String = text[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || "._-/:<>".contains(*c))
                    .collect();
                let reference = reference.trim_end_matches(['.', ':']);
                seen += 1;
                if !allowed(reference) {
                    wrong.push(format!("{}: {reference}", file.display()));
                }
            }
        }
    }
    assert!(seen > 0, "no image reference found at all");
    assert!(
        wrong.is_empty(),
        "image references that scripts/build-images does not produce (images.env): {wrong:#?}"
    );
}
