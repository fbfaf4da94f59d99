//! The StatefulSet running one pod per instance, each pod's entrypoint being
//! the agent (`pgcluster agent`), which supervises PostgreSQL.
//!
//! Decisions:
//! - `podManagementPolicy: Parallel`. Ordering is the agent's job (only the
//!   lease holder runs initdb; others wait for a primary and clone it).
//!   `OrderedReady` would be harmful: with node-bound `local-path` volumes, an
//!   instance whose node is gone stays unready, and OrderedReady would then
//!   refuse to (re)create every higher ordinal, so a restarted survivor could
//!   never come back.
//! - `updateStrategy: RollingUpdate` (highest ordinal first, one at a time;
//!   each pod must be Ready before the next). A primary that receives SIGTERM
//!   hands over or releases its lease within `terminationGracePeriodSeconds`.
//! - uid/gid 999: the `postgres` user of the official PostgreSQL images (and
//!   of pgcluster's image); `fsGroup` 999 makes the volume writable for it.
//! - `PGDATA` is a subdirectory of the volume: initdb refuses a non-empty
//!   directory, and some filesystems put `lost+found` at the volume root.
//! - The superuser's password reaches the agent as a file of the mounted
//!   Secret ([`SUPERUSER_PASSWORD_FILE`]), not an env var (which every child
//!   process, PostgreSQL included, would inherit); the pod never gets API
//!   access to Secrets. The replication Secret is not mounted: the agents
//!   replicate as the superuser.
//! - Writable directories the agent creates itself ([`SOCKET_DIR`], the pgpass
//!   file) are subdirectories of emptyDir mounts: a mount point belongs to
//!   root, and the agent sets the modes of the directories it uses.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, HTTPGetAction, KeyToPath, ObjectFieldSelector, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SecretVolumeSource, TopologySpreadConstraint,
    Volume, VolumeMount, VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use pgcluster_core::ValidatedCluster;
use pgcluster_core::api::v1alpha1::{NoStandbyPolicy, ReplicationMode, RetentionPolicy};

use super::labels::{Component, labels, match_labels, meta, pod_selector_labels};
use super::security::{restricted_container, runtime_default};
use super::{
    AGENT_PORT, AGENT_PORT_NAME, METRICS_PORT, METRICS_PORT_NAME, POSTGRES_PORT, POSTGRES_PORT_NAME,
};

/// uid and gid PostgreSQL runs as (the `postgres` user of the image).
pub const POSTGRES_UID: i64 = 999;
/// Name of the PostgreSQL/agent container.
pub const CONTAINER_NAME: &str = "postgres";
/// Name of the data volume claim template (PVCs are `data-<pod>`).
pub const DATA_VOLUME: &str = "data";
/// Where the data volume is mounted.
pub const DATA_MOUNT: &str = "/var/lib/postgresql/data";
/// PGDATA (a subdirectory of the volume).
pub const PGDATA: &str = "/var/lib/postgresql/data/pgdata";
/// Where the ConfigMap (postgresql.conf, pg_hba.conf) is mounted.
pub const CONFIG_MOUNT: &str = "/etc/pgcluster";
/// Where the writable `run` emptyDir is mounted.
pub const RUN_MOUNT: &str = "/var/run/postgresql";
/// PostgreSQL's socket directory (created by the agent inside [`RUN_MOUNT`]).
pub const SOCKET_DIR: &str = "/var/run/postgresql/socket";
/// The agent's libpq password file (inside [`RUN_MOUNT`]).
pub const PASSFILE: &str = "/var/run/postgresql/agent/pgpass";
/// Where the superuser Secret is mounted (read-only).
pub const SUPERUSER_SECRET_MOUNT: &str = "/etc/pgcluster-secrets/superuser";
/// The superuser's password file (key `password` of the superuser Secret).
pub const SUPERUSER_PASSWORD_FILE: &str = "/etc/pgcluster-secrets/superuser/password";
/// Seconds a pod gets to stop cleanly (checkpoint, hand over the lease).
pub const TERMINATION_GRACE_SECONDS: i64 = 60;
/// Size of the in-memory `/dev/shm` (PostgreSQL's dynamic shared memory).
pub const SHM_SIZE: &str = "256Mi";

fn env_value(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn env_field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: Some("v1".to_owned()),
                field_path: path.to_owned(),
            }),
            ..EnvVarSource::default()
        }),
    }
}

/// The agent's environment, sorted by name: the mode, where its files are
/// and the pod's identity (downward API). The spec itself is the
/// ConfigMap's `cluster.yaml` ([`super::config::CLUSTER_SPEC`]) in
/// `PGCLUSTER_CONFIG_DIR`. This is the contract between the builders and
/// `pgcluster agent` in Kubernetes mode.
pub fn agent_env() -> Vec<EnvVar> {
    vec![
        env_field("NODE_NAME", "spec.nodeName"),
        env_value("PGCLUSTER_CONFIG_DIR", CONFIG_MOUNT),
        env_value("PGCLUSTER_MODE", "kubernetes"),
        env_value("PGCLUSTER_SUPERUSER_PASSWORD_FILE", SUPERUSER_PASSWORD_FILE),
        env_value("PGDATA", PGDATA),
        env_field("POD_IP", "status.podIP"),
        env_field("POD_NAME", "metadata.name"),
        env_field("POD_NAMESPACE", "metadata.namespace"),
    ]
}

/// The pod template annotation that carries [`ha_settings`].
pub const HA_SETTINGS_ANNOTATION: &str = "pgcluster.dev/ha-settings";

/// What the agents take from the spec at start and act on together, in one
/// readable line: a change of it must restart them, so it is a pod template
/// annotation (the StatefulSet rolls the pods; the agents then read the
/// updated `cluster.yaml`). Other spec changes (parameters, roles, access)
/// do not restart PostgreSQL.
pub fn ha_settings(cluster: &ValidatedCluster) -> String {
    let t = &cluster.timings();
    let r = &cluster.replication();
    let ms = |d: std::time::Duration| format!("{}ms", d.as_millis());
    format!(
        "instances={} replication={}/{} maxFailoverLagBytes={} automaticFailover={} lease={} \
         loop={} renewDeadline={} stopWritesTimeout={} maxClockDrift={}",
        cluster.instances(),
        match r.mode {
            ReplicationMode::Async => "async",
            ReplicationMode::Sync => "sync",
        },
        match r.when_no_standby {
            NoStandbyPolicy::Block => "block",
            NoStandbyPolicy::FallbackToAsync => "fallbackToAsync",
        },
        r.max_failover_lag_bytes,
        cluster.automatic_failover(),
        ms(t.lease_duration),
        ms(t.loop_interval),
        ms(t.renew_deadline),
        ms(t.stop_writes_timeout),
        ms(t.max_clock_drift),
    )
}

fn http_probe(path: &str, period: i32, timeout: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String(METRICS_PORT_NAME.to_owned()),
            scheme: Some("HTTP".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(timeout),
        failure_threshold: Some(failures),
        success_threshold: Some(1),
        ..Probe::default()
    }
}

fn resources(cluster: &ValidatedCluster) -> ResourceRequirements {
    let r = &cluster.resources();
    let amounts = |cpu: &Option<String>, memory: &Option<String>| {
        let mut m = BTreeMap::new();
        if let Some(cpu) = cpu {
            m.insert("cpu".to_owned(), Quantity(cpu.clone()));
        }
        if let Some(memory) = memory {
            m.insert("memory".to_owned(), Quantity(memory.clone()));
        }
        (!m.is_empty()).then_some(m)
    };
    ResourceRequirements {
        requests: amounts(&r.requests_cpu, &r.requests_memory),
        limits: amounts(&r.limits_cpu, &r.limits_memory),
        claims: None,
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

fn empty_dir(name: &str, memory_limit: Option<&str>) -> Volume {
    Volume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: memory_limit.map(|_| "Memory".to_owned()),
            size_limit: memory_limit.map(|l| Quantity(l.to_owned())),
        }),
        ..Volume::default()
    }
}

fn container(cluster: &ValidatedCluster) -> Container {
    let port = |name: &str, port: i32| ContainerPort {
        name: Some(name.to_owned()),
        container_port: port,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    };
    Container {
        name: CONTAINER_NAME.to_owned(),
        image: Some(cluster.postgres().image.clone()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        command: Some(vec!["pgcluster".to_owned(), "agent".to_owned()]),
        env: Some(agent_env()),
        ports: Some(vec![
            port(POSTGRES_PORT_NAME, POSTGRES_PORT),
            port(AGENT_PORT_NAME, AGENT_PORT),
            port(METRICS_PORT_NAME, METRICS_PORT),
        ]),
        // initdb or a base backup of a large database can take long: allow 30 minutes.
        startup_probe: Some(http_probe("/healthz", 10, 5, 180)),
        liveness_probe: Some(http_probe("/healthz", 10, 5, 6)),
        readiness_probe: Some(http_probe("/readyz", 5, 3, 3)),
        resources: Some(resources(cluster)),
        security_context: Some(restricted_container(POSTGRES_UID)),
        volume_mounts: Some(vec![
            mount(DATA_VOLUME, DATA_MOUNT, false),
            mount("config", CONFIG_MOUNT, true),
            mount("run", RUN_MOUNT, false),
            mount("superuser", SUPERUSER_SECRET_MOUNT, true),
            mount("shm", "/dev/shm", false),
            mount("tmp", "/tmp", false),
        ]),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    }
}

fn pod_spec(cluster: &ValidatedCluster) -> PodSpec {
    let selector = match_labels(pod_selector_labels(cluster));
    PodSpec {
        service_account_name: Some(cluster.name().service_account()),
        automount_service_account_token: Some(true),
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(POSTGRES_UID),
            run_as_group: Some(POSTGRES_UID),
            fs_group: Some(POSTGRES_UID),
            fs_group_change_policy: Some("OnRootMismatch".to_owned()),
            seccomp_profile: Some(runtime_default()),
            ..PodSecurityContext::default()
        }),
        affinity: Some(Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![
                    WeightedPodAffinityTerm {
                        weight: 100,
                        pod_affinity_term: PodAffinityTerm {
                            label_selector: Some(selector.clone()),
                            topology_key: "kubernetes.io/hostname".to_owned(),
                            ..PodAffinityTerm::default()
                        },
                    },
                ]),
                required_during_scheduling_ignored_during_execution: None,
            }),
            ..Affinity::default()
        }),
        topology_spread_constraints: Some(vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: "kubernetes.io/hostname".to_owned(),
            when_unsatisfiable: "ScheduleAnyway".to_owned(),
            label_selector: Some(selector),
            ..TopologySpreadConstraint::default()
        }]),
        containers: vec![container(cluster)],
        volumes: Some(vec![
            Volume {
                name: "config".to_owned(),
                config_map: Some(ConfigMapVolumeSource {
                    name: cluster.name().config_map(),
                    default_mode: Some(0o444),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            },
            empty_dir("run", None),
            Volume {
                name: "superuser".to_owned(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(cluster.name().superuser_secret()),
                    items: Some(vec![KeyToPath {
                        key: super::secrets::PASSWORD_KEY.to_owned(),
                        path: "password".to_owned(),
                        mode: None,
                    }]),
                    // Group-readable: the kubelet gives the files to fsGroup 999.
                    default_mode: Some(0o440),
                    optional: Some(false),
                }),
                ..Volume::default()
            },
            empty_dir("shm", Some(SHM_SIZE)),
            empty_dir("tmp", None),
        ]),
        ..PodSpec::default()
    }
}

/// `Retain` unless the spec asks for `Delete`: deleting or scaling down the
/// cluster never deletes data by default.
pub fn retention_policy(
    cluster: &ValidatedCluster,
) -> StatefulSetPersistentVolumeClaimRetentionPolicy {
    let policy = match cluster.storage().retention {
        RetentionPolicy::Retain => "Retain",
        RetentionPolicy::Delete => "Delete",
    };
    StatefulSetPersistentVolumeClaimRetentionPolicy {
        when_deleted: Some(policy.to_owned()),
        when_scaled: Some(policy.to_owned()),
    }
}

fn volume_claim(cluster: &ValidatedCluster) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.to_owned()),
            labels: Some(labels(cluster, Component::Postgres)),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            storage_class_name: Some(cluster.storage().storage_class.clone()),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(cluster.storage().size.clone()),
                )])),
                limits: None,
            }),
            volume_mode: Some("Filesystem".to_owned()),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

/// The StatefulSet `<name>` with `instances` pods.
pub fn statefulset(cluster: &ValidatedCluster, owner: Option<&OwnerReference>) -> StatefulSet {
    let mut pod_labels = labels(cluster, Component::Postgres);
    pod_labels.extend(pod_selector_labels(cluster));
    StatefulSet {
        metadata: meta(
            cluster,
            cluster.name().statefulset(),
            Component::Postgres,
            owner,
        ),
        spec: Some(StatefulSetSpec {
            replicas: Some(i32::try_from(cluster.instances()).unwrap_or(i32::MAX)),
            service_name: Some(cluster.name().headless_service()),
            selector: match_labels(pod_selector_labels(cluster)),
            pod_management_policy: Some("Parallel".to_owned()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: None,
            }),
            persistent_volume_claim_retention_policy: Some(retention_policy(cluster)),
            revision_history_limit: Some(10),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(BTreeMap::from([
                        (
                            "kubectl.kubernetes.io/default-container".to_owned(),
                            CONTAINER_NAME.to_owned(),
                        ),
                        (HA_SETTINGS_ANNOTATION.to_owned(), ha_settings(cluster)),
                    ])),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec(cluster)),
            },
            volume_claim_templates: Some(vec![volume_claim(cluster)]),
            ..StatefulSetSpec::default()
        }),
        status: None,
    }
}
