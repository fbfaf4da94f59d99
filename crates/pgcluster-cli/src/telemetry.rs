//! Logging and tracing setup, the same for every command: human-readable
//! logs on a terminal, JSON lines otherwise (agents write to their log files,
//! pods to stdout). `RUST_LOG` overrides the default level. Spans go to an
//! OTLP collector only when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; the returned guard flushes
//! them on exit.
//!
//! ```text
//! env --Config::from_env--> Config --init--> registry
//!   ├─ fmt layer (RUST_LOG | default filter)
//!   └─ OpenTelemetry layer (RUST_LOG | info; agent ticks only at debug) --> otlp::provider
//! ```

mod otlp;
mod traces;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Metadata;
use tracing_subscriber::filter::{FilterExt, LevelFilter, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

pub use otlp::ExportSetupError;
pub use traces::{TraceConfigError, TraceExport};

use crate::CliError;

/// Spans are exported at info and above unless `RUST_LOG` says otherwise.
const DEFAULT_TRACE_FILTER: &str = "info,kube=warn";
/// How long the guard waits for the last spans to reach the collector.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// How log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable on stderr when it is a terminal, JSON lines on stdout otherwise.
    Auto,
    /// JSON lines on stdout.
    Json,
    /// Human-readable on stderr.
    Text,
}

/// Everything [`init`] sets up.
#[derive(Clone, Debug)]
pub struct Config {
    /// The log filter when `RUST_LOG` is unset (`info`, `warn`, `info,kube=warn`).
    pub default_filter: String,
    /// How log lines look.
    pub log_format: LogFormat,
    /// Where spans go; `None` keeps OTLP export off.
    pub traces: Option<TraceExport>,
}

impl Config {
    /// Auto-format logs with `default_filter`; traces per the `OTEL_*`
    /// variables in `vars`, as service `default_service` unless `OTEL_SERVICE_NAME` says otherwise.
    pub fn from_env(
        vars: &BTreeMap<String, String>,
        default_filter: &str,
        default_service: &str,
    ) -> Result<Self, TraceConfigError> {
        Ok(Self {
            default_filter: default_filter.to_owned(),
            log_format: LogFormat::Auto,
            traces: TraceExport::from_env(vars, default_service)?,
        })
    }
}

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// An `OTEL_*` variable is set but unusable.
    #[error(transparent)]
    Config(#[from] TraceConfigError),
    /// The exporter could not be built.
    #[error("failed to set up trace export to {endpoint}")]
    Export {
        /// The collector URL.
        endpoint: String,
        /// What failed.
        #[source]
        source: ExportSetupError,
    },
}

/// Flushes pending spans and stops export when dropped: keep it alive until
/// the command returns (a clean exit on SIGTERM/Ctrl-C drops it).
#[must_use = "dropping the guard stops trace export"]
#[derive(Debug, Default)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Whether spans are being exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown_with_timeout(FLUSH_TIMEOUT)
        {
            tracing::warn!(%error, "failed to flush traces on exit");
        }
    }
}

/// Installs the global subscriber: logs per `config`, plus span export when
/// `config.traces` is set. A second call (tests running commands twice)
/// keeps the first subscriber and exports nothing more.
pub fn init(config: &Config) -> Result<TelemetryGuard, TelemetryError> {
    let provider = match &config.traces {
        Some(traces) => Some(
            otlp::provider(traces).map_err(|source| TelemetryError::Export {
                endpoint: traces.endpoint.clone(),
                source,
            })?,
        ),
        None => None,
    };
    let otel = provider.as_ref().map(|provider| {
        let filter = EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new(DEFAULT_TRACE_FILTER));
        let ticks = filter
            .max_level_hint()
            .is_none_or(|level| level >= LevelFilter::DEBUG);
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("pgcluster"))
            .with_filter(filter.and(filter_fn(move |meta| ticks || !agent_tick(meta))))
    });
    let installed = Registry::default()
        .with(log_layer(config))
        .with(otel)
        .try_init();
    match (installed, provider) {
        (Ok(()), Some(provider)) => {
            if let Some(traces) = &config.traces {
                tracing::debug!(endpoint = %traces.endpoint, service = %traces.service_name, "exporting traces");
            }
            Ok(TelemetryGuard {
                provider: Some(provider),
            })
        }
        (Err(_), Some(provider)) => {
            let _ = provider.shutdown();
            Ok(TelemetryGuard::default())
        }
        (_, None) => Ok(TelemetryGuard::default()),
    }
}

/// [`init`] from the process environment, for the commands: an unusable
/// `OTEL_*` variable is a usage error naming it (exit code 1).
pub fn init_from_env(
    default_filter: &str,
    default_service: &str,
) -> Result<TelemetryGuard, CliError> {
    let config = Config::from_env(&env_vars(), default_filter, default_service)
        .map_err(|e| CliError::Invalid(format!("error in the OpenTelemetry environment: {e}")))?;
    init(&config).map_err(CliError::from)
}

/// The process environment; variables that are not UTF-8 are skipped
/// (`std::env::vars` would panic on them).
pub fn env_vars() -> BTreeMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

fn log_layer(config: &Config) -> Box<dyn Layer<Registry> + Send + Sync> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(&config.default_filter));
    let json = match config.log_format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    if json {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_writer(std::io::stdout)
            .with_filter(filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed()
    }
}

/// The agent loop's span: once per tick per agent, exported only when
/// `RUST_LOG` enables debug (its failover work has spans of its own).
fn agent_tick(meta: &Metadata<'_>) -> bool {
    meta.is_span() && meta.name() == "tick" && meta.target().starts_with("pgcluster_ha::agent")
}
