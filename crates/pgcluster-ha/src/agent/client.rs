//! The HTTP client for the agent API (peers' failsafe probes, `pgcluster
//! status`, `up`'s readiness checks): hyper's HTTP/1.1 client, one request
//! per connection, bounded in time.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Why a call to an agent failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting, sending or reading the answer failed.
    #[error("failed to call the agent API at http://{addr}{path}; is the agent running?")]
    Io {
        /// The agent.
        addr: SocketAddr,
        /// The path.
        path: String,
        /// The client's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// No answer in time.
    #[error("failed to get an answer from http://{addr}{path} within {timeout:?}")]
    Timeout {
        /// The agent.
        addr: SocketAddr,
        /// The path.
        path: String,
        /// The time allowed.
        timeout: Duration,
    },
}

/// `GET path`; returns the status code and body.
pub async fn get(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<(u16, String), ClientError> {
    request(addr, hyper::Method::GET, path, None, timeout, None).await
}

/// `GET path` of a members' route, with the members' credential.
pub async fn get_as_member(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
    credential: &super::credential::MemberCredential,
) -> Result<(u16, String), ClientError> {
    request(
        addr,
        hyper::Method::GET,
        path,
        None,
        timeout,
        Some(credential),
    )
    .await
}

/// `POST path` of a members' route with a JSON body and the members' credential.
pub async fn post_json_as_member(
    addr: SocketAddr,
    path: &str,
    body: &str,
    timeout: Duration,
    credential: &super::credential::MemberCredential,
) -> Result<(u16, String), ClientError> {
    request(
        addr,
        hyper::Method::POST,
        path,
        Some(body),
        timeout,
        Some(credential),
    )
    .await
}

/// `POST path` with a JSON body; returns the status code and body.
pub async fn post_json(
    addr: SocketAddr,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Result<(u16, String), ClientError> {
    request(addr, hyper::Method::POST, path, Some(body), timeout, None).await
}

async fn request(
    addr: SocketAddr,
    method: hyper::Method,
    path: &str,
    body: Option<&str>,
    timeout: Duration,
    credential: Option<&super::credential::MemberCredential>,
) -> Result<(u16, String), ClientError> {
    let fail = |source: Box<dyn std::error::Error + Send + Sync>| ClientError::Io {
        addr,
        path: path.to_owned(),
        source,
    };
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header(hyper::header::CONNECTION, "close");
    if body.is_some() {
        builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    if let Some(credential) = credential {
        builder = builder.header(hyper::header::AUTHORIZATION, credential.header());
    }
    let req = builder
        .body(Full::new(Bytes::from(body.unwrap_or_default().to_owned())))
        .map_err(|e| fail(e.into()))?;
    // No pool: a call is rare (probes, CLI) and a kept connection to a
    // peer that died would only fail the next one.
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(HttpConnector::new());
    let call = async {
        let response = client.request(req).await.map_err(|e| fail(e.into()))?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| fail(e.into()))?
            .to_bytes();
        Ok::<_, ClientError>((status, String::from_utf8_lossy(&bytes).into_owned()))
    };
    tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| ClientError::Timeout {
            addr,
            path: path.to_owned(),
            timeout,
        })?
}

/// Sends a failsafe probe to every peer at once; the replies that come
/// within half a loop interval (at least 50 ms).
pub async fn probe_peers(
    cfg: &super::AgentConfig,
    probe: &crate::machine::FailsafeProbe,
) -> Vec<crate::machine::FailsafeReply> {
    use super::http::{ProbeWire, ReplyWire};
    let body = serde_json::to_string(&ProbeWire::from(probe))
        .expect("a probe serializes because it is plain data");
    let timeout = cfg.loop_interval().max(Duration::from_millis(100)) / 2;
    let credential = cfg.member_credential();
    let calls = cfg
        .ha
        .peers()
        .filter_map(|p| cfg.peers.get(p))
        .map(|p| {
            let target = (p.host.clone(), p.api_port);
            let body = body.clone();
            let credential = credential.clone();
            tokio::spawn(async move {
                // A dead peer's DNS name may not resolve: no reply from it.
                let resolve = tokio::net::lookup_host(target);
                let addr = tokio::time::timeout(timeout, resolve)
                    .await
                    .ok()?
                    .ok()?
                    .next()?;
                post_json_as_member(addr, "/failsafe", &body, timeout, &credential)
                    .await
                    .ok()
            })
        })
        .collect::<Vec<_>>();
    let mut replies = Vec::new();
    for call in calls {
        if let Ok(Some((200, text))) = call.await
            && let Ok(wire) = serde_json::from_str::<ReplyWire>(&text)
        {
            replies.push(wire.into());
        }
    }
    replies
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;

    /// A real HTTP server on 127.0.0.1: status and body of GET and POST
    /// come back as sent (a chunked body too); a server that never answers
    /// is a timeout naming the address; nobody listening is an I/O error.
    #[tokio::test]
    async fn calls_a_real_server() {
        use axum::routing::{get as route_get, post};
        let app = axum::Router::new()
            .route(
                "/down",
                route_get(|| async { (axum::http::StatusCode::SERVICE_UNAVAILABLE, "not ready") }),
            )
            .route("/echo", post(|body: String| async move { body }))
            .route(
                "/chunked",
                route_get(|| async {
                    // Two chunks: Transfer-Encoding: chunked.
                    axum::body::Body::from_stream(futures::stream::iter([
                        Ok::<_, std::io::Error>("abc"),
                        Ok("de"),
                    ]))
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let t = Duration::from_secs(5);
        assert_eq!(
            get(addr, "/down", t).await.unwrap(),
            (503, "not ready".to_owned())
        );
        assert_eq!(
            post_json(addr, "/echo", "{\"a\":1}", t).await.unwrap(),
            (200, "{\"a\":1}".to_owned())
        );
        assert_eq!(
            get(addr, "/chunked", t).await.unwrap(),
            (200, "abcde".to_owned())
        );

        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_addr = silent.local_addr().unwrap();
        let error = get(silent_addr, "/status", Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(error, ClientError::Timeout { .. }), "{error}");
        assert!(error.to_string().contains(&silent_addr.to_string()));
        drop(silent);
        let error = get(silent_addr, "/status", t).await.unwrap_err();
        assert!(matches!(error, ClientError::Io { .. }), "{error}");
    }
}
