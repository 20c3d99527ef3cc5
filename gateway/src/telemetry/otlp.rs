//! OTLP export settings and exporters: which signals export where, resolved from `serve`'s flags
//! and the standard `OTEL_*` variables, and the span, metric and log exporters for them, over
//! HTTP/protobuf or gRPC. The log signal carries the audit trail (`audit`), nothing else.
//!
//! Spans and audit records over HTTP/protobuf go through our own exporters (`export`), which
//! write the protobuf straight from the SDK's records; metrics over HTTP and every signal over
//! gRPC use the SDK's exporters. Either way requests are sent on the gateway's Tokio runtime (a
//! reqwest client with rustls, like every other outbound call, or tonic's channel): the SDK's
//! batch processors run on their own threads and only wait for the answer, so no second runtime
//! and no blocking client exist.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::tonic_types::metadata::MetadataMap;
use opentelemetry_otlp::{MetricExporter, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::BatchLogProcessor;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SpanProcessor};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::export::HttpExport;
use super::outbox::{self, Exporting, Outbox};
use super::protobuf::{self, EncodedResource};

/// How long one export may take, as the OTLP specification's default.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// Protobuf over HTTP (`/v1/traces`, `/v1/metrics`, `/v1/logs` under the endpoint), usually
    /// port 4318.
    #[value(name = "http/protobuf")]
    HttpProtobuf,
    /// gRPC, usually port 4317.
    #[value(name = "grpc")]
    Grpc,
}

impl Protocol {
    /// The name `OTEL_EXPORTER_OTLP_PROTOCOL` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HttpProtobuf => "http/protobuf",
            Self::Grpc => "grpc",
        }
    }

    fn parse(s: &str) -> Result<Self, OtlpError> {
        match s.trim() {
            "http/protobuf" => Ok(Self::HttpProtobuf),
            "grpc" => Ok(Self::Grpc),
            other => Err(OtlpError::Protocol(other.to_owned())),
        }
    }
}

/// Why an exporter could not be set up. Never carries header values (they hold API keys).
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("OTLP protocol `{0}` is not supported; use http/protobuf or grpc")]
    Protocol(String),
    #[error("OTLP header `{0}` is not a valid header name and value")]
    Header(String),
    #[error("OTLP endpoint from {0} is not an http or https URL")]
    Endpoint(String),
    #[error("{0} is not a number of milliseconds")]
    Timeout(String),
    #[error("{0} is not a positive number")]
    Number(String),
    #[error(transparent)]
    Sampler(#[from] super::keep::SamplerError),
    #[error("OTLP compression `{0}` is not supported; leave it unset or `none`")]
    Compression(String),
    #[error("OTLP export needs the Tokio runtime")]
    NoRuntime,
    #[error("OTLP HTTP client: {0}")]
    Client(String),
    #[error("OTLP exporter: {0}")]
    Build(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// `serve`'s OTLP flags. Anything left unset falls back to the standard variables, which the
/// exporter reads itself (`OTEL_EXPORTER_OTLP_[TRACES_|METRICS_|LOGS_]ENDPOINT`, `…_HEADERS`,
/// `…_TIMEOUT`, `…_COMPRESSION`).
#[derive(Debug, Clone, Default)]
pub struct OtlpConfig {
    /// Base URL of the collector; over HTTP, `/v1/traces`, `/v1/metrics` and `/v1/logs` are
    /// appended to it, as to `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: Option<String>,
    pub protocol: Option<Protocol>,
    /// Sent with every export (e.g. a vendor's API key), besides `OTEL_EXPORTER_OTLP_HEADERS`.
    pub headers: Vec<(String, String)>,
}

/// A telemetry signal and the names of its variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Traces,
    Metrics,
    Logs,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Traces => "traces",
            Self::Metrics => "metrics",
            Self::Logs => "logs",
        }
    }
    fn var(self, suffix: &str) -> String {
        format!("OTEL_EXPORTER_OTLP_{}_{suffix}", self.name().to_ascii_uppercase())
    }
}

/// One signal's export, resolved: it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signal {
    kind: Kind,
    pub protocol: Protocol,
    /// The URL to send to; `None` leaves it to the standard variables.
    endpoint: Option<String>,
    headers: Vec<(String, String)>,
}

impl OtlpConfig {
    /// The trace export, if one is configured.
    pub fn traces(&self) -> Result<Option<Signal>, OtlpError> {
        self.signal(Kind::Traces, &|k| std::env::var(k).ok())
    }

    /// The metric export, if one is configured.
    pub fn metrics(&self) -> Result<Option<Signal>, OtlpError> {
        self.signal(Kind::Metrics, &|k| std::env::var(k).ok())
    }

    /// The log export (audit records), if one is configured.
    pub fn logs(&self) -> Result<Option<Signal>, OtlpError> {
        self.signal(Kind::Logs, &|k| std::env::var(k).ok())
    }

    /// A signal exports when an endpoint is given (flag, generic or per-signal variable), unless
    /// `OTEL_SDK_DISABLED=true` or `OTEL_<SIGNAL>_EXPORTER` names no `otlp` exporter.
    fn signal(&self, kind: Kind, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Signal>, OtlpError> {
        let set = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let exporter_var = format!("OTEL_{}_EXPORTER", kind.name().to_ascii_uppercase());
        if set(&exporter_var).is_some_and(|v| !v.split(',').any(|e| e.trim() == "otlp")) {
            return Ok(None);
        }
        let configured = self.endpoint.as_deref().is_some_and(|e| !e.trim().is_empty())
            || set(&kind.var("ENDPOINT")).is_some()
            || set("OTEL_EXPORTER_OTLP_ENDPOINT").is_some();
        if !configured {
            return Ok(None);
        }
        let protocol = match self.protocol {
            Some(p) => p,
            None => match set(&kind.var("PROTOCOL")).or_else(|| set("OTEL_EXPORTER_OTLP_PROTOCOL")) {
                Some(p) => Protocol::parse(&p)?,
                None => Protocol::HttpProtobuf,
            },
        };
        let endpoint = self.endpoint.as_deref().map(str::trim).filter(|e| !e.is_empty()).map(|e| match protocol {
            Protocol::HttpProtobuf => kind.path(e),
            Protocol::Grpc => e.to_owned(),
        });
        Ok(Some(Signal { kind, protocol, endpoint, headers: self.headers.clone() }))
    }
}

impl Kind {
    /// The signal's path under a base URL, as OTLP/HTTP appends it.
    fn path(self, base: &str) -> String {
        format!("{}/v1/{}", base.trim().trim_end_matches('/'), self.name())
    }
}

/// An OTLP/HTTP export's destination, resolved from the flags and the standard variables as the
/// SDK's exporter would resolve them.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    url: reqwest::Url,
    /// The generic variable's headers, the signal's own over them, the flags' over both.
    headers: Vec<(String, String)>,
    timeout: Duration,
}

impl Signal {
    fn target(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Target, OtlpError> {
        let set = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let (url, from) = match (&self.endpoint, set(&self.kind.var("ENDPOINT")), set("OTEL_EXPORTER_OTLP_ENDPOINT")) {
            (Some(flag), _, _) => (flag.clone(), "--otlp-endpoint".to_owned()),
            (None, Some(own), _) => (own.trim().to_owned(), self.kind.var("ENDPOINT")),
            (None, None, Some(base)) => (self.kind.path(&base), "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned()),
            (None, None, None) => (self.kind.path("http://localhost:4318"), "the default".to_owned()),
        };
        let url = reqwest::Url::parse(&url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or(OtlpError::Endpoint(from))?;
        let mut headers: Vec<(String, String)> = Vec::new();
        // A later source's header replaces an earlier one's of the same name.
        let mut put = |(k, v): (String, String)| {
            headers.retain(|(have, _)| !have.eq_ignore_ascii_case(&k));
            headers.push((k, v));
        };
        for var in ["OTEL_EXPORTER_OTLP_HEADERS".to_owned(), self.kind.var("HEADERS")] {
            if let Some(list) = set(&var) {
                parse_headers(&list).ok_or_else(|| OtlpError::Header(var.clone()))?.into_iter().for_each(&mut put);
            }
        }
        self.headers.iter().for_each(|(k, v)| put((k.trim().to_owned(), v.trim().to_owned())));
        let timeout = match [self.kind.var("TIMEOUT"), "OTEL_EXPORTER_OTLP_TIMEOUT".to_owned()]
            .into_iter()
            .find_map(|var| set(&var).map(|v| (var, v)))
        {
            Some((var, ms)) => Duration::from_millis(ms.trim().parse().map_err(|_| OtlpError::Timeout(var))?),
            None => EXPORT_TIMEOUT,
        };
        let compression = set(&self.kind.var("COMPRESSION")).or_else(|| set("OTEL_EXPORTER_OTLP_COMPRESSION"));
        if let Some(c) = compression.filter(|c| !c.trim().eq_ignore_ascii_case("none")) {
            return Err(OtlpError::Compression(c.trim().to_owned()));
        }
        Ok(Target { url, headers, timeout })
    }

    /// The HTTP exporter's shared part, for our span and log exporters.
    fn http_export(&self) -> Result<HttpExport, OtlpError> {
        let target = self.target(&|k| std::env::var(k).ok())?;
        Ok(HttpExport::new(client()?, target.url, header_map(&target.headers)?, target.timeout))
    }
}

/// `OTEL_EXPORTER_OTLP_HEADERS`' form: `key=value` pairs separated by commas, the values
/// percent-encoded. `None` if a pair has no `=`.
fn parse_headers(list: &str) -> Option<Vec<(String, String)>> {
    list.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let v = percent_encoding::percent_decode_str(v.trim()).decode_utf8().ok()?;
            Some((k.trim().to_owned(), v.into_owned()))
        })
        .collect()
}

impl Signal {
    fn header_map(&self) -> Result<HeaderMap, OtlpError> {
        header_map(&self.headers)
    }

    fn header_pairs(&self) -> Result<HashMap<String, String>, OtlpError> {
        // Validated like gRPC metadata, so both transports refuse the same headers.
        self.header_map()?;
        Ok(self.headers.iter().map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())).collect())
    }
}

/// `headers` as a header map, each value marked sensitive (they carry API keys).
fn header_map(headers: &[(String, String)]) -> Result<HeaderMap, OtlpError> {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        let bad = || OtlpError::Header(k.clone());
        let name = HeaderName::from_bytes(k.trim().as_bytes()).map_err(|_| bad())?;
        let mut value = HeaderValue::from_str(v.trim()).map_err(|_| bad())?;
        value.set_sensitive(true);
        map.insert(name, value);
    }
    Ok(map)
}

/// Sets what both transports share.
fn common<B: WithExportConfig>(builder: B, signal: &Signal) -> B {
    match &signal.endpoint {
        Some(e) => builder.with_endpoint(e),
        None => builder,
    }
}

/// The SDK's `$exporter` for `$signal` over gRPC: the three signals' builders share this shape
/// but no trait, hence a macro.
macro_rules! grpc {
    ($exporter:ty, $signal:expr) => {{
        let signal: &Signal = $signal;
        common(
            <$exporter>::builder().with_tonic().with_metadata(MetadataMap::from_headers(signal.header_map()?)),
            signal,
        )
        .build()?
    }};
}

/// The metric exporter for `signal` (cumulative temporality, as Prometheus-style backends
/// expect): the SDK's over either transport, as metrics leave only every few seconds.
pub fn metric_exporter(signal: &Signal) -> Result<MetricExporter, OtlpError> {
    debug_assert_eq!(signal.kind, Kind::Metrics);
    Ok(match signal.protocol {
        Protocol::HttpProtobuf => common(
            MetricExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_http_client(OnRuntime::new()?)
                .with_headers(signal.header_pairs()?),
            signal,
        )
        .build()?,
        Protocol::Grpc => grpc!(MetricExporter, signal),
    })
}

/// How a signal's records (spans, audit records) leave: over OTLP/HTTP through an outbox of
/// encoded records and its exporting task, over gRPC through the SDK's batch processor `P`.
pub enum Export<P> {
    Outbox(Arc<Outbox>, Exporting),
    Batch(P),
}

impl<P> Export<P> {
    /// Sends what waits and stops: the outbox's task, waiting up to `timeout` for its last
    /// export, or the batch processor, through `shutdown`.
    pub fn finish(self, timeout: Duration, shutdown: impl FnOnce(P) -> OTelSdkResult) -> Result<(), String> {
        match self {
            Self::Outbox(_, exporting) => exporting.finish(timeout).then_some(()).ok_or_else(|| "timed out".to_owned()),
            Self::Batch(batch) => shutdown(batch).map_err(|e| e.to_string()),
        }
    }
}

/// The instrumentation scope of our spans and audit records.
pub const SCOPE: &str = "scimbridge";

/// Starts the export of spans for `signal`; `lost` counts spans lost.
pub fn span_export(
    signal: &Signal,
    resource: &Resource,
    lost: fn(u64),
) -> Result<Export<BatchSpanProcessor>, OtlpError> {
    debug_assert_eq!(signal.kind, Kind::Traces);
    Ok(match signal.protocol {
        Protocol::HttpProtobuf => outbox(signal, resource, Batching::SPANS, lost)?,
        Protocol::Grpc => {
            let batch = Batching::SPANS.limits(&|k| std::env::var(k).ok())?;
            let config = opentelemetry_sdk::trace::BatchConfigBuilder::default()
                .with_max_queue_size(batch.queue)
                .with_max_export_batch_size(batch.batch)
                .with_scheduled_delay(batch.delay)
                .build();
            let mut processor = BatchSpanProcessor::builder(grpc!(opentelemetry_otlp::SpanExporter, signal))
                .with_batch_config(config)
                .build();
            SpanProcessor::set_resource(&mut processor, resource);
            Export::Batch(processor)
        }
    })
}

/// Starts the export of log records (audit records) for `signal`; `lost` counts records lost.
pub fn log_export(signal: &Signal, resource: &Resource, lost: fn(u64)) -> Result<Export<BatchLogProcessor>, OtlpError> {
    debug_assert_eq!(signal.kind, Kind::Logs);
    Ok(match signal.protocol {
        Protocol::HttpProtobuf => outbox(signal, resource, Batching::LOGS, lost)?,
        Protocol::Grpc => {
            let batch = Batching::LOGS.limits(&|k| std::env::var(k).ok())?;
            let config = opentelemetry_sdk::logs::BatchConfigBuilder::default()
                .with_max_queue_size(batch.queue)
                .with_max_export_batch_size(batch.batch)
                .with_scheduled_delay(batch.delay)
                .build();
            let exporter = grpc!(opentelemetry_otlp::LogExporter, signal);
            Export::Batch(BatchLogProcessor::builder(exporter).with_batch_config(config).build())
        }
    })
}

/// An outbox for `signal` and the task that exports it over HTTP.
fn outbox<P>(signal: &Signal, resource: &Resource, batching: Batching, lost: fn(u64)) -> Result<Export<P>, OtlpError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| OtlpError::NoRuntime)?;
    let export = signal.http_export()?;
    let limits = batching.limits(&|k| std::env::var(k).ok())?;
    let resource = EncodedResource::new(resource);
    let outbox = Arc::new(Outbox::new(limits, lost));
    let wrap = Box::new(move |records: &[u8]| protobuf::request_of(&resource, SCOPE, records));
    let exporting = outbox::start(&runtime, Arc::clone(&outbox), export, wrap);
    Ok(Export::Outbox(outbox, exporting))
}

/// A signal's batch settings: the prefix of their variables and their defaults.
#[derive(Debug, Clone, Copy)]
struct Batching {
    prefix: &'static str,
    delay_ms: u64,
}

impl Batching {
    /// `OTEL_BSP_*`: spans wait 5 s at most.
    const SPANS: Self = Self { prefix: "OTEL_BSP", delay_ms: 5_000 };
    /// `OTEL_BLRP_*`: log records wait 1 s at most.
    const LOGS: Self = Self { prefix: "OTEL_BLRP", delay_ms: 1_000 };

    /// The limits from `<prefix>_SCHEDULE_DELAY` (milliseconds), `<prefix>_MAX_QUEUE_SIZE` and
    /// `<prefix>_MAX_EXPORT_BATCH_SIZE`, as the SDK's batch processors read them.
    fn limits(self, var: &dyn Fn(&str) -> Option<String>) -> Result<outbox::Limits, OtlpError> {
        let number = |suffix: &str| -> Result<Option<u64>, OtlpError> {
            let name = format!("{}_{suffix}", self.prefix);
            match var(&name).filter(|v| !v.trim().is_empty()) {
                None => Ok(None),
                Some(v) => v.trim().parse().ok().filter(|n| *n > 0).map(Some).ok_or(OtlpError::Number(name)),
            }
        };
        let mut limits = outbox::Limits { delay: Duration::from_millis(self.delay_ms), ..outbox::Limits::default() };
        if let Some(ms) = number("SCHEDULE_DELAY")? {
            limits.delay = Duration::from_millis(ms);
        }
        if let Some(n) = number("MAX_QUEUE_SIZE")? {
            limits.queue = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(n) = number("MAX_EXPORT_BATCH_SIZE")? {
            limits.batch = usize::try_from(n).unwrap_or(usize::MAX);
        }
        limits.batch = limits.batch.min(limits.queue);
        Ok(limits)
    }
}

/// The HTTP client of every OTLP/HTTP export: no redirects (a redirect could carry the headers,
/// API keys, elsewhere).
fn client() -> Result<reqwest::Client, OtlpError> {
    reqwest::Client::builder()
        .timeout(EXPORT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("scimbridge/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| OtlpError::Client(e.to_string()))
}

/// The metric exporter's HTTP client: reqwest, driven on the gateway's runtime whichever thread asks.
#[derive(Debug)]
struct OnRuntime {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl OnRuntime {
    fn new() -> Result<Self, OtlpError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| OtlpError::NoRuntime)?;
        Ok(Self { client: client()?, runtime })
    }
}

#[async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        self.runtime.spawn(async move { client.send_bytes(request).await }).await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(config: &OtlpConfig, kind: Kind, vars: &[(&str, &str)]) -> Result<Option<Signal>, OtlpError> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        config.signal(kind, &|k| vars.get(k).cloned())
    }

    #[test]
    fn nothing_exports_without_an_endpoint() {
        let none = OtlpConfig::default();
        assert_eq!(resolve(&none, Kind::Traces, &[]).unwrap(), None);
        assert_eq!(resolve(&none, Kind::Traces, &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).unwrap(), None);
        assert_eq!(
            resolve(&none, Kind::Metrics, &[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318")]).unwrap(),
            None
        );
    }

    #[test]
    fn the_flag_is_a_base_url_over_http_and_the_address_over_grpc() {
        let flag = OtlpConfig { endpoint: Some("http://collector:4318/".into()), ..Default::default() };
        let s = resolve(&flag, Kind::Traces, &[]).unwrap().unwrap();
        assert_eq!(
            (s.protocol, s.endpoint.as_deref()),
            (Protocol::HttpProtobuf, Some("http://collector:4318/v1/traces"))
        );
        let s = resolve(&flag, Kind::Metrics, &[]).unwrap().unwrap();
        assert_eq!(s.endpoint.as_deref(), Some("http://collector:4318/v1/metrics"));
        let s = resolve(&flag, Kind::Logs, &[]).unwrap().unwrap();
        assert_eq!(s.endpoint.as_deref(), Some("http://collector:4318/v1/logs"));
        let grpc = OtlpConfig { protocol: Some(Protocol::Grpc), ..flag };
        let s = resolve(&grpc, Kind::Traces, &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]).unwrap().unwrap();
        assert_eq!((s.protocol, s.endpoint.as_deref()), (Protocol::Grpc, Some("http://collector:4318/")));
    }

    #[test]
    fn standard_variables_enable_and_choose() {
        let none = OtlpConfig::default();
        let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")];
        let s = resolve(&none, Kind::Metrics, &env).unwrap().unwrap();
        // The exporter reads the variable's endpoint itself (and appends the signal path over HTTP).
        assert_eq!((s.protocol, s.endpoint), (Protocol::Grpc, None));
        let per_signal = [
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/v1/traces"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ];
        assert_eq!(resolve(&none, Kind::Traces, &per_signal).unwrap().unwrap().protocol, Protocol::HttpProtobuf);
        assert!(
            matches!(resolve(&none, Kind::Traces, &[env[0], ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]), Err(OtlpError::Protocol(p)) if p == "http/json")
        );
    }

    #[test]
    fn standard_switches_turn_signals_off() {
        let flag = OtlpConfig { endpoint: Some("http://c:4318".into()), ..Default::default() };
        assert_eq!(resolve(&flag, Kind::Traces, &[("OTEL_SDK_DISABLED", "TRUE")]).unwrap(), None);
        assert_eq!(resolve(&flag, Kind::Traces, &[("OTEL_TRACES_EXPORTER", "none")]).unwrap(), None);
        assert!(resolve(&flag, Kind::Metrics, &[("OTEL_TRACES_EXPORTER", "none")]).unwrap().is_some());
        assert!(resolve(&flag, Kind::Metrics, &[("OTEL_METRICS_EXPORTER", "otlp,prometheus")]).unwrap().is_some());
        assert_eq!(resolve(&flag, Kind::Logs, &[("OTEL_LOGS_EXPORTER", "none")]).unwrap(), None);
        assert!(resolve(&flag, Kind::Traces, &[("OTEL_LOGS_EXPORTER", "none")]).unwrap().is_some());
        let per_signal = [("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://c:4318/v1/logs")];
        assert!(resolve(&OtlpConfig::default(), Kind::Logs, &per_signal).unwrap().is_some());
        assert_eq!(resolve(&OtlpConfig::default(), Kind::Traces, &per_signal).unwrap(), None);
    }

    #[test]
    fn bad_headers_are_refused_without_their_value() {
        let flag = OtlpConfig {
            endpoint: Some("http://c:4318".into()),
            headers: vec![("bad name".into(), "secret-key".into())],
            ..Default::default()
        };
        let s = resolve(&flag, Kind::Traces, &[]).unwrap().unwrap();
        let e = s.header_pairs().unwrap_err().to_string();
        assert!(e.contains("bad name") && !e.contains("secret-key"), "{e}");
    }

    #[test]
    fn http_targets_resolve_as_the_standard_variables_say() {
        let target = |config: &OtlpConfig, kind: Kind, vars: &[(&str, &str)]| {
            let vars: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
            let signal = config.signal(kind, &|k| vars.get(k).cloned()).unwrap().unwrap();
            signal.target(&|k| vars.get(k).cloned())
        };
        let none = OtlpConfig::default();
        let base = [("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c.example:4318/otel/")];
        let t = target(&none, Kind::Traces, &base).unwrap();
        assert_eq!(t.url.as_str(), "https://c.example:4318/otel/v1/traces");
        assert_eq!((t.timeout, t.headers.len()), (EXPORT_TIMEOUT, 0));
        // The signal's own variable is the whole URL.
        let own = [base[0], ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://logs.example/ingest")];
        assert_eq!(target(&none, Kind::Logs, &own).unwrap().url.as_str(), "http://logs.example/ingest");
        // The flag wins over both.
        let flag = OtlpConfig {
            endpoint: Some("http://flag:4318".into()),
            headers: vec![("X-Key".into(), "from-flag".into())],
            ..Default::default()
        };
        let vars = [
            own[1],
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-key=generic,x-tenant=a%20b"),
            ("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "x-tenant=own"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
        ];
        let t = target(&flag, Kind::Logs, &vars).unwrap();
        assert_eq!(t.url.as_str(), "http://flag:4318/v1/logs");
        assert_eq!(
            t.headers,
            [("x-tenant".to_owned(), "own".to_owned()), ("X-Key".to_owned(), "from-flag".to_owned())]
        );
        assert_eq!(t.timeout, Duration::from_millis(2500));
        let t = target(&flag, Kind::Traces, &vars).unwrap();
        assert_eq!(t.headers[0], ("x-tenant".to_owned(), "a b".to_owned()), "values are percent-decoded");
    }

    #[test]
    fn bad_http_settings_are_refused_at_start_naming_where_they_came_from() {
        let flag = OtlpConfig { endpoint: Some("http://c:4318".into()), ..Default::default() };
        let refused = |vars: &[(&str, &str)]| {
            let vars: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
            let config = if vars.contains_key("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
                OtlpConfig::default()
            } else {
                flag.clone()
            };
            let signal = config.signal(Kind::Traces, &|k| vars.get(k).cloned()).unwrap().unwrap();
            signal.target(&|k| vars.get(k).cloned()).unwrap_err().to_string()
        };
        assert!(refused(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")]).contains("`gzip` is not supported"));
        assert!(refused(&[("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "10s")]).contains("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"));
        let e = refused(&[("OTEL_EXPORTER_OTLP_HEADERS", "api-key-without-equals-secret")]);
        assert!(e.contains("OTEL_EXPORTER_OTLP_HEADERS") && !e.contains("secret"), "{e}");
        let e = refused(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://user:pw@c/v1/traces")]);
        assert!(e.contains("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") && !e.contains("pw"), "{e}");
    }

    #[test]
    fn log_batch_settings_come_from_the_standard_variables() {
        let limits = |vars: &[(&str, &str)]| {
            let vars: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
            Batching::LOGS.limits(&|k| vars.get(k).cloned())
        };
        assert_eq!(limits(&[]).unwrap(), outbox::Limits::default());
        let spans = Batching::SPANS.limits(&|_| None).unwrap();
        assert_eq!(spans.delay, Duration::from_secs(5), "spans wait longer by default");
        let set = [
            ("OTEL_BLRP_SCHEDULE_DELAY", "100"),
            ("OTEL_BLRP_MAX_QUEUE_SIZE", "64"),
            ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "512"),
        ];
        let l = limits(&set).unwrap();
        assert_eq!((l.delay, l.queue, l.batch), (Duration::from_millis(100), 64, 64), "a batch fits the queue");
        for bad in ["0", "-1", "soon"] {
            let err = limits(&[("OTEL_BLRP_SCHEDULE_DELAY", bad)]).unwrap_err();
            assert_eq!(err.to_string(), "OTEL_BLRP_SCHEDULE_DELAY is not a positive number");
        }
    }
}
