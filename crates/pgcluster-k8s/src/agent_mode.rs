//! `pgcluster agent` in Kubernetes mode: the assembly of the agent from what
//! the StatefulSet gives its pods (see [`crate::build::statefulset::agent_env`]).
//!
//! - identity from the downward API (`POD_NAME`, `POD_NAMESPACE`, `POD_IP`);
//! - peers by the headless Service's DNS: `<pod>.<name>-pods.<ns>.svc`;
//! - the superuser's password from the mounted Secret file;
//! - the coordinator is the [`KubeLeaseCoordinator`] of the cluster;
//! - role labels go to [`KubeRoleLabels`], which patches pods in the
//!   background (the new primary relabels the old primary's pod too).
//!
//! The parsing ([`KubeAgentEnv::from_env`]) and the assembly
//! ([`KubeAgentEnv::agent_config`]) are pure; [`run`] does the I/O (reads the
//! password file, finds the PostgreSQL binaries) and hands over to
//! [`pgcluster_ha::agent::run`].
//!
//! PostgreSQL's log goes to the container's stderr ([`ServerLog::Inherit`]),
//! next to the agent's JSON lines on stdout; the ConfigMap's
//! `log_line_prefix` marks its lines `postgres[<pid>]:`.
//!
//! PostgreSQL's settings: the agent's managed file `pgcluster.conf` ends with
//! `include '<config dir>/postgresql.conf'` (the ConfigMap), so the cluster's
//! values (`listen_addresses = '*'`, `hba_file` = the rendered pg_hba.conf,
//! the user's parameters) win over the agent's local-mode defaults, while the
//! per-instance settings the agent decides (`primary_conninfo`,
//! `synchronous_standby_names`) are not in the ConfigMap and stay the agent's.
//!
//! ```text
//! env (downward API, StatefulSet) --from_env--> KubeAgentEnv --agent_config--> AgentConfig
//!                                                        \--coordinator--> KubeLeaseCoordinator
//! machine SetRoleLabel --RoleLabels::set--> KubeRoleLabels --(task)--> PATCH pod labels
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use pgcluster_core::api::v1alpha1::{NoStandbyPolicy, ReplicationMode};
use pgcluster_core::names::{ClusterName, SUPERUSER_ROLE};
use pgcluster_core::timing::FailoverTimings;
use pgcluster_core::validated::ResolvedReplication;
use pgcluster_ha::agent::{AgentConfig, AgentError, PeerAddr, RoleLabels};
use pgcluster_ha::machine::{ConfigError, HaConfig, MemberName, RoleLabel};
use pgcluster_ha::postgres::{Instance, Layout, OsUser, PgBinaries, PgError, ServerLog, Superuser};
use tokio::sync::mpsc;

use crate::build::config::POSTGRESQL_CONF;
use crate::build::statefulset::{PASSFILE, SOCKET_DIR};
use crate::build::{AGENT_PORT, POSTGRES_PORT};
use crate::lease::KubeLeaseCoordinator;
use crate::pod_role::PodLabeler;

/// The value of `PGCLUSTER_MODE` that selects Kubernetes mode.
pub const MODE_KUBERNETES: &str = "kubernetes";
/// How long a start (including crash recovery) may take in a pod.
pub const START_TIMEOUT: Duration = Duration::from_secs(600);
/// Delay before a failed role label is tried again.
pub const LABEL_RETRY: Duration = Duration::from_secs(1);

/// Why Kubernetes mode could not be set up or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AgentModeError {
    /// A required environment variable is missing.
    #[error(
        "failed to configure the agent: environment variable {name} is not set; the StatefulSet pgcluster renders sets it (is this pod from an older or hand-written manifest?)"
    )]
    MissingVar {
        /// The variable.
        name: &'static str,
    },
    /// An environment variable has an unusable value.
    #[error("failed to configure the agent: {name}={value:?} is not valid: {expected}")]
    InvalidVar {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What it should be.
        expected: String,
    },
    /// The HA configuration is inconsistent (member or timings).
    #[error("failed to configure the agent's state machine from the environment")]
    Ha {
        /// The cause.
        #[source]
        source: ConfigError,
    },
    /// The password file could not be read.
    #[error(
        "failed to read the superuser password from {path}; is the Secret mounted and filled by the controller?"
    )]
    Password {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The PostgreSQL binaries or the OS user could not be found.
    #[error("failed to find PostgreSQL in the container image")]
    Postgres {
        /// The cause.
        #[source]
        source: Box<PgError>,
    },
    /// The agent stopped with an error.
    #[error("the agent failed")]
    Agent {
        /// The cause.
        #[source]
        source: Box<AgentError>,
    },
}

impl AgentModeError {
    /// A bounded label for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            AgentModeError::MissingVar { .. } => "missing_env",
            AgentModeError::InvalidVar { .. } => "invalid_env",
            AgentModeError::Ha { .. } => "ha_config",
            AgentModeError::Password { .. } => "password",
            AgentModeError::Postgres { .. } => "postgres",
            AgentModeError::Agent { .. } => "agent",
        }
    }
}

/// Whether the environment selects Kubernetes mode (`PGCLUSTER_MODE=kubernetes`).
pub fn selected(vars: &BTreeMap<String, String>) -> bool {
    vars.get("PGCLUSTER_MODE").map(String::as_str) == Some(MODE_KUBERNETES)
}

/// Everything the agent takes from its pod's environment, parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct KubeAgentEnv {
    /// The cluster (`PGCLUSTER_CLUSTER`).
    pub cluster: ClusterName,
    /// Number of instances (`PGCLUSTER_INSTANCES`).
    pub instances: u32,
    /// The headless Service (`PGCLUSTER_HEADLESS_SERVICE`).
    pub headless_service: String,
    /// This pod (`POD_NAME`, downward API): the member name.
    pub pod_name: String,
    /// The namespace (`POD_NAMESPACE`, downward API).
    pub namespace: String,
    /// This pod's IP (`POD_IP`, downward API): where the agent API listens.
    pub pod_ip: IpAddr,
    /// The data directory (`PGDATA`).
    pub pgdata: PathBuf,
    /// The mounted ConfigMap (`PGCLUSTER_CONFIG_DIR`).
    pub config_dir: PathBuf,
    /// The superuser's password file (`PGCLUSTER_SUPERUSER_PASSWORD_FILE`).
    pub superuser_password_file: PathBuf,
    /// Loop, lease and fencing timings (`PGCLUSTER_*_MS`).
    pub timings: FailoverTimings,
    /// Replication settings (`PGCLUSTER_REPLICATION_MODE`, `PGCLUSTER_WHEN_NO_STANDBY`,
    /// `PGCLUSTER_MAX_FAILOVER_LAG_BYTES`).
    pub replication: ResolvedReplication,
    /// `PGCLUSTER_AUTOMATIC_FAILOVER`.
    pub automatic_failover: bool,
}

fn required<'a>(
    vars: &'a BTreeMap<String, String>,
    name: &'static str,
) -> Result<&'a str, AgentModeError> {
    vars.get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or(AgentModeError::MissingVar { name })
}

fn parsed<T: std::str::FromStr>(
    vars: &BTreeMap<String, String>,
    name: &'static str,
    expected: &str,
) -> Result<T, AgentModeError> {
    let value = required(vars, name)?;
    value.parse().map_err(|_| AgentModeError::InvalidVar {
        name,
        value: value.to_owned(),
        expected: expected.to_owned(),
    })
}

fn millis(vars: &BTreeMap<String, String>, name: &'static str) -> Result<Duration, AgentModeError> {
    parsed::<u64>(vars, name, "a whole number of milliseconds").map(Duration::from_millis)
}

fn invalid(name: &'static str, value: &str, expected: impl Into<String>) -> AgentModeError {
    AgentModeError::InvalidVar {
        name,
        value: value.to_owned(),
        expected: expected.into(),
    }
}

impl KubeAgentEnv {
    /// Parses the environment the StatefulSet sets. Errors name the variable.
    pub fn from_env(vars: &BTreeMap<String, String>) -> Result<Self, AgentModeError> {
        let mode = required(vars, "PGCLUSTER_MODE")?;
        if mode != MODE_KUBERNETES {
            return Err(invalid("PGCLUSTER_MODE", mode, MODE_KUBERNETES));
        }
        let name = required(vars, "PGCLUSTER_CLUSTER")?;
        let cluster = ClusterName::new(name)
            .map_err(|e| invalid("PGCLUSTER_CLUSTER", name, e.to_string()))?;
        let instances: u32 = parsed(vars, "PGCLUSTER_INSTANCES", "a number of instances >= 1")?;
        if instances == 0 {
            return Err(invalid("PGCLUSTER_INSTANCES", "0", "a number >= 1"));
        }
        let lease = required(vars, "PGCLUSTER_LEASE")?;
        if lease != cluster.leader_lease() {
            return Err(invalid(
                "PGCLUSTER_LEASE",
                lease,
                format!("the cluster's Lease {}", cluster.leader_lease()),
            ));
        }
        let pod_name = required(vars, "POD_NAME")?.to_owned();
        let members: Vec<String> = (0..instances).map(|i| cluster.instance(i)).collect();
        if !members.contains(&pod_name) {
            return Err(invalid(
                "POD_NAME",
                &pod_name,
                format!("one of the cluster's pods ({})", members.join(", ")),
            ));
        }
        let mode = required(vars, "PGCLUSTER_REPLICATION_MODE")?;
        let mode = match mode {
            "async" => ReplicationMode::Async,
            "sync" => ReplicationMode::Sync,
            other => {
                return Err(invalid(
                    "PGCLUSTER_REPLICATION_MODE",
                    other,
                    "async or sync",
                ));
            }
        };
        let when_no_standby = match required(vars, "PGCLUSTER_WHEN_NO_STANDBY")? {
            "block" => NoStandbyPolicy::Block,
            "fallbackToAsync" => NoStandbyPolicy::FallbackToAsync,
            other => {
                return Err(invalid(
                    "PGCLUSTER_WHEN_NO_STANDBY",
                    other,
                    "block or fallbackToAsync",
                ));
            }
        };
        Ok(Self {
            instances,
            headless_service: required(vars, "PGCLUSTER_HEADLESS_SERVICE")?.to_owned(),
            pod_name,
            namespace: required(vars, "POD_NAMESPACE")?.to_owned(),
            pod_ip: parsed(vars, "POD_IP", "an IP address")?,
            pgdata: required(vars, "PGDATA")?.into(),
            config_dir: required(vars, "PGCLUSTER_CONFIG_DIR")?.into(),
            superuser_password_file: required(vars, "PGCLUSTER_SUPERUSER_PASSWORD_FILE")?.into(),
            timings: FailoverTimings {
                lease_duration: millis(vars, "PGCLUSTER_LEASE_DURATION_MS")?,
                loop_interval: millis(vars, "PGCLUSTER_LOOP_INTERVAL_MS")?,
                renew_deadline: millis(vars, "PGCLUSTER_RENEW_DEADLINE_MS")?,
                stop_writes_timeout: millis(vars, "PGCLUSTER_STOP_WRITES_TIMEOUT_MS")?,
                max_clock_drift: millis(vars, "PGCLUSTER_MAX_CLOCK_DRIFT_MS")?,
            },
            replication: ResolvedReplication {
                mode,
                when_no_standby,
                max_failover_lag_bytes: parsed(
                    vars,
                    "PGCLUSTER_MAX_FAILOVER_LAG_BYTES",
                    "a number of bytes",
                )?,
            },
            automatic_failover: parsed(vars, "PGCLUSTER_AUTOMATIC_FAILOVER", "true or false")?,
            cluster,
        })
    }

    /// This member.
    pub fn me(&self) -> MemberName {
        MemberName::new(self.pod_name.clone())
    }

    /// The DNS name of `pod` behind the headless Service.
    pub fn pod_host(&self, pod: &str) -> String {
        format!("{pod}.{}.{}.svc", self.headless_service, self.namespace)
    }

    /// Every member (this one included) and its DNS name.
    pub fn peers(&self) -> BTreeMap<MemberName, PeerAddr> {
        let port =
            |p: i32| u16::try_from(p).expect("the pgcluster ports are constants below 65536");
        (0..self.instances)
            .map(|i| {
                let pod = self.cluster.instance(i);
                let addr = PeerAddr {
                    host: self.pod_host(&pod),
                    pg_port: port(POSTGRES_PORT),
                    api_port: port(AGENT_PORT),
                };
                (MemberName::new(pod), addr)
            })
            .collect()
    }

    /// The state machine's configuration (checks the timing rules).
    pub fn ha_config(&self) -> Result<HaConfig, AgentModeError> {
        HaConfig::new(
            self.me(),
            self.peers().into_keys(),
            self.timings,
            self.replication,
            self.automatic_failover,
        )
        .map_err(|source| AgentModeError::Ha { source })
    }

    /// The files of the instance in the pod (data volume, run emptyDir).
    /// The server log is the container's stderr, so that `kubectl logs`
    /// shows it and the runtime rotates it; a file on the data volume would
    /// be read by nobody and grow until the volume is full.
    pub fn layout(&self) -> Layout {
        Layout {
            data_dir: self.pgdata.clone(),
            socket_dir: SOCKET_DIR.into(),
            server_log: ServerLog::Inherit,
            passfile: PASSFILE.into(),
        }
    }

    /// The agent's configuration: pure assembly from the parsed environment
    /// and what [`run`] found (binaries, OS user, password).
    pub fn agent_config(
        &self,
        bin: PgBinaries,
        os_user: OsUser,
        superuser_password: String,
        role_labels: Option<Arc<dyn RoleLabels>>,
    ) -> Result<AgentConfig, AgentModeError> {
        let include = self.config_dir.join(POSTGRESQL_CONF);
        Ok(AgentConfig {
            cluster_name: self.cluster.as_str().to_owned(),
            ha: self.ha_config()?,
            instance: Instance {
                bin,
                os_user,
                layout: self.layout(),
                port: u16::try_from(POSTGRES_PORT)
                    .expect("the PostgreSQL port is a constant below 65536"),
                superuser: Superuser {
                    name: SUPERUSER_ROLE.to_owned(),
                    password: superuser_password,
                },
                member: self.pod_name.clone(),
                fence: None,
            },
            peers: self.peers(),
            api_listen: SocketAddr::new(
                self.pod_ip,
                u16::try_from(AGENT_PORT).expect("the agent port is a constant below 65536"),
            ),
            // The ConfigMap's postgresql.conf, last: its values win (see the module docs).
            parameters: BTreeMap::from([("include".to_owned(), include.display().to_string())]),
            start_timeout: START_TIMEOUT,
            role_labels,
        })
    }

    /// The cluster's Lease coordinator in this pod's namespace.
    pub fn coordinator(&self, client: Client) -> KubeLeaseCoordinator {
        KubeLeaseCoordinator::new(client, &self.namespace, &self.cluster)
    }
}

/// The superuser password from its file (one trailing newline dropped).
pub fn read_password(path: &std::path::Path) -> Result<String, AgentModeError> {
    let text = std::fs::read_to_string(path).map_err(|source| AgentModeError::Password {
        path: path.to_owned(),
        source,
    })?;
    let password = text.strip_suffix('\n').unwrap_or(&text).to_owned();
    if password.is_empty() {
        return Err(AgentModeError::Password {
            path: path.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "the file is empty"),
        });
    }
    Ok(password)
}

/// Role labels set by a background task: labels are applied in the order
/// asked, a failed one is retried every [`LABEL_RETRY`] until it succeeds or
/// a newer value for the same pod replaces it. The machine never waits for
/// the API server, and a label lost to a transient error is not forgotten.
#[derive(Debug, Clone)]
pub struct KubeRoleLabels {
    tx: mpsc::UnboundedSender<(String, RoleLabel)>,
}

impl KubeRoleLabels {
    /// Starts the labelling task (needs a tokio runtime); it ends when every
    /// handle is dropped and nothing is pending.
    pub fn spawn(labeler: PodLabeler, retry: Duration) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(label_loop(labeler, rx, retry));
        Self { tx }
    }
}

impl RoleLabels for KubeRoleLabels {
    fn set(&self, member: &MemberName, role: RoleLabel) {
        // The task only ends when every sender is gone: this send cannot fail while `self` lives.
        let _ = self.tx.send((member.as_str().to_owned(), role));
    }
}

fn queue(pending: &mut VecDeque<(String, RoleLabel)>, (pod, role): (String, RoleLabel)) {
    pending.retain(|(p, _)| *p != pod);
    pending.push_back((pod, role));
}

async fn label_loop(
    labeler: PodLabeler,
    mut rx: mpsc::UnboundedReceiver<(String, RoleLabel)>,
    retry: Duration,
) {
    let mut pending: VecDeque<(String, RoleLabel)> = VecDeque::new();
    loop {
        if pending.is_empty() {
            match rx.recv().await {
                Some(next) => queue(&mut pending, next),
                None => return,
            }
        }
        while let Ok(next) = rx.try_recv() {
            queue(&mut pending, next);
        }
        let Some((pod, role)) = pending.front().cloned() else {
            continue;
        };
        match labeler.set_role(&pod, role).await {
            Ok(done) => {
                tracing::info!(%pod, ?role, ?done, "role label set");
                pending.retain(|(p, r)| !(*p == pod && *r == role));
            }
            Err(error) => {
                tracing::warn!(%pod, ?role, category = error.category(), error = %pgcluster_ha::agent::execute::error_chain(&error), "could not set the role label; retrying");
                tokio::time::sleep(retry).await;
            }
        }
    }
}

/// Runs the agent in Kubernetes mode until `shutdown` resolves.
pub async fn run(
    env: &KubeAgentEnv,
    client: Client,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), AgentModeError> {
    let password = read_password(&env.superuser_password_file)?;
    let bin = PgBinaries::locate(None)
        .await
        .map_err(|source| AgentModeError::Postgres {
            source: Box::new(source),
        })?;
    let os_user = OsUser::resolve(None)
        .await
        .map_err(|source| AgentModeError::Postgres {
            source: Box::new(source),
        })?;
    let labels =
        KubeRoleLabels::spawn(PodLabeler::new(client.clone(), &env.namespace), LABEL_RETRY);
    let mut cfg = env.agent_config(bin, os_user, password, Some(Arc::new(labels)))?;
    // The container runs the pgcluster binary: it is its own fencer.
    if let Ok(exe) = std::env::current_exe() {
        cfg.instance.fence = Some(pgcluster_ha::fence::FenceSpawn::new(exe));
    }
    let coordinator = env
        .coordinator(client)
        .with_timeout(pgcluster_ha::agent::driver::write_timeout(&cfg));
    tracing::info!(member = %env.pod_name, namespace = %env.namespace, lease = coordinator.lease_name(), "agent in Kubernetes mode");
    pgcluster_ha::agent::run(cfg, coordinator, shutdown)
        .await
        .map_err(|source| AgentModeError::Agent {
            source: Box::new(source),
        })
}

#[cfg(test)]
mod tests;
