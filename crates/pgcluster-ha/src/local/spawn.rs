//! Starting the processes of a local cluster: one `pgcluster agent --local`
//! per member, the detached router, and each agent's configuration from the
//! recorded cluster.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use pgcluster_core::ValidatedCluster;

use super::error::{LocalError, pg_err};
use super::layout::{ClusterRecord, Layout, LayoutError};
use super::prepare::Prepared;
use crate::agent::{AgentConfig, PeerAddr};
use crate::machine::{HaConfig, MemberName};
use crate::postgres::{Instance, OsUser, PgBinaries, Superuser};

/// Starts one `pgcluster agent --local` per member (own process group,
/// output in its `agent.log`) and records the PIDs as they start.
pub fn spawn_agents(prepared: &Prepared, exe: &Path) -> Result<Vec<u32>, LocalError> {
    let mut pids = Vec::new();
    for m in &prepared.record.members {
        let log_path = prepared.layout.agent_log(&m.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|source| LayoutError::Io {
                action: "open",
                path: log_path.clone(),
                source,
            })?;
        let log_err = log.try_clone().map_err(|source| LayoutError::Io {
            action: "open",
            path: log_path.clone(),
            source,
        })?;
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("agent")
            .arg("--local")
            .arg("--data-dir")
            .arg(prepared.layout.root())
            .arg("--member")
            .arg(&m.name)
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log_err);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().map_err(|source| LocalError::Spawn {
            what: format!("the agent of {} ({})", m.name, exe.display()),
            source,
        })?;
        let pid = child.id();
        pids.push(pid);
        let name = m.name.clone();
        prepared.layout.update_record(|r| {
            if let Some(rec) = r.members.iter_mut().find(|x| x.name == name) {
                rec.agent_pid = Some(pid);
            }
        })?;
    }
    Ok(pids)
}

/// Starts a detached `pgcluster router --local` and records its PID.
pub fn spawn_router(prepared: &Prepared, exe: &Path) -> Result<u32, LocalError> {
    let log_path = prepared.layout.router_log();
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|source| LayoutError::Io {
                action: "open",
                path: log_path.clone(),
                source,
            })
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("router")
        .arg("--local")
        .arg("--data-dir")
        .arg(prepared.layout.root())
        .stdin(std::process::Stdio::null())
        .stdout(open()?)
        .stderr(open()?);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let child = cmd.spawn().map_err(|source| LocalError::Spawn {
        what: format!("the router ({})", exe.display()),
        source,
    })?;
    let pid = child.id();
    prepared
        .layout
        .update_record(|r| r.router_pid = Some(pid))?;
    Ok(pid)
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
    Ok(AgentConfig {
        cluster_name: record.name.clone(),
        ha,
        instance,
        peers,
        api_listen: SocketAddr::from(([127, 0, 0, 1], me.api_port)),
        parameters: cluster.postgres.parameters.clone(),
        start_timeout: Duration::from_secs(120),
        role_labels: None,
    })
}
