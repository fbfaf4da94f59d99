//! tower-test scenarios of the reconcile pipeline: a scripted API server

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
//! answers every call; each test states the calls it expects and what they carry.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use ::http::Method;
use futures::future::BoxFuture;
use kube::runtime::controller::Action;
use pgcluster_core::api::v1alpha1::{ClusterPhase, PostgresClusterStatus, RetentionPolicy};
use pgcluster_ha::machine::MemberRole;
use serde_json::json;

use super::sql::{AdminError, AdminTarget, DatabaseAdmin, Inventory, Statement};
use super::*;
use crate::testing::api_server::{ApiServerVerifier, Reply, list};
use crate::testing::objects::{
    ClusterFixture, PodFixture, UID, lease, lease_object, pod, postgres_cluster,
};

const SECRETS: &str = "/api/v1/namespaces/db/secrets";
const PODS: &str = "/api/v1/namespaces/db/pods";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/db/leases/pg-leader";
const STATUS: &str = "/apis/pgcluster.dev/v1alpha1/namespaces/db/postgresclusters/pg/status";
const CLUSTER: &str = "/apis/pgcluster.dev/v1alpha1/namespaces/db/postgresclusters/pg";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/db/events";

/// A [`DatabaseAdmin`] that records what it was asked.
#[derive(Default)]
struct FakeAdmin {
    executed: Mutex<Vec<Statement>>,
    targets: Mutex<Vec<String>>,
}

impl DatabaseAdmin for FakeAdmin {
    fn inventory<'a>(
        &'a self,
        target: &'a AdminTarget,
    ) -> BoxFuture<'a, Result<Inventory, AdminError>> {
        self.targets.lock().unwrap().push(target.host.clone());
        Box::pin(async { Ok(Inventory::default()) })
    }
    fn execute<'a>(
        &'a self,
        _: &'a AdminTarget,
        statements: &'a [Statement],
    ) -> BoxFuture<'a, Result<(), AdminError>> {
        self.executed
            .lock()
            .unwrap()
            .extend(statements.iter().cloned());
        Box::pin(async { Ok(()) })
    }
    fn verifier(&self, _password: &str) -> String {
        "SCRAM-SHA-256$fake".to_owned()
    }
}

fn context(client: kube::Client, admin: Arc<FakeAdmin>) -> Arc<Context> {
    let mut ctx = Context::new(
        client,
        Metrics::default(),
        admin,
        "pgcluster-system".into(),
        Some("test".into()),
    );
    ctx.clock = || "2026-01-01T12:00:00Z".parse().unwrap();
    Arc::new(ctx)
}

fn secret(name: &str, password: &str) -> serde_json::Value {
    let secret = k8s_openapi::api::core::v1::Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some("db".to_owned()),
            labels: Some(BTreeMap::from([(
                "pgcluster.dev/cluster".to_owned(),
                "pg".to_owned(),
            )])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            "password".to_owned(),
            k8s_openapi::ByteString(password.as_bytes().to_vec()),
        )])),
        ..Default::default()
    };
    serde_json::to_value(secret).unwrap()
}

fn existing_secrets() -> Reply {
    Reply::Ok(list(
        "SecretList",
        vec![
            secret("pg-superuser", "su-pass"),
            secret("pg-role-app", "app-pass"),
        ],
    ))
}

fn applies(server: &ApiServerVerifier) -> Vec<&crate::testing::api_server::Seen> {
    server
        .seen
        .iter()
        .filter(|s| s.method == Method::PATCH && s.path != STATUS && s.path != CLUSTER)
        .collect()
}

fn status_written(server: &ApiServerVerifier) -> PostgresClusterStatus {
    let s = server
        .seen
        .iter()
        .rfind(|s| s.path == STATUS)
        .expect("status was written");
    assert_eq!(s.param("fieldManager").as_deref(), Some(FIELD_MANAGER));
    serde_json::from_value(s.body["status"].clone()).unwrap()
}

fn condition<'a>(
    status: &'a PostgresClusterStatus,
    type_: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    status.conditions.iter().find(|c| c.type_ == type_).unwrap()
}

/// A new cluster: dereference (Secrets, pods, Lease), then every built object
/// is server-side applied with the one field manager, force, and the owner
/// reference; Secrets are created with generated passwords; orphans are
/// looked up by label; an Event names (never shows) the new Secrets; status
/// says Creating.
#[tokio::test]
async fn new_cluster_applies_everything_once() {
    let (client, mut server) = ApiServerVerifier::new();
    let ctx = context(client, Arc::default());
    let obj = Arc::new(postgres_cluster());
    let action = server
        .serve_while(reconcile(obj, ctx.clone()), vec![])
        .await
        .unwrap();
    assert_eq!(action, Action::requeue(reconcile::CONVERGING));

    let calls = server.calls();
    assert_eq!(calls[0].1, SECRETS);
    assert_eq!(calls[1].1, PODS);
    assert_eq!(calls[2].1, LEASE);
    let applied = applies(&server);
    let kinds: Vec<&str> = applied
        .iter()
        .map(|s| s.body["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "Secret",
        "Service",
        "StatefulSet",
        "PodDisruptionBudget",
        "NetworkPolicy",
    ] {
        assert!(kinds.contains(&kind), "{kind} not applied: {kinds:?}");
    }
    for s in &applied {
        assert_eq!(
            s.param("fieldManager").as_deref(),
            Some(FIELD_MANAGER),
            "{}",
            s.path
        );
        assert_eq!(s.param("force").as_deref(), Some("true"), "{}", s.path);
        let owners = &s.body["metadata"]["ownerReferences"];
        assert_eq!(owners[0]["uid"], UID, "{}", s.path);
        assert_eq!(owners[0]["kind"], "PostgresCluster");
        assert_eq!(owners[0]["controller"], true);
    }
    let secrets: Vec<_> = applied
        .iter()
        .filter(|s| s.body["kind"] == "Secret")
        .collect();
    let names: Vec<_> = secrets
        .iter()
        .map(|s| s.body["metadata"]["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        ["pg-superuser", "pg-role-app"],
        "the superuser's and each role's"
    );
    let mut passwords = std::collections::BTreeSet::new();
    for s in &secrets {
        let pw = s.body["data"]["password"]
            .as_str()
            .expect("a new Secret carries its password");
        assert!(pw.len() >= 40, "base64 of 32 random characters");
        passwords.insert(pw.to_owned());
    }
    assert_eq!(passwords.len(), 2, "every Secret has its own password");
    let event = server
        .seen
        .iter()
        .find(|s| s.path == EVENTS)
        .expect("an Event");
    assert_eq!(event.body["reason"], "SecretsCreated");
    for pw in &passwords {
        assert!(!event.body.to_string().contains(pw.as_str()));
    }
    let status = status_written(&server);
    assert_eq!(status.phase, Some(ClusterPhase::Creating));
    assert_eq!(status.observed_generation, Some(3));
    assert_eq!(condition(&status, "Progressing").status, "True");
}

/// A second reconcile with existing Secrets never writes them (their data
/// is untouched) and publishes no SecretsCreated Event.
#[tokio::test]
async fn existing_secrets_are_left_alone() {
    let (client, mut server) = ApiServerVerifier::new();
    let ctx = context(client, Arc::default());
    let overrides = vec![(Method::GET, SECRETS.to_owned(), existing_secrets())];
    server
        .serve_while(reconcile(Arc::new(postgres_cluster()), ctx), overrides)
        .await
        .unwrap();
    assert!(
        applies(&server)
            .iter()
            .all(|s| !s.path.starts_with(SECRETS)),
        "{:?}",
        server.calls()
    );
    assert!(!applies(&server).is_empty());
    assert!(server.seen.iter().all(|s| s.path != EVENTS));
}

/// An invalid spec: the Ready condition carries every validation message,
/// nothing is applied, a Warning Event is published, and error_policy waits
/// for a change.
#[tokio::test]
async fn invalid_spec_sets_condition_and_applies_nothing() {
    let (client, mut server) = ApiServerVerifier::new();
    let ctx = context(client, Arc::default());
    let obj = Arc::new(postgres_cluster().invalid());
    let err = server
        .serve_while(reconcile(obj.clone(), ctx.clone()), vec![])
        .await
        .unwrap_err();
    assert_eq!(err.category(), "invalid_spec");
    assert!(applies(&server).is_empty(), "{:?}", server.calls());
    let status = status_written(&server);
    assert_eq!(status.phase, Some(ClusterPhase::Invalid));
    let ready = condition(&status, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "InvalidSpec")
    );
    assert!(
        ready.message.contains("spec.instances"),
        "{}",
        ready.message
    );
    assert!(
        ready.message.contains("spec.databases[0]"),
        "{}",
        ready.message
    );
    let event = server
        .seen
        .iter()
        .find(|s| s.path == EVENTS)
        .expect("a Warning Event");
    assert_eq!(event.body["type"], "Warning");
    assert_eq!(event.body["reason"], "InvalidSpec");
    assert_eq!(error_policy(obj, &err, ctx), Action::await_change());
}

/// Status follows the pods and the Lease: the holder's pod ready and every
/// instance ready → Healthy, Ready/Available True; the databases and roles
/// are then created on the primary (through the fake admin, at the
/// primary's pod DNS name).
#[tokio::test]
async fn healthy_cluster_status_and_databases() {
    let (client, mut server) = ApiServerVerifier::new();
    let admin = Arc::new(FakeAdmin::default());
    let ctx = context(client, admin.clone());
    let pods = list(
        "PodList",
        vec![
            pod("pg-0")
                .ready()
                .role("primary")
                .state(MemberRole::Primary, 1000),
            pod("pg-1")
                .ready()
                .role("replica")
                .state(MemberRole::Replica, 900),
        ],
    );
    let overrides = vec![
        (Method::GET, SECRETS.to_owned(), existing_secrets()),
        (Method::GET, PODS.to_owned(), Reply::Ok(pods)),
        (
            Method::GET,
            LEASE.to_owned(),
            Reply::Ok(lease_object(&lease(Some("pg-0"), 4, 1000))),
        ),
    ];
    let action = server
        .serve_while(reconcile(Arc::new(postgres_cluster()), ctx), overrides)
        .await
        .unwrap();
    assert_eq!(action, Action::requeue(reconcile::RESYNC));
    let status = status_written(&server);
    assert_eq!(status.phase, Some(ClusterPhase::Healthy));
    assert_eq!(status.primary.as_deref(), Some("pg-0"));
    assert_eq!(status.lease_term, Some(4));
    assert_eq!(status.instances[1].lag_bytes, Some(100));
    for (t, s) in [
        ("Ready", "True"),
        ("Available", "True"),
        ("Degraded", "False"),
        ("Progressing", "False"),
    ] {
        assert_eq!(condition(&status, t).status, s, "{t}");
        assert_eq!(condition(&status, t).observed_generation, Some(3));
    }
    assert_eq!(
        admin.targets.lock().unwrap().as_slice(),
        ["pg-0.pg-pods.db.svc"]
    );
    let executed = admin.executed.lock().unwrap();
    assert!(
        executed
            .iter()
            .any(|s| s.sql.starts_with("CREATE DATABASE \"app\""))
    );
    assert!(
        executed.iter().all(|s| !s.sql.contains("app-pass")),
        "passwords never in SQL"
    );
}

/// At rest the controller writes nothing and runs no SQL: a second
/// reconcile of the same settled cluster (its status as the first wrote
/// it) patches no status and never connects to the primary; a changed
/// password (an input of the SQL) runs it again.
#[tokio::test]
async fn settled_cluster_writes_no_status_and_runs_no_sql() {
    let admin = Arc::new(FakeAdmin::default());
    let pods = || {
        Reply::Ok(list(
            "PodList",
            vec![
                pod("pg-0")
                    .ready()
                    .role("primary")
                    .state(MemberRole::Primary, 1000),
                pod("pg-1")
                    .ready()
                    .role("replica")
                    .state(MemberRole::Replica, 1000),
            ],
        ))
    };
    let overrides = |secrets: Reply| {
        vec![
            (Method::GET, SECRETS.to_owned(), secrets),
            (Method::GET, PODS.to_owned(), pods()),
            (
                Method::GET,
                LEASE.to_owned(),
                Reply::Ok(lease_object(&lease(Some("pg-0"), 4, 1000))),
            ),
        ]
    };
    let (client, mut server) = ApiServerVerifier::new();
    let ctx = context(client, admin.clone());
    server
        .serve_while(
            reconcile(Arc::new(postgres_cluster()), ctx.clone()),
            overrides(existing_secrets()),
        )
        .await
        .unwrap();
    let first = status_written(&server);
    assert!(first.sql_applied.is_some(), "{first:?}");
    assert_eq!(ctx.metrics.sql_runs.get(), 1);
    let settled = {
        let mut c = postgres_cluster();
        c.status = Some(first.clone());
        Arc::new(c)
    };

    let (client, mut server) = ApiServerVerifier::new();
    let mut again = Context::new(
        client,
        ctx.metrics.clone(),
        admin.clone(),
        "pgcluster-system".into(),
        Some("test".into()),
    );
    again.clock = || "2026-01-01T12:05:00Z".parse().unwrap();
    let again = Arc::new(again);
    server
        .serve_while(
            reconcile(settled.clone(), again.clone()),
            overrides(existing_secrets()),
        )
        .await
        .unwrap();
    assert!(
        server.seen.iter().all(|s| s.path != STATUS),
        "the status was rewritten although nothing changed"
    );
    assert_eq!(
        ctx.metrics.sql_runs.get(),
        1,
        "SQL ran with unchanged inputs"
    );
    assert_eq!(
        admin.targets.lock().unwrap().len(),
        1,
        "connected to the primary again"
    );

    let (client, mut server) = ApiServerVerifier::new();
    let changed = Reply::Ok(list(
        "SecretList",
        vec![
            secret("pg-superuser", "su-pass"),
            secret("pg-role-app", "new-app-pass"),
        ],
    ));
    let ctx3 = context(client, admin.clone());
    server
        .serve_while(reconcile(settled, ctx3.clone()), overrides(changed))
        .await
        .unwrap();
    assert_eq!(
        ctx3.metrics.sql_runs.get(),
        1,
        "a new password runs the SQL"
    );
    let third = status_written(&server);
    assert_ne!(third.sql_applied, first.sql_applied);
}

/// A replica down → Degraded (still Available); the holder's pod down →
/// Unavailable; no SQL is attempted without a ready primary.
#[tokio::test]
async fn degraded_and_unavailable_follow_pods() {
    for (pods, phase, available) in [
        (
            vec![
                pod("pg-0")
                    .ready()
                    .role("primary")
                    .state(MemberRole::Primary, 10),
                pod("pg-1"),
            ],
            ClusterPhase::Degraded,
            "True",
        ),
        (
            vec![
                pod("pg-0").role("primary"),
                pod("pg-1").ready().role("replica"),
            ],
            ClusterPhase::Unavailable,
            "False",
        ),
    ] {
        let (client, mut server) = ApiServerVerifier::new();
        let admin = Arc::new(FakeAdmin::default());
        let ctx = context(client, admin.clone());
        let overrides = vec![
            (Method::GET, SECRETS.to_owned(), existing_secrets()),
            (
                Method::GET,
                PODS.to_owned(),
                Reply::Ok(list("PodList", pods)),
            ),
            (
                Method::GET,
                LEASE.to_owned(),
                Reply::Ok(lease_object(&lease(Some("pg-0"), 2, 10))),
            ),
        ];
        server
            .serve_while(reconcile(Arc::new(postgres_cluster()), ctx), overrides)
            .await
            .unwrap();
        let status = status_written(&server);
        assert_eq!(status.phase, Some(phase));
        assert_eq!(condition(&status, "Available").status, available);
        assert_eq!(condition(&status, "Degraded").status, "True");
        // SQL only runs against a ready primary.
        assert_eq!(
            admin.targets.lock().unwrap().is_empty(),
            phase == ClusterPhase::Unavailable
        );
    }
}

/// The lease moved to another member while the old primary's pod is gone:
/// status records a failover (from, to, reason) and a Failover Event is published.
#[tokio::test]
async fn failover_is_recorded_with_an_event() {
    let (client, mut server) = ApiServerVerifier::new();
    let ctx = context(client, Arc::default());
    let previous = PostgresClusterStatus {
        primary: Some("pg-0".into()),
        lease_term: Some(4),
        ..Default::default()
    };
    let overrides = vec![
        (Method::GET, SECRETS.to_owned(), existing_secrets()),
        (
            Method::GET,
            PODS.to_owned(),
            Reply::Ok(list(
                "PodList",
                vec![
                    pod("pg-1")
                        .ready()
                        .role("primary")
                        .state(MemberRole::Primary, 50),
                ],
            )),
        ),
        (
            Method::GET,
            LEASE.to_owned(),
            Reply::Ok(lease_object(&lease(Some("pg-1"), 5, 50))),
        ),
    ];
    let obj = Arc::new(postgres_cluster().with_status(previous));
    server
        .serve_while(reconcile(obj, ctx), overrides)
        .await
        .unwrap();
    let record = status_written(&server)
        .last_failover
        .expect("a failover record");
    assert_eq!(
        (
            record.kind.as_str(),
            record.from.as_deref(),
            record.to.as_str()
        ),
        ("failover", Some("pg-0"), "pg-1")
    );
    assert_eq!(record.time, "2026-01-01T12:00:00Z");
    let event = server
        .seen
        .iter()
        .rfind(|s| s.path == EVENTS)
        .expect("an Event");
    assert_eq!(event.body["reason"], "Failover");
}

/// Orphans: an object labelled with the cluster and owned by it that the
/// build no longer produces is deleted; one not owned by it is left alone.
#[tokio::test]
async fn orphans_are_deleted_by_label_and_owner() {
    let (client, mut server) = ApiServerVerifier::new();
    let ctx = context(client, Arc::default());
    let owned = |name: &str, uid: &str| {
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": name, "namespace": "db", "labels": { "pgcluster.dev/cluster": "pg" },
                          "ownerReferences": [{ "apiVersion": "pgcluster.dev/v1alpha1", "kind": "PostgresCluster", "name": "pg", "uid": uid }] }
        })
    };
    let services = list(
        "ServiceList",
        vec![
            owned("pg-rw", UID),
            owned("pg-lb", UID),
            owned("pg-mine", "someone-else"),
        ],
    );
    let overrides = vec![
        (Method::GET, SECRETS.to_owned(), existing_secrets()),
        (
            Method::GET,
            "/api/v1/namespaces/db/services".to_owned(),
            Reply::Ok(services),
        ),
    ];
    server
        .serve_while(reconcile(Arc::new(postgres_cluster()), ctx), overrides)
        .await
        .unwrap();
    let deleted: Vec<_> = server
        .seen
        .iter()
        .filter(|s| s.method == Method::DELETE)
        .map(|s| s.path.as_str())
        .collect();
    assert_eq!(deleted, ["/api/v1/namespaces/db/services/pg-lb"]);
}

/// Deletion with retention Delete removes the cluster's Lease, then the
/// finalizer (the volumes go with the StatefulSet, whose claim retention
/// policy says Delete).
#[tokio::test]
async fn finalizer_with_delete_retention_deletes_the_lease() {
    let (client, mut server) = ApiServerVerifier::new();
    let ctx = context(client, Arc::default());
    let obj = Arc::new(
        postgres_cluster()
            .with_finalizer()
            .retention(RetentionPolicy::Delete)
            .deleting(),
    );
    let action = server
        .serve_while(reconcile(obj, ctx), vec![])
        .await
        .unwrap();
    assert_eq!(action, Action::await_change());
    assert_eq!(
        server.calls(),
        [
            ("DELETE".to_owned(), LEASE.to_owned()),
            ("PATCH".to_owned(), CLUSTER.to_owned()),
        ]
    );
    assert_eq!(server.seen[1].body["metadata"]["finalizers"], json!([]));
    assert_eq!(server.seen[1].body["metadata"]["resourceVersion"], "100");
}

/// Deletion with retention Retain (the default) of an object an older
/// controller finalized only releases the finalizer: volumes and Lease stay.
#[tokio::test]
async fn finalizer_with_retain_keeps_volumes() {
    let (client, mut server) = ApiServerVerifier::new();
    let ctx = context(client, Arc::default());
    let obj = Arc::new(postgres_cluster().with_finalizer().deleting());
    server
        .serve_while(reconcile(obj, ctx), vec![])
        .await
        .unwrap();
    assert_eq!(server.calls(), [("PATCH".to_owned(), CLUSTER.to_owned())]);
}

/// The finalizer is there only while deletion has work to do: a new
/// object with retention Delete first gets it (merge patch guarded by
/// resourceVersion); with Retain it gets none, and one an older controller
/// added is released (deleting the namespace or the CRD then never waits
/// for the controller).
#[tokio::test]
async fn finalizer_only_with_delete_retention() {
    let (client, mut server) = ApiServerVerifier::new();
    let ctx = context(client, Arc::default());
    let delete = postgres_cluster().retention(RetentionPolicy::Delete);
    server
        .serve_while(reconcile(Arc::new(delete), ctx), vec![])
        .await
        .unwrap();
    assert_eq!(server.seen[0].path, CLUSTER);
    assert_eq!(
        server.seen[0].body["metadata"]["finalizers"],
        json!([FINALIZER])
    );

    let (client, mut server) = ApiServerVerifier::new();
    let ctx = context(client, Arc::default());
    server
        .serve_while(reconcile(Arc::new(postgres_cluster()), ctx), vec![])
        .await
        .unwrap();
    assert!(
        server.seen.iter().all(|s| s.path != CLUSTER),
        "a Retain cluster got a finalizer"
    );

    let (client, mut server) = ApiServerVerifier::new();
    let ctx = context(client, Arc::default());
    server
        .serve_while(
            reconcile(Arc::new(postgres_cluster().with_finalizer()), ctx),
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(server.seen[0].path, CLUSTER);
    assert_eq!(server.seen[0].body["metadata"]["finalizers"], json!([]));
}

/// An object the API server refuses (a 422 on the StatefulSet, as for an
/// immutable field) does not stop the others: every other object is still
/// applied, the status says which object failed with the API's message and
/// what to do, and the retry waits for a spec change instead of looping.
#[tokio::test]
async fn a_refused_object_does_not_stop_the_others() {
    let (client, mut server) = ApiServerVerifier::new();
    let ctx = context(client, Arc::default());
    let obj = Arc::new(postgres_cluster());
    let statefulset = "/apis/apps/v1/namespaces/db/statefulsets/pg";
    let overrides = vec![(
        Method::PATCH,
        statefulset.to_owned(),
        Reply::Status(422, "Invalid"),
    )];
    let err = server
        .serve_while(reconcile(obj.clone(), ctx.clone()), overrides)
        .await
        .unwrap_err();
    assert_eq!(err.category(), "apply");
    assert!(err.to_string().contains("StatefulSet pg (422)"), "{err}");
    let patched: Vec<&str> = applies(&server).iter().map(|s| s.path.as_str()).collect();
    assert!(patched.contains(&statefulset), "{patched:?}");
    for after in ["poddisruptionbudgets/pg", "networkpolicies/"] {
        assert!(
            patched.iter().any(|p| p.contains(after)),
            "{after} was not applied after the refused StatefulSet: {patched:?}"
        );
    }
    let status = status_written(&server);
    let ready = condition(&status, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "ApplyFailed")
    );
    assert!(
        ready.message.contains("StatefulSet pg (422)"),
        "{}",
        ready.message
    );
    assert!(
        ready.message.contains("--cascade=orphan"),
        "{}",
        ready.message
    );
    assert_eq!(condition(&status, "Progressing").reason, "ApplyFailed");
    assert_eq!(
        error_policy(obj, &err, ctx),
        Action::await_change(),
        "a 422 is not retried until the spec changes"
    );
}

/// One cluster's API failure is its own: the error backs off exponentially
/// per object, another object's backoff is independent, success resets it.
#[tokio::test]
async fn transient_errors_back_off_per_object() {
    let (client, mut server) = ApiServerVerifier::new();
    let ctx = context(client, Arc::default());
    let obj = Arc::new(postgres_cluster());
    let overrides = vec![(
        Method::GET,
        SECRETS.to_owned(),
        Reply::Status(503, "ServiceUnavailable"),
    )];
    let err = server
        .serve_while(reconcile(obj.clone(), ctx.clone()), overrides)
        .await
        .unwrap_err();
    assert_eq!(err.category(), "dereference");
    assert_eq!(
        error_policy(obj.clone(), &err, ctx.clone()),
        Action::requeue(BACKOFF_START)
    );
    assert_eq!(
        error_policy(obj.clone(), &err, ctx.clone()),
        Action::requeue(BACKOFF_START * 2)
    );
    let mut other = postgres_cluster();
    other.metadata.name = Some("other".into());
    assert_eq!(
        error_policy(Arc::new(other), &err, ctx.clone()),
        Action::requeue(BACKOFF_START)
    );
    ctx.succeeded(&obj);
    assert_eq!(
        error_policy(obj, &err, ctx.clone()),
        Action::requeue(BACKOFF_START)
    );
    let mut metrics = String::new();
    let mut registry = prometheus_client::registry::Registry::default();
    let m = Metrics::register(&mut registry);
    m.failed(err.category());
    prometheus_client::encoding::text::encode(&mut metrics, &registry).unwrap();
    assert!(metrics.contains("category=\"dereference\""));
}
