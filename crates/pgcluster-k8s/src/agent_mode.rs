//! `pgcluster agent` in Kubernetes mode: the assembly of the agent from what
//! the StatefulSet gives its pods (see [`crate::build::statefulset::agent_env`]).
//!
//! - the cluster from the ConfigMap's `cluster.yaml` (the resolved spec,
//!   validated here like everywhere else);
//! - identity from the downward API (`POD_NAME`, `POD_NAMESPACE`, `POD_IP`);
//! - peers by the headless Service's DNS: `<pod>.<name>-pods.<ns>.svc`;
//! - the superuser's password from the mounted Secret file;
//! - the coordinator is the [`KubeLeaseCoordinator`] of the cluster, as an
//!   agent's (the Lease watched, peers read over their agent API: quiet at
//!   rest, see [`crate::lease`]);
//! - role labels go to [`KubeRoleLabels`], which patches pods in the
//!   background (the new primary relabels the old primary's pod too).
//!
//! The parsing ([`KubeAgentEnv::parse`]) and the assembly
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
//! env (downward API) + cluster.yaml --parse--> KubeAgentEnv --agent_config--> AgentConfig
//!                                                        \--coordinator--> KubeLeaseCoordinator
//! machine SetRoleLabel --RoleLabels::set--> KubeRoleLabels --(task)--> PATCH pod labels
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use pgcluster_core::ValidatedCluster;
use pgcluster_core::names::SUPERUSER_ROLE;
use pgcluster_ha::agent::credential::MemberCredential;
use pgcluster_ha::agent::{AgentConfig, AgentError, PeerAddr, RoleLabels};
use pgcluster_ha::machine::{ConfigError, HaConfig, MemberName, RoleLabel};
use pgcluster_ha::postgres::{Instance, Layout, OsUser, PgBinaries, PgError, ServerLog, Superuser};
use tokio::sync::mpsc;

use crate::build::config::{CLUSTER_SPEC, POSTGRESQL_CONF};
use crate::build::statefulset::{PASSFILE, SOCKET_DIR};
use crate::build::{AGENT_PORT, METRICS_PORT, POSTGRES_PORT};
use crate::lease::KubeLeaseCoordinator;
use crate::lease::peers::PeerApi;
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
    /// The spec file could not be read.
    #[error(
        "failed to read the cluster's spec {path}; the ConfigMap <cluster>-config holds it as cluster.yaml (rendered by the controller): is it mounted?"
    )]
    SpecFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The spec file is not a valid PostgresCluster.
    #[error(
        "the cluster's spec {path} is not a valid PostgresCluster (the controller renders it from the validated spec; was it edited by hand?): {detail}"
    )]
    Spec {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the field paths.
        detail: String,
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
            AgentModeError::SpecFile { .. } => "spec_file",
            AgentModeError::Spec { .. } => "spec",
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

/// Everything the agent takes from its pod: the cluster's resolved spec
/// (the ConfigMap's `cluster.yaml`, validated like every other consumer's)
/// and the pod's own identity and files from its environment.
#[derive(Clone, Debug, PartialEq)]
pub struct KubeAgentEnv {
    /// The cluster, from `<PGCLUSTER_CONFIG_DIR>/cluster.yaml`.
    pub cluster: ValidatedCluster,
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

fn invalid(name: &'static str, value: &str, expected: impl Into<String>) -> AgentModeError {
    AgentModeError::InvalidVar {
        name,
        value: value.to_owned(),
        expected: expected.into(),
    }
}

impl KubeAgentEnv {
    /// Reads the environment and the spec file it names (the one I/O step),
    /// then parses both ([`KubeAgentEnv::parse`]).
    pub fn load(vars: &BTreeMap<String, String>) -> Result<Self, AgentModeError> {
        let path = Path::new(required(vars, "PGCLUSTER_CONFIG_DIR")?).join(CLUSTER_SPEC);
        let text = std::fs::read_to_string(&path).map_err(|source| AgentModeError::SpecFile {
            path: path.clone(),
            source,
        })?;
        Self::parse(vars, &text)
    }

    /// Parses the environment the StatefulSet sets and the resolved spec
    /// (`cluster.yaml`). Errors name the variable, or the spec's field.
    pub fn parse(vars: &BTreeMap<String, String>, spec: &str) -> Result<Self, AgentModeError> {
        let mode = required(vars, "PGCLUSTER_MODE")?;
        if mode != MODE_KUBERNETES {
            return Err(invalid("PGCLUSTER_MODE", mode, MODE_KUBERNETES));
        }
        let config_dir: PathBuf = required(vars, "PGCLUSTER_CONFIG_DIR")?.into();
        let path = config_dir.join(CLUSTER_SPEC);
        let loaded =
            pgcluster_core::load::load_one(spec).map_err(|source| AgentModeError::Spec {
                path: path.clone(),
                detail: source.to_string(),
            })?;
        let cluster = loaded.validate().map_err(|errors| AgentModeError::Spec {
            path: path.clone(),
            detail: errors.to_string(),
        })?;
        let namespace = required(vars, "POD_NAMESPACE")?.to_owned();
        if namespace != cluster.namespace() {
            return Err(invalid(
                "POD_NAMESPACE",
                &namespace,
                format!(
                    "the cluster's namespace {} (from {})",
                    cluster.namespace(),
                    path.display()
                ),
            ));
        }
        let pod_name = required(vars, "POD_NAME")?.to_owned();
        let members: Vec<String> = (0..cluster.instances())
            .map(|i| cluster.name().instance(i))
            .collect();
        if !members.contains(&pod_name) {
            return Err(invalid(
                "POD_NAME",
                &pod_name,
                format!("one of the cluster's pods ({})", members.join(", ")),
            ));
        }
        let pod_ip = required(vars, "POD_IP")?;
        Ok(Self {
            pod_name,
            namespace,
            pod_ip: pod_ip
                .parse()
                .map_err(|_| invalid("POD_IP", pod_ip, "an IP address"))?,
            pgdata: required(vars, "PGDATA")?.into(),
            superuser_password_file: required(vars, "PGCLUSTER_SUPERUSER_PASSWORD_FILE")?.into(),
            config_dir,
            cluster,
        })
    }

    /// This member.
    pub fn me(&self) -> MemberName {
        MemberName::new(self.pod_name.clone())
    }

    /// The DNS name of `pod` behind the headless Service.
    pub fn pod_host(&self, pod: &str) -> String {
        format!(
            "{pod}.{}.{}.svc",
            self.cluster.name().headless_service(),
            self.namespace
        )
    }

    /// Every member (this one included) and its DNS name.
    pub fn peers(&self) -> BTreeMap<MemberName, PeerAddr> {
        let port =
            |p: i32| u16::try_from(p).expect("the pgcluster ports are constants below 65536");
        (0..self.cluster.instances())
            .map(|i| {
                let pod = self.cluster.name().instance(i);
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
            self.cluster.timings(),
            self.cluster.replication(),
            self.cluster.automatic_failover(),
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
            cluster_name: self.cluster.name().as_str().to_owned(),
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
            metrics_listen: Some(SocketAddr::new(
                self.pod_ip,
                u16::try_from(METRICS_PORT).expect("the metrics port is a constant below 65536"),
            )),
            // The ConfigMap's postgresql.conf, last: its values win (see the module docs).
            server_settings: vec![("include".to_owned(), include.display().to_string())],
            start_timeout: START_TIMEOUT,
            role_labels,
        })
    }

    /// The cluster's Lease coordinator in this pod's namespace.
    pub fn coordinator(&self, client: Client) -> KubeLeaseCoordinator {
        KubeLeaseCoordinator::new(client, &self.namespace, self.cluster.name())
    }

    /// This agent's coordinator: the Lease watched (trusted for a renew
    /// deadline without a confirmation; a live primary renews within it)
    /// and the peers read over their agent API within half a loop (at
    /// least 100 ms), as the failsafe probes are. Needs a tokio runtime.
    pub fn agent_coordinator(
        &self,
        client: Client,
        ha: &HaConfig,
        credential: MemberCredential,
    ) -> KubeLeaseCoordinator {
        let peers = self
            .peers()
            .into_iter()
            .filter(|(name, _)| *name != self.me())
            .map(|(name, addr)| {
                let api = PeerApi {
                    host: addr.host,
                    port: addr.api_port,
                };
                (name, api)
            })
            .collect();
        let peer_timeout = (ha.timings.loop_interval / 2).max(Duration::from_millis(100));
        self.coordinator(client).for_agent(
            self.me(),
            peers,
            ha.timings.renew_deadline,
            peer_timeout,
            credential,
        )
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
        .agent_coordinator(client, &cfg.ha, cfg.member_credential())
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
