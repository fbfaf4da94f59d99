//! [`KubeLeaseCoordinator`]: the HA [`Coordinator`] on a Kubernetes
//! `coordination.k8s.io/v1` Lease, used by the agents inside pods and read by
//! the controller and the CLI.
//!
//! # Where each piece lives
//!
//! | piece | where | written by |
//! |---|---|---|
//! | [`LeaseRecord`] + its [`LeaseVersion`] | annotation [`ANNOTATION_RECORD`] (JSON of [`Lease`]) on the Lease `<cluster>-leader` | the lease holder / an acquirer (compare-and-swap) |
//! | holder, duration, renew time, transitions | the Lease's `spec`, mirrored from the record for `kubectl get lease` users | same write as the record |
//! | switchover request | annotation [`ANNOTATION_SWITCHOVER`] on the same Lease | the CLI; cleared by the primary |
//! | each member's [`MemberState`], for the agents | its agent's `GET /member`, read by the other agents every tick ([`peers`]) | that member's agent |
//! | each member's [`MemberState`], for the controller and the CLI | annotation [`ANNOTATION_MEMBER_STATE`] on the member's **own pod**, written on change ([`publication`]) | that member's agent |
//!
//! # Quiet at rest
//!
//! An agent built with [`KubeLeaseCoordinator::for_agent`] costs the API
//! server one write per renewal of the primary and nothing else while the
//! cluster is steady:
//! - the Lease is read from a watch ([`cache::LeaseCache`]), with a GET only
//!   when no event or answer confirmed it for a renew deadline (renewals
//!   are events, so that happens only when the primary stopped renewing or
//!   the API server is away);
//! - a renewal is one PUT on the watched copy (a GET first only after a 409);
//! - members read each other's state and heartbeat from their agents, not
//!   from the API server ([`peers`], where the liveness decision is written
//!   down);
//! - the pod annotation is written when the role, health or lineage changes
//!   and at most every 30 s for WAL positions ([`publication`]).
//!
//! The controller and the CLI (built with [`KubeLeaseCoordinator::new`]
//! only) read the Lease and the pods' annotations as before.
//!
//! # Compare-and-swap
//!
//! A CAS reads the Lease, checks that the stored [`LeaseVersion`] equals the
//! expected one, and replaces the object with the read's
//! `metadata.resourceVersion`, so the API server rejects the write with 409
//! Conflict if anything changed in between. A 409 is never an error and never
//! a second leader: the Lease is re-read; if the record's version moved, the
//! outcome is [`CasOutcome::Lost`]; if only something else changed (a
//! switchover request was written), the write is retried a bounded number of
//! times. Creation (no Lease yet, expected version 0) uses `create`; a 409
//! AlreadyExists means another member created it first: `Lost`.
//!
//! The request sequences and the 409 handling are checked against tower-test
//! mocks; `tests/e2e.rs` (`scripts/test-k8s`) runs the coordinator against a
//! real kube-apiserver under the agents' Role: create races (409
//! AlreadyExists), stale resourceVersions (409 Conflict), concurrent
//! compare-and-swaps with exactly one winner, member states on pods, and a
//! hand-over.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease as KubeLease, LeaseSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use pgcluster_core::names::ClusterName;
use pgcluster_ha::coordinator::{BoxError, CasOutcome, Coordinator, CoordinatorError};
use pgcluster_ha::machine::{
    ClusterView, Lease, LeaseRecord, LeaseVersion, MemberName, MemberState, SwitchoverRequest,
};

use crate::build::labels::{Component, LABEL_CLUSTER, LABEL_COMPONENT};

pub mod cache;
pub mod peers;
pub mod publication;

use cache::LeaseCache;
use peers::{PeerApi, PeerStates};

/// Annotation on the Lease holding the JSON of the [`Lease`] (record + version).
pub const ANNOTATION_RECORD: &str = "pgcluster.dev/lease-record";
/// Annotation on the Lease holding the JSON of the pending [`SwitchoverRequest`].
pub const ANNOTATION_SWITCHOVER: &str = "pgcluster.dev/switchover";
/// Annotation on each instance pod holding the JSON of its [`MemberState`].
pub const ANNOTATION_MEMBER_STATE: &str = "pgcluster.dev/member-state";
/// How often a write that hit a 409 caused by an unrelated change is retried.
const CONFLICT_RETRIES: usize = 3;
/// Default deadline of one coordinator call.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The coordinator of one cluster on the Kubernetes API.
#[derive(Clone)]
pub struct KubeLeaseCoordinator {
    leases: Api<KubeLease>,
    pods: Api<Pod>,
    lease_name: String,
    pod_selector: String,
    timeout: Duration,
    agent: Option<Arc<AgentSide>>,
}

/// What only an agent's coordinator has: the watched Lease, its peers, its
/// own state and the last annotation it wrote.
#[derive(Debug)]
struct AgentSide {
    me: MemberName,
    cache: LeaseCache,
    /// How long the watched Lease is trusted without a confirmation.
    fresh_for: Duration,
    peers: PeerStates,
    own: Mutex<Option<MemberState>>,
    written: Mutex<Option<(MemberState, Instant)>>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves at worst an older state.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl std::fmt::Debug for KubeLeaseCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeLeaseCoordinator")
            .field("lease", &self.lease_name)
            .field("pods", &self.pod_selector)
            .finish()
    }
}

/// The label selector of a cluster's instance pods.
pub fn instance_pod_selector(cluster: &ClusterName) -> String {
    format!(
        "{LABEL_CLUSTER}={},{LABEL_COMPONENT}={}",
        cluster.as_str(),
        Component::Postgres.as_str()
    )
}

fn unavailable(e: kube::Error) -> CoordinatorError {
    CoordinatorError::Unavailable {
        source: Some(Box::new(e)),
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_conflict() || s.is_already_exists())
}

fn corrupt(what: &str, e: serde_json::Error) -> CoordinatorError {
    CoordinatorError::Corrupt {
        what: what.to_owned(),
        source: Some(Box::new(e) as BoxError),
    }
}

/// The record stored on a Lease object (`None`: the object carries none).
pub fn stored_lease(object: &KubeLease) -> Result<Option<Lease>, CoordinatorError> {
    annotation(object, ANNOTATION_RECORD)
        .map(|json| serde_json::from_str(json).map_err(|e| corrupt(ANNOTATION_RECORD, e)))
        .transpose()
}

/// The switchover request stored on a Lease object.
pub fn stored_switchover(
    object: &KubeLease,
) -> Result<Option<SwitchoverRequest>, CoordinatorError> {
    annotation(object, ANNOTATION_SWITCHOVER)
        .map(|json| serde_json::from_str(json).map_err(|e| corrupt(ANNOTATION_SWITCHOVER, e)))
        .transpose()
}

/// The member state a pod carries; `None` when absent or undecodable (one
/// pod with a bad annotation must not blind the others).
pub fn pod_member_state(pod: &Pod) -> Option<MemberState> {
    let json = pod
        .metadata
        .annotations
        .as_ref()?
        .get(ANNOTATION_MEMBER_STATE)?;
    match serde_json::from_str(json) {
        Ok(state) => Some(state),
        Err(error) => {
            tracing::warn!(pod = ?pod.metadata.name, %error, "ignoring an undecodable member state");
            None
        }
    }
}

fn annotation<'a>(object: &'a KubeLease, key: &str) -> Option<&'a str> {
    object
        .metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

fn set_annotation(object: &mut KubeLease, key: &str, value: Option<String>) {
    let annotations = object
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new);
    match value {
        Some(v) => annotations.insert(key.to_owned(), v),
        None => annotations.remove(key),
    };
}

/// Writes `lease` into `object`: the annotation and the mirrored spec fields.
/// `now` is the wall clock (only `renewTime`/`acquireTime` for kubectl users).
pub fn write_record(object: &mut KubeLease, lease: &Lease, now: jiff::Timestamp) {
    let json = serde_json::to_string(lease)
        .expect("a Lease serializes because it holds only plain data and string-keyed maps");
    set_annotation(object, ANNOTATION_RECORD, Some(json));
    let spec = object.spec.get_or_insert_with(LeaseSpec::default);
    let holder = lease.record.holder.as_ref().map(|h| h.as_str().to_owned());
    if holder.is_some() && spec.holder_identity != holder {
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        spec.acquire_time = Some(MicroTime(now));
    }
    spec.holder_identity = holder;
    spec.lease_duration_seconds =
        Some(i32::try_from(lease.record.duration_ms.div_ceil(1000)).unwrap_or(i32::MAX));
    spec.renew_time = Some(MicroTime(now));
}

impl KubeLeaseCoordinator {
    /// The coordinator of `cluster` in `namespace`.
    pub fn new(client: Client, namespace: &str, cluster: &ClusterName) -> Self {
        Self {
            leases: Api::namespaced(client.clone(), namespace),
            pods: Api::namespaced(client, namespace),
            lease_name: cluster.leader_lease(),
            pod_selector: instance_pod_selector(cluster),
            timeout: DEFAULT_CALL_TIMEOUT,
            agent: None,
        }
    }

    /// The coordinator of the agent of `me` (see "Quiet at rest" in the
    /// module docs): starts the Lease watch (needs a tokio runtime), reads
    /// `peers` over their agent API (calls bounded by `peer_timeout`, with
    /// the members' `credential`) and
    /// trusts the watched Lease for `fresh_for` after its last confirmation.
    pub fn for_agent(
        mut self,
        me: MemberName,
        peers: BTreeMap<MemberName, PeerApi>,
        fresh_for: Duration,
        peer_timeout: Duration,
        credential: pgcluster_ha::agent::credential::MemberCredential,
    ) -> Self {
        let cache = LeaseCache::watch(self.leases.clone(), &self.lease_name);
        self.agent = Some(Arc::new(AgentSide {
            me,
            cache,
            fresh_for,
            peers: PeerStates::new(peers, peer_timeout, credential),
            own: Mutex::new(None),
            written: Mutex::new(None),
        }));
        self
    }

    /// Sets the deadline of each call (default [`DEFAULT_CALL_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The Lease object's name.
    pub fn lease_name(&self) -> &str {
        &self.lease_name
    }

    async fn timed<T>(
        &self,
        fut: impl Future<Output = Result<T, CoordinatorError>>,
    ) -> Result<T, CoordinatorError> {
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| CoordinatorError::Timeout {
                timeout: self.timeout,
            })?
    }

    /// A GET of the Lease (the answer refreshes an agent's watched copy).
    async fn get(&self) -> Result<Option<KubeLease>, CoordinatorError> {
        let object = self
            .leases
            .get_opt(&self.lease_name)
            .await
            .map_err(unavailable)?;
        if let Some(agent) = &self.agent {
            agent.cache.store(object.clone(), object.is_none());
        }
        Ok(object)
    }

    /// The Lease from an agent's watch while it is confirmed, else a GET.
    async fn read(&self) -> Result<Option<KubeLease>, CoordinatorError> {
        if let Some(agent) = &self.agent
            && let Some(object) = agent.cache.fresh(agent.fresh_for)
        {
            return Ok(object);
        }
        self.get().await
    }

    fn remember(&self, written: &KubeLease) {
        if let Some(agent) = &self.agent {
            agent.cache.store(Some(written.clone()), false);
        }
    }

    fn empty_object(&self) -> KubeLease {
        KubeLease {
            metadata: ObjectMeta {
                name: Some(self.lease_name.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec::default()),
        }
    }

    async fn cas(
        &self,
        expected: LeaseVersion,
        record: LeaseRecord,
    ) -> Result<CasOutcome, CoordinatorError> {
        let new = Lease {
            version: LeaseVersion(expected.0 + 1),
            record,
        };
        for attempt in 0..CONFLICT_RETRIES {
            // The watched copy first: a renewal is then a single PUT; a
            // stale copy costs a 409 and a GET.
            let object = if attempt == 0 {
                self.read().await?
            } else {
                self.get().await?
            };
            let Some(mut object) = object else {
                if expected != LeaseVersion(0) {
                    return Ok(CasOutcome::Lost(None));
                }
                let mut object = self.empty_object();
                write_record(&mut object, &new, jiff::Timestamp::now());
                return match self.leases.create(&PostParams::default(), &object).await {
                    Ok(created) => {
                        self.remember(&created);
                        Ok(CasOutcome::Won(new))
                    }
                    // Another member created it first.
                    Err(e) if is_conflict(&e) => Ok(CasOutcome::Lost(self.current().await?)),
                    Err(e) => Err(unavailable(e)),
                };
            };
            let current = stored_lease(&object)?;
            let version = current.as_ref().map_or(LeaseVersion(0), |l| l.version);
            if version != expected && attempt == 0 && self.agent.is_some() {
                // The watched copy may lag our own last write: ask.
                continue;
            }
            if version != expected {
                return Ok(CasOutcome::Lost(current));
            }
            write_record(&mut object, &new, jiff::Timestamp::now());
            match self
                .leases
                .replace(&self.lease_name, &PostParams::default(), &object)
                .await
            {
                Ok(written) => {
                    self.remember(&written);
                    return Ok(CasOutcome::Won(new));
                }
                // The object changed since our read: re-read and decide again.
                Err(e) if is_conflict(&e) => continue,
                Err(e) => return Err(unavailable(e)),
            }
        }
        Ok(CasOutcome::Lost(self.current().await?))
    }

    async fn current(&self) -> Result<Option<Lease>, CoordinatorError> {
        match self.get().await? {
            Some(object) => stored_lease(&object),
            None => Ok(None),
        }
    }

    /// Read-modify-write of the Lease's switchover annotation with 409 retries.
    /// `change` returns the new value, or `Ok(None)` when nothing is to be written.
    async fn update_switchover(
        &self,
        change: impl Fn(
            Option<SwitchoverRequest>,
        ) -> Result<Option<Option<SwitchoverRequest>>, CoordinatorError>,
    ) -> Result<(), CoordinatorError> {
        for _ in 0..CONFLICT_RETRIES {
            let existing = self.get().await?;
            let pending = match &existing {
                Some(o) => stored_switchover(o)?,
                None => None,
            };
            let Some(next) = change(pending)? else {
                return Ok(());
            };
            let json = next.map(|r| {
                serde_json::to_string(&r).expect("a switchover request serializes (plain data)")
            });
            let result = match existing {
                Some(mut object) => {
                    set_annotation(&mut object, ANNOTATION_SWITCHOVER, json);
                    self.leases
                        .replace(&self.lease_name, &PostParams::default(), &object)
                        .await
                }
                None => {
                    let mut object = self.empty_object();
                    set_annotation(&mut object, ANNOTATION_SWITCHOVER, json);
                    self.leases.create(&PostParams::default(), &object).await
                }
            };
            match result {
                Ok(written) => {
                    self.remember(&written);
                    return Ok(());
                }
                Err(e) if is_conflict(&e) => continue,
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(CoordinatorError::Unavailable { source: None })
    }
}

impl KubeLeaseCoordinator {
    /// The cluster view and the instance pods it was read from (one Lease
    /// read, one pod list): what `pgcluster status NAME` shows.
    pub async fn read_view_and_pods(&self) -> Result<(ClusterView, Vec<Pod>), CoordinatorError> {
        self.timed(async {
            let (lease, switchover) = match self.get().await? {
                Some(object) => (stored_lease(&object)?, stored_switchover(&object)?),
                None => (None, None),
            };
            let pods = self
                .pods
                .list(&ListParams::default().labels(&self.pod_selector))
                .await
                .map_err(unavailable)?;
            let members: BTreeMap<MemberName, MemberState> = pods
                .items
                .iter()
                .filter_map(pod_member_state)
                .map(|s| (s.name.clone(), s))
                .collect();
            let view = ClusterView {
                lease,
                members,
                switchover,
            };
            Ok((view, pods.items))
        })
        .await
    }
}

impl KubeLeaseCoordinator {
    /// An agent's view: the watched Lease, its peers' states from their
    /// agents and its own last state; no pod is read.
    async fn agent_view(&self, agent: &AgentSide) -> Result<ClusterView, CoordinatorError> {
        let (object, mut members) = futures::future::join(self.read(), agent.peers.read()).await;
        let (lease, switchover) = match object? {
            Some(object) => (stored_lease(&object)?, stored_switchover(&object)?),
            None => (None, None),
        };
        if let Some(own) = locked(&agent.own).clone() {
            members.insert(agent.me.clone(), own);
        }
        Ok(ClusterView {
            lease,
            members,
            switchover,
        })
    }

    /// Writes `state` to its pod's annotation.
    async fn annotate(&self, state: &MemberState) -> Result<(), CoordinatorError> {
        let json = serde_json::to_string(state)
            .expect("a member state serializes because it holds only plain data");
        let patch = serde_json::json!({
            "metadata": { "annotations": { ANNOTATION_MEMBER_STATE: json } }
        });
        self.pods
            .patch(
                state.name.as_str(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map(drop)
            .map_err(unavailable)
    }
}

impl Coordinator for KubeLeaseCoordinator {
    async fn read_view(&self) -> Result<ClusterView, CoordinatorError> {
        match &self.agent {
            Some(agent) => self.timed(self.agent_view(agent)).await,
            None => self.read_view_and_pods().await.map(|(view, _)| view),
        }
    }

    async fn compare_and_swap_lease(
        &self,
        expected: LeaseVersion,
        record: LeaseRecord,
    ) -> Result<CasOutcome, CoordinatorError> {
        self.timed(self.cas(expected, record)).await
    }

    async fn publish_member(&self, state: MemberState) -> Result<(), CoordinatorError> {
        let Some(agent) = &self.agent else {
            return self.timed(self.annotate(&state)).await;
        };
        *locked(&agent.own) = Some(state.clone());
        let now = Instant::now();
        if !publication::due(locked(&agent.written).as_ref(), &state, now) {
            return Ok(());
        }
        self.timed(self.annotate(&state)).await?;
        *locked(&agent.written) = Some((state, now));
        Ok(())
    }

    async fn request_switchover(&self, request: SwitchoverRequest) -> Result<(), CoordinatorError> {
        self.timed(self.update_switchover(|pending| match pending {
            Some(p) => Err(CoordinatorError::SwitchoverPending { pending: p.id }),
            None => Ok(Some(Some(request.clone()))),
        }))
        .await
    }

    async fn clear_switchover(&self, id: u64) -> Result<(), CoordinatorError> {
        self.timed(
            self.update_switchover(|pending| Ok(pending.filter(|p| p.id == id).map(|_| None))),
        )
        .await
    }

    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.agent.as_ref().map(|a| a.cache.changes())
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod machine_fixtures;

#[cfg(test)]
mod fencing_tests;

#[cfg(test)]
mod race_tests;
