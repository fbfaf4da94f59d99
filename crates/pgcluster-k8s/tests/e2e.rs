//! End-to-end tests on a real Kubernetes control plane (kube-apiserver with
//! RBAC and the usual admission plugins, etcd, kube-controller-manager,
//! kube-scheduler) and a node (kubelet, containerd, kube-proxy, CoreDNS,
//! local-path PVs, the project's images imported), started by
//! `scripts/test-k8s`:
//!
//! ```text
//! scripts/test-k8s                      # builds, starts, runs these, tears down
//! ```
//!
//! Each test works in a namespace of its own on the one shared cluster. The
//! test target needs the `e2e` feature, so a plain `cargo test --workspace`
//! does not build it; `scripts/test-k8s` runs it with `--features e2e`. Without
//! the cluster (`PGCLUSTER_E2E_KUBECONFIG` unset) they print "skipped" and
//! pass, except under `CI=true`, where they fail.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

#[path = "e2e/checks.rs"]
mod checks;
mod e2e_support;
#[path = "e2e/fence.rs"]
mod fence;
#[path = "e2e/ha.rs"]
mod ha;
#[path = "e2e/lifecycle.rs"]
mod lifecycle;
#[path = "e2e/quiet.rs"]
mod quiet;
#[path = "e2e/running.rs"]
mod running;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use e2e_support::{TestCluster, cluster, repo_root, wait_for};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::coordination::v1::Lease as KubeLease;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use pgcluster_core::api::v1alpha1::PostgresCluster;
use pgcluster_ha::coordinator::{CasOutcome, Coordinator};
use pgcluster_ha::machine::{
    Lease, LeaseRecord, LeaseVersion, Lsn, MemberName, MemberRole, MemberState, Millis,
    SwitchoverRequest, Timeline,
};
use pgcluster_k8s::build::{BuildOptions, Object, build};
use pgcluster_k8s::controller::apply::{api_resource, object_json};
use pgcluster_k8s::controller::{Context, FINALIZER, Metrics, reconcile};
use pgcluster_k8s::lease::{KubeLeaseCoordinator, instance_pod_selector};

const CRD_NAME: &str = "postgresclusters.pgcluster.dev";
const CONTROLLER_NAMESPACE: &str = "pgcluster-system";
const CONTROLLER_ACCOUNT: &str = "pgcluster-controller";

async fn wait_crd_established(admin: &Client) -> CustomResourceDefinition {
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    wait_for(
        "the CRD to be Established",
        Duration::from_secs(30),
        || async {
            let crd = crds.get_opt(CRD_NAME).await.unwrap()?;
            let established = crd
                .status
                .as_ref()?
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Established" && c.status == "True");
            established.then_some(crd)
        },
    )
    .await
}

/// Installs `kubernetes/controller` (CRD, namespace, RBAC, Deployment) as a
/// user would with `kubectl apply --server-side -k`; idempotent.
async fn install_controller(c: &TestCluster) -> Vec<(String, String)> {
    let applied = c
        .apply_kustomization(&repo_root().join("kubernetes/controller"))
        .await;
    wait_crd_established(&c.admin).await;
    applied
}

/// (a) The CRD file is accepted by server-side apply (a structural schema
/// the API server takes as is) and becomes Established and served.
#[tokio::test]
async fn crd_server_side_apply_becomes_established() {
    let Some(c) = cluster().await else { return };
    let yaml = std::fs::read_to_string(repo_root().join("kubernetes/crd.yaml")).unwrap();
    let applied = c.apply_yaml(&yaml, None).await;
    assert_eq!(
        applied,
        vec![("CustomResourceDefinition".to_owned(), CRD_NAME.to_owned())]
    );
    let crd = wait_crd_established(&c.admin).await;
    let conditions = crd.status.unwrap().conditions.unwrap_or_default();
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "NamesAccepted" && c.status == "True"),
        "{conditions:?}"
    );
    // Served: a list in every namespace answers.
    let all: Api<PostgresCluster> = Api::all(c.admin.clone());
    wait_for(
        "PostgresCluster to be served",
        Duration::from_secs(30),
        || async { all.list(&ListParams::default()).await.ok().map(drop) },
    )
    .await;
    // Applying the same file again changes nothing and conflicts with nobody.
    c.apply_yaml(&yaml, None).await;
}

/// (a) `kubernetes/controller` applies server-side as the docs tell users;
/// the Deployment's pods are created under the shipped ServiceAccount
/// (admission accepts them; with the node they run, see
/// `cluster_runs_on_a_real_node`).
#[tokio::test]
async fn controller_base_applies_server_side() {
    let Some(c) = cluster().await else { return };
    let applied = install_controller(&c).await;
    let kinds: BTreeSet<&str> = applied.iter().map(|(k, _)| k.as_str()).collect();
    for kind in [
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
    ] {
        assert!(kinds.contains(kind), "{kind} not applied: {applied:?}");
    }
    // Twice: server-side apply of the same base is idempotent.
    install_controller(&c).await;

    let deployments: Api<Deployment> = Api::namespaced(c.admin.clone(), CONTROLLER_NAMESPACE);
    let pods: Api<Pod> = Api::namespaced(c.admin.clone(), CONTROLLER_NAMESPACE);
    let want = deployments
        .get(CONTROLLER_ACCOUNT)
        .await
        .unwrap()
        .spec
        .unwrap()
        .replicas
        .unwrap_or(1);
    let pods = wait_for(
        "the controller Deployment's pods",
        Duration::from_secs(60),
        || async {
            let list = pods
                .list(&ListParams::default().labels("app.kubernetes.io/component=controller"))
                .await
                .unwrap();
            (list.items.len() == usize::try_from(want).unwrap()).then_some(list.items)
        },
    )
    .await;
    for pod in pods {
        let spec = pod.spec.unwrap();
        assert_eq!(
            spec.service_account_name.as_deref(),
            Some(CONTROLLER_ACCOUNT)
        );
    }

    // The real kubectl (built with the control plane) agrees.
    if let Some(out) = c.kubectl(&[
        "apply",
        "--server-side",
        "--dry-run=server",
        "-k",
        repo_root().join("kubernetes/controller").to_str().unwrap(),
    ]) {
        assert!(
            out.status.success(),
            "kubectl apply --server-side -k kubernetes/controller: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn record(holder: &str, term: u64, renewed_at: u64) -> LeaseRecord {
    LeaseRecord {
        holder: Some(MemberName::from(holder)),
        term,
        renewed_at: Millis(renewed_at),
        duration_ms: 2_000,
        system_identifier: None,
        timeline: Timeline(1),
        history: vec![],
        max_timeline: Timeline(1),
        primary_lsn: Lsn(0),
        sync_standbys: BTreeSet::new(),
    }
}

fn member(name: &str, role: MemberRole, heartbeat: u64) -> MemberState {
    MemberState {
        name: MemberName::from(name),
        role,
        healthy: true,
        timeline: Timeline(1),
        received_lsn: Lsn(100),
        replayed_lsn: Lsn(100),
        flushed_lsn: Lsn(100),
        system_identifier: None,
        following: None,
        sync_eligible: role == MemberRole::Replica,
        last_seen: Millis(5),
        heartbeat,
    }
}

fn won(outcome: CasOutcome) -> Lease {
    match outcome {
        CasOutcome::Won(lease) => lease,
        CasOutcome::Lost(current) => panic!("expected Won, got Lost({current:?})"),
    }
}

fn lost(outcome: CasOutcome) -> Option<Lease> {
    match outcome {
        CasOutcome::Lost(current) => current,
        CasOutcome::Won(lease) => panic!("expected Lost, got Won({lease:?})"),
    }
}

/// Applies the objects of `bundle` whose kind is in `kinds`, as the admin.
async fn apply_objects(c: &TestCluster, namespace: &str, objects: &[Object<'_>], kinds: &[&str]) {
    for object in objects.iter().filter(|o| kinds.contains(&o.kind())) {
        let (json, _) = object_json(object).unwrap();
        let api: Api<DynamicObject> =
            Api::namespaced_with(c.admin.clone(), namespace, &api_resource(object.kind()));
        api.patch(
            object.name(),
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&json),
        )
        .await
        .unwrap_or_else(|e| panic!("applying {} {}: {e}", object.kind(), object.name()));
    }
}

/// (b) The Lease coordinator on the real API server, authorized as the
/// agents' ServiceAccount under the Role the builders render: acquire (create),
/// a second acquirer losing on AlreadyExists, renew, a stale expected version,
/// a stale resourceVersion answered with 409, concurrent compare-and-swaps
/// with exactly one winner, member states on pods, and a hand-over.
#[tokio::test]
async fn lease_coordinator_on_the_real_api_server() {
    let Some(c) = cluster().await else { return };
    let ns = c.namespace("lease").await;
    let fixture = pgcluster_k8s::testing::spec("pg", 2)
        .in_namespace(&ns)
        .validated();
    let name = fixture.name().clone();
    let bundle = build(&fixture, &BuildOptions::default()).unwrap();
    let objects = bundle.objects();
    apply_objects(
        &c,
        &ns,
        &objects,
        &["ServiceAccount", "Role", "RoleBinding"],
    )
    .await;

    // Two instance pods (Pending: no kubelet), as the StatefulSet names them.
    let pods: Api<Pod> = Api::namespaced(c.admin.clone(), &ns);
    let selector = instance_pod_selector(&name);
    let labels: serde_json::Map<String, serde_json::Value> = selector
        .split(',')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.into())
        })
        .collect();
    for pod in ["pg-0", "pg-1"] {
        let object: Pod = serde_json::from_value(serde_json::json!({
            "metadata": { "name": pod, "labels": labels },
            "spec": {
                "serviceAccountName": name.service_account(),
                "containers": [{ "name": "postgres", "image": "pgcluster.invalid/none:0" }]
            }
        }))
        .unwrap();
        pods.create(&PostParams::default(), &object).await.unwrap();
    }

    let agent = c.service_account_client(&ns, &name.service_account()).await;
    let a = KubeLeaseCoordinator::new(agent.clone(), &ns, &name);
    let b = KubeLeaseCoordinator::new(agent.clone(), &ns, &name);
    // What the controller and the CLI read (the agents may not list pods).
    let reader = KubeLeaseCoordinator::new(c.admin.clone(), &ns, &name);

    // Acquire: the Lease does not exist yet, pg-0 creates it.
    let v1 = won(a
        .compare_and_swap_lease(LeaseVersion(0), record("pg-0", 1, 1_000))
        .await
        .unwrap());
    assert_eq!(v1.version, LeaseVersion(1));
    // pg-1 tried to create it too: 409 AlreadyExists -> Lost, with the winner's lease.
    let seen = lost(
        b.compare_and_swap_lease(LeaseVersion(0), record("pg-1", 1, 1_000))
            .await
            .unwrap(),
    );
    assert_eq!(seen.as_ref(), Some(&v1));
    let leases: Api<KubeLease> = Api::namespaced(c.admin.clone(), &ns);
    let object = leases.get(&name.leader_lease()).await.unwrap();
    let spec = object.spec.clone().unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("pg-0"));
    assert_eq!(spec.lease_duration_seconds, Some(2));

    // Renew.
    let v2 = won(a
        .compare_and_swap_lease(v1.version, record("pg-0", 1, 2_000))
        .await
        .unwrap());
    assert_eq!(v2.version, LeaseVersion(2));
    // A stale expected version loses without writing.
    assert_eq!(
        lost(
            b.compare_and_swap_lease(v1.version, record("pg-1", 2, 2_000))
                .await
                .unwrap()
        ),
        Some(v2.clone())
    );

    // The API server's own conflict detection: a replace carrying the
    // resourceVersion of an older read is refused with 409 Conflict.
    let stale = leases.get(&name.leader_lease()).await.unwrap();
    let v3 = won(a
        .compare_and_swap_lease(v2.version, record("pg-0", 1, 3_000))
        .await
        .unwrap());
    match leases
        .replace(&name.leader_lease(), &PostParams::default(), &stale)
        .await
    {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 409, "{s:?}"),
        other => panic!("a stale resourceVersion was not refused: {other:?}"),
    }

    // Concurrent compare-and-swaps from the same expected version: exactly
    // one wins each round, the other loses (a 409 on its replace, or the
    // moved version on its read) and sees the winner's record.
    let mut current = v3;
    for round in 0..10u64 {
        let at = 10_000 + round;
        let (ra, rb) = tokio::join!(
            a.compare_and_swap_lease(current.version, record("pg-0", 1, at)),
            b.compare_and_swap_lease(current.version, record("pg-1", 2, at)),
        );
        current = match (ra.unwrap(), rb.unwrap()) {
            (CasOutcome::Won(w), CasOutcome::Lost(l))
            | (CasOutcome::Lost(l), CasOutcome::Won(w)) => {
                assert_eq!(
                    l.as_ref(),
                    Some(&w),
                    "round {round}: the loser saw another lease"
                );
                w
            }
            (x, y) => panic!("round {round}: not exactly one winner: {x:?} / {y:?}"),
        };
        assert_eq!(current.version, LeaseVersion(4 + round));
    }

    // Member states on the pods (patch by the agent's Role), read back by list.
    a.publish_member(member("pg-0", MemberRole::Primary, 1))
        .await
        .unwrap();
    b.publish_member(member("pg-1", MemberRole::Replica, 1))
        .await
        .unwrap();
    let view = reader.read_view().await.unwrap();
    assert_eq!(view.lease.as_ref(), Some(&current));
    assert_eq!(
        view.members
            .keys()
            .map(MemberName::as_str)
            .collect::<Vec<_>>(),
        ["pg-0", "pg-1"]
    );

    // Hand-over: a switchover request on the Lease, the holder writes the
    // successor's record, clears the request, the successor renews.
    let request = SwitchoverRequest {
        id: 7,
        target: Some(MemberName::from("pg-1")),
        forced: false,
    };
    b.request_switchover(request.clone()).await.unwrap();
    let view = reader.read_view().await.unwrap();
    assert_eq!(view.switchover.as_ref(), Some(&request));
    let holder = current.record.holder.clone().unwrap();
    let handed = won(a
        .compare_and_swap_lease(current.version, record("pg-1", 3, 20_000))
        .await
        .unwrap());
    a.clear_switchover(7).await.unwrap();
    let renewed = won(b
        .compare_and_swap_lease(handed.version, record("pg-1", 3, 21_000))
        .await
        .unwrap());
    let view = reader.read_view().await.unwrap();
    assert_eq!(view.switchover, None);
    assert_eq!(view.lease.as_ref(), Some(&renewed));
    let spec = leases
        .get(&name.leader_lease())
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("pg-1"));
    assert!(
        spec.lease_transitions.unwrap_or(0) >= 1,
        "holder went {holder} -> pg-1: {spec:?}"
    );

    // An agent's coordinator (quiet at rest): the Lease by watch, a
    // renewal on the watched copy, a switchover request signalled at once,
    // the pod annotation written on change only.
    let watching = KubeLeaseCoordinator::new(agent.clone(), &ns, &name).for_agent(
        MemberName::from("pg-1"),
        std::collections::BTreeMap::new(),
        Duration::from_secs(30),
        Duration::from_millis(200),
        pgcluster_ha::agent::credential::MemberCredential::of("unused: no peers"),
    );
    let mut changes = watching
        .changes()
        .expect("an agent's coordinator signals changes");
    let seen = wait_for(
        "the watch to list the Lease",
        Duration::from_secs(30),
        || async {
            let view = watching.read_view().await.unwrap();
            (view.lease.as_ref() == Some(&renewed)).then_some(view)
        },
    )
    .await;
    assert_eq!(seen.switchover, None);
    let renewed_again = won(watching
        .compare_and_swap_lease(renewed.version, record("pg-1", 3, 22_000))
        .await
        .unwrap());
    let view = watching.read_view().await.unwrap();
    assert_eq!(
        view.lease.as_ref(),
        Some(&renewed_again),
        "its own write is in its copy"
    );
    changes.borrow_and_update();
    let request = SwitchoverRequest {
        id: 8,
        target: Some(MemberName::from("pg-0")),
        forced: false,
    };
    b.request_switchover(request.clone()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), changes.changed())
        .await
        .expect("the watch signalled the switchover request")
        .unwrap();
    let view = watching.read_view().await.unwrap();
    assert_eq!(view.switchover.as_ref(), Some(&request));
    b.clear_switchover(8).await.unwrap();
    let annotation = |pod: Pod| {
        pod.annotations()
            .get(pgcluster_k8s::lease::ANNOTATION_MEMBER_STATE)
            .cloned()
    };
    watching
        .publish_member(member("pg-1", MemberRole::Replica, 40))
        .await
        .unwrap();
    let written = annotation(pods.get("pg-1").await.unwrap()).unwrap();
    assert!(written.contains("\"heartbeat\":40"), "{written}");
    watching
        .publish_member(member("pg-1", MemberRole::Replica, 41))
        .await
        .unwrap();
    assert_eq!(
        annotation(pods.get("pg-1").await.unwrap()).as_deref(),
        Some(written.as_str()),
        "a heartbeat alone is not written to the API server"
    );
    watching
        .publish_member(member("pg-1", MemberRole::Primary, 42))
        .await
        .unwrap();
    let written = annotation(pods.get("pg-1").await.unwrap()).unwrap();
    assert!(
        written.contains("\"heartbeat\":42"),
        "a role change is: {written}"
    );

    // Least privilege is real: the agents may not read Secrets, nor list
    // pods, nor patch a pod of another cluster.
    let secrets: Api<Secret> = Api::namespaced(agent.clone(), &ns);
    match secrets.list(&ListParams::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{s:?}"),
        other => panic!("the agent listed Secrets: {other:?}"),
    }
    let agent_pods: Api<Pod> = Api::namespaced(agent.clone(), &ns);
    match agent_pods.list(&ListParams::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{s:?}"),
        other => panic!("the agent listed pods: {other:?}"),
    }
    let stranger: Pod = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "other-0" },
        "spec": { "containers": [{ "name": "c", "image": "pgcluster.invalid/none:0" }] }
    }))
    .unwrap();
    pods.create(&PostParams::default(), &stranger)
        .await
        .unwrap();
    let label =
        serde_json::json!({ "metadata": { "labels": { "pgcluster.dev/role": "primary" } } });
    match agent_pods
        .patch("other-0", &PatchParams::default(), &Patch::Merge(&label))
        .await
    {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{s:?}"),
        other => panic!("the agent patched another cluster's pod: {other:?}"),
    }
}

/// Loads `examples/homelab.yaml` into `namespace`, adapted to the test
/// cluster: no Prometheus operator is installed, so monitoring is off.
fn homelab(namespace: &str) -> PostgresCluster {
    let text = std::fs::read_to_string(repo_root().join("examples/homelab.yaml")).unwrap();
    let mut cluster = pgcluster_core::load::load_one(&text).unwrap().cluster;
    cluster.metadata.namespace = Some(namespace.to_owned());
    if let Some(m) = cluster.spec.monitoring.as_mut() {
        m.enabled = Some(false);
    }
    cluster
}

/// (c) The controller's reconcile on the real API server, authorized as the
/// controller's ServiceAccount under the shipped ClusterRole (a missing verb
/// is a 403 and fails the test): `pgcluster apply` of a homelab spec with
/// `retention: Delete`, every built object created, the StatefulSet's pods
/// created by the StatefulSet controller, status written; on delete the
/// finalizer is released, garbage collection removes the owned objects and
/// the volumes go with the StatefulSet.
#[tokio::test]
async fn controller_reconciles_under_the_shipped_cluster_role() {
    let Some(c) = cluster().await else { return };
    install_controller(&c).await;
    let ns = c.namespace("reconcile").await;
    let controller = c
        .service_account_client(CONTROLLER_NAMESPACE, CONTROLLER_ACCOUNT)
        .await;
    let ctx = Arc::new(Context::new(
        controller,
        Metrics::default(),
        Arc::new(pgcluster_k8s::controller::sql::PostgresAdmin),
        CONTROLLER_NAMESPACE.to_owned(),
        Some("e2e".to_owned()),
    ));

    // `pgcluster apply -f homelab.yaml`, as the user (admin), with retention Delete.
    let mut spec = homelab(&ns);
    spec.spec
        .storage
        .get_or_insert_with(Default::default)
        .retention = Some(pgcluster_core::api::v1alpha1::RetentionPolicy::Delete);
    let validated = pgcluster_core::validate_on(&spec, pgcluster_core::Platform::Kubernetes)
        .expect("the homelab example is valid");
    let stored = pgcluster_k8s::client_ops::apply(&c.admin, &spec)
        .await
        .unwrap();
    let clusters: Api<PostgresCluster> = Api::namespaced(c.admin.clone(), &ns);

    // Reconcile until the controller has added its finalizer and applied
    // everything (the first pass may only add the finalizer).
    // The controller's Deployment (installed by the node test) reconciles
    // the same object: a 409 on our write means it wrote first; read again
    // and retry, as its error_policy would (bounded).
    let mut obj = stored;
    let mut passes = 0;
    for _ in 0..10 {
        match reconcile(Arc::new(obj.clone()), ctx.clone()).await {
            Ok(_) => passes += 1,
            Err(e) if pgcluster_k8s::controller::reconcile::chain(&e).contains("Conflict") => {}
            Err(e) => panic!(
                "reconcile: {}",
                pgcluster_k8s::controller::reconcile::chain(&e)
            ),
        }
        obj = clusters.get(&spec.name_any()).await.unwrap();
        if passes == 2 {
            break;
        }
    }
    assert_eq!(passes, 2, "two reconcile passes succeeded within 10 tries");
    assert!(obj.finalizers().iter().any(|f| f == FINALIZER));
    let status = obj.status.clone().expect("status written");
    assert!(status.phase.is_some(), "{status:?}");

    // Every object of the bundle exists, owned by the PostgresCluster.
    let owner = obj.uid().unwrap();
    let bundle = build(
        &validated,
        &BuildOptions {
            controller_namespace: CONTROLLER_NAMESPACE.to_owned(),
            ..BuildOptions::default()
        },
    )
    .unwrap();
    let mut owned = Vec::new();
    for object in bundle.objects() {
        let api: Api<DynamicObject> =
            Api::namespaced_with(c.admin.clone(), &ns, &api_resource(object.kind()));
        let got = api
            .get_opt(object.name())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{} {} was not created", object.kind(), object.name()));
        assert!(
            got.owner_references().iter().any(|r| r.uid == owner),
            "{} {} is not owned by the cluster",
            object.kind(),
            object.name()
        );
        owned.push((object.kind(), object.name().to_owned()));
    }
    let statefulsets: Api<StatefulSet> = Api::namespaced(c.admin.clone(), &ns);
    let sts = statefulsets
        .get(&validated.name().statefulset())
        .await
        .unwrap();
    // The StatefulSet controller accepted it: pod 0 exists (Pending without a kubelet).
    let pods: Api<Pod> = Api::namespaced(c.admin.clone(), &ns);
    let first = validated.name().instance(0);
    wait_for(
        "the StatefulSet's first pod",
        Duration::from_secs(60),
        || async { pods.get_opt(&first).await.unwrap().map(drop) },
    )
    .await;
    assert_eq!(sts.spec.unwrap().replicas, Some(2));
    let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        Api::namespaced(c.admin.clone(), &ns);
    let claim = format!("data-{first}");
    wait_for(
        "the first pod's volume claim",
        Duration::from_secs(60),
        || async { claims.get_opt(&claim).await.unwrap().map(drop) },
    )
    .await;

    // Delete: the controller deletes the Lease and releases its finalizer,
    // garbage collection removes what the cluster owned (the volumes with
    // the StatefulSet).
    clusters
        .delete(&spec.name_any(), &DeleteParams::default())
        .await
        .unwrap();
    // With a node, the controller's Deployment runs too and may release the
    // finalizer first: then the object is gone, and so is the work.
    if let Some(deleting) = clusters.get_opt(&spec.name_any()).await.unwrap() {
        assert!(deleting.metadata.deletion_timestamp.is_some());
        if let Err(e) = reconcile(Arc::new(deleting), ctx.clone()).await {
            assert!(
                clusters.get_opt(&spec.name_any()).await.unwrap().is_none(),
                "reconcile of a deletion: {e}"
            );
        }
    }
    wait_for(
        "the PostgresCluster to go",
        Duration::from_secs(30),
        || async {
            clusters
                .get_opt(&spec.name_any())
                .await
                .unwrap()
                .is_none()
                .then_some(())
        },
    )
    .await;
    for (kind, name) in owned {
        let api: Api<DynamicObject> =
            Api::namespaced_with(c.admin.clone(), &ns, &api_resource(kind));
        wait_for(
            &format!("garbage collection of {kind} {name}"),
            Duration::from_secs(60),
            || async { api.get_opt(&name).await.unwrap().is_none().then_some(()) },
        )
        .await;
    }
    // Not asserted: that the Lease is gone. The controller deletes it while
    // the instance pods may still run (they go with the StatefulSet, after
    // the finalizer), and a live agent creates it again (seen once in CI).
    // Known gap: the finalizer should wait for the pods to go first.
    // The StatefulSet's claim retention policy: garbage collection of the
    // claims follows the StatefulSet's.
    wait_for(
        "the volume claim to go with the StatefulSet (retention Delete)",
        Duration::from_secs(60),
        || async {
            let left = claims.get_opt(&claim).await.unwrap();
            left.is_none_or(|c| c.metadata.deletion_timestamp.is_some())
                .then_some(())
        },
    )
    .await;
}

/// (d) A PostgresCluster without `spec`: the API server refuses it (the CRD
/// requires `spec`), and `pgcluster validate` must refuse it too.
#[tokio::test]
async fn missing_spec_is_refused_by_the_api_server_and_by_validate() {
    let Some(c) = cluster().await else { return };
    let yaml = std::fs::read_to_string(repo_root().join("kubernetes/crd.yaml")).unwrap();
    c.apply_yaml(&yaml, None).await;
    wait_crd_established(&c.admin).await;
    let ns = c.namespace("nospec").await;
    let text =
        "apiVersion: pgcluster.dev/v1alpha1\nkind: PostgresCluster\nmetadata:\n  name: nospec\n";

    let value: serde_json::Value = serde_norway::from_str(text).unwrap();
    let object: DynamicObject = serde_json::from_value(value).unwrap();
    let resource = kube::discovery::ApiResource::erase::<PostgresCluster>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(c.admin.clone(), &ns, &resource);
    let server = match api.create(&PostParams::default(), &object).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 422, "{s:?}");
            assert!(s.message.contains("spec"), "{s:?}");
            s.message
        }
        other => panic!("the API server accepted a PostgresCluster without spec: {other:?}"),
    };

    let local = pgcluster_core::load::load_one(text)
        .map_err(|e| e.to_string())
        .and_then(|loaded| loaded.validate().map(drop).map_err(|e| e.to_string()));
    let message = local.expect_err(&format!(
        "pgcluster validate accepted what the API server refused ({server})"
    ));
    assert!(message.contains("spec"), "{message}");
}

/// The homelab example adapted to the test node: no MetalLB (the
/// loadBalancer Service and the admins' rule through it are left out),
/// requests a shared 2-core machine can grant, monitoring off.
fn homelab_on_the_node(namespace: &str) -> PostgresCluster {
    let mut cluster = homelab(namespace);
    let spec = &mut cluster.spec;
    if let Some(services) = spec.services.as_mut() {
        services.load_balancer = None;
    }
    spec.access.retain(|rule| rule.name != "admins");
    if let Some(requests) = spec.resources.as_mut().and_then(|r| r.requests.as_mut()) {
        requests.cpu = Some("100m".to_owned());
        requests.memory = Some("256Mi".to_owned());
    }
    cluster
}

/// What a pod looks like, for a failure message: phase, conditions,
/// container states and the last lines of its logs.
async fn describe_pods(c: &TestCluster, namespace: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(c.admin.clone(), namespace);
    let mut out = String::new();
    for pod in pods.list(&ListParams::default()).await.unwrap() {
        let name = pod.name_any();
        let status = pod.status.clone().unwrap_or_default();
        out.push_str(&format!(
            "\n--- pod {name}: phase {:?}, labels {:?}\n",
            status.phase,
            pod.labels()
        ));
        for cs in status.container_statuses.iter().flatten() {
            out.push_str(&format!(
                "  container {}: ready {} restarts {} state {:?} last {:?}\n",
                cs.name, cs.ready, cs.restart_count, cs.state, cs.last_state
            ));
        }
        for cond in status.conditions.iter().flatten() {
            out.push_str(&format!(
                "  {} {} {}\n",
                cond.type_,
                cond.status,
                cond.message.as_deref().unwrap_or_default()
            ));
        }
        let params = kube::api::LogParams {
            tail_lines: Some(25),
            ..kube::api::LogParams::default()
        };
        match pods.logs(&name, &params).await {
            Ok(logs) => out.push_str(&logs),
            Err(e) => out.push_str(&format!("  (no logs: {e})\n")),
        }
    }
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(c.admin.clone(), namespace);
    for event in events.list(&ListParams::default()).await.unwrap() {
        if event.type_.as_deref() == Some("Warning") {
            out.push_str(&format!(
                "event {} {}: {}\n",
                event.involved_object.name.unwrap_or_default(),
                event.reason.unwrap_or_default(),
                event.message.unwrap_or_default()
            ));
        }
    }
    out
}

/// The node's name when `scripts/test-k8s` started a kubelet, or `None`
/// (after saying so): the tests that need running pods are skipped then.
fn node() -> Option<String> {
    let node = std::env::var("PGCLUSTER_E2E_NODE_NAME").ok();
    if node.is_none() {
        eprintln!("skipped: no node (PGCLUSTER_E2E_NODE=0 or PGCLUSTER_E2E_NODE_NAME unset)");
    }
    node
}
