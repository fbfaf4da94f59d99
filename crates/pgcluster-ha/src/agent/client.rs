//! A minimal HTTP/1.1 client for the agent API on 127.0.0.1 (peers' failsafe
//! probes, `pgcluster status`, `up`'s readiness checks): one request per
//! connection, `Connection: close`, bounded in time.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Why a call to an agent failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting, writing or reading failed.
    #[error("failed to call the agent API at http://{addr}{path}; is the agent running?")]
    Io {
        /// The agent.
        addr: SocketAddr,
        /// The path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
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
    /// The answer was not HTTP.
    #[error("failed to parse the answer of http://{addr}{path}")]
    Malformed {
        /// The agent.
        addr: SocketAddr,
        /// The path.
        path: String,
    },
}

/// `GET path`; returns the status code and body.
pub async fn get(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<(u16, String), ClientError> {
    request(addr, "GET", path, None, timeout).await
}

/// `POST path` with a JSON body; returns the status code and body.
pub async fn post_json(
    addr: SocketAddr,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Result<(u16, String), ClientError> {
    request(addr, "POST", path, Some(body), timeout).await
}

async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    timeout: Duration,
) -> Result<(u16, String), ClientError> {
    let io = |source| ClientError::Io {
        addr,
        path: path.to_owned(),
        source,
    };
    let call = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.map_err(io)?;
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        if let Some(b) = body {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            ));
        } else {
            req.push_str("\r\n");
        }
        stream.write_all(req.as_bytes()).await.map_err(io)?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.map_err(io)?;
        Ok::<Vec<u8>, ClientError>(raw)
    };
    let raw = tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| ClientError::Timeout {
            addr,
            path: path.to_owned(),
            timeout,
        })??;
    parse(&raw).ok_or_else(|| ClientError::Malformed {
        addr,
        path: path.to_owned(),
    })
}

/// Status code and body of a full HTTP/1.1 response (identity or chunked body).
fn parse(raw: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    if !chunked {
        return Some((code, body.to_owned()));
    }
    let mut out = String::new();
    let mut rest = body;
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        if size == 0 {
            return Some((code, out));
        }
        out.push_str(after.get(..size)?);
        rest = after.get(size + 2..)?;
    }
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
    let calls = cfg
        .ha
        .peers()
        .filter_map(|p| cfg.peers.get(p))
        .map(|p| {
            let target = (p.host.clone(), p.api_port);
            let body = body.clone();
            tokio::spawn(async move {
                // A dead peer's DNS name may not resolve: no reply from it.
                let resolve = tokio::net::lookup_host(target);
                let addr = tokio::time::timeout(timeout, resolve)
                    .await
                    .ok()?
                    .ok()?
                    .next()?;
                post_json(addr, "/failsafe", &body, timeout).await.ok()
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
mod tests {
    use super::*;

    /// Plain and chunked bodies are both understood.
    #[test]
    fn parses_responses() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n";
        assert_eq!(parse(plain), Some((200, "ok\n".to_owned())));
        let chunked =
            b"HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse(chunked), Some((503, "abcde".to_owned())));
        assert_eq!(parse(b"garbage"), None);
    }
}
