//! `pgcluster render`: the Kubernetes manifests of a cluster spec, as
//! multi-document YAML on stdout or one file per object in a directory.

use std::path::PathBuf;

use pgcluster_k8s::build::DEFAULT_CONTROLLER_NAMESPACE;
use pgcluster_k8s::{BuildOptions, build, render};

use super::validate::read_input;

use crate::CliError;

/// Arguments of `pgcluster render`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Secrets are rendered as shapes (names, labels, type, non-secret keys); the controller fills the passwords at runtime, so no password is ever written.\n\nExamples:\n  pgcluster render -f examples/homelab.yaml\n  pgcluster render -f cluster.yaml --out manifests/"
)]
pub struct Args {
    /// The PostgresCluster spec (YAML or JSON); `-` reads stdin.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// Write one file per object (`<kind>-<name>.yaml`) into DIR instead of printing.
    #[arg(long = "out", value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Namespace the controller runs in (allowed through the NetworkPolicies).
    #[arg(long, value_name = "NAMESPACE", default_value = DEFAULT_CONTROLLER_NAMESPACE)]
    pub controller_namespace: String,
}

/// Loads and validates the spec, builds every object and prints or writes it.
pub fn exec(args: Args) -> Result<(), CliError> {
    let text = read_input(&args.file)?;
    let loaded = pgcluster_core::load::load_one(&text)
        .map_err(|e| CliError::Invalid(format!("{}: {e}", args.file.display())))?;
    let cluster = loaded
        .validate_on(pgcluster_core::Platform::Kubernetes)
        .map_err(|e| CliError::Invalid(format!("{}: {e}", args.file.display())))?;
    let options = BuildOptions {
        controller_namespace: args.controller_namespace,
        ..BuildOptions::default()
    };
    let bundle = build(&cluster, &options).map_err(|e| CliError::Invalid(e.to_string()))?;
    match args.out {
        None => {
            print!("{}", render::to_yaml(&bundle)?);
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir).map_err(|source| CliError::Write {
                path: dir.clone(),
                source,
            })?;
            for (file, yaml) in render::to_files(&bundle)? {
                let path = dir.join(file);
                std::fs::write(&path, format!("---\n{yaml}")).map_err(|source| {
                    CliError::Write {
                        path: path.clone(),
                        source,
                    }
                })?;
                eprintln!("wrote {}", path.display());
            }
        }
    }
    Ok(())
}
