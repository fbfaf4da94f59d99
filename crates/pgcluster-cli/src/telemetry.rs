//! Logging setup, the same for every command: human-readable logs on a
//! terminal, JSON lines otherwise (agents write to their log files, pods to
//! stdout). `RUST_LOG` overrides the default level.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber with `default_level` unless `RUST_LOG` is
/// set. Human format on a terminal (stderr), JSON lines on stdout otherwise.
pub fn init(default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = if std::io::stderr().is_terminal() {
        builder.with_writer(std::io::stderr).try_init()
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_writer(std::io::stdout)
            .try_init()
    };
    // A second init (tests calling run() twice) keeps the first subscriber.
    let _ = result;
}
