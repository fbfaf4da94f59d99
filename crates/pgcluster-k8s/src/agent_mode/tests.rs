//! Kubernetes mode: the environment parser, the agent's configuration, and
//! the wiring to the Lease and the pod labels against tower-test mocks.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::time::Duration;

use http::Method;
use k8s_openapi::api::core::v1::EnvVar;
use pgcluster_ha::coordinator::{CasOutcome, Coordinator};
use pgcluster_ha::machine::{
    Action, ClusterView, LeaseVersion, MachineState, Millis, Observation, PgObservation,
    TickObservation, step,
};

use super::*;
use crate::testing::api_server::{ApiServerVerifier, Reply, not_found};

/// The environment the StatefulSet builder gives a pod, with the downward
/// API values filled in as the kubelet would.
fn pod_env(pod: &str) -> BTreeMap<String, String> {
    let env: Vec<EnvVar> = crate::build::statefulset::agent_env();
    env.into_iter()
        .map(|var| {
            let value = match var.value {
                Some(v) => v,
                None => {
                    let path = var.value_from.unwrap().field_ref.unwrap().field_path;
                    match path.as_str() {
                        "metadata.name" => pod.to_owned(),
                        "metadata.namespace" => "db".to_owned(),
                        "status.podIP" => "10.42.1.7".to_owned(),
                        "spec.nodeName" => "node-a".to_owned(),
                        other => panic!("unexpected downward API field {other}"),
                    }
                }
            };
            (var.name, value)
        })
        .collect()
}

/// The `cluster.yaml` the ConfigMap builder renders for `cluster`.
fn spec_file(cluster: &pgcluster_core::ValidatedCluster) -> String {
    let map = crate::build::config::config_map(cluster, None);
    map.data.unwrap()[crate::build::config::CLUSTER_SPEC].clone()
}

fn env() -> KubeAgentEnv {
    let cluster = crate::testing::cluster("pg", 3);
    KubeAgentEnv::parse(&pod_env("pg-1"), &spec_file(&cluster)).unwrap()
}

/// The builders and the agent agree: the StatefulSet's environment and the
/// ConfigMap's `cluster.yaml` give the agent the very cluster the
/// controller validated, and the pod's identity.
#[test]
fn the_statefulset_environment_and_the_spec_file_parse() {
    let cluster = crate::testing::spec("pg", 3)
        .with_spec(|spec| {
            spec.failover = Some(pgcluster_core::api::v1alpha1::FailoverSpec {
                lease_duration: Some("5s".to_owned()),
                ..Default::default()
            })
        })
        .validated();
    let vars = pod_env("pg-1");
    assert!(selected(&vars));
    let env = KubeAgentEnv::parse(&vars, &spec_file(&cluster)).unwrap();
    assert_eq!(env.cluster, cluster);
    assert_eq!(env.cluster.timings().lease_duration, Duration::from_secs(5));
    assert_eq!(env.pod_name, "pg-1");
    assert_eq!(env.namespace, "db");
    assert_eq!(env.pod_ip, "10.42.1.7".parse::<IpAddr>().unwrap());
    assert_eq!(
        env.superuser_password_file,
        PathBuf::from(crate::build::statefulset::SUPERUSER_PASSWORD_FILE)
    );
    assert_eq!(env.pgdata, PathBuf::from(crate::build::statefulset::PGDATA));
}

/// Every required variable, when missing, is named in the error.
#[test]
fn a_missing_variable_is_named() {
    let spec = spec_file(&crate::testing::cluster("pg", 2));
    let full = pod_env("pg-0");
    for name in full.keys().filter(|n| *n != "NODE_NAME") {
        let mut vars = full.clone();
        vars.remove(name);
        let error = KubeAgentEnv::parse(&vars, &spec).unwrap_err();
        assert!(
            matches!(&error, AgentModeError::MissingVar { name: n } if n == name),
            "{name}: {error}"
        );
        assert!(error.to_string().contains(name.as_str()));
    }
}

/// Values that would make a wrong agent are refused with the variable's name.
#[test]
fn invalid_values_are_refused() {
    let spec = spec_file(&crate::testing::cluster("pg", 2));
    let full = pod_env("pg-0");
    for (name, value) in [
        ("PGCLUSTER_MODE", "local"),
        ("POD_NAME", "pg-5"),
        ("POD_IP", "not-an-ip"),
        ("POD_NAMESPACE", "elsewhere"),
    ] {
        let mut vars = full.clone();
        vars.insert(name.to_owned(), value.to_owned());
        let error = KubeAgentEnv::parse(&vars, &spec).unwrap_err();
        assert!(
            matches!(&error, AgentModeError::InvalidVar { name: n, .. } if *n == name),
            "{name}={value}: {error}"
        );
    }
}

/// A spec file that does not load or validate is refused naming the file
/// and the field; a missing file names the file.
#[test]
fn a_bad_spec_file_is_refused_with_its_path_and_field() {
    let vars = pod_env("pg-0");
    let spec = spec_file(&crate::testing::cluster("pg", 2));
    for (bad, field) in [
        (
            spec.replace("instances: 2", "instances: 0"),
            "spec.instances",
        ),
        ("not: [a, spec".to_owned(), "cluster.yaml"),
    ] {
        let error = KubeAgentEnv::parse(&vars, &bad).unwrap_err();
        let text = error.to_string();
        assert!(matches!(error, AgentModeError::Spec { .. }), "{text}");
        assert!(
            text.contains("cluster.yaml") && text.contains(field),
            "{text}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let mut vars = vars;
    vars.insert(
        "PGCLUSTER_CONFIG_DIR".to_owned(),
        dir.path().display().to_string(),
    );
    let error = KubeAgentEnv::load(&vars).unwrap_err();
    assert!(matches!(error, AgentModeError::SpecFile { .. }), "{error}");
    std::fs::write(dir.path().join("cluster.yaml"), &spec).unwrap();
    assert_eq!(KubeAgentEnv::load(&vars).unwrap().cluster.instances(), 2);
}

/// Peers are the StatefulSet's pods by the headless Service's DNS, on the
/// PostgreSQL and agent ports; this member is one of them.
#[test]
fn peers_are_pod_dns_names() {
    let env = env();
    let peers = env.peers();
    assert_eq!(peers.len(), 3);
    let pg0 = &peers[&MemberName::from("pg-0")];
    assert_eq!(pg0.host, "pg-0.pg-pods.db.svc");
    assert_eq!(pg0.pg_port, 5432);
    assert_eq!(pg0.api_port, 8008);
    let ha = env.ha_config().unwrap();
    assert_eq!(ha.me, MemberName::from("pg-1"));
    assert_eq!(ha.members.len(), 3);
}

/// The assembled agent: files where the pod's volumes are, the server log on
/// the container's stderr (not in a file), the superuser from the Secret
/// file, API on the pod IP, and the ConfigMap's postgresql.conf included
/// last so its listen_addresses and hba_file win.
#[tokio::test]
async fn agent_config_assembly() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, "s3cret\n").unwrap();
    let password = read_password(&file).unwrap();
    assert_eq!(password, "s3cret");
    let env = env();
    // Stand-ins for the image's binaries (only their presence is checked).
    for tool in [
        "initdb",
        "postgres",
        "pg_basebackup",
        "pg_rewind",
        "pg_controldata",
    ] {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.path().join(tool);
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let bin = PgBinaries::in_dir(dir.path()).unwrap();
    let os_user = OsUser::resolve(None).await.unwrap();
    let cfg = env.agent_config(bin, os_user, password, None).unwrap();
    assert_eq!(cfg.me().as_str(), "pg-1");
    assert_eq!(cfg.instance.superuser.name, "postgres");
    assert_eq!(cfg.instance.superuser.password, "s3cret");
    assert_eq!(cfg.instance.port, 5432);
    assert_eq!(
        cfg.instance.layout.data_dir,
        PathBuf::from(crate::build::statefulset::PGDATA)
    );
    assert_eq!(cfg.instance.layout.server_log, ServerLog::Inherit);
    assert_eq!(
        cfg.api_listen,
        "10.42.1.7:8008".parse::<SocketAddr>().unwrap()
    );
    // The agent's pgcluster.conf includes the ConfigMap's settings and adds
    // only what the agent decides at runtime.
    let rendered =
        pgcluster_ha::postgres::ManagedConfig::new(cfg.server_settings.clone(), "pg/pg-1").render();
    let names: Vec<&str> = rendered
        .lines()
        .filter_map(|l| l.split(" = ").next())
        .filter(|n| !n.starts_with('#'))
        .collect();
    assert_eq!(
        names,
        [
            "include",
            "cluster_name",
            "synchronous_standby_names",
            "primary_conninfo",
            "primary_slot_name"
        ]
    );
    assert!(rendered.contains("include = '/etc/pgcluster/postgresql.conf'\n"));
    // ...and the ConfigMap sets what local-mode defaults would get wrong in a pod.
    let conf = crate::build::config::postgresql_conf(&crate::testing::cluster("pg", 3));
    assert!(conf.contains("listen_addresses = '*'"));
    assert!(conf.contains("hba_file = '/etc/pgcluster/pg_hba.conf'"));
    assert!(conf.contains(&format!("unix_socket_directories = '{SOCKET_DIR}'")));
    // PostgreSQL's lines in `kubectl logs` are tagged, next to the agent's JSON.
    assert!(conf.contains("log_line_prefix = '%m postgres[%p]: %q%u@%d '"));
}

/// An empty or missing password file is an error naming the file.
#[test]
fn password_file_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    assert!(
        read_password(&missing)
            .unwrap_err()
            .to_string()
            .contains("nope")
    );
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "").unwrap();
    assert!(matches!(
        read_password(&empty),
        Err(AgentModeError::Password { .. })
    ));
}

/// The wiring's first tick on a fresh volume with no Lease: the machine
/// (configured from the environment) asks for the lease, and the Lease
/// coordinator from the environment creates `pg-leader` in the pod's
/// namespace with this pod as holder and the spec's lease duration.
#[tokio::test]
async fn first_tick_acquires_the_lease_as_this_pod() {
    let env = env();
    let machine = MachineState::new(env.ha_config().unwrap(), Millis(0));
    let tick = TickObservation {
        postgres: PgObservation::empty(),
        view: Some(ClusterView::default()),
        lease_outcome: None,
        failed_action: None,
        failsafe_replies: vec![],
    };
    let (_, actions) = step(machine, Millis(0), Observation::Tick(Box::new(tick)));
    let (expected, record) = actions
        .iter()
        .find_map(Action::lease_cas)
        .expect("a fresh member with no lease holder asks for the lease");
    assert_eq!(expected, LeaseVersion(0));
    let (client, mut server) = ApiServerVerifier::new();
    let coord = env.coordinator(client);
    let record = record.clone();
    let task = tokio::spawn(async move { coord.compare_and_swap_lease(expected, record).await });
    server
        .expect(
            Method::GET,
            "/apis/coordination.k8s.io/v1/namespaces/db/leases/pg-leader",
            not_found(),
        )
        .await;
    let post = server
        .expect(
            Method::POST,
            "/apis/coordination.k8s.io/v1/namespaces/db/leases",
            Reply::Echo,
        )
        .await;
    assert_eq!(post.body["metadata"]["name"], "pg-leader");
    assert_eq!(post.body["spec"]["holderIdentity"], "pg-1");
    assert_eq!(
        post.body["spec"]["leaseDurationSeconds"],
        env.cluster
            .timings()
            .lease_duration
            .as_millis()
            .div_ceil(1000) as u64
    );
    assert!(matches!(task.await.unwrap().unwrap(), CasOutcome::Won(_)));
}

/// The labeller hook: labels go out in the order asked (the new primary
/// first, then the old primary's pod); a failed patch is retried, and a
/// newer value for a pod replaces an older pending one.
#[tokio::test]
async fn role_labels_are_applied_in_order_and_retried() {
    let (client, mut server) = ApiServerVerifier::new();
    let labels = KubeRoleLabels::spawn(PodLabeler::new(client, "db"), Duration::from_millis(10));
    labels.set(&MemberName::from("pg-1"), RoleLabel::Primary);
    labels.set(&MemberName::from("pg-0"), RoleLabel::Replica);
    let first = server
        .expect(
            Method::PATCH,
            "/api/v1/namespaces/db/pods/pg-1",
            Reply::Status(500, "InternalError"),
        )
        .await;
    assert_eq!(
        first.body["metadata"]["labels"]["pgcluster.dev/role"],
        "primary"
    );
    let retried = server
        .expect(
            Method::PATCH,
            "/api/v1/namespaces/db/pods/pg-1",
            Reply::Echo,
        )
        .await;
    assert_eq!(retried.body, first.body);
    let old = server
        .expect(
            Method::PATCH,
            "/api/v1/namespaces/db/pods/pg-0",
            not_found(),
        )
        .await;
    assert_eq!(
        old.body["metadata"]["labels"]["pgcluster.dev/role"],
        "replica"
    );
    // A pod that is gone counts as done: nothing more is sent.
    server.expect_silence(Duration::from_millis(100)).await;
}
