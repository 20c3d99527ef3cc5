//! Telemetry: structured logs through `tracing` (JSON for machines or compact text for people),
//! traces, metrics and the audit trail's log records over OTLP (`otlp`), the metric instruments
//! with their Prometheus text rendering (`metrics`), and the switch that keeps personal data out
//! of log lines unless a tenant allows it (`personal`).
//!
//! Log lines and their context (request id, tenant) are `tracing`'s; spans for OTLP are recorded
//! by `trace` (which traces leave: `keep`) and leave through an `outbox` over HTTP/protobuf, or
//! the SDK's batch processor over gRPC. Without an OTLP endpoint, no exporter, processor, task or
//! thread exists: a span costs one atomic load, and the metric instruments are no-ops unless the
//! Prometheus endpoint is on.
//! The OTLP log signal carries only audit records (`audit` emits them through
//! [`Telemetry::audit_export`]); log lines stay in the log.
//! [`init`] returns the [`Telemetry`] guard, which flushes what is buffered when dropped.

pub mod export;
pub mod keep;
pub mod metrics;
pub mod otlp;
pub mod outbox;
pub mod personal;
pub mod protobuf;
pub mod trace;

use std::sync::Arc;

use opentelemetry::KeyValue;
use opentelemetry::logs::LoggerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::{SdkLogger, SdkLoggerProvider};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{BatchSpanProcessor, SpanProcessor as _};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt;
use tracing_subscriber::prelude::*;

pub use metrics::Scrape;
pub use otlp::{OtlpConfig, Protocol};
pub use personal::personal;

/// A hasher for keys made of program addresses (static text, shared labels) and small numbers,
/// which no client chooses: a multiply per word is enough, where SipHash costs a hundred
/// instructions a word.
#[derive(Default)]
pub(crate) struct Addresses(u64);

impl std::hash::Hasher for Addresses {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// A static word's key for [`Addresses`]-hashed maps: where its text is and how long, in one
/// word (user-space addresses fit in 48 bits; a label is far shorter than 64 KiB). Static text
/// does not move, so no text is hashed or compared.
pub(crate) fn word(text: &'static str) -> u64 {
    text.as_ptr() as usize as u64 ^ ((text.len() as u64) << 48)
}

/// The `service.name` unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` name one.
const SERVICE_NAME: &str = "scimbridge";

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

/// The share of successful reads whose traces are exported unless `--trace-reads` says
/// otherwise. Failed requests and changes are always traced: a failure is what an operator looks
/// for when Entra reports a failed step, and a change's audit record names its trace. Exporting
/// every read cost 13–20% of read throughput on the 2-core benchmark machine (bench/README.md,
/// "Telemetry cost").
pub const DEFAULT_TRACE_READS: f64 = 0.1;

/// What to export besides logs.
#[derive(Debug, Clone)]
pub struct Config {
    /// OTLP export; it runs only for signals that have an endpoint (see [`OtlpConfig`]).
    pub otlp: OtlpConfig,
    /// Keep metrics for a Prometheus scrape (the admin listener's `/metrics`).
    pub prometheus: bool,
    /// The share (0 to 1) of successful reads whose traces are exported; failed requests' and
    /// changes' always are (see [`keep`]). 1: every trace the sampler samples.
    pub trace_reads: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self { otlp: OtlpConfig::default(), prometheus: false, trace_reads: DEFAULT_TRACE_READS }
    }
}

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error(transparent)]
    Otlp(#[from] otlp::OtlpError),
    #[error("Prometheus exporter: {0}")]
    Prometheus(String),
}

/// The running exporters. Dropping it flushes buffered spans, metrics and log records and stops
/// the exporters;
/// drop it while the runtime that [`init`] ran in is still alive (exports run on it).
#[must_use = "dropping the guard stops the exporters"]
pub struct Telemetry {
    traces: Option<otlp::Export<Arc<BatchSpanProcessor>>>,
    meter: Option<SdkMeterProvider>,
    logs: Option<otlp::Export<SdkLoggerProvider>>,
    scrape: Option<Scrape>,
}

/// Where audit records go over OTLP: encoded into the outbox (OTLP/HTTP), or as SDK log records
/// (gRPC). Cheap to clone.
#[derive(Debug, Clone)]
pub enum AuditExport {
    Outbox(Arc<outbox::Outbox>),
    Sdk(SdkLogger),
}

/// How long shutdown waits for an outbox's last export.
const LAST_EXPORT: std::time::Duration = std::time::Duration::from_secs(5);

impl Telemetry {
    /// The Prometheus scrape source, when [`Config::prometheus`] asked for one.
    pub fn scrape(&self) -> Option<Scrape> {
        self.scrape.clone()
    }

    /// Where audit records go over OTLP, when the log signal is configured.
    pub fn audit_export(&self) -> Option<AuditExport> {
        self.logs.as_ref().map(|l| match l {
            otlp::Export::Outbox(outbox, _) => AuditExport::Outbox(Arc::clone(outbox)),
            otlp::Export::Batch(p) => AuditExport::Sdk(p.logger(otlp::SCOPE)),
        })
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        // Errors here can only be reported to the log that is shutting down with them.
        if let Some(t) = self.traces.take()
            && let Err(e) = t.finish(LAST_EXPORT, |b| b.shutdown())
        {
            eprintln!("telemetry: flushing spans failed: {e}");
        }
        if let Some(m) = self.meter.take()
            && let Err(e) = m.shutdown()
        {
            eprintln!("telemetry: flushing metrics failed: {e}");
        }
        if let Some(l) = self.logs.take()
            && let Err(e) = l.finish(LAST_EXPORT, |l| l.shutdown())
        {
            eprintln!("telemetry: flushing audit records failed: {e}");
        }
    }
}

/// Installs the global subscriber (`RUST_LOG` overrides the log level, `info`), and with `config`
/// the OTLP exporters and the Prometheus reader. Call it inside the Tokio runtime that serves:
/// the exporters send on it.
pub fn init(format: LogFormat, config: &Config) -> Result<Telemetry, TelemetryError> {
    let resource = resource();
    let traces_signal = config.otlp.traces()?;
    let metrics_signal = config.otlp.metrics()?;
    let logs_signal = config.otlp.logs()?;
    let traces = match &traces_signal {
        Some(signal) => {
            let sampler = keep::Sampler::from_env(&|k| std::env::var(k).ok()).map_err(otlp::OtlpError::from)?;
            let (export, sink) = match otlp::span_export(signal, &resource, spans_lost)? {
                otlp::Export::Outbox(outbox, exporting) => {
                    let sink = trace::Sink::Outbox(Arc::clone(&outbox));
                    (otlp::Export::Outbox(outbox, exporting), sink)
                }
                otlp::Export::Batch(batch) => {
                    let batch = Arc::new(batch);
                    (otlp::Export::Batch(Arc::clone(&batch)), trace::Sink::Batch(batch))
                }
            };
            trace::install(trace::Tracing::new(sink, sampler, config.trace_reads));
            Some(export)
        }
        None => None,
    };
    let audit = match &logs_signal {
        Some(signal) => Some(match otlp::log_export(signal, &resource, audit_lost)? {
            otlp::Export::Outbox(outbox, exporting) => otlp::Export::Outbox(outbox, exporting),
            otlp::Export::Batch(batch) => otlp::Export::Batch(
                SdkLoggerProvider::builder().with_log_processor(batch).with_resource(resource.clone()).build(),
            ),
        }),
        None => None,
    };
    let mut scrape = None;
    let mut meter = None;
    if metrics_signal.is_some() || config.prometheus {
        let mut builder = SdkMeterProvider::builder().with_resource(resource);
        if let Some(signal) = &metrics_signal {
            builder = builder.with_reader(PeriodicReader::builder(otlp::metric_exporter(signal)?).build());
        }
        if config.prometheus {
            let (reader, s) = metrics::prometheus_reader().map_err(TelemetryError::Prometheus)?;
            builder = builder.with_reader(reader);
            scrape = Some(s);
        }
        let provider = builder.build();
        opentelemetry::global::set_meter_provider(provider.clone());
        meter = Some(provider);
    }

    let logs = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = match format {
        LogFormat::Json => fmt::layer().json().with_current_span(true).with_writer(std::io::stderr).boxed(),
        LogFormat::Text => fmt::layer().compact().with_writer(std::io::stderr).boxed(),
    };
    // Warnings and errors become events of the span they happen in.
    let events = traces.as_ref().map(|_| trace::SpanEvents.with_filter(LevelFilter::WARN));
    // A second init (tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry().with(fmt.with_filter(logs)).with(events).try_init();
    if let Some(signal) = traces_signal.as_ref().or(metrics_signal.as_ref()).or(logs_signal.as_ref()) {
        let (traces, metrics, logs) = (traces_signal.is_some(), metrics_signal.is_some(), logs_signal.is_some());
        tracing::info!(protocol = signal.protocol.as_str(), traces, metrics, logs, "OTLP export on");
    }
    Ok(Telemetry { traces, meter, logs: audit, scrape })
}

/// Counts spans lost on their way to the collector.
fn spans_lost(n: u64) {
    metrics::get().spans_dropped(n);
}

/// Counts audit records lost on their way to the collector.
fn audit_lost(n: u64) {
    metrics::get().audit_dropped(n);
}

/// Runs `f`, a task a request spawns (a lock renewal), as part of that request: in its log
/// context, its trace and its tenant's choice on personal data, none of which a task inherits.
pub fn inherit<F: std::future::Future>(f: F) -> impl std::future::Future<Output = F::Output> {
    tracing::Instrument::in_current_span(trace::inherit(personal::inherit(f)))
}

/// `service.name` (ours unless the standard variables name one), `service.version`, and what
/// `OTEL_RESOURCE_ATTRIBUTES` adds.
fn resource() -> Resource {
    let named = std::env::var_os("OTEL_SERVICE_NAME").is_some()
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES")
            .is_ok_and(|a| a.split(',').any(|kv| kv.trim().starts_with("service.name=")));
    let builder = Resource::builder().with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if named { builder.build() } else { builder.with_service_name(SERVICE_NAME).build() }
}
