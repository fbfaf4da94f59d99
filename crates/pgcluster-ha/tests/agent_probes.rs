//! The agent answers a peer's failsafe probe while its own loop is stuck in
//! a coordinator read: the answer does not wait for the tick to end.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use pgcluster_ha::agent::http::{ProbeWire, ReplyWire};
use pgcluster_ha::agent::{AgentConfig, PeerAddr, client};
use pgcluster_ha::coordinator::memory::MemoryCoordinator;
use pgcluster_ha::coordinator::{CasOutcome, Coordinator, CoordinatorError};
use pgcluster_ha::machine::{
    ClusterView, HaConfig, LeaseRecord, LeaseVersion, MemberName, MemberState, SwitchoverRequest,
};
use pgcluster_ha::testing::{TestServer, free_port};

/// A coordinator whose reads hang (until the agent's own timeout drops
/// them), recording whether one is in progress.
#[derive(Clone, Default)]
struct StuckReads {
    inner: Arc<MemoryCoordinator>,
    reading: Arc<AtomicBool>,
    reads: Arc<AtomicUsize>,
}

struct Reading(Arc<AtomicBool>);

impl Drop for Reading {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl Coordinator for StuckReads {
    async fn read_view(&self) -> Result<ClusterView, CoordinatorError> {
        self.reading.store(true, Ordering::SeqCst);
        self.reads.fetch_add(1, Ordering::SeqCst);
        let _guard = Reading(self.reading.clone());
        std::future::pending::<()>().await;
        Ok(self.inner.view())
    }

    async fn compare_and_swap_lease(
        &self,
        expected: LeaseVersion,
        record: LeaseRecord,
    ) -> Result<CasOutcome, CoordinatorError> {
        self.inner.compare_and_swap_lease(expected, record).await
    }

    async fn publish_member(&self, state: MemberState) -> Result<(), CoordinatorError> {
        self.inner.publish_member(state).await
    }

    async fn request_switchover(&self, request: SwitchoverRequest) -> Result<(), CoordinatorError> {
        self.inner.request_switchover(request).await
    }

    async fn clear_switchover(&self, id: u64) -> Result<(), CoordinatorError> {
        self.inner.clear_switchover(id).await
    }
}

/// A probe sent while the loop waits on a hung coordinator read is answered
/// during that read (a slow loop of 2 s whose reads time out after 1.5 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_is_answered_while_the_loop_waits_on_the_coordinator() {
    let spec = "apiVersion: pgcluster.dev/v1alpha1
kind: PostgresCluster
metadata: {name: probe, namespace: default}
spec:
  instances: 2
  failover: {leaseDuration: 10s, renewDeadline: 6s, loopInterval: 2s, stopWritesTimeout: 500ms, maxClockDrift: 500ms}
";
    let validated = pgcluster_core::load::load_one(spec)
        .expect("spec loads")
        .validate()
        .expect("spec is valid");
    let server = TestServer::new("probe-0").await;
    let api = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let cfg = AgentConfig {
        cluster_name: "probe".to_owned(),
        ha: HaConfig::from_validated(&validated, "probe-0").expect("member of the spec"),
        instance: server.instance.clone(),
        peers: BTreeMap::from([
            (
                MemberName::new("probe-0"),
                PeerAddr::loopback(server.instance.port, api.port()),
            ),
            (
                MemberName::new("probe-1"),
                PeerAddr::loopback(free_port(), free_port()),
            ),
        ]),
        api_listen: api,
        metrics_listen: None,
        server_settings: server.config.server.clone(),
        start_timeout: Duration::from_secs(30),
        role_labels: None,
    };
    let coord = StuckReads::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(pgcluster_ha::agent::run(cfg, coord.clone(), async {
        let _ = stopped.await;
    }));

    let body = serde_json::to_string(&ProbeWire {
        from: "probe-1".to_owned(),
        term: 1,
        timeline: 1,
        sent_at: 0,
    })
    .expect("probe serializes");
    let member =
        pgcluster_ha::agent::credential::MemberCredential::of(&server.instance.superuser.password);
    let mut answered_during_a_read = 0;
    for _ in 0..200 {
        // Probe only while a read hangs: the loop is inside its tick.
        if !coord.reading.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let reads_before = coord.reads.load(Ordering::SeqCst);
        let answer =
            client::post_json_as_member(api, "/failsafe", &body, Duration::from_secs(5), &member)
                .await;
        let still_reading = coord.reading.load(Ordering::SeqCst)
            && coord.reads.load(Ordering::SeqCst) == reads_before;
        let (code, text) = answer.expect("the agent answers the probe");
        assert_eq!(code, 200, "{text}");
        let reply: ReplyWire = serde_json::from_str(&text).expect("a reply");
        assert_eq!(reply.to, "probe-1");
        if still_reading {
            answered_during_a_read += 1;
            if answered_during_a_read == 3 {
                break;
            }
        }
    }
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), agent).await;
    assert_eq!(
        answered_during_a_read, 3,
        "probes were answered only after the hung read ended"
    );
}
