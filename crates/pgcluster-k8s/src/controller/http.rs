//! A minimal HTTP endpoint for the controller pod: `GET /metrics`
//! (Prometheus text format of the process registry), `GET /healthz`
//! (liveness: the process answers) and `GET /readyz` (readiness). Anything
//! else is 404. One request per connection; no keep-alive, no bodies.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The response to a request line `GET <path> ...`.
pub fn respond(request_line: &str, registry: &Registry) -> (u16, &'static str, String) {
    let mut parts = request_line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    if method != "GET" {
        return (405, "text/plain", "method not allowed\n".to_owned());
    }
    match path {
        "/healthz" | "/readyz" => (200, "text/plain", "ok\n".to_owned()),
        "/metrics" => {
            let mut out = String::new();
            match prometheus_client::encoding::text::encode(&mut out, registry) {
                Ok(()) => (
                    200,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    out,
                ),
                Err(_) => (500, "text/plain", "failed to encode metrics\n".to_owned()),
            }
        }
        _ => (404, "text/plain", "not found\n".to_owned()),
    }
}

/// Binds `addr` and serves until the listener fails.
pub async fn serve(addr: SocketAddr, registry: Arc<Registry>) -> std::io::Result<()> {
    serve_on(TcpListener::bind(addr).await?, registry).await
}

/// Serves on a bound listener until it fails.
pub async fn serve_on(listener: TcpListener, registry: Arc<Registry>) -> std::io::Result<()> {
    loop {
        let (mut socket, _) = listener.accept().await?;
        let registry = registry.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let n = match tokio::time::timeout(
                std::time::Duration::from_secs(5),
                socket.read(&mut buf),
            )
            .await
            {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let head = String::from_utf8_lossy(&buf[..n]);
            let line = head.lines().next().unwrap_or_default();
            let (code, content_type, body) = respond(line, &registry);
            let reason = match code {
                200 => "OK",
                404 => "Not Found",
                405 => "Method Not Allowed",
                _ => "Internal Server Error",
            };
            let response = format!(
                "HTTP/1.1 {code} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;

    /// Routes: health, metrics, 404, 405.
    #[test]
    fn routes() {
        let registry = Registry::default();
        assert_eq!(respond("GET /healthz HTTP/1.1", &registry).0, 200);
        assert_eq!(respond("GET /metrics HTTP/1.1", &registry).0, 200);
        assert_eq!(respond("GET /nope HTTP/1.1", &registry).0, 404);
        assert_eq!(respond("POST /metrics HTTP/1.1", &registry).0, 405);
    }
}
