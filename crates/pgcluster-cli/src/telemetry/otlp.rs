//! The OTLP/HTTP span exporter: protobuf bodies POSTed by the hyper client
//! kube already brings (no gRPC stack), on a one-thread runtime of its own so
//! export works whatever runtime the command runs (or has already stopped).
//!
//! ```text
//! tracing span --tracing-opentelemetry--> SdkTracerProvider --batch thread-->
//!   Reporting (warns once while the collector fails) --> OtlpHttpClient --> POST /v1/traces
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};

use super::TraceExport;

/// Collector responses are tiny; anything bigger is not a collector.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Why the exporter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ExportSetupError {
    /// The export thread's runtime could not start.
    #[error("failed to start the trace export runtime")]
    Runtime {
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The OTLP exporter rejected its configuration.
    #[error("failed to build the OTLP span exporter")]
    Exporter {
        /// The exporter's error.
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
}

/// A tracer provider exporting to `config.endpoint` in batches (every 5 s by
/// default, `OTEL_BSP_*` tune it). Resource: the SDK's (`OTEL_RESOURCE_ATTRIBUTES`,
/// telemetry.sdk.*) with `service.name` from `config`.
pub fn provider(config: &TraceExport) -> Result<SdkTracerProvider, ExportSetupError> {
    let client = OtlpHttpClient::new(config.timeout)?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(config.endpoint.clone())
        .with_timeout(config.timeout)
        .build()
        .map_err(|source| ExportSetupError::Exporter { source })?;
    let exporter = Reporting {
        inner: exporter,
        endpoint: config.endpoint.clone(),
        failing: AtomicBool::new(false),
    };
    let resource = Resource::builder()
        .with_service_name(config.service_name.clone())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Passes batches through; logs a warning when exports start failing and
/// once more when they work again, so an unreachable collector costs one
/// log line, not one per batch, and the program goes on.
#[derive(Debug)]
struct Reporting<E> {
    inner: E,
    endpoint: String,
    failing: AtomicBool,
}

impl<E: SpanExporter> SpanExporter for Reporting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let result = self.inner.export(batch).await;
        match &result {
            Err(error) if !self.failing.swap(true, Ordering::Relaxed) => tracing::warn!(
                endpoint = %self.endpoint,
                %error,
                "failed to export traces; spans are dropped until the collector answers"
            ),
            Ok(()) if self.failing.swap(false, Ordering::Relaxed) => {
                tracing::info!(endpoint = %self.endpoint, "exporting traces again");
            }
            _ => {}
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// HTTP/1.1 over hyper on a private one-worker runtime: the SDK's batch
/// thread has no Tokio runtime, and the command's own may already be gone
/// when the guard flushes.
#[derive(Debug)]
struct OtlpHttpClient {
    client: Client<HttpConnector, Full<Bytes>>,
    runtime: ExportRuntime,
    timeout: Duration,
}

impl OtlpHttpClient {
    fn new(timeout: Duration) -> Result<Self, ExportSetupError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otlp-export")
            .enable_all()
            .build()
            .map_err(|source| ExportSetupError::Runtime { source })?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self {
            client,
            runtime: ExportRuntime(Some(runtime)),
            timeout,
        })
    }
}

#[async_trait::async_trait]
impl HttpClient for OtlpHttpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let Some(runtime) = &self.runtime.0 else {
            return Err("the trace export runtime has stopped".into());
        };
        let client = self.client.clone();
        let timeout = self.timeout;
        let task = runtime.spawn(async move {
            let exchange = async {
                let (parts, body) = request.into_parts();
                let response = client
                    .request(Request::from_parts(parts, Full::new(body)))
                    .await?;
                let (parts, body) = response.into_parts();
                let body = Limited::new(body, MAX_RESPONSE_BYTES)
                    .collect()
                    .await?
                    .to_bytes();
                Ok::<_, HttpError>(Response::from_parts(parts, body))
            };
            match tokio::time::timeout(timeout, exchange).await {
                Ok(result) => result,
                Err(_) => Err(format!("no answer within {timeout:?}").into()),
            }
        });
        task.await?
    }
}

/// Owns the export runtime; dropping it never blocks (it may be dropped on
/// a runtime thread).
#[derive(Debug)]
struct ExportRuntime(Option<tokio::runtime::Runtime>);

impl Drop for ExportRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use std::collections::BTreeMap;

    use opentelemetry::trace::TracerProvider as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// One HTTP request as the collector saw it.
    struct Received {
        head: String,
        body: Vec<u8>,
    }

    /// Accepts one connection, reads one request (head + Content-Length
    /// body) and answers 200 with an empty protobuf body.
    async fn collect_one(listener: TcpListener) -> Received {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        let head_end = loop {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed before the request head");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().unwrap())
            })
            .expect("the exporter sends a Content-Length");
        while buf.len() < head_end + length {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed before the whole body");
            buf.extend_from_slice(&chunk[..n]);
        }
        stream
            .write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
            )
            .await
            .unwrap();
        Received {
            head,
            body: buf[head_end..head_end + length].to_vec(),
        }
    }

    /// A span recorded through `tracing` reaches a real HTTP collector as an
    /// OTLP/protobuf POST to /v1/traces when the provider shuts down (the
    /// guard's flush on exit), with the service name from the config.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exports_a_span_to_an_http_collector_on_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let collector = tokio::spawn(collect_one(listener));
        let vars = BTreeMap::from([(
            super::super::traces::ENDPOINT.to_owned(),
            format!("http://{address}"),
        )]);
        let config = TraceExport::from_env(&vars, "pgcluster-test")
            .unwrap()
            .unwrap();
        let provider = provider(&config).unwrap();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("pgcluster"));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("otlp_roundtrip_span", member = "local-0");
            span.in_scope(|| tracing::info!("inside"));
        });
        // The shutdown blocks until the final batch is exported.
        tokio::task::spawn_blocking(move || provider.shutdown())
            .await
            .unwrap()
            .unwrap();
        let received = tokio::time::timeout(Duration::from_secs(10), collector)
            .await
            .expect("the collector got a request within 10 s")
            .unwrap();
        assert!(
            received.head.starts_with("POST /v1/traces HTTP/1.1\r\n"),
            "{}",
            received.head
        );
        assert!(
            received
                .head
                .to_ascii_lowercase()
                .contains("content-type: application/x-protobuf"),
            "{}",
            received.head
        );
        let contains = |needle: &[u8]| received.body.windows(needle.len()).any(|w| w == needle);
        assert!(contains(b"otlp_roundtrip_span"), "span name in the body");
        assert!(contains(b"pgcluster-test"), "service name in the body");
    }

    /// With nothing listening, export fails, the failure is reported (not a
    /// panic) and shutdown returns within its bound.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unreachable_collector_does_not_stop_the_program() {
        // Bind then drop: a port on 127.0.0.1 nobody listens on.
        let address = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let config = TraceExport {
            endpoint: format!("http://{address}/v1/traces"),
            service_name: "pgcluster-test".to_owned(),
            timeout: Duration::from_millis(500),
        };
        let provider = provider(&config).unwrap();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("pgcluster"));
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            tracing::info_span!("dropped_span").in_scope(|| {});
        });
        let started = std::time::Instant::now();
        let result = tokio::task::spawn_blocking(move || {
            provider.shutdown_with_timeout(Duration::from_secs(5))
        })
        .await
        .unwrap();
        assert!(started.elapsed() < Duration::from_secs(6));
        // The SDK reports the failed final export; either way nothing panicked.
        let _ = result;
    }
}
