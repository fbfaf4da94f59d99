//! Request shapes of the Kubernetes cluster operations, against a mocked API server.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use ::http::Method;
use serde_json::json;

use pgcluster_ha::coordinator::Coordinator;
use pgcluster_ha::machine::{MemberName, SwitchoverRequest};

use super::*;
use crate::testing::api_server::{ApiServerVerifier, Reply, list};
use crate::testing::objects::{PodFixture, lease, lease_object, pod, postgres_cluster};

/// The pod list of a healthy pair: pg-0 primary, pg-1 replica, both fresh.
fn primary_and_replica_pods() -> Reply {
    Reply::Ok(list(
        "PodList",
        vec![
            pod("pg-0").state(MemberRole::Primary, 10),
            pod("pg-1").state(MemberRole::Replica, 10),
        ],
    ))
}

/// The pod list once pg-1 took over and serves as primary.
fn handed_over_pods() -> Reply {
    Reply::Ok(list(
        "PodList",
        vec![
            pod("pg-0").state(MemberRole::Replica, 11),
            pod("pg-1").state(MemberRole::Primary, 11),
        ],
    ))
}

const CLUSTER: &str = "/apis/pgcluster.dev/v1alpha1/namespaces/db/postgresclusters/pg";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/db/leases/pg-leader";
const PODS: &str = "/api/v1/namespaces/db/pods";

/// apply is one server-side apply with the CLI's field manager, without status.
#[tokio::test]
async fn apply_is_server_side_with_cli_manager() {
    let (client, mut server) = ApiServerVerifier::new();
    let mut obj = postgres_cluster();
    obj.status = Some(PostgresClusterStatus::default());
    let out = server
        .serve_while(apply(&client, &obj), vec![])
        .await
        .unwrap();
    assert_eq!(out.name_any(), "pg");
    let s = &server.seen[0];
    assert_eq!(
        (s.method.clone(), s.path.as_str()),
        (Method::PATCH, CLUSTER)
    );
    assert_eq!(s.param("fieldManager").as_deref(), Some(CLI_FIELD_MANAGER));
    assert!(s.body.get("status").is_none());
}

/// wait_ready reports progress and returns once Ready is True for the generation.
#[tokio::test]
async fn wait_ready_reports_until_ready() {
    let (client, mut server) = ApiServerVerifier::new();
    let creating = serde_json::to_value(postgres_cluster()).unwrap();
    let mut ready = creating.clone();
    ready["status"] = json!({
        "phase": "Healthy", "observedGeneration": 3,
        "conditions": [{ "type": "Ready", "status": "True", "reason": "Healthy", "message": "2/2 instances ready; primary pg-0", "lastTransitionTime": "2026-01-01T00:00:00Z" }]
    });
    let mut lines = vec![];
    let overrides = vec![
        (Method::GET, CLUSTER.to_owned(), Reply::Ok(creating)),
        (Method::GET, CLUSTER.to_owned(), Reply::Ok(ready)),
    ];
    let fut = wait_ready(
        &client,
        "db",
        "pg",
        Duration::from_secs(5),
        Duration::from_millis(1),
        |l| lines.push(l.to_owned()),
    );
    let out = server.serve_while(fut, overrides).await.unwrap();
    assert!(is_ready(&out));
    assert_eq!(lines[0], "waiting for the controller to report status");
    assert!(lines[1].contains("Healthy"));
}

/// A failover while the primary is healthy is refused (no request written).
#[tokio::test]
async fn failover_refused_while_primary_healthy() {
    let (client, mut server) = ApiServerVerifier::new();
    let pods = primary_and_replica_pods;
    // It renews the Lease between the two reads: alive.
    let overrides = vec![
        (
            Method::GET,
            LEASE.to_owned(),
            Reply::Ok(lease_object(&lease(Some("pg-0"), 2, 10))),
        ),
        (Method::GET, PODS.to_owned(), pods()),
        (
            Method::GET,
            LEASE.to_owned(),
            Reply::Ok(lease_object(&lease(Some("pg-0"), 3, 10))),
        ),
        (Method::GET, PODS.to_owned(), pods()),
    ];
    let err = server
        .serve_while(
            failover(&client, "db", "pg", "pg-1", 1, Duration::from_secs(1)),
            overrides,
        )
        .await
        .unwrap_err();
    assert_eq!(err.category(), "primary_healthy");
    assert!(server.seen.iter().all(|s| s.method == Method::GET));
}

/// A switchover writes the request on the Lease and returns the new
/// holder once it serves as primary.
#[tokio::test]
async fn switchover_requests_and_waits() {
    let (client, mut server) = ApiServerVerifier::new();
    let pods = primary_and_replica_pods;
    let before = || Reply::Ok(lease_object(&lease(Some("pg-0"), 2, 10)));
    let overrides = vec![
        (Method::GET, LEASE.to_owned(), before()),
        (Method::GET, PODS.to_owned(), pods()),
        (Method::GET, LEASE.to_owned(), before()),
        (Method::PUT, LEASE.to_owned(), Reply::Echo),
        (
            Method::GET,
            LEASE.to_owned(),
            Reply::Ok(lease_object(&lease(Some("pg-1"), 3, 10))),
        ),
        (Method::GET, PODS.to_owned(), handed_over_pods()),
    ];
    let to = server
        .serve_while(
            switchover(
                &client,
                "db",
                "pg",
                Some("pg-1"),
                42,
                Duration::from_secs(5),
            ),
            overrides,
        )
        .await
        .unwrap();
    assert_eq!(to, "pg-1");
    let put = server
        .seen
        .iter()
        .find(|s| s.method == Method::PUT)
        .unwrap();
    let request: SwitchoverRequest = serde_json::from_str(
        put.body["metadata"]["annotations"][crate::lease::ANNOTATION_SWITCHOVER]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        request,
        SwitchoverRequest {
            id: 42,
            target: Some(MemberName::from("pg-1")),
            forced: false,
        }
    );
    // The agents read the written Lease through the same coordinator.
    let (agent_client, mut agent_server) = ApiServerVerifier::new();
    let view = agent_server
        .serve_while(
            coordinator(&agent_client, "db", "pg").unwrap().read_view(),
            vec![(Method::GET, LEASE.to_owned(), Reply::Ok(put.body.clone()))],
        )
        .await
        .unwrap();
    assert_eq!(view.switchover, Some(request));
    assert_eq!(
        view.lease.unwrap().record.holder,
        Some(MemberName::from("pg-0")),
        "writing the request leaves the lease record as it was"
    );
}

/// status reads the object, then the Lease and the instance pods (by
/// label) once each, and reports every pod with its node and readiness.
#[tokio::test]
async fn status_reads_object_lease_and_pods() {
    let (client, mut server) = ApiServerVerifier::new();
    let mut primary = pod("pg-0").ready().state(MemberRole::Primary, 300);
    primary["spec"] = json!({ "nodeName": "node-a", "containers": [] });
    primary["status"]["phase"] = "Running".into();
    let mut pending = pod("pg-1");
    pending["status"]["phase"] = "Pending".into();
    let overrides = vec![
        (
            Method::GET,
            CLUSTER.to_owned(),
            Reply::Ok(serde_json::to_value(postgres_cluster()).unwrap()),
        ),
        (
            Method::GET,
            LEASE.to_owned(),
            Reply::Ok(lease_object(&lease(Some("pg-0"), 4, 300))),
        ),
        (
            Method::GET,
            PODS.to_owned(),
            Reply::Ok(list("PodList", vec![pending, primary])),
        ),
    ];
    let report = server
        .serve_while(status(&client, "db", "pg"), overrides)
        .await
        .unwrap();
    assert_eq!(
        server.calls(),
        vec![
            ("GET".to_owned(), CLUSTER.to_owned()),
            ("GET".to_owned(), LEASE.to_owned()),
            ("GET".to_owned(), PODS.to_owned()),
        ]
    );
    assert_eq!(
        server.seen[2].param("labelSelector").as_deref(),
        Some("pgcluster.dev/cluster=pg,app.kubernetes.io/component=postgres")
    );
    let lease = report.view.lease.unwrap();
    assert_eq!(
        (lease.record.holder, lease.record.term),
        (Some(MemberName::from("pg-0")), 4)
    );
    assert_eq!(
        report
            .view
            .members
            .keys()
            .map(MemberName::as_str)
            .collect::<Vec<_>>(),
        vec!["pg-0"],
        "only pods carrying a member state are members"
    );
    assert_eq!(
        report.pods,
        vec![
            PodInfo {
                name: "pg-0".to_owned(),
                node: Some("node-a".to_owned()),
                phase: "Running".to_owned(),
                ready: true,
            },
            PodInfo {
                name: "pg-1".to_owned(),
                node: None,
                phase: "Pending".to_owned(),
                ready: false,
            },
        ]
    );
}

/// A failover once the primary is unhealthy writes a forced request for
/// the target and returns when the target holds the lease.
#[tokio::test]
async fn failover_writes_forced_request() {
    let (client, mut server) = ApiServerVerifier::new();
    let mut failed = pod("pg-0").state(MemberRole::Primary, 10);
    let mut state = crate::testing::objects::member_state("pg-0", MemberRole::Primary, 10);
    state.healthy = false;
    failed["metadata"]["annotations"][crate::lease::ANNOTATION_MEMBER_STATE] =
        serde_json::to_string(&state).unwrap().into();
    let pods = || {
        Reply::Ok(list(
            "PodList",
            vec![failed.clone(), pod("pg-1").state(MemberRole::Replica, 9)],
        ))
    };
    let before = || Reply::Ok(lease_object(&lease(Some("pg-0"), 2, 10)));
    let overrides = vec![
        (Method::GET, LEASE.to_owned(), before()),
        (Method::GET, PODS.to_owned(), pods()),
        (Method::GET, LEASE.to_owned(), before()),
        (Method::PUT, LEASE.to_owned(), Reply::Echo),
        (
            Method::GET,
            LEASE.to_owned(),
            Reply::Ok(lease_object(&lease(Some("pg-1"), 3, 10))),
        ),
        (Method::GET, PODS.to_owned(), handed_over_pods()),
    ];
    let to = server
        .serve_while(
            failover(&client, "db", "pg", "pg-1", 7, Duration::from_secs(5)),
            overrides,
        )
        .await
        .unwrap();
    assert_eq!(to, "pg-1");
    let put = server
        .seen
        .iter()
        .find(|s| s.method == Method::PUT)
        .unwrap();
    let object: k8s_openapi::api::coordination::v1::Lease =
        serde_json::from_value(put.body.clone()).unwrap();
    assert_eq!(
        crate::lease::stored_switchover(&object).unwrap(),
        Some(SwitchoverRequest::forced_failover(
            7,
            MemberName::from("pg-1")
        ))
    );
}

/// A request the primary clears while keeping the lease is reported as
/// refused (not waited on until the timeout).
#[tokio::test]
async fn switchover_cleared_without_handover_is_refused() {
    let (client, mut server) = ApiServerVerifier::new();
    let pods = primary_and_replica_pods;
    let held = || Reply::Ok(lease_object(&lease(Some("pg-0"), 2, 10)));
    let mut overrides = vec![
        (Method::GET, LEASE.to_owned(), held()),
        (Method::GET, PODS.to_owned(), pods()),
        (Method::GET, LEASE.to_owned(), held()),
        (Method::PUT, LEASE.to_owned(), Reply::Echo),
    ];
    for _ in 0..2 {
        overrides.push((Method::GET, LEASE.to_owned(), held()));
        overrides.push((Method::GET, PODS.to_owned(), pods()));
    }
    let err = server
        .serve_while(
            switchover(&client, "db", "pg", None, 5, Duration::from_secs(30)),
            overrides,
        )
        .await
        .unwrap_err();
    assert_eq!(err.category(), "refused", "{err}");
    assert!(err.to_string().contains("pg-0"), "{err}");
}

/// A switchover to the current primary is refused before anything is written.
#[tokio::test]
async fn switchover_to_primary_writes_nothing() {
    let (client, mut server) = ApiServerVerifier::new();
    let overrides = vec![
        (
            Method::GET,
            LEASE.to_owned(),
            Reply::Ok(lease_object(&lease(Some("pg-0"), 2, 10))),
        ),
        (
            Method::GET,
            PODS.to_owned(),
            Reply::Ok(list(
                "PodList",
                vec![pod("pg-0").state(MemberRole::Primary, 10)],
            )),
        ),
    ];
    let err = server
        .serve_while(
            switchover(&client, "db", "pg", Some("pg-0"), 1, Duration::from_secs(1)),
            overrides,
        )
        .await
        .unwrap_err();
    assert_eq!(err.category(), "already_primary");
    assert!(server.seen.iter().all(|s| s.method == Method::GET));
}
