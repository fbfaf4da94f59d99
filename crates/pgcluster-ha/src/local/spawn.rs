//! Starting the processes of a local cluster: one `pgcluster agent --local`
//! per member, the detached router, and each agent's configuration from the
//! recorded cluster.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use pgcluster_core::ValidatedCluster;
use pgcluster_core::postgres::settings;

use super::error::{LocalError, pg_err};
use super::layout::{ClusterRecord, Layout, LayoutError};
use super::prepare::Prepared;
use crate::agent::{AgentConfig, PeerAddr};
use crate::machine::{HaConfig, MemberName};
use crate::postgres::{Instance, OsUser, PgBinaries, Superuser};

/// Starts one `pgcluster agent --local` per member (see [`spawn_agent`]).
pub fn spawn_agents(prepared: &Prepared, exe: &Path) -> Result<Vec<u32>, LocalError> {
    prepared
        .record
        .members
        .iter()
        .map(|m| spawn_agent(&prepared.layout, &m.name, exe))
        .collect()
}

/// Starts `pgcluster agent --local` for `member` (own process group, output
/// appended to its `agent.log`) and records its PID.
pub fn spawn_agent(layout: &Layout, member: &str, exe: &Path) -> Result<u32, LocalError> {
    let log = layout.agent_log(member);
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("agent")
        .arg("--local")
        .arg("--data-dir")
        .arg(layout.root())
        .arg("--member")
        .arg(member);
    let pid = spawn_detached(cmd, &log, || {
        format!("the agent of {member} ({})", exe.display())
    })?;
    layout.update_record(|r| {
        if let Some(rec) = r.members.iter_mut().find(|x| x.name == member) {
            rec.agent_pid = Some(pid);
        }
    })?;
    Ok(pid)
}

/// Starts a detached `pgcluster router --local` and records its PID.
pub fn spawn_router(prepared: &Prepared, exe: &Path) -> Result<u32, LocalError> {
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("router")
        .arg("--local")
        .arg("--data-dir")
        .arg(prepared.layout.root());
    let pid = spawn_detached(cmd, &prepared.layout.router_log(), || {
        format!("the router ({})", exe.display())
    })?;
    prepared
        .layout
        .update_record(|r| r.router_pid = Some(pid))?;
    Ok(pid)
}

/// Spawns `cmd` in its own process group (a terminal's Ctrl-C does not reach
/// it; `down` stops it by PID), stdin closed, stdout and stderr appended to
/// `log`.
fn spawn_detached(
    mut cmd: std::process::Command,
    log: &Path,
    what: impl FnOnce() -> String,
) -> Result<u32, LocalError> {
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|source| LayoutError::Io {
                action: "open",
                path: log.to_owned(),
                source,
            })
    };
    cmd.stdin(std::process::Stdio::null())
        .stdout(open()?)
        .stderr(open()?);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let child = cmd.spawn().map_err(|source| LocalError::Spawn {
        what: what(),
        source,
    })?;
    Ok(child.id())
}

/// The agent configuration of `member` from the record (for `pgcluster agent --local`).
pub async fn agent_config(
    layout: &Layout,
    record: &ClusterRecord,
    cluster: &ValidatedCluster,
    member: &str,
) -> Result<AgentConfig, LocalError> {
    let me = record.member(member).ok_or_else(|| LocalError::Config {
        member: member.to_owned(),
        source: crate::machine::ConfigError::UnknownMember {
            me: member.to_owned(),
        },
    })?;
    let ha = HaConfig::from_validated(cluster, member).map_err(|source| LocalError::Config {
        member: member.to_owned(),
        source,
    })?;
    let bin = PgBinaries::in_dir(&record.pg_bin).map_err(pg_err)?;
    let os_user = OsUser::resolve(Some(&record.os_user))
        .await
        .map_err(pg_err)?;
    let password = layout.read_password(&layout.superuser_password_file())?;
    let instance = Instance {
        bin,
        os_user,
        layout: layout.member_layout(member),
        port: me.pg_port,
        superuser: Superuser {
            name: record.superuser.clone(),
            password,
        },
        member: member.to_owned(),
        fence: None,
    };
    let peers: BTreeMap<MemberName, PeerAddr> = record
        .members
        .iter()
        .map(|m| {
            (
                MemberName::new(m.name.clone()),
                PeerAddr::loopback(m.pg_port, m.api_port),
            )
        })
        .collect();
    let server_settings = settings::server_settings(
        cluster.instances(),
        &cluster.postgres().parameters,
        &settings::Placement::local(
            me.pg_port,
            &instance.layout.socket_dir.display().to_string(),
        ),
    )
    .lines();
    Ok(AgentConfig {
        cluster_name: record.name.clone(),
        ha,
        instance,
        peers,
        api_listen: SocketAddr::from(([127, 0, 0, 1], me.api_port)),
        metrics_listen: None,
        server_settings,
        start_timeout: Duration::from_secs(120),
        role_labels: None,
    })
}
