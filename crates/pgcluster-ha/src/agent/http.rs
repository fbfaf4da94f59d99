//! The agent's HTTP API on 127.0.0.1 (local mode, one port) or the pod IP
//! (two ports: [`api_router`] for the members, [`metrics_router`] for
//! monitoring and the kubelet); `/member` and `/failsafe` answer only a
//! caller with the members' credential ([`MemberCredential`]):
//! `GET /healthz` (the agent's loop ticks: 503 once no tick ran for
//! [`ApiState::wedged_after`], so a liveness probe restarts a wedged agent),
//! `GET /readyz` (200 iff it serves its role), `GET /status` (JSON [`AgentStatus`]), `GET /metrics` (Prometheus
//! text), `GET /member` (JSON of the [`MemberState`] this member last
//! published: how peers read each other in Kubernetes mode, without the API
//! server) and `POST /failsafe` (a peer primary's failsafe probe, answered
//! by the state machine).
//!
//! ```text
//! peer --POST /failsafe--> handler --(probe, oneshot)--> driver loop --step--> AnswerProbe --> reply
//! ```

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::credential::MemberCredential;
use super::metrics;
use super::status::AgentStatus;
use crate::machine::{FailsafeProbe, FailsafeReply, MemberName, MemberState, Millis, Timeline};

/// A probe handed to the driver loop with the channel for its answer.
pub type ProbeRequest = (FailsafeProbe, oneshot::Sender<FailsafeReply>);

/// What the handlers share with the driver.
#[derive(Clone)]
pub struct ApiState {
    /// The latest status, written by the driver every loop.
    pub status: Arc<RwLock<AgentStatus>>,
    /// Probes for the driver loop.
    pub probes: mpsc::Sender<ProbeRequest>,
    /// The member state of the last tick (`GET /member`); `None` before the first.
    pub member: Arc<RwLock<Option<MemberState>>>,
    /// When the driver's last tick ran.
    pub last_tick: Arc<RwLock<std::time::Instant>>,
    /// How long without a tick makes `/healthz` fail (the loop is wedged).
    pub wedged_after: Duration,
    /// What callers of `/member` and `/failsafe` must show.
    pub credential: MemberCredential,
}

/// The `Authorization` header of a request, if readable.
fn authorization(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()
}

/// A failsafe probe on the wire.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProbeWire {
    /// The primary asking.
    pub from: String,
    /// Its lease term.
    pub term: u64,
    /// Its timeline.
    pub timeline: u32,
    /// Its clock when sending (echoed back).
    pub sent_at: u64,
}

/// A failsafe reply on the wire.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReplyWire {
    /// The member answering.
    pub from: String,
    /// The primary that asked.
    pub to: String,
    /// The term asked about.
    pub term: u64,
    /// The probe's send time, echoed.
    pub probe_sent_at: u64,
    /// The promise not to promote for a lease duration.
    pub confirmed: bool,
    /// The member it streams from.
    pub following: Option<String>,
}

impl From<&FailsafeProbe> for ProbeWire {
    fn from(p: &FailsafeProbe) -> Self {
        Self {
            from: p.from.to_string(),
            term: p.term,
            timeline: p.timeline.0,
            sent_at: p.sent_at.0,
        }
    }
}

impl From<ProbeWire> for FailsafeProbe {
    fn from(p: ProbeWire) -> Self {
        Self {
            from: MemberName::new(p.from),
            term: p.term,
            timeline: Timeline(p.timeline),
            sent_at: Millis(p.sent_at),
        }
    }
}

impl From<&FailsafeReply> for ReplyWire {
    fn from(r: &FailsafeReply) -> Self {
        Self {
            from: r.from.to_string(),
            to: r.to.to_string(),
            term: r.term,
            probe_sent_at: r.probe_sent_at.0,
            confirmed: r.confirmed,
            following: r.following.as_ref().map(|m| m.to_string()),
        }
    }
}

impl From<ReplyWire> for FailsafeReply {
    fn from(r: ReplyWire) -> Self {
        Self {
            from: MemberName::new(r.from),
            to: MemberName::new(r.to),
            term: r.term,
            probe_sent_at: Millis(r.probe_sent_at),
            confirmed: r.confirmed,
            following: r.following.map(MemberName::new),
        }
    }
}

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The listen address is taken or not allowed.
    #[error("failed to bind the agent API on {addr}; pick another port (--api-port / --port)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The bind error.
        #[source]
        source: std::io::Error,
    },
}

/// Every route on one port (local mode: everything on 127.0.0.1).
pub fn router(state: ApiState) -> Router {
    api_router(state.clone()).merge(metrics_router(state))
}

/// The members' routes: `/status`, `/member` and `/failsafe` (a probe's
/// confirmation is a promise that delays a failover: in Kubernetes only
/// the cluster's members reach this port, see the NetworkPolicies).
pub fn api_router(state: ApiState) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/member", get(member))
        .route("/failsafe", post(failsafe))
        .with_state(state)
}

/// What monitoring and the kubelet read: `/metrics`, `/healthz`, `/readyz`
/// (in Kubernetes on a port of its own, the only one the monitoring
/// namespace may reach).
pub fn metrics_router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(state)
}

/// Binds `addr` and serves `app` until `shutdown` resolves.
pub async fn serve_router(
    addr: SocketAddr,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>, HttpError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })?;
    Ok(tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!(%error, "agent API stopped");
        }
    }))
}

fn snapshot(state: &ApiState) -> AgentStatus {
    state
        .status
        .read()
        .expect("the status lock is never poisoned because writers only assign")
        .clone()
}

async fn healthz(State(state): State<ApiState>) -> impl IntoResponse {
    let since = state
        .last_tick
        .read()
        .expect("the tick lock is never poisoned because writers only assign")
        .elapsed();
    if since > state.wedged_after {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("wedged: no tick of the agent loop for {since:.1?}\n"),
        )
    } else {
        (StatusCode::OK, "ok\n".to_owned())
    }
}

async fn member(
    State(state): State<ApiState>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    if !state.credential.admits(authorization(&headers)) {
        return (StatusCode::UNAUTHORIZED, "members only\n").into_response();
    }
    let member = state
        .member
        .read()
        .expect("the member lock is never poisoned because writers only assign")
        .clone();
    match member {
        Some(m) => Json(m).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "no state yet\n").into_response(),
    }
}

async fn readyz(State(state): State<ApiState>) -> impl IntoResponse {
    let s = snapshot(&state);
    if s.is_ready() {
        (StatusCode::OK, format!("ready: {}\n", s.role))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {} ({})\n", s.role, s.state),
        )
    }
}

async fn status(State(state): State<ApiState>) -> Json<AgentStatus> {
    Json(snapshot(&state))
}

async fn metrics_text(State(state): State<ApiState>) -> impl IntoResponse {
    (
        [("content-type", metrics::CONTENT_TYPE)],
        metrics::render(&snapshot(&state)),
    )
}

async fn failsafe(
    State(state): State<ApiState>,
    headers: axum::http::HeaderMap,
    Json(probe): Json<ProbeWire>,
) -> Result<Json<ReplyWire>, StatusCode> {
    // A confirmation promises not to take the lease: members only.
    if !state.credential.admits(authorization(&headers)) {
        return Err(StatusCode::UNAUTHORIZED);
    }
    let (tx, rx) = oneshot::channel();
    state
        .probes
        .send((probe.into(), tx))
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    match tokio::time::timeout(Duration::from_secs(2), rx).await {
        Ok(Ok(reply)) => Ok(Json(ReplyWire::from(&reply))),
        _ => Err(StatusCode::SERVICE_UNAVAILABLE),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::agent::client;

    /// A state whose last tick was `ago`, serving `member`, of a cluster
    /// whose superuser password is `pw`.
    fn api_state(ago: Duration, member: Option<MemberState>) -> ApiState {
        ApiState {
            status: Arc::default(),
            probes: mpsc::channel(1).0,
            member: Arc::new(RwLock::new(member)),
            last_tick: Arc::new(RwLock::new(Instant::now() - ago)),
            wedged_after: Duration::from_secs(30),
            credential: MemberCredential::of("pw"),
        }
    }

    /// Each port serves only its own routes.
    #[tokio::test]
    async fn the_two_ports_split_the_routes() {
        let state = api_state(Duration::ZERO, None);
        let t = Duration::from_secs(5);
        let bind = || async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            (l.local_addr().unwrap(), l)
        };
        let (api, api_listener) = bind().await;
        let (metrics, metrics_listener) = bind().await;
        let api_app = api_router(state.clone());
        let metrics_app = metrics_router(state);
        tokio::spawn(async move { axum::serve(api_listener, api_app).await });
        tokio::spawn(async move { axum::serve(metrics_listener, metrics_app).await });
        assert_eq!(client::get(metrics, "/metrics", t).await.unwrap().0, 200);
        assert_eq!(client::get(metrics, "/healthz", t).await.unwrap().0, 200);
        assert_eq!(client::get(metrics, "/member", t).await.unwrap().0, 404);
        assert_eq!(
            client::post_json(metrics, "/failsafe", "{}", t)
                .await
                .unwrap()
                .0,
            404
        );
        assert_eq!(client::get(api, "/metrics", t).await.unwrap().0, 404);
        let member = MemberCredential::of("pw");
        let as_member = client::get_as_member(api, "/member", t, &member).await;
        assert_eq!(as_member.unwrap().0, 503, "no state yet");
    }

    /// The routes on 127.0.0.1 with a last tick `ago` and the given member state.
    async fn serve_at(ago: Duration, member: Option<MemberState>) -> SocketAddr {
        let state = api_state(ago, member);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router(state)).await });
        addr
    }

    /// `/healthz` fails once the loop has not ticked for `wedged_after`
    /// (so a liveness probe restarts a wedged agent), not before.
    #[tokio::test]
    async fn healthz_reports_a_wedged_loop() {
        let t = Duration::from_secs(5);
        let fresh = serve_at(Duration::from_secs(1), None).await;
        assert_eq!(client::get(fresh, "/healthz", t).await.unwrap().0, 200);
        let wedged = serve_at(Duration::from_secs(31), None).await;
        let (code, body) = client::get(wedged, "/healthz", t).await.unwrap();
        assert_eq!(code, 503);
        assert!(body.contains("wedged"), "{body}");
    }

    /// `/member` serves the last state as JSON to members (401 to anyone
    /// else, a failsafe probe too), 503 before the first tick.
    #[tokio::test]
    async fn member_serves_the_last_state() {
        let t = Duration::from_secs(5);
        let cred = MemberCredential::of("pw");
        let none = serve_at(Duration::ZERO, None).await;
        assert_eq!(
            client::get_as_member(none, "/member", t, &cred)
                .await
                .unwrap()
                .0,
            503
        );
        assert_eq!(client::get(none, "/member", t).await.unwrap().0, 401);
        let stranger = MemberCredential::of("guess");
        assert_eq!(
            client::get_as_member(none, "/member", t, &stranger)
                .await
                .unwrap()
                .0,
            401
        );
        let probe = r#"{"from":"pg-1","term":3,"timeline":1,"sent_at":5}"#;
        assert_eq!(
            client::post_json(none, "/failsafe", probe, t)
                .await
                .unwrap()
                .0,
            401
        );
        let state = MemberState {
            name: MemberName::new("pg-0"),
            role: crate::machine::MemberRole::Primary,
            healthy: true,
            timeline: Timeline(3),
            received_lsn: crate::machine::Lsn(9),
            replayed_lsn: crate::machine::Lsn(9),
            flushed_lsn: crate::machine::Lsn(9),
            system_identifier: None,
            following: None,
            sync_eligible: false,
            last_seen: Millis(5),
            heartbeat: 77,
        };
        let some = serve_at(Duration::ZERO, Some(state.clone())).await;
        let (code, body) = client::get_as_member(some, "/member", t, &cred)
            .await
            .unwrap();
        assert_eq!(code, 200);
        assert_eq!(serde_json::from_str::<MemberState>(&body).unwrap(), state);
    }
}
