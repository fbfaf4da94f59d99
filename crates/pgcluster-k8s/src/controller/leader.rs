//! Leader election between controller replicas on a `coordination.k8s.io/v1`
//! Lease in the controller's namespace (the client-go convention: holder
//! identity, renew time and duration in the Lease's spec; a holder that has
//! not renewed for `leaseDurationSeconds` by the candidate's wall clock may
//! be replaced). Every write is a replace with the read's resourceVersion,
//! so two candidates never both win: the loser gets 409.
//!
//! The leader renews every [`RENEW_PERIOD`]; when it cannot renew within
//! [`LEASE_DURATION`] it stops (the process exits and restarts as a
//! candidate), so two replicas never reconcile at the same time for longer
//! than clock skew allows.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};

/// Name of the controller's Lease.
pub const LEASE_NAME: &str = "pgcluster-controller-leader";
/// How long a leadership lasts without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the leader renews (and candidates retry).
pub const RENEW_PERIOD: Duration = Duration::from_secs(5);

/// One replica's candidacy.
#[derive(Clone)]
pub struct LeaderElector {
    api: Api<Lease>,
    identity: String,
}

impl LeaderElector {
    /// A candidate called `identity` (the pod name) in `namespace`.
    pub fn new(client: Client, namespace: &str, identity: impl Into<String>) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            identity: identity.into(),
        }
    }

    fn spec(&self, previous: Option<&LeaseSpec>, now: jiff::Timestamp) -> LeaseSpec {
        let same = previous.and_then(|p| p.holder_identity.as_deref()) == Some(&self.identity);
        let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(LEASE_DURATION.as_secs())
                    .expect("15 fits in i32 because it is a small constant"),
            ),
            acquire_time: if same {
                previous.and_then(|p| p.acquire_time.clone())
            } else {
                Some(MicroTime(now))
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(if same { transitions } else { transitions + 1 }),
            ..LeaseSpec::default()
        }
    }

    /// One attempt to acquire or renew at wall-clock time `now`: `Ok(true)`
    /// when this replica holds the Lease afterwards.
    pub async fn try_acquire(&self, now: jiff::Timestamp) -> Result<bool, kube::Error> {
        let conflict = |e: &kube::Error| matches!(e, kube::Error::Api(s) if s.is_conflict());
        match self.api.get_opt(LEASE_NAME).await? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(LEASE_NAME.to_owned()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.spec(None, now)),
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(e) if conflict(&e) => Ok(false),
                    Err(e) => Err(e),
                }
            }
            Some(mut lease) => {
                let spec = lease.spec.clone().unwrap_or_default();
                let mine = spec.holder_identity.as_deref() == Some(&self.identity);
                let expired = match (&spec.renew_time, spec.lease_duration_seconds) {
                    (Some(MicroTime(renewed)), Some(secs)) => {
                        now.duration_since(*renewed).as_secs() >= i64::from(secs)
                    }
                    _ => true,
                };
                if !mine && !expired && spec.holder_identity.is_some() {
                    return Ok(false);
                }
                lease.spec = Some(self.spec(Some(&spec), now));
                match self
                    .api
                    .replace(LEASE_NAME, &PostParams::default(), &lease)
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(e) if conflict(&e) => Ok(false),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Waits until this replica is the leader.
    pub async fn acquire(&self) {
        loop {
            match self.try_acquire(jiff::Timestamp::now()).await {
                Ok(true) => return,
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "leader election failed; retrying"),
            }
            tokio::time::sleep(RENEW_PERIOD).await;
        }
    }

    /// Renews until a renewal has failed for [`LEASE_DURATION`], then returns
    /// (leadership is lost: the caller must stop reconciling).
    pub async fn hold(&self) {
        let mut last = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(RENEW_PERIOD).await;
            match self.try_acquire(jiff::Timestamp::now()).await {
                Ok(true) => last = tokio::time::Instant::now(),
                Ok(false) => return,
                Err(error) => tracing::warn!(%error, "failed to renew the controller lease"),
            }
            if last.elapsed() >= LEASE_DURATION.saturating_sub(RENEW_PERIOD) {
                return;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use http::Method;
    use serde_json::json;

    use super::*;
    use crate::testing::api_server::{ApiServerVerifier, Reply, conflict, not_found};

    const PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/pgcluster-system/leases/pgcluster-controller-leader";

    fn held_by(holder: &str, renewed: &str) -> serde_json::Value {
        json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": { "name": LEASE_NAME, "namespace": "pgcluster-system", "resourceVersion": "4" },
            "spec": { "holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": renewed, "leaseTransitions": 2 }
        })
    }

    fn now() -> jiff::Timestamp {
        "2026-01-01T00:00:20Z".parse().unwrap()
    }

    /// No Lease: the first candidate creates it and leads.
    #[tokio::test]
    async fn first_candidate_creates_the_lease() {
        let (client, mut server) = ApiServerVerifier::new();
        let task = tokio::spawn(async move {
            LeaderElector::new(client, "pgcluster-system", "ctl-a")
                .try_acquire(now())
                .await
        });
        server.expect(Method::GET, PATH, not_found()).await;
        let post = server
            .expect(
                Method::POST,
                "/apis/coordination.k8s.io/v1/namespaces/pgcluster-system/leases",
                Reply::Echo,
            )
            .await;
        assert_eq!(post.body["spec"]["holderIdentity"], "ctl-a");
        assert!(task.await.unwrap().unwrap());
    }

    /// A fresh Lease of another replica is respected: no write, not leader.
    #[tokio::test]
    async fn live_leader_is_respected() {
        let (client, mut server) = ApiServerVerifier::new();
        let task = tokio::spawn(async move {
            LeaderElector::new(client, "pgcluster-system", "ctl-b")
                .try_acquire(now())
                .await
        });
        server
            .expect(
                Method::GET,
                PATH,
                Reply::Ok(held_by("ctl-a", "2026-01-01T00:00:10Z")),
            )
            .await;
        assert!(!task.await.unwrap().unwrap());
        server.expect_silence(Duration::from_millis(50)).await;
    }

    /// An expired Lease is taken over with the read's resourceVersion; a 409
    /// (someone else was faster) means not leader.
    #[tokio::test]
    async fn expired_lease_is_taken_over_or_lost_on_conflict() {
        let (client, mut server) = ApiServerVerifier::new();
        let c2 = client.clone();
        let task = tokio::spawn(async move {
            LeaderElector::new(client, "pgcluster-system", "ctl-b")
                .try_acquire(now())
                .await
        });
        server
            .expect(
                Method::GET,
                PATH,
                Reply::Ok(held_by("ctl-a", "2026-01-01T00:00:01Z")),
            )
            .await;
        let put = server.expect(Method::PUT, PATH, Reply::Echo).await;
        assert_eq!(put.body["metadata"]["resourceVersion"], "4");
        assert_eq!(put.body["spec"]["holderIdentity"], "ctl-b");
        assert_eq!(put.body["spec"]["leaseTransitions"], 3);
        assert!(task.await.unwrap().unwrap());

        let task = tokio::spawn(async move {
            LeaderElector::new(c2, "pgcluster-system", "ctl-c")
                .try_acquire(now())
                .await
        });
        server
            .expect(
                Method::GET,
                PATH,
                Reply::Ok(held_by("ctl-a", "2026-01-01T00:00:01Z")),
            )
            .await;
        server.expect(Method::PUT, PATH, conflict()).await;
        assert!(!task.await.unwrap().unwrap());
    }
}
