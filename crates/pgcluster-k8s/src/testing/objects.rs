//! YAML-first fixtures of API objects (PostgresCluster, pods, Lease) with
//! chainable modifiers, for the controller and CLI scenarios.

use pgcluster_core::api::v1alpha1::{PostgresCluster, PostgresClusterStatus, RetentionPolicy};
use pgcluster_ha::machine::{
    Lease, LeaseRecord, LeaseVersion, Lsn, MemberName, MemberRole, MemberState, Millis, Timeline,
};

use crate::lease::{ANNOTATION_MEMBER_STATE, ANNOTATION_RECORD};

/// The uid of [`postgres_cluster`].
pub const UID: &str = "7d1b0c9e-0000-4000-8000-000000000001";

const CLUSTER_YAML: &str = r#"
apiVersion: pgcluster.dev/v1alpha1
kind: PostgresCluster
metadata:
  name: pg
  namespace: db
  uid: 7d1b0c9e-0000-4000-8000-000000000001
  generation: 3
  resourceVersion: "100"
spec:
  instances: 2
  databases:
    - name: app
      owner: app
  roles:
    - name: app
  access:
    - name: apps
      from:
        namespaces: [apps]
      databases: [app]
      roles: [app]
"#;

/// A valid two-instance cluster `pg` in namespace `db` (retention Retain,
/// so without the finalizer).
pub fn postgres_cluster() -> PostgresCluster {
    serde_norway::from_str(CLUSTER_YAML).expect("the fixture YAML parses")
}

/// Modifiers of [`postgres_cluster`].
pub trait ClusterFixture: Sized {
    /// Without the controller's finalizer (a brand-new object).
    fn without_finalizer(self) -> Self;
    /// With the controller's finalizer (retention Delete, or an object an
    /// older controller finalized).
    fn with_finalizer(self) -> Self;
    /// Marked for deletion.
    fn deleting(self) -> Self;
    /// With `spec.storage.retention`.
    fn retention(self, retention: RetentionPolicy) -> Self;
    /// With an invalid spec (0 instances, a database owned by an undeclared role).
    fn invalid(self) -> Self;
    /// With a status.
    fn with_status(self, status: PostgresClusterStatus) -> Self;
}

impl ClusterFixture for PostgresCluster {
    fn without_finalizer(mut self) -> Self {
        self.metadata.finalizers = None;
        self
    }
    fn with_finalizer(mut self) -> Self {
        self.metadata.finalizers = Some(vec![crate::controller::FINALIZER.to_owned()]);
        self
    }
    fn deleting(mut self) -> Self {
        self.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-01-01T00:00:00Z".parse().expect("literal timestamp"),
            ));
        self
    }
    fn retention(mut self, retention: RetentionPolicy) -> Self {
        self.spec
            .storage
            .get_or_insert_with(Default::default)
            .retention = Some(retention);
        self
    }
    fn invalid(mut self) -> Self {
        self.spec.instances = Some(0);
        self.spec.databases[0].owner = "nobody".to_owned();
        self
    }
    fn with_status(mut self, status: PostgresClusterStatus) -> Self {
        self.status = Some(status);
        self
    }
}

/// A pod of cluster `pg` (JSON), not ready, without role label.
pub fn pod(name: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": "db",
            "labels": { "pgcluster.dev/cluster": "pg", "app.kubernetes.io/component": "postgres" },
            "annotations": {}
        },
        "status": { "conditions": [ { "type": "Ready", "status": "False" } ] }
    })
}

/// Modifiers of [`pod`] JSON.
pub trait PodFixture: Sized {
    /// Ready condition True.
    fn ready(self) -> Self;
    /// Role label.
    fn role(self, role: &str) -> Self;
    /// Member state annotation with `role` at `lsn`.
    fn state(self, role: MemberRole, lsn: u64) -> Self;
}

impl PodFixture for serde_json::Value {
    fn ready(mut self) -> Self {
        self["status"]["conditions"][0]["status"] = "True".into();
        self
    }
    fn role(mut self, role: &str) -> Self {
        self["metadata"]["labels"]["pgcluster.dev/role"] = role.into();
        self
    }
    fn state(mut self, role: MemberRole, lsn: u64) -> Self {
        let name = self["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let state = member_state(&name, role, lsn);
        self["metadata"]["annotations"][ANNOTATION_MEMBER_STATE] = serde_json::to_string(&state)
            .expect("member states serialize")
            .into();
        self
    }
}

/// A member state.
pub fn member_state(name: &str, role: MemberRole, lsn: u64) -> MemberState {
    MemberState {
        name: MemberName::from(name),
        role,
        healthy: true,
        timeline: Timeline(1),
        received_lsn: Lsn(lsn),
        replayed_lsn: Lsn(lsn),
        flushed_lsn: Lsn(lsn),
        system_identifier: None,
        following: None,
        sync_eligible: false,
        last_seen: Millis(1),
        heartbeat: 1,
    }
}

/// A lease held by `holder` with `term` (`None`: released).
pub fn lease(holder: Option<&str>, term: u64, primary_lsn: u64) -> Lease {
    Lease {
        version: LeaseVersion(term),
        record: LeaseRecord {
            holder: holder.map(MemberName::from),
            term,
            renewed_at: Millis(1),
            duration_ms: 15_000,
            system_identifier: None,
            timeline: Timeline(1),
            history: vec![],
            max_timeline: Timeline(1),
            primary_lsn: Lsn(primary_lsn),
            sync_standbys: Default::default(),
        },
    }
}

/// The Lease object `pg-leader` carrying `lease` (JSON).
pub fn lease_object(lease: &Lease) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {
            "name": "pg-leader", "namespace": "db", "resourceVersion": "5",
            "annotations": { ANNOTATION_RECORD: serde_json::to_string(lease).expect("leases serialize") }
        },
        "spec": {}
    })
}
