//! `pgcluster validate`: every problem of a spec with its path and a hint
//! (exit 1), or a short summary of the resolved cluster (exit 0).

use std::path::{Path, PathBuf};

use pgcluster_core::api::v1alpha1::{AccessEndpoint, PostgresCluster};
use pgcluster_core::load::{LoadError, LoadedCluster, load};
use pgcluster_core::validate::endpoint_name;
use pgcluster_core::{ValidatedCluster, ValidationError};
use serde::Serialize;

use crate::CliError;
use crate::output::{OutputFormat, to_machine};

/// Arguments of `pgcluster validate`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 when every cluster in the file is valid, 1 when any problem is found, 2 when the file cannot be read.

Examples:
  pgcluster validate -f examples/homelab.yaml
  pgcluster init --name main | pgcluster validate -f -
  pgcluster validate -f cluster.yaml -o yaml     # the spec with every default filled in
  pgcluster validate -f cluster.yaml -o json     # problems as JSON"
)]
pub struct Args {
    /// The PostgresCluster spec (YAML or JSON, one or several documents); `-` reads stdin.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// Output format: a summary or problem list (text), or data (json, yaml: the resolved object, or the problems).
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Reads FILE, or stdin for `-`: at most one byte past the loader's size
/// limit, so an oversized input is refused by the loader without being read whole.
pub fn read_input(file: &Path) -> Result<String, CliError> {
    use std::io::Read as _;
    let limit = u64::try_from(pgcluster_core::load::MAX_INPUT_BYTES)
        .expect("the input limit fits in u64 because it is 1 MiB")
        + 1;
    let mut text = String::new();
    let result = if file.as_os_str() == "-" {
        std::io::stdin().take(limit).read_to_string(&mut text)
    } else {
        std::fs::File::open(file).and_then(|f| f.take(limit).read_to_string(&mut text))
    };
    result.map_err(|source| read_error(file, source))?;
    Ok(text)
}

/// A read failure with what to do about it.
fn read_error(file: &Path, source: std::io::Error) -> CliError {
    use std::io::ErrorKind;
    let stdin = file.as_os_str() == "-";
    let hint = match source.kind() {
        _ if stdin => "pipe a spec in, e.g. `pgcluster init --name main | pgcluster validate -f -`",
        ErrorKind::NotFound => {
            "check the path; `pgcluster init --name main > cluster.yaml` writes a spec to start from"
        }
        ErrorKind::PermissionDenied => {
            "make the file readable for this user, or pass it on stdin with `-f -`"
        }
        ErrorKind::IsADirectory => "name a file, not a directory",
        ErrorKind::InvalidData => "save the spec as UTF-8 text",
        _ => "check that FILE names a readable YAML or JSON file",
    };
    CliError::Read {
        what: if stdin {
            "the spec from stdin".to_owned()
        } else {
            file.display().to_string()
        },
        hint: hint.to_owned(),
        source,
    }
}

/// One problem as printed with `-o json|yaml`.
#[derive(Debug, Serialize)]
pub struct Problem {
    /// 1-based document in the file (0: the file as a whole).
    pub document: usize,
    /// Field path.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// What to do.
    pub hint: String,
    /// The rule broken (e.g. `public-address`, `unknown-field`, `syntax`).
    pub check: String,
    /// 1-based line in the file, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
}

impl Problem {
    fn from_validation(document: usize, e: &ValidationError) -> Self {
        Self {
            document,
            path: e.path.clone(),
            message: e.message.clone(),
            hint: e.hint.clone(),
            check: e.check.to_string(),
            line: e.line,
        }
    }

    /// A load failure as problems (several when the fields could not be read into a cluster).
    pub fn from_load(e: &LoadError) -> Vec<Self> {
        match e {
            LoadError::Fields { document, errors } => errors
                .errors
                .iter()
                .map(|p| Self::from_validation(*document, p))
                .collect(),
            LoadError::WrongKind { document, .. } | LoadError::NotAnObject { document } => {
                vec![Self {
                    document: *document,
                    path: ".".to_owned(),
                    message: e.to_string(),
                    hint: "give a PostgresCluster (`pgcluster init` prints one)".to_owned(),
                    check: e.category().to_owned(),
                    line: None,
                }]
            }
            LoadError::Syntax { line, .. } => vec![Self {
                document: 0,
                path: String::new(),
                message: e.to_string(),
                hint: String::new(),
                check: e.category().to_owned(),
                line: Some(*line),
            }],
            LoadError::Limit { line, .. } => vec![Self {
                document: 0,
                path: String::new(),
                message: e.to_string(),
                hint: "check where the file came from; a spec needs no aliases, deep nesting or megabytes".to_owned(),
                check: e.category().to_owned(),
                line: (*line > 0).then_some(*line),
            }],
            other => vec![Self {
                document: 0,
                path: String::new(),
                message: other.to_string(),
                hint: String::new(),
                check: other.category().to_owned(),
                line: None,
            }],
        }
    }
}

/// Loads every cluster in the file, or the load failure as a [`CliError::Invalid`].
pub fn load_file(file: &Path, output: OutputFormat) -> Result<Vec<LoadedCluster>, CliError> {
    let text = read_input(file)?;
    load(&text).map_err(|e| {
        if let Some(out) = to_machine(&Problem::from_load(&e), output).ok().flatten() {
            print!("{out}");
        }
        CliError::Invalid(format!("{}: {e}", display_name(file)))
    })
}

/// Loads exactly one valid cluster from the file (for commands that act on one).
pub fn load_valid_one(file: &Path) -> Result<ValidatedCluster, CliError> {
    let text = read_input(file)?;
    let loaded = pgcluster_core::load::load_one(&text)
        .map_err(|e| CliError::Invalid(format!("{}: {e}", display_name(file))))?;
    loaded
        .validate()
        .map_err(|e| CliError::Invalid(format!("{}: {e}", display_name(file))))
}

fn display_name(file: &Path) -> String {
    if file.as_os_str() == "-" {
        "<stdin>".to_owned()
    } else {
        file.display().to_string()
    }
}

/// Validates every cluster in the file and prints problems or summaries.
pub fn exec(args: Args) -> Result<(), CliError> {
    let loaded = load_file(&args.file, args.output)?;
    let name = display_name(&args.file);
    let mut problems = Vec::new();
    let mut valid = Vec::new();
    for doc in &loaded {
        match doc.validate() {
            Ok(v) => valid.push((doc, v)),
            Err(e) => problems.extend(
                e.errors
                    .iter()
                    .map(|p| Problem::from_validation(doc.document, p)),
            ),
        }
    }
    let several = loaded.len() > 1;
    if !problems.is_empty() {
        if let Some(out) = to_machine(&problems, args.output)? {
            print!("{out}");
            return Err(CliError::Invalid(format!(
                "{name}: {} problems",
                problems.len()
            )));
        }
        let mut text = format!(
            "{name}: {} problem{}",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        );
        for p in &problems {
            let doc = if several {
                format!("[document {}] ", p.document)
            } else {
                String::new()
            };
            let line = p.line.map(|l| format!(" (line {l})")).unwrap_or_default();
            text.push_str(&format!("\n  {doc}{}{line}: {}", p.path, p.message));
            if !p.hint.is_empty() {
                text.push_str(&format!("\n      hint: {}", p.hint));
            }
        }
        return Err(CliError::Invalid(text));
    }
    let resolved: Vec<PostgresCluster> = valid
        .iter()
        .map(|(doc, v)| {
            let mut c = doc.cluster.clone();
            c.metadata.namespace = Some(v.namespace().to_string());
            c.spec = v.resolved_spec().clone();
            c
        })
        .collect();
    // Warnings never fail: in text they follow each summary; with -o
    // json|yaml they go to stderr so stdout stays the resolved objects.
    if args.output != OutputFormat::Text {
        for (_, v) in &valid {
            for w in v.warnings() {
                eprintln!(
                    "warning: {name}: {}: {}\n    hint: {}",
                    w.path, w.message, w.hint
                );
            }
        }
    }
    match args.output {
        OutputFormat::Text => {
            for (doc, v) in &valid {
                print!("{}", summary(&name, doc, v));
                for w in v.warnings() {
                    print!(
                        "  warning     {}: {}\n      hint: {}\n",
                        w.path, w.message, w.hint
                    );
                }
            }
        }
        OutputFormat::Json if resolved.len() == 1 => {
            print!(
                "{}",
                to_machine(&resolved[0], args.output)?.unwrap_or_default()
            );
        }
        OutputFormat::Json => print!(
            "{}",
            to_machine(&resolved, args.output)?.unwrap_or_default()
        ),
        OutputFormat::Yaml => {
            for c in &resolved {
                print!("---\n{}", to_machine(c, args.output)?.unwrap_or_default());
            }
        }
    }
    Ok(())
}

/// The short text summary of a valid cluster.
pub fn summary(file: &str, doc: &LoadedCluster, v: &ValidatedCluster) -> String {
    let mut out = format!(
        "{file}: PostgresCluster {}/{} is valid\n",
        v.namespace(),
        v.name()
    );
    if doc.cluster.metadata.namespace.is_none() {
        out.push_str(&format!(
            "  note        metadata.namespace is not set; using `{}`\n",
            v.namespace()
        ));
    }
    let replicas = v.instances() - 1;
    out.push_str(&format!(
        "  instances   {} (1 primary + {replicas} replica{}), PostgreSQL {} ({})\n",
        v.instances(),
        if replicas == 1 { "" } else { "s" },
        v.postgres().version,
        v.postgres().image
    ));
    out.push_str(&format!(
        "  storage     {} on {} ({:?})\n",
        v.storage().size,
        v.storage().storage_class,
        v.storage().retention
    ));
    let mode = match v.replication().mode {
        pgcluster_core::api::v1alpha1::ReplicationMode::Async => format!(
            "async (a replica at most {} bytes behind may be promoted)",
            v.replication().max_failover_lag_bytes
        ),
        pgcluster_core::api::v1alpha1::ReplicationMode::Sync => {
            match v.replication().when_no_standby {
                pgcluster_core::api::v1alpha1::NoStandbyPolicy::Block => {
                    "sync (writes wait while no standby is healthy)".to_owned()
                }
                pgcluster_core::api::v1alpha1::NoStandbyPolicy::FallbackToAsync => {
                    "sync (falls back to async while no standby is healthy)".to_owned()
                }
            }
        }
    };
    out.push_str(&format!("  replication {mode}\n"));
    out.push_str(&format!(
        "  failover    {}, a replica may take over {:?} after the primary's last renewal\n",
        if v.automatic_failover() {
            "automatic"
        } else {
            "manual"
        },
        v.timings().worst_case_takeover()
    ));
    let mut endpoints = Vec::new();
    if v.services().rw {
        endpoints.push(v.name().rw_service());
    }
    if v.services().ro {
        endpoints.push(v.name().ro_service());
    }
    if let Some(lb) = &v.services().load_balancer {
        let addr = lb.address.map(|a| format!(" {a}")).unwrap_or_default();
        let exposes = match lb.endpoint {
            pgcluster_core::api::v1alpha1::ServiceEndpoint::Rw => "rw",
            pgcluster_core::api::v1alpha1::ServiceEndpoint::Ro => "ro",
        };
        endpoints.push(format!(
            "{}{addr} (exposes {exposes})",
            v.name().lb_service()
        ));
    }
    out.push_str(&format!("  endpoints   {}\n", endpoints.join(", ")));
    let dbs: Vec<_> = v
        .databases()
        .iter()
        .map(|d| format!("{} (owner {})", d.name, d.owner))
        .collect();
    out.push_str(&format!(
        "  databases   {}\n",
        if dbs.is_empty() {
            "none".into()
        } else {
            dbs.join(", ")
        }
    ));
    let roles: Vec<_> = v.roles().iter().map(|r| r.name.as_str()).collect();
    out.push_str(&format!(
        "  roles       {}\n",
        if roles.is_empty() {
            "none".into()
        } else {
            roles.join(", ")
        }
    ));
    let rules: Vec<_> = v
        .access()
        .rules
        .iter()
        .map(|r| {
            let eps: Vec<_> = r
                .endpoints
                .iter()
                .map(|e: &AccessEndpoint| endpoint_name(*e))
                .collect();
            format!("{} -> {}", r.name, eps.join("/"))
        })
        .collect();
    out.push_str(&format!(
        "  access      {}\n",
        if rules.is_empty() {
            "no rules: nobody may connect".into()
        } else {
            rules.join(", ")
        }
    ));
    out.push_str(&format!(
        "  monitoring  {}\n",
        if v.monitoring().enabled {
            format!(
                "on (namespace {}, every {:?})",
                v.monitoring().namespace,
                v.monitoring().interval
            )
        } else {
            "off".to_owned()
        }
    ));
    out
}
