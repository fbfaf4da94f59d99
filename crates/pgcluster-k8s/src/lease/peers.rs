//! [`PeerStates`]: the other members' states, read from their agents'
//! `GET /member` every tick instead of from the API server.
//!
//! # Where liveness lives in Kubernetes mode
//!
//! A member is alive while its heartbeat changes, as in every mode (the
//! machine's staleness rule is unchanged). In Kubernetes the heartbeat
//! travels between the agents directly, over the port the failsafe probes
//! already use, so it costs the API server nothing: the API server holds
//! only what needs consensus (the Lease) and a slow copy of each member's
//! state for the controller and `pgcluster status` (see
//! [`super::publication`]). A peer that does not answer keeps its last
//! state, whose heartbeat then stands still: it turns stale after the
//! usual `stale_after`, exactly as a member that stopped publishing did.
//! A peer never reached since this agent started is absent from the view.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgcluster_ha::agent::client;
use pgcluster_ha::agent::credential::MemberCredential;
use pgcluster_ha::machine::{MemberName, MemberState};

/// Where a peer's agent listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerApi {
    /// Its DNS name (the headless Service's record of its pod).
    pub host: String,
    /// The agent API's port.
    pub port: u16,
}

#[derive(Debug, Default)]
struct Known {
    /// Each peer's address, resolved once and again after a failed call
    /// (a restarted pod gets another IP).
    resolved: BTreeMap<MemberName, SocketAddr>,
    /// Each peer's last state read.
    states: BTreeMap<MemberName, MemberState>,
}

/// The peers of one member and what they last said.
#[derive(Clone, Debug)]
pub struct PeerStates {
    peers: BTreeMap<MemberName, PeerApi>,
    timeout: Duration,
    credential: MemberCredential,
    known: Arc<Mutex<Known>>,
}

impl PeerStates {
    /// The peers to ask with the members' `credential`, each call bounded
    /// by `timeout`.
    pub fn new(
        peers: BTreeMap<MemberName, PeerApi>,
        timeout: Duration,
        credential: MemberCredential,
    ) -> Self {
        Self {
            peers,
            timeout,
            credential,
            known: Arc::default(),
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        // A panic while holding the lock leaves at worst an older state.
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks every peer at once; returns each peer's latest state (the last
    /// one read for a peer that did not answer now).
    pub async fn read(&self) -> BTreeMap<MemberName, MemberState> {
        let calls = self.peers.iter().map(|(name, api)| {
            let cached = self.known().resolved.get(name).copied();
            let (name, api, timeout) = (name.clone(), api.clone(), self.timeout);
            let credential = &self.credential;
            async move {
                let state = fetch(cached, &api, timeout, credential).await;
                (name, state)
            }
        });
        let answers = futures::future::join_all(calls).await;
        let mut known = self.known();
        for (name, answer) in answers {
            match answer {
                Some((addr, state)) if state.name == name => {
                    known.resolved.insert(name.clone(), addr);
                    known.states.insert(name, state);
                }
                Some((_, state)) => {
                    tracing::warn!(peer = %name, answered_as = %state.name, "a peer's address answers for another member; resolving it again");
                    known.resolved.remove(&name);
                }
                None => {
                    known.resolved.remove(&name);
                }
            }
        }
        known.states.clone()
    }
}

/// One `GET /member` (resolving the peer's name first when `cached` is none).
async fn fetch(
    cached: Option<SocketAddr>,
    api: &PeerApi,
    timeout: Duration,
    credential: &MemberCredential,
) -> Option<(SocketAddr, MemberState)> {
    let addr = match cached {
        Some(addr) => addr,
        None => {
            let resolve = tokio::net::lookup_host((api.host.as_str(), api.port));
            tokio::time::timeout(timeout, resolve)
                .await
                .ok()?
                .ok()?
                .next()?
        }
    };
    let (code, body) = client::get_as_member(addr, "/member", timeout, credential)
        .await
        .ok()?;
    if code != 200 {
        return None;
    }
    match serde_json::from_str(&body) {
        Ok(state) => Some((addr, state)),
        Err(error) => {
            tracing::warn!(peer = %api.host, %error, "a peer's member state is not valid JSON");
            None
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test
mod tests {
    use std::sync::RwLock;

    use pgcluster_ha::agent::http::{ApiState, router};
    use pgcluster_ha::machine::{Lsn, MemberRole, Millis, Timeline};

    use super::*;

    fn state(name: &str, heartbeat: u64) -> MemberState {
        MemberState {
            name: MemberName::new(name),
            role: MemberRole::Replica,
            healthy: true,
            timeline: Timeline(1),
            received_lsn: Lsn(7),
            replayed_lsn: Lsn(7),
            flushed_lsn: Lsn(7),
            system_identifier: None,
            following: Some(MemberName::new("pg-0")),
            sync_eligible: true,
            last_seen: Millis(heartbeat),
            heartbeat,
        }
    }

    /// The agent API of one member on 127.0.0.1 (the real routes), and the
    /// slot its `GET /member` serves.
    async fn agent(
        initial: Option<MemberState>,
    ) -> (
        u16,
        Arc<RwLock<Option<MemberState>>>,
        tokio::sync::oneshot::Sender<()>,
    ) {
        let member = Arc::new(RwLock::new(initial));
        let state = ApiState {
            status: Arc::default(),
            probes: tokio::sync::mpsc::channel(1).0,
            member: member.clone(),
            last_tick: Arc::new(RwLock::new(std::time::Instant::now())),
            wedged_after: Duration::from_secs(30),
            credential: MemberCredential::of("pw"),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, router(state))
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        (port, member, stop)
    }

    /// Each tick reads the peer's current state; a peer that stops
    /// answering keeps its last state (its heartbeat stands still, so the
    /// machine judges it stale); an address that answers for another
    /// member is not taken for the peer; a peer never reached is absent.
    #[tokio::test]
    async fn reads_peers_and_keeps_the_last_state_of_a_silent_one() {
        let (port, slot, stop) = agent(Some(state("pg-1", 1))).await;
        let (other_port, _, _keep) = agent(Some(state("pg-9", 1))).await;
        let api = |port| PeerApi {
            host: "127.0.0.1".to_owned(),
            port,
        };
        let peers = PeerStates::new(
            BTreeMap::from([
                (MemberName::new("pg-1"), api(port)),
                (MemberName::new("pg-2"), api(other_port)),
            ]),
            Duration::from_secs(2),
            MemberCredential::of("pw"),
        );
        let read = peers.read().await;
        assert_eq!(read.get(&MemberName::new("pg-1")), Some(&state("pg-1", 1)));
        assert!(!read.contains_key(&MemberName::new("pg-2")), "{read:?}");

        *slot.write().unwrap() = Some(state("pg-1", 2));
        let read = peers.read().await;
        assert_eq!(read[&MemberName::new("pg-1")].heartbeat, 2);

        stop.send(()).unwrap();
        // The server closes its listener once asked: wait for that, bounded.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while client::get(
            SocketAddr::from(([127, 0, 0, 1], port)),
            "/member",
            Duration::from_millis(200),
        )
        .await
        .is_ok()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the agent API did not stop"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let read = peers.read().await;
        assert_eq!(
            read[&MemberName::new("pg-1")].heartbeat,
            2,
            "the last state stays"
        );
    }

    /// `GET /member` answers 503 before the first tick, and the reader
    /// leaves such a peer out.
    #[tokio::test]
    async fn a_peer_without_a_state_yet_is_absent() {
        let (port, _, _keep) = agent(None).await;
        let peers = PeerStates::new(
            BTreeMap::from([(
                MemberName::new("pg-1"),
                PeerApi {
                    host: "127.0.0.1".to_owned(),
                    port,
                },
            )]),
            Duration::from_secs(2),
            MemberCredential::of("pw"),
        );
        assert!(peers.read().await.is_empty());
    }
}
