//! Orchestration of a local cluster, used by `pgcluster up`, `down`,
//! `status`, `switchover` and `failover`: checks before anything starts
//! (nothing already running, ports free, binaries, OS user), one agent
//! process per member, the router's targets from the coordinator, readiness,
//! the application roles and databases, and stopping by recorded PIDs only.
//!
//! ```text
//! prepare --> spawn_agents --> route_targets --> Router --> wait_ready --> create_app_objects
//!    (cluster.json, secrets)         (coordinator file, polled)                 ... stop(): SIGTERM recorded PIDs
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use pgcluster_core::ValidatedCluster;
use pgcluster_core::names::SUPERUSER_ROLE;
use tokio::sync::watch;

use super::layout::{ClusterRecord, Layout, LayoutError, MemberRecord, Ports};
use super::router::RouteTargets;
use crate::agent::{AgentConfig, PeerAddr};
use crate::coordinator::local::LocalCoordinator;
use crate::machine::{ClusterView, HaConfig, MemberName, MemberRole};
use crate::postgres::{Instance, OsUser, PgBinaries, PgError, Superuser, ensure_port_free};

/// Everything that can stop a local-cluster command.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// Reading or writing the layout failed.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// The cluster is already running.
    #[error(
        "failed to start cluster {name}: it is already running (PID {pid}, data in {}); use `pgcluster status` to see it or `pgcluster down` to stop it",
        .dir.display()
    )]
    AlreadyRunning {
        /// Cluster name.
        name: String,
        /// A live PID of it.
        pid: u32,
        /// Its data directory.
        dir: PathBuf,
    },
    /// The data directory holds another cluster.
    #[error(
        "failed to use {} for cluster {wanted}: it holds cluster {found}; pass another --data-dir (nothing was changed)",
        .dir.display()
    )]
    OtherCluster {
        /// The data directory.
        dir: PathBuf,
        /// The cluster found there.
        found: String,
        /// The cluster requested.
        wanted: String,
    },
    /// The spec changed the number of instances of an existing cluster.
    #[error(
        "failed to start cluster {name}: its data has {had} instances but the spec asks for {wants}; changing the instance count of a local cluster is not supported"
    )]
    InstanceCount {
        /// Cluster name.
        name: String,
        /// Recorded count.
        had: usize,
        /// Requested count.
        wants: u32,
    },
    /// A port is taken.
    #[error(
        "failed to start: 127.0.0.1:{port} ({what}) is already in use; stop whatever listens there or pass --port BASE for another port range"
    )]
    PortInUse {
        /// The port.
        port: u16,
        /// What it was for.
        what: String,
    },
    /// A PostgreSQL prerequisite failed (binaries, OS user, directories).
    #[error("failed to prepare PostgreSQL")]
    Postgres {
        /// The cause.
        #[source]
        source: PgError,
    },
    /// A process could not be started.
    #[error("failed to start {what}")]
    Spawn {
        /// What.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The cluster did not become ready in time.
    #[error("failed to get a ready cluster within {waited:?}: {detail}")]
    NotReady {
        /// How long we waited.
        waited: Duration,
        /// What was still missing, and where to look.
        detail: String,
    },
    /// An agent exited while starting.
    #[error("failed to start member {member}: its agent exited; the end of {}:\n{tail}", .log.display())]
    AgentDied {
        /// The member.
        member: String,
        /// Its agent log.
        log: PathBuf,
        /// The log's last lines.
        tail: String,
    },
    /// An SQL statement through the rw endpoint failed.
    #[error("failed to {what} through the rw endpoint 127.0.0.1:{port}")]
    Sql {
        /// What was being done.
        what: String,
        /// The rw port.
        port: u16,
        /// The cause.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The coordinator could not be used.
    #[error("failed to use the coordinator in {}", .dir.display())]
    Coordinator {
        /// Its directory.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: crate::coordinator::CoordinatorError,
    },
    /// The HA configuration of a member is invalid.
    #[error("failed to configure member {member}")]
    Config {
        /// The member.
        member: String,
        /// The cause.
        #[source]
        source: crate::machine::ConfigError,
    },
    /// Some processes did not stop.
    #[error("failed to stop PIDs {pids:?} within {waited:?}; they were killed (SIGKILL)")]
    StopTimeout {
        /// The PIDs.
        pids: Vec<u32>,
        /// How long we waited.
        waited: Duration,
    },
}

impl LocalError {
    /// A bounded label.
    pub fn category(&self) -> &'static str {
        match self {
            LocalError::Layout(e) => e.category(),
            LocalError::AlreadyRunning { .. } => "already_running",
            LocalError::OtherCluster { .. } => "other_cluster",
            LocalError::InstanceCount { .. } => "instance_count",
            LocalError::PortInUse { .. } => "port_in_use",
            LocalError::Postgres { .. } => "postgres",
            LocalError::Spawn { .. } => "spawn",
            LocalError::NotReady { .. } => "not_ready",
            LocalError::AgentDied { .. } => "agent_died",
            LocalError::Sql { .. } => "sql",
            LocalError::Coordinator { .. } => "coordinator",
            LocalError::Config { .. } => "config",
            LocalError::StopTimeout { .. } => "stop_timeout",
        }
    }
}

fn pg_err(source: PgError) -> LocalError {
    LocalError::Postgres { source }
}

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

/// Checks everything before anything starts and writes `cluster.json` and
/// the secrets. Refuses when the cluster runs, when the directory holds
/// another cluster and when a port is taken.
pub async fn prepare(opts: &UpOptions) -> Result<Prepared, LocalError> {
    let name = opts.cluster.name.to_string();
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
        if let Some(pid) = live_pids(&layout, rec).first() {
            return Err(LocalError::AlreadyRunning {
                name,
                pid: *pid,
                dir: root,
            });
        }
        if rec.members.len() != opts.cluster.instances as usize {
            return Err(LocalError::InstanceCount {
                name,
                had: rec.members.len(),
                wants: opts.cluster.instances,
            });
        }
    }
    let ports = match (&existing, opts.base_port) {
        (_, Some(base)) => Ports::from_base(base, opts.cluster.instances),
        (Some(rec), None) => Ports {
            rw: rec.rw_port,
            ro: rec.ro_port,
            members: rec
                .members
                .iter()
                .map(|m| (m.pg_port, m.api_port))
                .collect(),
        },
        (None, None) => Ports::from_base(super::layout::DEFAULT_BASE_PORT, opts.cluster.instances),
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
    let superuser_password = layout.ensure_password(&layout.superuser_password_file())?;
    for role in &opts.cluster.roles {
        layout.ensure_password(&layout.role_password_file(&role.name))?;
    }
    for (i, _) in ports.members.iter().enumerate() {
        let member = opts.cluster.name.instance(i as u32);
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
    let record = ClusterRecord {
        name: name.clone(),
        spec: opts.spec.clone(),
        members: ports
            .members
            .iter()
            .enumerate()
            .map(|(i, (pg, api))| MemberRecord {
                name: opts.cluster.name.instance(i as u32),
                pg_port: *pg,
                api_port: *api,
                agent_pid: None,
            })
            .collect(),
        rw_port: ports.rw,
        ro_port: ports.ro,
        router_pid: None,
        up_pid: None,
        os_user: os_user.name.clone(),
        pg_bin: bin.bindir().to_owned(),
        superuser: SUPERUSER_ROLE.to_owned(),
    };
    layout.write_record(&record)?;
    Ok(Prepared {
        layout,
        record,
        superuser_password,
    })
}

fn check_ports(ports: &Ports, cluster: &ValidatedCluster) -> Result<(), LocalError> {
    let mut named = vec![(ports.rw, "the rw endpoint".to_owned())];
    named.push((ports.ro, "the ro endpoint".to_owned()));
    for (i, (pg, api)) in ports.members.iter().enumerate() {
        let m = cluster.name.instance(i as u32);
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

/// Adds o+x to `dir` (only traversal, no listing) so the unprivileged
/// PostgreSQL user reaches its own 0700 directory below.
fn allow_traverse(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(dir) {
        let mode = meta.permissions().mode() | 0o001;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode));
    }
}

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

/// The local coordinator of a cluster.
pub fn coordinator(layout: &Layout, timeout: Duration) -> Result<LocalCoordinator, LocalError> {
    LocalCoordinator::open(layout.coordinator_dir(), timeout).map_err(|source| {
        LocalError::Coordinator {
            dir: layout.coordinator_dir(),
            source,
        }
    })
}

/// Where the router should send connections, from one coordinator view:
/// the lease holder once it publishes itself as a healthy primary; replicas
/// that publish themselves as healthy.
pub fn targets_of(view: &ClusterView, record: &ClusterRecord) -> RouteTargets {
    let addr = |name: &MemberName| {
        record
            .member(name.as_str())
            .map(|m| SocketAddr::from(([127, 0, 0, 1], m.pg_port)))
    };
    let holder = view.lease.as_ref().and_then(|l| l.record.holder.clone());
    let primary = holder
        .as_ref()
        .filter(|h| {
            view.members
                .get(*h)
                .is_some_and(|m| m.role == MemberRole::Primary && m.healthy)
        })
        .and_then(addr);
    let replicas = view
        .members
        .values()
        .filter(|m| m.role == MemberRole::Replica && m.healthy && Some(&m.name) != holder.as_ref())
        .filter_map(|m| addr(&m.name))
        .collect();
    RouteTargets { primary, replicas }
}

/// Polls the coordinator file every `every` and publishes the router's targets.
pub fn route_targets(
    layout: &Layout,
    record: &ClusterRecord,
    every: Duration,
) -> Result<(watch::Receiver<RouteTargets>, tokio::task::JoinHandle<()>), LocalError> {
    let coord = coordinator(layout, Duration::from_millis(500))?;
    let record = record.clone();
    let initial = coord
        .read_now()
        .map(|v| targets_of(&v, &record))
        .unwrap_or_default();
    let (tx, rx) = watch::channel(initial);
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if tx.is_closed() {
                return;
            }
            if let Ok(view) = coord.read_now() {
                let next = targets_of(&view, &record);
                tx.send_if_modified(|cur| {
                    if *cur != next {
                        tracing::info!(primary = ?next.primary, replicas = ?next.replicas, "route targets changed");
                        *cur = next;
                        true
                    } else {
                        false
                    }
                });
            }
        }
    });
    Ok((rx, task))
}

/// The cluster is ready: the lease holder is a healthy primary, every other
/// member a healthy replica following it. Returns a one-line progress text
/// otherwise.
pub fn readiness(view: &ClusterView, record: &ClusterRecord) -> Result<String, String> {
    let holder = view.lease.as_ref().and_then(|l| l.record.holder.clone());
    let mut parts = Vec::new();
    let mut ready = holder.is_some();
    for m in &record.members {
        let state = view.members.get(&MemberName::new(m.name.clone()));
        let text = match state {
            None => {
                ready = false;
                "starting".to_owned()
            }
            Some(s) => {
                let is_holder = holder.as_ref() == Some(&s.name);
                let ok = if is_holder {
                    s.role == MemberRole::Primary && s.healthy
                } else {
                    s.role == MemberRole::Replica && s.healthy && s.following == holder
                };
                ready &= ok;
                let role = format!("{:?}", s.role).to_lowercase();
                if ok {
                    role
                } else if is_holder {
                    format!("{role} (becoming primary)")
                } else {
                    format!("{role} (catching up)")
                }
            }
        };
        parts.push(format!("{}: {text}", m.name));
    }
    let line = parts.join(", ");
    if ready { Ok(line) } else { Err(line) }
}

/// Waits until [`readiness`] holds and a writable primary answers through
/// the rw port; `progress` gets a line whenever the state changes. Fails
/// when an agent dies or `timeout` passes.
pub async fn wait_ready(
    prepared: &Prepared,
    timeout: Duration,
    mut progress: impl FnMut(&str),
) -> Result<(), LocalError> {
    let layout = &prepared.layout;
    let record = layout.read_record()?;
    let coord = coordinator(layout, Duration::from_millis(500))?;
    let started = Instant::now();
    let mut last = String::new();
    loop {
        for m in &record.members {
            if let Some(pid) = m.agent_pid
                && !pid_is_ours(pid, Some(layout.root()))
            {
                let log = layout.agent_log(&m.name);
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(8).collect();
                return Err(LocalError::AgentDied {
                    member: m.name.clone(),
                    log,
                    tail: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
                });
            }
        }
        let line = match coord.read_now() {
            Ok(view) => match readiness(&view, &record) {
                Ok(line) => {
                    if rw_is_writable(record.rw_port, &prepared.superuser_password).await {
                        progress(&line);
                        return Ok(());
                    }
                    format!("{line} (waiting for the rw endpoint)")
                }
                Err(line) => line,
            },
            Err(e) => format!("coordinator: {e}"),
        };
        if line != last {
            progress(&line);
            last = line.clone();
        }
        if started.elapsed() > timeout {
            return Err(LocalError::NotReady {
                waited: timeout,
                detail: format!(
                    "{line}; see the agent logs in {}",
                    layout.root().join("members/*/agent.log").display()
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Connects as the superuser to 127.0.0.1:`port`.
pub async fn connect(
    port: u16,
    user: &str,
    password: &str,
    dbname: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user(user)
        .password(password)
        .dbname(dbname)
        .connect_timeout(Duration::from_secs(3));
    let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

async fn rw_is_writable(port: u16, password: &str) -> bool {
    let Ok(client) = connect(port, SUPERUSER_ROLE, password, "postgres").await else {
        return false;
    };
    matches!(
        client
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .map(|r| r.get::<_, bool>(0)),
        Ok(false)
    )
}

/// Creates the spec's roles (with their generated passwords) and databases
/// on the primary through the rw port; idempotent.
pub async fn create_app_objects(
    prepared: &Prepared,
    cluster: &ValidatedCluster,
) -> Result<(), LocalError> {
    let port = prepared.record.rw_port;
    let sql_err = |what: String| move |source| LocalError::Sql { what, port, source };
    let client = connect(
        port,
        &prepared.record.superuser,
        &prepared.superuser_password,
        "postgres",
    )
    .await
    .map_err(sql_err("connect as the superuser".to_owned()))?;
    let mut roles: Vec<String> = cluster.roles.iter().map(|r| r.name.clone()).collect();
    for db in &cluster.databases {
        if !roles.contains(&db.owner) {
            roles.push(db.owner.clone());
        }
    }
    for role in &roles {
        let password = prepared
            .layout
            .ensure_password(&prepared.layout.role_password_file(role))?;
        let sql = format!(
            "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {lit}) THEN \
             CREATE ROLE {ident} LOGIN PASSWORD {pw}; END IF; END$$",
            lit = literal(role),
            ident = ident(role),
            pw = literal(&password),
        );
        client
            .batch_execute(&sql)
            .await
            .map_err(sql_err(format!("create role {role}")))?;
    }
    for db in &cluster.databases {
        let exists = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db.name])
            .await
            .map_err(sql_err(format!("look up database {}", db.name)))?
            .is_some();
        if !exists {
            client
                .batch_execute(&format!(
                    "CREATE DATABASE {} OWNER {}",
                    ident(&db.name),
                    ident(&db.owner)
                ))
                .await
                .map_err(sql_err(format!("create database {}", db.name)))?;
        }
    }
    Ok(())
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// What [`stop`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StopReport {
    /// PIDs that got SIGTERM and exited.
    pub stopped: Vec<u32>,
    /// PIDs that had to be killed.
    pub killed: Vec<u32>,
}

/// Stops a local cluster: SIGTERM to every recorded PID that is still ours
/// (the agents stop PostgreSQL with a fast shutdown), waits up to `timeout`,
/// then SIGKILLs what is left (and SIGQUITs the postmasters those agents
/// left). Clears the PIDs in `cluster.json`. Never signals anything else.
pub async fn stop(layout: &Layout, timeout: Duration) -> Result<StopReport, LocalError> {
    let record = layout.read_record()?;
    let pids = live_pids(layout, &record);
    for pid in &pids {
        signal(*pid, Signal::SIGTERM);
    }
    let started = Instant::now();
    let mut left = pids.clone();
    while !left.is_empty() && started.elapsed() < timeout {
        tokio::time::sleep(Duration::from_millis(50)).await;
        left.retain(|p| Path::new(&format!("/proc/{p}")).exists() && !is_zombie(*p));
    }
    let mut report = StopReport {
        stopped: pids.iter().copied().filter(|p| !left.contains(p)).collect(),
        killed: Vec::new(),
    };
    for pid in &left {
        signal(*pid, Signal::SIGKILL);
        report.killed.push(*pid);
    }
    if !left.is_empty() {
        // Their postmasters may still run: fence them by the PID in their own pid file.
        for m in &record.members {
            let pidfile = layout
                .member_layout(&m.name)
                .data_dir
                .join("postmaster.pid");
            if let Some(pid) = std::fs::read_to_string(pidfile)
                .ok()
                .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<u32>().ok()))
            {
                let data = layout.member_layout(&m.name).data_dir;
                if std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                    String::from_utf8_lossy(&c).contains(data.to_string_lossy().as_ref())
                }) {
                    signal(pid, Signal::SIGQUIT);
                }
            }
        }
    }
    layout.update_record(|r| {
        for m in &mut r.members {
            m.agent_pid = None;
        }
        r.router_pid = None;
        r.up_pid = None;
    })?;
    Ok(report)
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

fn signal(pid: u32, sig: Signal) {
    if let Ok(raw) = i32::try_from(pid) {
        let _ = kill(Pid::from_raw(raw), sig);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::{Lease, LeaseRecord, LeaseVersion, Lsn, MemberState, Millis, Timeline};

    fn record() -> ClusterRecord {
        ClusterRecord {
            name: "demo".into(),
            spec: String::new(),
            members: (0..2)
                .map(|i| MemberRecord {
                    name: format!("demo-{i}"),
                    pg_port: 20000 + i,
                    api_port: 21000 + i,
                    agent_pid: None,
                })
                .collect(),
            rw_port: 1,
            ro_port: 2,
            router_pid: None,
            up_pid: None,
            os_user: "x".into(),
            pg_bin: PathBuf::new(),
            superuser: "postgres".into(),
        }
    }

    fn member(name: &str, role: MemberRole, following: Option<&str>) -> MemberState {
        MemberState {
            name: name.into(),
            role,
            healthy: true,
            timeline: Timeline(1),
            received_lsn: Lsn(1),
            replayed_lsn: Lsn(1),
            flushed_lsn: Lsn(1),
            system_identifier: None,
            following: following.map(MemberName::from),
            sync_eligible: true,
            last_seen: Millis(0),
            heartbeat: 1,
        }
    }

    fn view(holder: &str, states: Vec<MemberState>) -> ClusterView {
        ClusterView {
            lease: Some(Lease {
                version: LeaseVersion(1),
                record: LeaseRecord {
                    holder: Some(holder.into()),
                    term: 1,
                    renewed_at: Millis(0),
                    duration_ms: 1,
                    system_identifier: None,
                    timeline: Timeline(1),
                    history: vec![],
                    max_timeline: Timeline(1),
                    primary_lsn: Lsn(0),
                    sync_standbys: Default::default(),
                },
            }),
            members: states.into_iter().map(|s| (s.name.clone(), s)).collect(),
            switchover: None,
        }
    }

    /// rw goes to the lease holder only once it is a healthy primary; ro to healthy replicas.
    #[test]
    fn targets_follow_the_lease_holder() {
        let rec = record();
        let v = view(
            "demo-1",
            vec![
                member("demo-0", MemberRole::Primary, None),
                member("demo-1", MemberRole::Replica, Some("demo-0")),
            ],
        );
        // The holder has not promoted yet: no rw target, and never the old primary.
        let t = targets_of(&v, &rec);
        assert_eq!(t.primary, None);
        let v = view(
            "demo-0",
            vec![
                member("demo-0", MemberRole::Primary, None),
                member("demo-1", MemberRole::Replica, Some("demo-0")),
            ],
        );
        let t = targets_of(&v, &rec);
        assert_eq!(t.primary, Some(SocketAddr::from(([127, 0, 0, 1], 20000))));
        assert_eq!(t.replicas, vec![SocketAddr::from(([127, 0, 0, 1], 20001))]);
        assert!(readiness(&v, &rec).is_ok());
    }
}
