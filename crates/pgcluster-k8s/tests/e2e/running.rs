//! A PostgresCluster running on the test node, for the tests that need
//! pods: start one (controller Deployment available, `pgcluster apply` of
//! the homelab spec adapted to the node, Ready with one primary and every
//! replica), and read what the tests assert on: role labels, the Lease
//! holder, the rw Service's ready endpoints, credentials.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease as KubeLease;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use pgcluster_core::api::v1alpha1::PostgresCluster;
use pgcluster_core::names::ClusterName;

use super::{CONTROLLER_ACCOUNT, CONTROLLER_NAMESPACE, describe_pods, homelab_on_the_node};
use crate::e2e_support::TestCluster;
use crate::e2e_support::sql::Target;

/// The instance container's name in the StatefulSet.
pub const CONTAINER: &str = "postgres";
/// The label the agents set and the rw/ro Services select on.
pub const ROLE_LABEL: &str = "pgcluster.dev/role";

/// A cluster on the node, in a namespace of its own.
pub struct Running {
    /// Its namespace.
    pub ns: String,
    /// Its name and the names derived from it.
    pub name: ClusterName,
    /// How many instances.
    pub instances: u32,
    /// How long `apply` to Ready took.
    pub ready_after: Duration,
    /// Deletes the namespace at the end of the test.
    pub _cleanup: DeleteOnDrop,
}

/// One instance pod as the tests see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// `pgcluster.dev/role` (empty when unset).
    pub role: String,
    /// Its Ready condition.
    pub ready: bool,
    /// Its IP.
    pub ip: Option<String>,
    /// Restarts of the instance container.
    pub restarts: i32,
}

/// Deletes the namespace when dropped (its pods stop, so later tests do not
/// share the 2-core node with idle clusters), also when the test failed,
/// unless `PGCLUSTER_E2E_KEEP` is set; not waited for.
pub struct DeleteOnDrop {
    /// The namespace.
    pub ns: String,
}

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        if std::env::var_os("PGCLUSTER_E2E_KEEP").is_some() {
            eprintln!("kept namespace {} (PGCLUSTER_E2E_KEEP)", self.ns);
            return;
        }
        let kubectl = std::env::var_os("PGCLUSTER_E2E_KUBECTL");
        let kubeconfig = std::env::var_os(crate::e2e_support::KUBECONFIG_ENV);
        let (Some(kubectl), Some(kubeconfig)) = (kubectl, kubeconfig) else {
            return;
        };
        let run = |args: &[&str]| {
            std::process::Command::new(&kubectl)
                .args(args)
                .env("KUBECONFIG", &kubeconfig)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        };
        if std::thread::panicking() {
            // The pods' logs go with the namespace: print them first.
            let pods = run(&["get", "pods", "-n", &self.ns, "-o", "name"]);
            for pod in pods.lines() {
                eprintln!("--- logs of {pod} (the test failed)");
                for previous in ["--previous=true", "--previous=false"] {
                    let logs = run(&["logs", "-n", &self.ns, pod, previous, "--tail=80"]);
                    eprintln!("{logs}");
                }
            }
        }
        run(&["delete", "namespace", &self.ns, "--wait=false"]);
    }
}

/// Installs the controller (idempotent) and waits until its Deployment has
/// an available replica.
pub async fn controller_available(c: &TestCluster) {
    super::install_controller(c).await;
    let deployments: Api<Deployment> = Api::namespaced(c.admin.clone(), CONTROLLER_NAMESPACE);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(180);
    loop {
        let d = deployments.get(CONTROLLER_ACCOUNT).await.unwrap();
        if d.status.and_then(|s| s.available_replicas).unwrap_or(0) >= 1 {
            break;
        }
        if Instant::now() >= deadline {
            panic!(
                "the controller Deployment has no available replica after 180 s:{}",
                describe_pods(c, CONTROLLER_NAMESPACE).await
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("controller available after {:?}", started.elapsed());
}

/// Applies the homelab spec adapted to the node with `instances` instances
/// (then `adjust`) in a new namespace `e2e-<prefix>-...` as `pgcluster
/// apply` does, and waits until it is Ready with one ready primary and
/// every replica ready and streaming.
pub async fn start(
    c: &TestCluster,
    prefix: &str,
    instances: u32,
    adjust: impl FnOnce(&mut PostgresCluster),
) -> Running {
    controller_available(c).await;
    let ns = c.namespace(prefix).await;
    let mut spec = homelab_on_the_node(&ns);
    spec.spec.instances = Some(instances);
    adjust(&mut spec);
    let validated = pgcluster_core::validate_on(&spec, pgcluster_core::Platform::Kubernetes)
        .expect("the adapted homelab spec is valid");
    pgcluster_k8s::client_ops::apply(&c.admin, &spec)
        .await
        .unwrap();
    let applied = Instant::now();
    let mut running = Running {
        _cleanup: DeleteOnDrop { ns: ns.clone() },
        ns,
        name: validated.name().clone(),
        instances,
        ready_after: Duration::ZERO,
    };
    wait_ready(c, &running, Duration::from_secs(420)).await;
    running.ready_after = applied.elapsed();
    eprintln!(
        "benchmark: {instances}-instance cluster Ready {:.1}s after apply",
        running.ready_after.as_secs_f64()
    );
    running
}

/// Waits until the PostgresCluster is Ready and its pods are one ready
/// primary and `instances - 1` ready replicas, printing each change.
pub async fn wait_ready(c: &TestCluster, r: &Running, timeout: Duration) -> PostgresCluster {
    let clusters: Api<PostgresCluster> = Api::namespaced(c.admin.clone(), &r.ns);
    let since = Instant::now();
    let mut last = String::new();
    let mut want = vec!["primary"];
    want.extend(std::iter::repeat_n("replica", (r.instances - 1) as usize));
    loop {
        let cluster = clusters.get(r.name.as_str()).await.unwrap();
        let members = members(c, r).await;
        let line = format!(
            "{}; pods {:?}",
            pgcluster_k8s::client_ops::progress_line(cluster.status.as_ref()),
            members
                .iter()
                .map(|(n, m)| (n.as_str(), m.role.as_str(), m.ready))
                .collect::<Vec<_>>()
        );
        if line != last {
            eprintln!("[{:>5.1}s] {line}", since.elapsed().as_secs_f64());
            last = line;
        }
        let mut ready_roles: Vec<&str> = members
            .values()
            .filter(|m| m.ready)
            .map(|m| m.role.as_str())
            .collect();
        ready_roles.sort_unstable();
        if pgcluster_k8s::client_ops::is_ready(&cluster) && ready_roles == want {
            return cluster;
        }
        if since.elapsed() >= timeout {
            panic!(
                "{}/{}: no Ready primary and {} ready replicas after {timeout:?} ({last}):{}",
                r.ns,
                r.name,
                r.instances - 1,
                describe_pods(c, &r.ns).await
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The instance pods by name.
pub async fn members(c: &TestCluster, r: &Running) -> BTreeMap<String, Member> {
    let pods: Api<Pod> = Api::namespaced(c.admin.clone(), &r.ns);
    let list = pods
        .list(&ListParams::default().labels("app.kubernetes.io/component=postgres"))
        .await
        .unwrap();
    list.items
        .iter()
        .map(|p| {
            let status = p.status.clone().unwrap_or_default();
            let member = Member {
                role: p.labels().get(ROLE_LABEL).cloned().unwrap_or_default(),
                ready: pgcluster_k8s::client_ops::PodInfo::of(p).ready,
                ip: status.pod_ip.clone(),
                restarts: status
                    .container_statuses
                    .iter()
                    .flatten()
                    .find(|s| s.name == CONTAINER)
                    .map_or(0, |s| s.restart_count),
            };
            (p.name_any(), member)
        })
        .collect()
}

/// An instance pod.
pub async fn pod(c: &TestCluster, r: &Running, name: &str) -> Pod {
    let pods: Api<Pod> = Api::namespaced(c.admin.clone(), &r.ns);
    pods.get(name).await.unwrap()
}

/// The holder of the leader Lease, as stored by the API server.
pub async fn lease_holder(c: &TestCluster, r: &Running) -> Option<String> {
    let leases: Api<KubeLease> = Api::namespaced(c.admin.clone(), &r.ns);
    leases
        .get_opt(&r.name.leader_lease())
        .await
        .unwrap()
        .and_then(|l| l.spec?.holder_identity)
}

/// The ready endpoint addresses of Service `service` (its EndpointSlices).
pub async fn ready_endpoints(c: &TestCluster, r: &Running, service: &str) -> BTreeSet<String> {
    let slices: Api<EndpointSlice> = Api::namespaced(c.admin.clone(), &r.ns);
    let list = slices
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}")))
        .await
        .unwrap();
    list.items
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))
        .flat_map(|e| e.addresses.iter().cloned())
        .collect()
}

/// Service `service`'s ClusterIP.
pub async fn cluster_ip(c: &TestCluster, r: &Running, service: &str) -> String {
    let services: Api<Service> = Api::namespaced(c.admin.clone(), &r.ns);
    services
        .get(service)
        .await
        .unwrap()
        .spec
        .and_then(|s| s.cluster_ip)
        .unwrap_or_else(|| panic!("Service {service} has no ClusterIP"))
}

/// Credentials of application role `role` (its generated Secret) for its
/// own database at `host`, port 5432.
pub async fn role_target(c: &TestCluster, r: &Running, role: &str, host: &str) -> Target {
    let secrets: Api<Secret> = Api::namespaced(c.admin.clone(), &r.ns);
    let secret = secrets.get(&r.name.role_secret(role)).await.unwrap();
    let data = secret.data.unwrap_or_default();
    let text = |key: &str| {
        String::from_utf8(
            data.get(key)
                .unwrap_or_else(|| panic!("Secret {} has no {key}", r.name.role_secret(role)))
                .0
                .clone(),
        )
        .unwrap()
    };
    Target {
        host: host.to_owned(),
        port: 5432,
        user: text("username"),
        password: text("password"),
        dbname: text("dbname"),
    }
}

/// The pod holding the Lease once it is also the only pod labelled
/// primary and the only ready endpoint of the rw Service (the state every
/// client-visible check starts from).
pub async fn settled_primary(c: &TestCluster, r: &Running, timeout: Duration) -> String {
    let rw = r.name.rw_service();
    let since = Instant::now();
    loop {
        let holder = lease_holder(c, r).await;
        let members = members(c, r).await;
        let primaries: Vec<&String> = members
            .iter()
            .filter(|(_, m)| m.role == "primary")
            .map(|(n, _)| n)
            .collect();
        let endpoints = ready_endpoints(c, r, &rw).await;
        if let (Some(h), [p]) = (&holder, primaries.as_slice())
            && h == *p
            && let Some(ip) = members[h].ip.as_ref()
            && endpoints.len() == 1
            && endpoints.contains(ip)
        {
            return h.clone();
        }
        if since.elapsed() >= timeout {
            panic!(
                "no settled primary after {timeout:?}: lease holder {holder:?}, primaries \
                 {primaries:?}, rw endpoints {endpoints:?}, members {members:?}:{}",
                describe_pods(c, &r.ns).await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
