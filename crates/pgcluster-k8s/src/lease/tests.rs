//! tower-test scenarios of the Lease coordinator and the pod relabelling.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::collections::BTreeSet;

use http::Method;
use pgcluster_ha::machine::{LeaseOutcome, Lsn, MemberRole, Millis, RoleLabel, Timeline};
use serde_json::json;

use super::*;
use crate::pod_role::{PodLabeler, Relabel};
use crate::testing::api_server::{
    ApiServerVerifier, Reply, already_exists, conflict, list, not_found,
};

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/db/leases/pg-leader";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/db/leases";
const PODS: &str = "/api/v1/namespaces/db/pods";

fn record(holder: &str, term: u64) -> LeaseRecord {
    LeaseRecord {
        holder: Some(MemberName::from(holder)),
        term,
        renewed_at: Millis(1_000),
        duration_ms: 15_000,
        system_identifier: None,
        timeline: Timeline(1),
        history: vec![],
        max_timeline: Timeline(1),
        primary_lsn: Lsn(0),
        sync_standbys: BTreeSet::new(),
    }
}

fn lease_object(
    rv: &str,
    lease: Option<&Lease>,
    switchover: Option<&SwitchoverRequest>,
) -> serde_json::Value {
    let mut annotations = serde_json::Map::new();
    if let Some(l) = lease {
        annotations.insert(
            ANNOTATION_RECORD.into(),
            json!(serde_json::to_string(l).unwrap()),
        );
    }
    if let Some(s) = switchover {
        annotations.insert(
            ANNOTATION_SWITCHOVER.into(),
            json!(serde_json::to_string(s).unwrap()),
        );
    }
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": { "name": "pg-leader", "namespace": "db", "resourceVersion": rv, "annotations": annotations },
        "spec": { "holderIdentity": lease.and_then(|l| l.record.holder.as_ref()).map(|h| h.to_string()), "leaseTransitions": 1 }
    })
}

fn coordinator(client: kube::Client) -> KubeLeaseCoordinator {
    KubeLeaseCoordinator::new(client, "db", &ClusterName::new("pg").unwrap())
}

fn body_lease(body: &serde_json::Value) -> Lease {
    serde_json::from_str(
        body["metadata"]["annotations"][ANNOTATION_RECORD]
            .as_str()
            .unwrap(),
    )
    .unwrap()
}

/// First acquisition: no Lease exists, expected version 0 → create, Won with version 1,
/// the spec mirrors the holder for kubectl users.
#[tokio::test]
async fn cas_creates_the_lease_on_first_acquire() {
    let (client, mut server) = ApiServerVerifier::new();
    let task = tokio::spawn(async move {
        coordinator(client)
            .compare_and_swap_lease(LeaseVersion(0), record("pg-0", 1))
            .await
    });
    server.expect(Method::GET, LEASE, not_found()).await;
    let post = server.expect(Method::POST, LEASES, Reply::Echo).await;
    assert_eq!(post.body["spec"]["holderIdentity"], "pg-0");
    assert_eq!(post.body["spec"]["leaseDurationSeconds"], 15);
    assert_eq!(post.body["spec"]["leaseTransitions"], 1);
    assert_eq!(body_lease(&post.body).version, LeaseVersion(1));
    let outcome = task.await.unwrap().unwrap();
    assert_eq!(
        outcome,
        CasOutcome::Won(Lease {
            version: LeaseVersion(1),
            record: record("pg-0", 1)
        })
    );
}

/// Create race: two members see no Lease; the second create gets 409
/// AlreadyExists → Lost with the winner's lease, never a second leader.
#[tokio::test]
async fn cas_create_race_is_lost() {
    let (client, mut server) = ApiServerVerifier::new();
    let task = tokio::spawn(async move {
        coordinator(client)
            .compare_and_swap_lease(LeaseVersion(0), record("pg-1", 1))
            .await
    });
    let winner = Lease {
        version: LeaseVersion(1),
        record: record("pg-0", 1),
    };
    server.expect(Method::GET, LEASE, not_found()).await;
    server.expect(Method::POST, LEASES, already_exists()).await;
    server
        .expect(
            Method::GET,
            LEASE,
            Reply::Ok(lease_object("7", Some(&winner), None)),
        )
        .await;
    assert_eq!(task.await.unwrap().unwrap(), CasOutcome::Lost(Some(winner)));
}

/// Renewal by the holder: replace carries the read's resourceVersion, bumps
/// the version, keeps leaseTransitions (same holder).
#[tokio::test]
async fn cas_renew_replaces_with_resource_version() {
    let (client, mut server) = ApiServerVerifier::new();
    let current = Lease {
        version: LeaseVersion(3),
        record: record("pg-0", 2),
    };
    let task = tokio::spawn(async move {
        coordinator(client)
            .compare_and_swap_lease(LeaseVersion(3), record("pg-0", 2))
            .await
    });
    server
        .expect(
            Method::GET,
            LEASE,
            Reply::Ok(lease_object("5", Some(&current), None)),
        )
        .await;
    let put = server.expect(Method::PUT, LEASE, Reply::Echo).await;
    assert_eq!(put.body["metadata"]["resourceVersion"], "5");
    assert_eq!(
        put.body["spec"]["leaseTransitions"], 1,
        "same holder: no transition"
    );
    assert_eq!(body_lease(&put.body).version, LeaseVersion(4));
    assert!(
        matches!(task.await.unwrap().unwrap(), CasOutcome::Won(l) if l.version == LeaseVersion(4))
    );
}

/// A 409 on acquire because another member won in between is Lost (with the
/// winner's lease), which the agent's executor reports to the machine as
/// `LeaseOutcome::Lost`: the machine then stays a replica (its batch stops
/// before `Promote`, per the executor contract).
#[tokio::test]
async fn cas_conflict_after_a_competing_write_is_lost() {
    let (client, mut server) = ApiServerVerifier::new();
    let expired = Lease {
        version: LeaseVersion(3),
        record: record("pg-0", 2),
    };
    let winner = Lease {
        version: LeaseVersion(4),
        record: record("pg-2", 3),
    };
    let task = tokio::spawn(async move {
        coordinator(client)
            .compare_and_swap_lease(LeaseVersion(3), record("pg-1", 3))
            .await
    });
    server
        .expect(
            Method::GET,
            LEASE,
            Reply::Ok(lease_object("5", Some(&expired), None)),
        )
        .await;
    server.expect(Method::PUT, LEASE, conflict()).await;
    server
        .expect(
            Method::GET,
            LEASE,
            Reply::Ok(lease_object("6", Some(&winner), None)),
        )
        .await;
    let outcome = task.await.unwrap().unwrap();
    assert_eq!(outcome, CasOutcome::Lost(Some(winner.clone())));
    let for_machine = match outcome {
        CasOutcome::Won(l) => LeaseOutcome::Won(l),
        CasOutcome::Lost(l) => LeaseOutcome::Lost(l),
    };
    assert_eq!(for_machine, LeaseOutcome::Lost(Some(winner)));
    server.expect_silence(Duration::from_millis(50)).await;
}

/// A 409 caused by an unrelated change (a switchover request written between
/// read and write) is retried: same record version → the write goes through,
/// keeping the new annotation.
#[tokio::test]
async fn cas_conflict_from_unrelated_change_is_retried() {
    let (client, mut server) = ApiServerVerifier::new();
    let current = Lease {
        version: LeaseVersion(3),
        record: record("pg-0", 2),
    };
    let request = SwitchoverRequest {
        id: 9,
        target: None,
        forced: false,
    };
    let task = tokio::spawn(async move {
        coordinator(client)
            .compare_and_swap_lease(LeaseVersion(3), record("pg-0", 2))
            .await
    });
    server
        .expect(
            Method::GET,
            LEASE,
            Reply::Ok(lease_object("5", Some(&current), None)),
        )
        .await;
    server.expect(Method::PUT, LEASE, conflict()).await;
    server
        .expect(
            Method::GET,
            LEASE,
            Reply::Ok(lease_object("6", Some(&current), Some(&request))),
        )
        .await;
    let put = server.expect(Method::PUT, LEASE, Reply::Echo).await;
    assert_eq!(put.body["metadata"]["resourceVersion"], "6");
    assert!(put.body["metadata"]["annotations"][ANNOTATION_SWITCHOVER].is_string());
    assert!(matches!(task.await.unwrap().unwrap(), CasOutcome::Won(_)));
}

/// A stale expectation is Lost without any write.
#[tokio::test]
async fn cas_with_stale_version_does_not_write() {
    let (client, mut server) = ApiServerVerifier::new();
    let current = Lease {
        version: LeaseVersion(5),
        record: record("pg-0", 4),
    };
    let c2 = current.clone();
    let task = tokio::spawn(async move {
        coordinator(client)
            .compare_and_swap_lease(LeaseVersion(4), record("pg-1", 5))
            .await
    });
    server
        .expect(
            Method::GET,
            LEASE,
            Reply::Ok(lease_object("9", Some(&c2), None)),
        )
        .await;
    assert_eq!(
        task.await.unwrap().unwrap(),
        CasOutcome::Lost(Some(current))
    );
    server.expect_silence(Duration::from_millis(50)).await;
}

/// An API server that is down is an error (the machine treats it as "maybe"), not Lost.
#[tokio::test]
async fn cas_server_error_is_unavailable() {
    let (client, mut server) = ApiServerVerifier::new();
    let task = tokio::spawn(async move {
        coordinator(client)
            .compare_and_swap_lease(LeaseVersion(3), record("pg-0", 2))
            .await
    });
    server
        .expect(Method::GET, LEASE, Reply::Status(503, "ServiceUnavailable"))
        .await;
    let err = task.await.unwrap().unwrap_err();
    assert_eq!(err.category(), "unavailable");
}

fn member(name: &str, role: MemberRole) -> MemberState {
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
        sync_eligible: false,
        last_seen: Millis(5),
        heartbeat: 1,
    }
}

fn pod(name: &str, state: Option<&str>) -> serde_json::Value {
    let mut annotations = serde_json::Map::new();
    if let Some(s) = state {
        annotations.insert(ANNOTATION_MEMBER_STATE.into(), json!(s));
    }
    json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": name, "namespace": "db", "annotations": annotations } })
}

/// read_view: lease and switchover from the Lease, members from the pods'
/// annotations (listed by the cluster's label selector); an undecodable
/// member annotation is skipped, not fatal.
#[tokio::test]
async fn read_view_collects_lease_members_and_request() {
    let (client, mut server) = ApiServerVerifier::new();
    let current = Lease {
        version: LeaseVersion(2),
        record: record("pg-0", 1),
    };
    let request = SwitchoverRequest {
        id: 4,
        target: Some(MemberName::from("pg-1")),
        forced: false,
    };
    let task = tokio::spawn(async move { coordinator(client).read_view().await });
    server
        .expect(
            Method::GET,
            LEASE,
            Reply::Ok(lease_object("3", Some(&current), Some(&request))),
        )
        .await;
    let m0 = serde_json::to_string(&member("pg-0", MemberRole::Primary)).unwrap();
    let m1 = serde_json::to_string(&member("pg-1", MemberRole::Replica)).unwrap();
    let listed = server
        .expect(
            Method::GET,
            PODS,
            Reply::Ok(list(
                "PodList",
                vec![
                    pod("pg-0", Some(&m0)),
                    pod("pg-1", Some(&m1)),
                    pod("pg-2", Some("{bad")),
                    pod("pg-3", None),
                ],
            )),
        )
        .await;
    assert_eq!(
        listed.param("labelSelector").as_deref(),
        Some("pgcluster.dev/cluster=pg,app.kubernetes.io/component=postgres")
    );
    let view = task.await.unwrap().unwrap();
    assert_eq!(view.lease, Some(current));
    assert_eq!(view.switchover, Some(request));
    assert_eq!(
        view.members.keys().map(|m| m.as_str()).collect::<Vec<_>>(),
        ["pg-0", "pg-1"]
    );
}

/// A corrupt lease record is reported as such (never guessed around).
#[tokio::test]
async fn read_view_reports_a_corrupt_record() {
    let (client, mut server) = ApiServerVerifier::new();
    let task = tokio::spawn(async move { coordinator(client).read_view().await });
    let mut obj = lease_object("3", None, None);
    obj["metadata"]["annotations"][ANNOTATION_RECORD] = json!("not json");
    server.expect(Method::GET, LEASE, Reply::Ok(obj)).await;
    assert_eq!(task.await.unwrap().unwrap_err().category(), "corrupt");
}

/// publish_member is one merge patch of the member's own pod (no contention on the Lease).
#[tokio::test]
async fn publish_member_patches_own_pod() {
    let (client, mut server) = ApiServerVerifier::new();
    let state = member("pg-1", MemberRole::Replica);
    let s2 = state.clone();
    let task = tokio::spawn(async move { coordinator(client).publish_member(s2).await });
    let patch = server
        .expect(
            Method::PATCH,
            &format!("{PODS}/pg-1"),
            Reply::Ok(pod("pg-1", None)),
        )
        .await;
    let stored: MemberState = serde_json::from_str(
        patch.body["metadata"]["annotations"][ANNOTATION_MEMBER_STATE]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(stored, state);
    task.await.unwrap().unwrap();
}

/// A second switchover request while one is pending is refused; clearing
/// removes only the named request.
#[tokio::test]
async fn switchover_request_and_clear() {
    let (client, mut server) = ApiServerVerifier::new();
    let current = Lease {
        version: LeaseVersion(2),
        record: record("pg-0", 1),
    };
    let pending = SwitchoverRequest {
        id: 1,
        target: None,
        forced: false,
    };
    let (c, p) = (current.clone(), pending.clone());
    let task = tokio::spawn(async move {
        let co = coordinator(client);
        let first = co
            .request_switchover(SwitchoverRequest {
                id: 2,
                target: None,
                forced: false,
            })
            .await;
        let other = co.clear_switchover(7).await;
        let cleared = co.clear_switchover(1).await;
        (first, other, cleared)
    });
    server
        .expect(
            Method::GET,
            LEASE,
            Reply::Ok(lease_object("3", Some(&c), Some(&p))),
        )
        .await;
    server
        .expect(
            Method::GET,
            LEASE,
            Reply::Ok(lease_object("3", Some(&c), Some(&p))),
        )
        .await;
    server
        .expect(
            Method::GET,
            LEASE,
            Reply::Ok(lease_object("3", Some(&c), Some(&p))),
        )
        .await;
    let put = server.expect(Method::PUT, LEASE, Reply::Echo).await;
    assert!(
        put.body["metadata"]["annotations"]
            .get(ANNOTATION_SWITCHOVER)
            .is_none()
    );
    assert_eq!(
        body_lease(&put.body),
        current,
        "clearing never touches the record"
    );
    let (first, other, cleared) = task.await.unwrap();
    assert!(matches!(
        first,
        Err(CoordinatorError::SwitchoverPending { pending: 1 })
    ));
    other.unwrap();
    cleared.unwrap();
}

/// Relabelling: the new primary labels itself, then the old primary's pod —
/// a plain merge patch that works whatever the old pod's node state; a pod
/// already deleted counts as done.
#[tokio::test]
async fn take_over_relabels_self_then_old_primary() {
    let (client, mut server) = ApiServerVerifier::new();
    let task = tokio::spawn(async move {
        let labeler = PodLabeler::new(client.clone(), "db");
        labeler.take_over("pg-1", Some("pg-0")).await.unwrap();
        labeler.set_role("pg-0", RoleLabel::Replica).await.unwrap()
    });
    let me = server
        .expect(
            Method::PATCH,
            &format!("{PODS}/pg-1"),
            Reply::Ok(pod("pg-1", None)),
        )
        .await;
    assert_eq!(
        me.body,
        json!({"metadata": {"labels": {"pgcluster.dev/role": "primary"}}})
    );
    let old = server
        .expect(
            Method::PATCH,
            &format!("{PODS}/pg-0"),
            Reply::Ok(pod("pg-0", None)),
        )
        .await;
    assert_eq!(
        old.body,
        json!({"metadata": {"labels": {"pgcluster.dev/role": "replica"}}})
    );
    server
        .expect(Method::PATCH, &format!("{PODS}/pg-0"), not_found())
        .await;
    assert_eq!(task.await.unwrap(), Relabel::PodGone);
}

/// A hung API server during a renewal gives `Timeout` within the call's
/// deadline (never `Won`): the agent's machine then counts the renewal as
/// failed and fences itself before its lease can expire elsewhere.
#[tokio::test]
async fn renew_against_a_hung_api_server_times_out() {
    let (client, mut server) = ApiServerVerifier::new();
    let task = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let out = coordinator(client)
            .with_timeout(Duration::from_millis(100))
            .compare_and_swap_lease(LeaseVersion(3), record("pg-0", 2))
            .await;
        (out, started.elapsed())
    });
    server.hang_next().await;
    let (out, took) = task.await.unwrap();
    assert_eq!(out.unwrap_err().category(), "timeout");
    assert!(took < Duration::from_secs(2), "{took:?}");
}
