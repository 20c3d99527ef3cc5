//! Logging setup: structured logs through `tracing`, JSON for machines or compact text for people.
//! (OTLP export of traces and metrics plugs in here as further layers.)

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt;
use tracing_subscriber::prelude::*;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

/// Installs the global subscriber; `RUST_LOG` overrides the default level (`info`).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Json => {
            registry.with(fmt::layer().json().with_current_span(true).with_writer(std::io::stderr)).try_init()
        }
        LogFormat::Text => registry.with(fmt::layer().compact().with_writer(std::io::stderr)).try_init(),
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}
