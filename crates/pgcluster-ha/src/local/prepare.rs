//! Checks before anything starts (nothing of the cluster already running,
//! the data dir holds this cluster, ports free, binaries, OS user), then
//! `cluster.json`, the secrets and the member directories.

use std::path::{Path, PathBuf};

use pgcluster_core::ValidatedCluster;
use pgcluster_core::names::SUPERUSER_ROLE;

use super::connect::{self, ClientOwner};
use super::error::{LocalError, pg_err};
use super::layout::{ClusterRecord, Layout, LayoutError, MemberRecord, Ports};
use crate::postgres::{OsUser, PgBinaries, PgError, ensure_port_free};

/// What `up` was asked for.
#[derive(Clone, Debug)]
pub struct UpOptions {
    /// The spec text (YAML), as stored in `cluster.json`.
    pub spec: String,
    /// The validated spec.
    pub cluster: ValidatedCluster,
    /// `--data-dir` (default: [`Layout::default_root`]).
    pub data_dir: Option<PathBuf>,
    /// `--pg-bin`.
    pub pg_bin: Option<PathBuf>,
    /// `--os-user`.
    pub os_user: Option<String>,
    /// `--port` base.
    pub base_port: Option<u16>,
    /// Who gets the clients' password file when not the process's own user
    /// (see [`super::connect`]).
    pub client_owner: Option<ClientOwner>,
}

/// A cluster ready to start: checked, recorded, with its secrets.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// Its layout.
    pub layout: Layout,
    /// Its record (PIDs not yet set).
    pub record: ClusterRecord,
    /// The superuser's password.
    pub superuser_password: String,
    /// The clients' password file (every login, every port).
    pub passfile: PathBuf,
}

/// Whether `pid` is alive and one of ours: a `pgcluster` process (optionally
/// one whose command line names `root`).
pub fn pid_is_ours(pid: u32, root: Option<&Path>) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let cmdline = String::from_utf8_lossy(&cmdline);
    cmdline.contains("pgcluster")
        && root.is_none_or(|r| cmdline.contains(r.to_string_lossy().as_ref()))
}

/// The recorded PIDs that still run as ours (the calling process excluded).
pub fn live_pids(layout: &Layout, record: &ClusterRecord) -> Vec<u32> {
    let me = std::process::id();
    let mut out = Vec::new();
    for m in &record.members {
        if let Some(pid) = m.agent_pid
            && pid != me
            && pid_is_ours(pid, Some(layout.root()))
        {
            out.push(pid);
        }
    }
    if let Some(pid) = record.router_pid
        && pid != me
        && pid_is_ours(pid, Some(layout.root()))
    {
        out.push(pid);
    }
    if let Some(pid) = record.up_pid
        && pid != me
        && pid_is_ours(pid, None)
    {
        out.push(pid);
    }
    out
}

/// The process that stands for a running cluster, with what it is: the
/// foreground `pgcluster up`, else the detached router (what `up --detach`
/// left running), else an agent (the supervisor restarts agents, so an
/// agent's PID says little about what the user started).
pub fn running_process(layout: &Layout, record: &ClusterRecord) -> Option<(u32, String)> {
    let live = live_pids(layout, record);
    let is_live = |pid: Option<u32>| pid.filter(|p| live.contains(p));
    if let Some(pid) = is_live(record.up_pid) {
        return Some((pid, "`pgcluster up`".to_owned()));
    }
    if let Some(pid) = is_live(record.router_pid) {
        return Some((pid, "its router, from `pgcluster up --detach`".to_owned()));
    }
    record
        .members
        .iter()
        .find_map(|m| is_live(m.agent_pid).map(|pid| (pid, format!("the agent of {}", m.name))))
}

/// Checks everything before anything starts and writes `cluster.json` and
/// the secrets. Refuses when the cluster runs, when the directory holds
/// another cluster and when a port is taken.
pub async fn prepare(opts: &UpOptions) -> Result<Prepared, LocalError> {
    let name = opts.cluster.name().to_string();
    let root = opts
        .data_dir
        .clone()
        .unwrap_or_else(|| Layout::default_root(&name));
    let layout = Layout::new(&root);
    let existing = match layout.read_record() {
        Ok(r) => Some(r),
        Err(LayoutError::NoCluster { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    if let Some(rec) = &existing {
        if rec.name != name {
            return Err(LocalError::OtherCluster {
                dir: root,
                found: rec.name.clone(),
                wanted: name,
            });
        }
        if let Some((pid, process)) = running_process(&layout, rec) {
            return Err(LocalError::AlreadyRunning {
                name,
                process,
                pid,
                dir: root,
            });
        }
        if rec.members.len() != opts.cluster.instances() as usize {
            return Err(LocalError::InstanceCount {
                name,
                had: rec.members.len(),
                wants: opts.cluster.instances(),
            });
        }
    }
    let ports = match (&existing, opts.base_port) {
        (_, Some(base)) => Ports::from_base(base, opts.cluster.instances()),
        (Some(rec), None) => Ports {
            rw: rec.rw_port,
            ro: rec.ro_port,
            members: rec
                .members
                .iter()
                .map(|m| (m.pg_port, m.api_port))
                .collect(),
        },
        (None, None) => {
            Ports::from_base(super::layout::DEFAULT_BASE_PORT, opts.cluster.instances())
        }
    };
    check_ports(&ports, &opts.cluster)?;
    let bin = PgBinaries::locate(opts.pg_bin.as_deref())
        .await
        .map_err(pg_err)?;
    let os_user = OsUser::resolve(opts.os_user.as_deref())
        .await
        .map_err(pg_err)?;

    std::fs::create_dir_all(&root).map_err(|source| LayoutError::Io {
        action: "create",
        path: root.clone(),
        source,
    })?;
    // PostgreSQL's OS user must be able to traverse to its member directory.
    allow_traverse(&root);
    if let Some(dir) = untraversable_ancestor(&root, &os_user) {
        return Err(LocalError::NotTraversable {
            root,
            dir,
            user: os_user.name.clone(),
        });
    }
    let superuser_password = layout.ensure_password(&layout.superuser_password_file())?;
    let mut logins = vec![(SUPERUSER_ROLE.to_owned(), superuser_password.clone())];
    for role in opts.cluster.roles() {
        let password = layout.ensure_password(&layout.role_password_file(&role.name))?;
        logins.push((role.name.clone(), password));
    }
    for (i, _) in ports.members.iter().enumerate() {
        let member = opts.cluster.name().instance(i as u32);
        os_user
            .create_dir(&layout.member_dir(&member), 0o700)
            .map_err(pg_err)?;
    }
    allow_traverse(&root.join("members"));
    std::fs::create_dir_all(layout.coordinator_dir()).map_err(|source| LayoutError::Io {
        action: "create",
        path: layout.coordinator_dir(),
        source,
    })?;
    // Nothing of this cluster runs (checked above): start from the durable
    // state, never from a runtime copy some earlier run left behind.
    layout.clear_runtime()?;
    let record = ClusterRecord {
        name: name.clone(),
        spec: opts.spec.clone(),
        members: ports
            .members
            .iter()
            .enumerate()
            .map(|(i, (pg, api))| MemberRecord {
                name: opts.cluster.name().instance(i as u32),
                pg_port: *pg,
                api_port: *api,
                agent_pid: None,
                restarts: 0,
            })
            .collect(),
        rw_port: ports.rw,
        ro_port: ports.ro,
        router_pid: None,
        up_pid: None,
        os_user: os_user.name.clone(),
        pg_bin: bin.bindir().to_owned(),
        superuser: SUPERUSER_ROLE.to_owned(),
        stopping: false,
    };
    layout.write_record(&record)?;
    let passfile = connect::write_passfile(
        &layout,
        &connect::passfile_text(&record, &logins),
        opts.client_owner,
    )?;
    Ok(Prepared {
        layout,
        record,
        superuser_password,
        passfile,
    })
}

fn check_ports(ports: &Ports, cluster: &ValidatedCluster) -> Result<(), LocalError> {
    let mut named = vec![(ports.rw, "the rw endpoint".to_owned())];
    named.push((ports.ro, "the ro endpoint".to_owned()));
    for (i, (pg, api)) in ports.members.iter().enumerate() {
        let m = cluster.name().instance(i as u32);
        named.push((*pg, format!("PostgreSQL of {m}")));
        named.push((*api, format!("the agent API of {m}")));
    }
    for (port, what) in named {
        match ensure_port_free(port) {
            Ok(()) => {}
            Err(PgError::PortInUse { .. }) => return Err(LocalError::PortInUse { port, what }),
            Err(e) => return Err(pg_err(e)),
        }
    }
    Ok(())
}

/// The first directory on the way to `dir` (inclusive) that `user` may not
/// enter, judged by owner, primary group and other search bits; `None` when
/// PostgreSQL does not switch users (it runs as us).
fn untraversable_ancestor(dir: &Path, user: &OsUser) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    if !user.switch {
        return None;
    }
    let mut chain: Vec<&Path> = dir.ancestors().collect();
    chain.reverse();
    chain.into_iter().find_map(|a| {
        let meta = std::fs::metadata(a).ok()?;
        let mode = meta.mode();
        let bit = if meta.uid() == user.uid {
            0o100
        } else if meta.gid() == user.gid {
            0o010
        } else {
            0o001
        };
        (mode & bit == 0).then(|| a.to_owned())
    })
}

/// Adds o+x to `dir` (only traversal, no listing) so the unprivileged
/// PostgreSQL user reaches its own 0700 directory below.
fn allow_traverse(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(dir) {
        let mode = meta.permissions().mode() | 0o001;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode));
    }
}
