//! The gateway's metric instruments, and their Prometheus text rendering for the admin listener.
//!
//! Every label value comes from a fixed set or from configuration (tenant ids, mapping names),
//! never from a request: no resource ids, user names, raw paths or token values, so the number of
//! series stays bounded whatever clients send. A tenant id a request names but the configuration
//! does not is [`UNKNOWN`].
//!
//! The instruments bind to the meter provider installed when they are first used, which
//! `telemetry::init` does before anything serves; until then (and in unit tests) they are no-ops.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{BoundHistogram, Counter, Histogram, Meter};

use super::{Addresses, word};

/// The label value for a tenant, resource or operation the gateway does not know.
pub const UNKNOWN: &str = "unknown";

/// Buckets for request and app call durations, in seconds: 5 ms to the 60 s request timeout.
const LATENCY: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
/// Buckets for store calls, in seconds: an embedded store answers in microseconds, Redis in a
/// millisecond or so, a struggling one within its timeout (2 s by default).
const STORE_LATENCY: &[f64] = &[0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
/// Buckets for outbound limit waits, in seconds: zero (no wait) apart, up to the longest
/// `max_wait_ms` allowed.
const WAIT: &[f64] = &[0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// The instruments. A request is counted by its duration histogram alone (its `_count` is the
/// rate), as OpenTelemetry's HTTP server conventions do: a second instrument would cost every
/// request another lookup of its attribute set.
pub struct Metrics {
    request_duration: Histogram<f64>,
    backend_duration: Histogram<f64>,
    backend_errors: Counter<u64>,
    outbound_wait: Histogram<f64>,
    rate_limited: Counter<u64>,
    store_duration: Histogram<f64>,
    config_reloads: Counter<u64>,
    auth_failures: Counter<u64>,
    audit_dropped: Counter<u64>,
    spans_dropped: Counter<u64>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics::new(&opentelemetry::global::meter("scimbridge")));

/// The process's instruments.
pub fn get() -> &'static Metrics {
    &METRICS
}

fn histogram(meter: &Meter, name: &'static str, description: &'static str, buckets: &[f64]) -> Histogram<f64> {
    meter.f64_histogram(name).with_unit("s").with_description(description).with_boundaries(buckets.to_vec()).build()
}

fn counter(meter: &Meter, name: &'static str, unit: &'static str, description: &'static str) -> Counter<u64> {
    meter.u64_counter(name).with_unit(unit).with_description(description).build()
}

impl Metrics {
    fn new(meter: &Meter) -> Self {
        Self {
            request_duration: histogram(meter, "scimbridge.request.duration", "Time to answer a SCIM request", LATENCY),
            backend_duration: histogram(
                meter,
                "scimbridge.backend.duration",
                "Time of one HTTP attempt to an app, until its answer is read",
                LATENCY,
            ),
            backend_errors: counter(
                meter,
                "scimbridge.backend.errors",
                "{error}",
                "App call attempts without a usable answer, and 5xx answers",
            ),
            outbound_wait: histogram(
                meter,
                "scimbridge.backend.queue.wait",
                "Time an app call waited for its turn under the app's outbound limit",
                WAIT,
            ),
            rate_limited: counter(
                meter,
                "scimbridge.ratelimit.rejections",
                "{request}",
                "Requests refused with 429 by an inbound rate limit",
            ),
            store_duration: histogram(
                meter,
                "scimbridge.store.duration",
                "Time of one state store call",
                STORE_LATENCY,
            ),
            config_reloads: counter(
                meter,
                "scimbridge.config.reloads",
                "{reload}",
                "Configuration reloads, by outcome",
            ),
            auth_failures: counter(
                meter,
                "scimbridge.auth.failures",
                "{request}",
                "Requests refused with 401, by reason",
            ),
            audit_dropped: counter(
                meter,
                "scimbridge.audit.dropped",
                "{event}",
                "Audit events lost: the audit log's queue full or a failed write, or OTLP records that found no room or whose export failed for good",
            ),
            spans_dropped: counter(
                meter,
                "scimbridge.telemetry.spans.dropped",
                "{span}",
                "Spans lost on their way to the collector: no room to wait in, or an export that failed for good",
            ),
        }
    }

    /// One answered request of `tenant` (`None`: one the configuration does not know). `status`
    /// is the HTTP status sent.
    pub fn request(
        &self,
        tenant: Option<&Arc<str>>,
        resource: &'static str,
        operation: &'static str,
        status: u16,
        took: Duration,
    ) {
        let key = [
            instrument(&self.request_duration),
            tenant.map_or(0, address),
            word(resource),
            word(operation),
            u64::from(status),
        ];
        record(&self.request_duration, key, tenant, took, || {
            let tenant = tenant.map_or_else(|| UNKNOWN.into(), |t| opentelemetry::Value::from(Arc::clone(t)));
            vec![
                KeyValue::new("tenant", tenant),
                KeyValue::new("resource", resource),
                KeyValue::new("operation", operation),
                KeyValue::new("status", i64::from(status)),
            ]
        });
    }

    /// One attempt of an app call (`call` as the mapping names it), answered or not.
    pub fn backend_attempt(&self, app: &Arc<str>, call: &'static str, took: Duration, error: Option<&'static str>) {
        let key = [instrument(&self.backend_duration), address(app), word(call), 0, 0];
        record(&self.backend_duration, key, Some(app), took, || {
            vec![KeyValue::new("app", Arc::clone(app)), KeyValue::new("call", call)]
        });
        if let Some(error) = error {
            self.backend_error(app, call, error);
        }
    }

    /// An app call that failed without an attempt finishing (`throttled`: refused by the limit).
    pub fn backend_error(&self, app: &Arc<str>, call: &'static str, error: &'static str) {
        let labels =
            [KeyValue::new("app", Arc::clone(app)), KeyValue::new("call", call), KeyValue::new("error", error)];
        self.backend_errors.add(1, &labels);
    }

    /// A wait for a turn under an app's outbound limit that ended with the turn.
    pub fn outbound_wait(&self, app: &Arc<str>, waited: Duration) {
        self.outbound_wait.record(waited.as_secs_f64(), &[KeyValue::new("app", Arc::clone(app))]);
    }

    /// A request refused by an inbound limit; `reason` names the limit.
    pub fn rate_limited(&self, tenant: &str, reason: &'static str) {
        self.rate_limited.add(1, &[KeyValue::new("tenant", tenant.to_owned()), KeyValue::new("reason", reason)]);
    }

    /// One store call.
    pub fn store_call(&self, store: &'static str, operation: &'static str, ok: bool, took: Duration) {
        let outcome = if ok { "ok" } else { "error" };
        let key = [instrument(&self.store_duration), word(store), word(operation), word(outcome), 0];
        record(&self.store_duration, key, None, took, || {
            vec![
                KeyValue::new("store", store),
                KeyValue::new("operation", operation),
                KeyValue::new("outcome", outcome),
            ]
        });
    }

    /// A configuration reload, swapped in or rejected.
    pub fn config_reload(&self, applied: bool) {
        self.config_reloads.add(1, &[KeyValue::new("outcome", if applied { "applied" } else { "rejected" })]);
    }

    /// A refused authentication; `reason` as `auth::Rejection::reason` names it.
    pub fn auth_failure(&self, tenant: &str, reason: &'static str) {
        self.auth_failures.add(1, &[KeyValue::new("tenant", tenant.to_owned()), KeyValue::new("reason", reason)]);
    }

    /// Audit events lost to the audit log or its OTLP export.
    pub fn audit_dropped(&self, n: u64) {
        self.audit_dropped.add(n, &[]);
    }

    /// Spans lost to their OTLP export.
    pub fn spans_dropped(&self, n: u64) {
        self.spans_dropped.add(n, &[]);
    }
}

/// A series of the histograms a request records into, by where its labels are: the instrument,
/// then static words and shared labels by address, and small numbers as they are.
type SeriesKey = [u64; 5];

/// Series bound on this thread, each with the shared label whose address is in its key: held,
/// that address cannot be reused for another label while the entry exists.
type Bound = HashMap<SeriesKey, (BoundHistogram<f64>, Option<Arc<str>>), BuildHasherDefault<Addresses>>;

/// The most series a thread keeps bound. Tenants and apps come and go with reloads; past this
/// the thread starts over rather than keep the departed ones.
const MAX_BOUND: usize = 4_096;

thread_local! {
    static BOUND: RefCell<Bound> = RefCell::default();
}

/// Records `took` into `histogram`'s series `key`, binding it on this thread the first time
/// (`attributes` are then its labels). A bound series is written straight to, where `record`
/// with labels hashes every label's text each time (SipHash: 4,400 instructions for a GET's
/// three records, callgrind). Binding is the SDK's `experimental_metrics_bound_instruments`: the
/// same series as unbound records with the same labels get, in every reader.
fn record(
    histogram: &Histogram<f64>,
    key: SeriesKey,
    pin: Option<&Arc<str>>,
    took: Duration,
    attributes: impl FnOnce() -> Vec<KeyValue>,
) {
    BOUND.with_borrow_mut(|bound| {
        if bound.len() >= MAX_BOUND && !bound.contains_key(&key) {
            bound.clear();
        }
        bound.entry(key).or_insert_with(|| (histogram.bind(&attributes()), pin.cloned())).0.record(took.as_secs_f64());
    });
}

/// An instrument's place in the key: its address among the process's static instruments.
fn instrument(histogram: &Histogram<f64>) -> u64 {
    std::ptr::from_ref(histogram) as usize as u64
}

/// A shared label's place in the key: where its text is (held by the entry while it exists).
fn address(label: &Arc<str>) -> u64 {
    Arc::as_ptr(label).cast::<u8>() as usize as u64
}

/// The metrics as a Prometheus scrape sees them.
#[derive(Clone)]
pub struct Scrape {
    registry: prometheus::Registry,
}

/// The content type of [`Scrape::render`]'s text.
pub const PROMETHEUS_TEXT: &str = prometheus::TEXT_FORMAT;

impl Scrape {
    /// The current values in the Prometheus text exposition format.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        prometheus::TextEncoder::new().encode_to_string(&self.registry.gather())
    }
}

/// A metric reader collecting for Prometheus on each scrape, and the scrape handle. Instrument
/// names become Prometheus names with the unit and `_total` suffixes (`scimbridge_auth_failures_total`,
/// `scimbridge_request_duration_seconds`).
pub fn prometheus_reader() -> Result<(opentelemetry_prometheus::PrometheusExporter, Scrape), String> {
    let registry = prometheus::Registry::new();
    let exporter = opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        .scope_info_enabled(false)
        .build()
        .map_err(|e| e.to_string())?;
    Ok((exporter, Scrape { registry }))
}
