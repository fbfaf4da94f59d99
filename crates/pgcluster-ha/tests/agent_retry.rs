//! A background operation that fails is retried after a backoff, not at
//! once: a replica cloning from a primary whose server drops every
//! connection (pg_basebackup fails within milliseconds) must not retry in a
//! tight loop. On the real Kubernetes node such a clone was retried every
//! 10-30 ms, two log lines per attempt, for as long as the cause lasted.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pgcluster_ha::agent::{AgentConfig, PeerAddr};
use pgcluster_ha::coordinator::memory::MemoryCoordinator;
use pgcluster_ha::coordinator::{CasOutcome, Coordinator, CoordinatorError};
use pgcluster_ha::machine::{
    ClusterView, HaConfig, LeaseRecord, LeaseVersion, Lsn, MemberName, MemberRole, MemberState,
    Millis, SwitchoverRequest, SystemId, Timeline,
};
use pgcluster_ha::testing::{TestServer, free_port};

/// The memory coordinator, shared between the agent and the test (which
/// plays the primary: it renews the lease and publishes its state).
#[derive(Clone, Default)]
struct Shared(Arc<MemoryCoordinator>);

impl Coordinator for Shared {
    async fn read_view(&self) -> Result<ClusterView, CoordinatorError> {
        Ok(self.0.view())
    }

    async fn compare_and_swap_lease(
        &self,
        expected: LeaseVersion,
        record: LeaseRecord,
    ) -> Result<CasOutcome, CoordinatorError> {
        Ok(self.0.cas_lease(expected, record))
    }

    async fn publish_member(&self, state: MemberState) -> Result<(), CoordinatorError> {
        self.0.publish(state);
        Ok(())
    }

    async fn request_switchover(&self, request: SwitchoverRequest) -> Result<(), CoordinatorError> {
        self.0.request(request)
    }

    async fn clear_switchover(&self, id: u64) -> Result<(), CoordinatorError> {
        self.0.clear(id);
        Ok(())
    }
}

fn primary_record(renewed_at: u64) -> LeaseRecord {
    LeaseRecord {
        holder: Some(MemberName::new("retry-0")),
        term: 1,
        renewed_at: Millis(renewed_at),
        duration_ms: 2_000,
        system_identifier: Some(SystemId(7)),
        timeline: Timeline(1),
        history: vec![],
        max_timeline: Timeline(1),
        primary_lsn: Lsn(0x0300_0000),
        sync_standbys: BTreeSet::new(),
    }
}

fn primary_state(heartbeat: u64) -> MemberState {
    MemberState {
        name: MemberName::new("retry-0"),
        role: MemberRole::Primary,
        healthy: true,
        timeline: Timeline(1),
        received_lsn: Lsn(0x0300_0000),
        replayed_lsn: Lsn(0x0300_0000),
        flushed_lsn: Lsn(0x0300_0000),
        system_identifier: Some(SystemId(7)),
        following: None,
        sync_eligible: false,
        last_seen: Millis(heartbeat),
        heartbeat,
    }
}

/// A replica whose clone fails at once (the "primary" accepts and drops
/// every connection) tries again after one loop interval, then two, then
/// four...: in 3 s of a 250 ms loop that is about four attempts, where an
/// immediate retry makes a hundred or more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_clone_is_retried_after_a_backoff_not_at_once() {
    let spec = "apiVersion: pgcluster.dev/v1alpha1
kind: PostgresCluster
metadata: {name: retry, namespace: default}
spec:
  instances: 2
";
    let validated = pgcluster_core::load::load_one(spec)
        .expect("spec loads")
        .validate()
        .expect("spec is valid");
    let loop_interval = validated.timings().loop_interval;

    // The primary's PostgreSQL port: accepts and closes, counting attempts.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding 127.0.0.1:0 works");
    let pg_port = listener.local_addr().expect("a bound listener").port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    let dropper = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });

    let server = TestServer::new("retry-1").await;
    let api = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let cfg = AgentConfig {
        cluster_name: "retry".to_owned(),
        ha: HaConfig::from_validated(&validated, "retry-1").expect("member of the spec"),
        instance: server.instance.clone(),
        peers: BTreeMap::from([
            (
                MemberName::new("retry-0"),
                PeerAddr::loopback(pg_port, free_port()),
            ),
            (
                MemberName::new("retry-1"),
                PeerAddr::loopback(server.instance.port, api.port()),
            ),
        ]),
        api_listen: api,
        metrics_listen: None,
        server_settings: server.config.server.clone(),
        start_timeout: Duration::from_secs(30),
        role_labels: None,
    };

    // The test plays retry-0: a serving primary holding a live lease.
    let coord = Shared::default();
    coord.0.cas_lease(LeaseVersion(0), primary_record(0));
    coord.0.publish(primary_state(1));
    let playing = coord.clone();
    let primary = tokio::spawn(async move {
        for beat in 2..1_000u64 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let current = playing.0.lease().expect("the test created the lease");
            playing
                .0
                .cas_lease(current.version, primary_record(beat * 100));
            playing.0.publish(primary_state(beat));
        }
    });

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(pgcluster_ha::agent::run(cfg, coord.clone(), async {
        let _ = stopped.await;
    }));

    // Until the first clone attempt reached the primary (bounded)...
    let deadline = Instant::now() + Duration::from_secs(30);
    while connections.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "the replica never tried to clone from the primary in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...then count attempts for 3 s (a fixed observation window: the
    // number of attempts in it is what is measured).
    let first = connections.load(Ordering::SeqCst);
    let window = Duration::from_secs(3);
    tokio::time::sleep(window).await;
    let attempts = connections.load(Ordering::SeqCst) - first;

    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), agent).await;
    primary.abort();
    dropper.abort();

    eprintln!("{attempts} connections to the primary in {window:?} after the first");
    // libpq may connect twice per attempt (SSL, then without). A backoff
    // from one 250 ms loop interval doubling gives ~4 attempts in 3 s.
    assert!(
        attempts >= 2,
        "the failed clone was not retried within {window:?} ({attempts} connections)"
    );
    let per_attempt = 2;
    let doubling = (window.as_millis() / loop_interval.as_millis()).ilog2() as usize + 1;
    assert!(
        attempts <= per_attempt * (doubling + 1),
        "{attempts} connections in {window:?}: the failed clone was retried without a backoff \
         (expected at most {} with a {loop_interval:?} loop doubling)",
        per_attempt * (doubling + 1)
    );
}
