//! `pgcluster agent`: the per-instance manager. Runs the HA state machine
//! against a PostgreSQL server it supervises (see `pgcluster_ha::agent`).
//! Local mode (`--local`): `pgcluster up` starts one per instance.
//! Kubernetes mode (`PGCLUSTER_MODE=kubernetes`, set by the StatefulSet):
//! the container's entrypoint, assembled by `pgcluster_k8s::agent_mode`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use pgcluster_ha::local::cluster;
use pgcluster_ha::local::layout::Layout;
use pgcluster_k8s::agent_mode::{self, KubeAgentEnv};

use super::local::{fail, load, quiet_runtime, runtime, shutdown_signal};
use crate::CliError;

/// Arguments of `pgcluster agent`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Stops PostgreSQL with a fast shutdown on SIGTERM or Ctrl-C.

Without --local the agent runs in Kubernetes mode, configured by the
environment the pgcluster StatefulSet sets (PGCLUSTER_MODE=kubernetes,
POD_NAME, POD_NAMESPACE, POD_IP, ...).

Examples:
  pgcluster agent --local --data-dir ~/.local/share/pgcluster/local --member local-0"
)]
pub struct Args {
    /// Local mode: the cluster lives in --data-dir (written by `pgcluster up`).
    #[arg(long, requires_all = ["data_dir", "member"])]
    pub local: bool,
    /// The local cluster's data directory.
    #[arg(long, value_name = "DIR", requires = "local")]
    pub data_dir: Option<PathBuf>,
    /// The member this agent manages (e.g. `local-0`).
    #[arg(long, value_name = "NAME", requires = "local")]
    pub member: Option<String>,
}

/// Runs the agent until SIGTERM/SIGINT.
pub fn exec(args: Args) -> Result<(), CliError> {
    let _telemetry = crate::telemetry::init_from_env("info", "pgcluster-agent")?;
    match (args.local, args.data_dir, args.member) {
        (true, Some(dir), Some(member)) => exec_local(&dir, &member),
        _ => exec_kubernetes(std::env::vars().collect()),
    }
}

fn exec_kubernetes(vars: BTreeMap<String, String>) -> Result<(), CliError> {
    if !agent_mode::selected(&vars) {
        return Err(CliError::Invalid(
            "pgcluster agent needs --local --data-dir DIR --member NAME (local mode), or PGCLUSTER_MODE=kubernetes and the environment the pgcluster StatefulSet sets".to_owned(),
        ));
    }
    let env = KubeAgentEnv::load(&vars).map_err(|e| fail(&e))?;
    runtime()?.block_on(async {
        let client = kube::Client::try_default().await.map_err(|e| fail(&e))?;
        agent_mode::run(&env, client, shutdown_signal())
            .await
            .map_err(|e| fail(&e))
    })
}

fn exec_local(data_dir: &std::path::Path, member: &str) -> Result<(), CliError> {
    let layout = Layout::new(data_dir);
    let (record, validated) = load(&layout)?;
    // Recorded so that `pgcluster down` stops this agent too (e.g. one restarted by hand).
    layout
        .update_record(|r| {
            if let Some(m) = r.members.iter_mut().find(|m| m.name == member) {
                m.agent_pid = Some(std::process::id());
            }
        })
        .map_err(|e| fail(&e))?;
    // One thread: a tick is one task that awaits PostgreSQL, the
    // coordinator's files and its actions in turn; slow work (pg_ctl,
    // pg_rewind, lease writes that may fsync) runs in child processes or on
    // blocking threads; the watchdog has a thread of its own.
    quiet_runtime()?.block_on(async {
        let config = cluster::agent_config(&layout, &record, &validated, member)
            .await
            .map_err(|e| fail(&e))?;
        let mut config = config;
        config.instance.fence = Some(fence_spawn()?);
        let timeout = pgcluster_ha::agent::driver::write_timeout(&config);
        let coordinator = cluster::coordinator(&layout, timeout).map_err(|e| fail(&e))?;
        pgcluster_ha::agent::run(config, coordinator, shutdown_signal())
            .await
            .map_err(|e| fail(&e))
    })
}

/// Servers started behind this binary's fencer (`pgcluster fence`).
fn fence_spawn() -> Result<pgcluster_ha::fence::FenceSpawn, CliError> {
    let exe = std::env::current_exe().map_err(|e| fail(&e))?;
    Ok(pgcluster_ha::fence::FenceSpawn::new(exe))
}
