//! Traces, metrics and audit records as a collector receives them: a real OTLP receiver runs in
//! this process (OTLP over HTTP/protobuf, and gRPC with the protocol's own generated services),
//! every export is decoded with the OTLP protobuf messages (a body that does not decode fails the
//! test), and the spans, metrics and audit log records of a known sequence of SCIM requests are
//! checked: names, attributes, parent/child links, status, units and exact values. The Prometheus
//! scrape of the admin listener must show the same counts. Last, issue 6's check: a whole Entra
//! lifecycle with every output on leaks no token or secret, and personal data only where a tenant
//! allows it.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{LogsService, LogsServiceServer};
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode as SpanStatus};
use prost::Message as _;
use reqwest::Method;
use serde_json::{Value, json};

use common::{DemoApp, Gateway, Resp};

// ---------------------------------------------------------------------------------------------
// The receiver
// ---------------------------------------------------------------------------------------------

/// Everything the receiver got, decoded.
#[derive(Clone, Default)]
struct Received {
    traces: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    metrics: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
    logs: Arc<Mutex<Vec<ExportLogsServiceRequest>>>,
    /// Request headers (HTTP) or metadata (gRPC) of each export, lower-case names.
    headers: Arc<Mutex<Vec<BTreeMap<String, String>>>>,
    /// Exports that were refused: a wrong content type, a body that is not the OTLP message.
    refused: Arc<Mutex<Vec<String>>>,
}

impl Received {
    fn note_headers(&self, headers: &HeaderMap) {
        let h = headers.iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("?").to_owned())).collect();
        self.headers.lock().unwrap().push(h);
    }

    /// Checks the body's content type and decodes it as `M`, noting a refusal.
    fn decode<M: prost::Message + Default>(&self, headers: &HeaderMap, body: &Bytes) -> Option<M> {
        self.note_headers(headers);
        let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
        if ct != "application/x-protobuf" {
            self.refused.lock().unwrap().push(format!("content type `{ct}`"));
            return None;
        }
        match M::decode(body.as_ref()) {
            Ok(m) => Some(m),
            Err(e) => {
                self.refused.lock().unwrap().push(format!("undecodable body: {e}"));
                None
            }
        }
    }
}

fn protobuf(body: Vec<u8>) -> axum::response::Response {
    use axum::response::IntoResponse;
    ([("content-type", "application/x-protobuf")], body).into_response()
}

async fn http_traces(State(r): State<Received>, headers: HeaderMap, body: Bytes) -> axum::response::Response {
    match r.decode::<ExportTraceServiceRequest>(&headers, &body) {
        Some(m) => {
            r.traces.lock().unwrap().push(m);
            protobuf(ExportTraceServiceResponse::default().encode_to_vec())
        }
        None => axum::response::IntoResponse::into_response(StatusCode::BAD_REQUEST),
    }
}

async fn http_metrics(State(r): State<Received>, headers: HeaderMap, body: Bytes) -> axum::response::Response {
    match r.decode::<ExportMetricsServiceRequest>(&headers, &body) {
        Some(m) => {
            r.metrics.lock().unwrap().push(m);
            protobuf(ExportMetricsServiceResponse::default().encode_to_vec())
        }
        None => axum::response::IntoResponse::into_response(StatusCode::BAD_REQUEST),
    }
}

async fn http_logs(State(r): State<Received>, headers: HeaderMap, body: Bytes) -> axum::response::Response {
    match r.decode::<ExportLogsServiceRequest>(&headers, &body) {
        Some(m) => {
            r.logs.lock().unwrap().push(m);
            protobuf(ExportLogsServiceResponse::default().encode_to_vec())
        }
        None => axum::response::IntoResponse::into_response(StatusCode::BAD_REQUEST),
    }
}

/// An OTLP/HTTP receiver on a loopback port: `http://127.0.0.1:port`.
async fn http_receiver() -> (String, Received) {
    let received = Received::default();
    let app = Router::new()
        .route("/v1/traces", post(http_traces))
        .route("/v1/metrics", post(http_metrics))
        .route("/v1/logs", post(http_logs))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), received)
}

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.note_headers(&request.metadata().clone().into_headers());
        self.traces.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.note_headers(&request.metadata().clone().into_headers());
        self.metrics.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.note_headers(&request.metadata().clone().into_headers());
        self.logs.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

/// An OTLP/gRPC receiver (the collector's generated services) on a loopback port.
async fn grpc_receiver() -> (String, Received) {
    let received = Received::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(received.clone()))
        .add_service(MetricsServiceServer::new(received.clone()))
        .add_service(LogsServiceServer::new(received.clone()))
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
    tokio::spawn(server);
    (format!("http://{addr}"), received)
}

// ---------------------------------------------------------------------------------------------
// Reading what was received
// ---------------------------------------------------------------------------------------------

fn value(kv: &KeyValue) -> Value {
    any(kv.value.as_ref())
}

fn any(v: Option<&AnyValue>) -> Value {
    match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => json!(s),
        Some(any_value::Value::IntValue(i)) => json!(i),
        Some(any_value::Value::BoolValue(b)) => json!(b),
        Some(any_value::Value::DoubleValue(d)) => json!(d),
        Some(any_value::Value::ArrayValue(a)) => Value::Array(a.values.iter().map(|x| any(Some(x))).collect()),
        other => json!(format!("{other:?}")),
    }
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, Value> {
    kvs.iter().map(|kv| (kv.key.clone(), value(kv))).collect()
}

/// A received span, flattened.
#[derive(Debug, Clone)]
struct Span {
    trace_id: String,
    span_id: String,
    parent: String,
    name: String,
    kind: SpanKind,
    status: SpanStatus,
    attrs: BTreeMap<String, Value>,
    resource: BTreeMap<String, Value>,
    /// Its events: name and attributes.
    events: Vec<(String, BTreeMap<String, Value>)>,
    /// Start and end, nanoseconds since the epoch.
    time: (u64, u64),
}

impl Span {
    fn attr(&self, key: &str) -> &Value {
        self.attrs.get(key).unwrap_or(&Value::Null)
    }

    /// A call to the app (not to the store).
    fn is_app_call(&self) -> bool {
        self.kind == SpanKind::Client && self.attrs.contains_key("scimbridge.app.call")
    }
}

fn spans(r: &Received) -> Vec<Span> {
    let mut out = Vec::new();
    for req in r.traces.lock().unwrap().iter() {
        for rs in &req.resource_spans {
            let resource = rs.resource.as_ref().map(|r| attributes(&r.attributes)).unwrap_or_default();
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    out.push(Span {
                        trace_id: hex::encode(&s.trace_id),
                        span_id: hex::encode(&s.span_id),
                        parent: hex::encode(&s.parent_span_id),
                        name: s.name.clone(),
                        kind: SpanKind::try_from(s.kind).unwrap_or(SpanKind::Unspecified),
                        status: s
                            .status
                            .as_ref()
                            .and_then(|st| SpanStatus::try_from(st.code).ok())
                            .unwrap_or(SpanStatus::Unset),
                        attrs: attributes(&s.attributes),
                        resource: resource.clone(),
                        events: s.events.iter().map(|e| (e.name.clone(), attributes(&e.attributes))).collect(),
                        time: (s.start_time_unix_nano, s.end_time_unix_nano),
                    });
                }
            }
        }
    }
    out
}

/// A received log record (an audit event), flattened; its body is the event's JSON.
#[derive(Debug, Clone)]
struct Record {
    event_name: String,
    scope: String,
    severity: String,
    trace_id: String,
    span_id: String,
    body: Value,
    attrs: BTreeMap<String, Value>,
}

impl Record {
    fn attr(&self, key: &str) -> &Value {
        self.attrs.get(key).unwrap_or(&Value::Null)
    }
}

fn records(r: &Received) -> Vec<Record> {
    let mut out = Vec::new();
    for req in r.logs.lock().unwrap().iter() {
        for rl in &req.resource_logs {
            for sl in &rl.scope_logs {
                for l in &sl.log_records {
                    let body = any(l.body.as_ref());
                    let body = body.as_str().and_then(|b| serde_json::from_str(b).ok()).unwrap_or(body);
                    out.push(Record {
                        event_name: l.event_name.clone(),
                        scope: sl.scope.as_ref().map(|s| s.name.clone()).unwrap_or_default(),
                        severity: l.severity_text.clone(),
                        trace_id: hex::encode(&l.trace_id),
                        span_id: hex::encode(&l.span_id),
                        body,
                        attrs: attributes(&l.attributes),
                    });
                }
            }
        }
    }
    out
}

/// One data point of a metric: its labels, and its value (a sum) or count (a histogram).
#[derive(Debug, Clone, PartialEq)]
struct Point {
    labels: BTreeMap<String, Value>,
    /// A sum's value, or a histogram's count.
    value: f64,
    /// A histogram's sum.
    sum: Option<f64>,
}

/// A metric as the last export that has it shows it (cumulative): unit, monotonic sum or
/// histogram, points.
#[derive(Debug, Clone)]
struct Metric {
    unit: String,
    kind: &'static str,
    points: Vec<Point>,
}

impl Metric {
    /// The value of the point whose labels include all of `labels`; 0 when there is none.
    fn at(&self, labels: &[(&str, Value)]) -> f64 {
        let matching: Vec<&Point> =
            self.points.iter().filter(|p| labels.iter().all(|(k, v)| p.labels.get(*k) == Some(v))).collect();
        matching.iter().map(|p| p.value).sum()
    }
}

fn last_metric(r: &Received, name: &str) -> Option<Metric> {
    let exports = r.metrics.lock().unwrap();
    let m = exports
        .iter()
        .rev()
        .flat_map(|req| &req.resource_metrics)
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .find(|m| m.name == name)?;
    let (kind, points) = match &m.data {
        Some(metric::Data::Sum(s)) => {
            assert!(s.is_monotonic, "{name} is a monotonic sum");
            let points = s
                .data_points
                .iter()
                .map(|p| Point {
                    labels: attributes(&p.attributes),
                    value: match p.value {
                        Some(number_data_point::Value::AsInt(i)) => i as f64,
                        Some(number_data_point::Value::AsDouble(d)) => d,
                        None => f64::NAN,
                    },
                    sum: None,
                })
                .collect();
            ("sum", points)
        }
        Some(metric::Data::Histogram(h)) => {
            let points = h
                .data_points
                .iter()
                .map(|p| {
                    assert_eq!(p.bucket_counts.iter().sum::<u64>(), p.count, "{name}: buckets add up to the count");
                    Point { labels: attributes(&p.attributes), value: p.count as f64, sum: p.sum }
                })
                .collect();
            ("histogram", points)
        }
        other => panic!("{name}: unexpected data {other:?}"),
    };
    Some(Metric { unit: m.unit.clone(), kind, points })
}

/// Waits until `done` holds for what was received (exports are asynchronous).
async fn until(r: &Received, what: &str, done: impl Fn(&Received) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !done(r) {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stops the gateway the way an orchestrator does; it must flush its telemetry and exit 0.
fn stop(gw: &mut Gateway) {
    gw.proc.signal("TERM");
    let status = gw.proc.wait_exit(Duration::from_secs(20)).expect("the gateway exits after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
}

// ---------------------------------------------------------------------------------------------
// The sequence
// ---------------------------------------------------------------------------------------------

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";
const CLIENT_REQUEST_ID: &str = "7c3f6c3e-1f4b-4c49-9f35-0d3b0c7a2b11";

/// A config with the demo tenant and `down`, a tenant whose app refuses connections.
fn config() -> std::path::PathBuf {
    let dir = common::demo_config();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let demo = std::fs::read_to_string(dir.join("tenants/demo.yaml")).unwrap();
    let down = demo
        .replace("id: demo", "id: down")
        .replace("\"${DEMO_APP_URL:-http://127.0.0.1:8081}\"", &format!("\"http://{closed}\""));
    assert_ne!(down, demo);
    std::fs::write(dir.join("tenants/down.yaml"), down).unwrap();
    dir
}

/// The requests whose telemetry the tests check, and what they answered.
struct Sequence {
    user_id: String,
    created: Resp,
    traced: Resp,
}

async fn run_sequence(gw: &Gateway, user: &str) -> Sequence {
    let created = gw.entra_create_user(user).await;
    created.expect(201, "create");
    let id = created.id();
    gw.get(&format!("/Users/{id}")).await.expect(200, "get");
    gw.patch_user(&id, json!([{"op": "Replace", "path": "displayName", "value": "Alice A."}]))
        .await
        .expect_one_of(&[200, 204], "patch");
    gw.get("/Users/00000000-0000-4000-8000-000000000000").await.expect_error(404, None, "a missing user");
    gw.entra_create_user(user).await.expect_error(409, Some("uniqueness"), "a duplicate");
    let found = gw.filter("Users", &format!("userName eq \"{user}\""), "").await;
    found.expect(200, "filter");
    assert_eq!(found.total(), 1);
    let traceparent = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    let traced = gw
        .scim_as(
            common::TOKEN,
            Method::GET,
            &format!("/Users/{id}"),
            None,
            &[("traceparent", &traceparent), ("client-request-id", CLIENT_REQUEST_ID), ("x-request-id", "req-42")],
        )
        .await;
    traced.expect(200, "get with traceparent");
    // The app of `down` refuses connections: 503 after the retries a connect failure allows.
    let down = gw
        .scim_as(
            common::TOKEN,
            Method::GET,
            &format!("{}/Users?filter=userName%20eq%20%22x%22", gw.tenant_base("down")),
            None,
            &[],
        )
        .await;
    down.expect_error(503, None, "an unreachable app");
    let nobody =
        gw.scim_as(common::TOKEN, Method::GET, &format!("{}/Users", gw.tenant_base("no-such-tenant")), None, &[]).await;
    nobody.expect(401, "an unknown tenant");
    gw.scim_as("wrong-token", Method::GET, "/Users", None, &[]).await.expect(401, "a wrong token");
    Sequence { user_id: id, created, traced }
}

/// A string attribute or label value.
fn st(v: &str) -> Value {
    json!(v)
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// With `--trace-reads 0`, only failed requests and changes are traced, each with all its spans:
/// the 409, 404, 503 and 401s of the sequence arrive, and its create and patch (their audit
/// records name their traces); its successful reads do not, but for the one whose caller sent a
/// sampled `traceparent`.
#[tokio::test(flavor = "multi_thread")]
async fn only_failures_and_changes_are_traced_when_no_read_is_asked_for() {
    let (endpoint, received) = http_receiver().await;
    let data = common::temp_dir("telemetry-failures");
    let mut gw = Gateway::serve_with(
        &config(),
        &data,
        DemoApp::start(),
        &["--trace-reads", "0"],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "60000")],
        reqwest::Client::new(),
    );
    run_sequence(&gw, "carol@example.com").await;
    stop(&mut gw);
    let spans = spans(&received);
    let requests: Vec<(&str, i64)> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Server)
        .map(|s| (s.name.as_str(), s.attr("http.response.status_code").as_i64().unwrap_or(0)))
        .collect();
    let mut failed: Vec<i64> = requests.iter().map(|(_, status)| *status).filter(|s| *s >= 400).collect();
    failed.sort_unstable();
    assert_eq!(failed, [401, 401, 404, 409, 503], "the failed requests: {requests:?}");
    let mut succeeded: Vec<&str> = requests.iter().filter(|(_, s)| *s < 400).map(|(name, _)| *name).collect();
    succeeded.sort_unstable();
    assert_eq!(
        succeeded,
        ["SCIM create Users", "SCIM get Users", "SCIM patch Users"],
        "the changes and the one read a caller traced: {requests:?}"
    );
    let traced = spans
        .iter()
        .find(|s| {
            s.kind == SpanKind::Server
                && s.name == "SCIM get Users"
                && s.attr("http.response.status_code") == &json!(200)
        })
        .expect("the traced get");
    assert_eq!((traced.trace_id.as_str(), traced.parent.as_str()), (TRACE_ID, PARENT_ID));
    let server_ids: Vec<&str> =
        spans.iter().filter(|s| s.kind == SpanKind::Server).map(|s| s.span_id.as_str()).collect();
    for s in spans.iter().filter(|s| s.kind != SpanKind::Server) {
        assert!(server_ids.contains(&s.parent.as_str()), "every span belongs to a request that was exported: {s:?}");
    }
    let dup = spans.iter().find(|s| s.attr("http.response.status_code") == &json!(409) && s.kind == SpanKind::Server);
    let dup = dup.expect("the 409");
    let calls = spans.iter().filter(|c| c.parent == dup.span_id && c.is_app_call()).count();
    assert_eq!(calls, 1, "the duplicate's app call came with it");
    let attempts = spans.iter().filter(|c| c.is_app_call() && c.attr("error.type") == &st("connect")).count();
    assert_eq!(attempts, 3, "the unreachable app's attempts came with their request");
    // A failed read's spans are made only once it has failed: they are what they would have been
    // had they been made as it ran (ids, times, outcome, the warning logged as an event).
    let down = spans.iter().find(|s| s.kind == SpanKind::Server && s.attr("scimbridge.tenant") == &st("down"));
    let down = down.expect("the unreachable app's read");
    assert_eq!((down.status, down.attr("error.type")), (SpanStatus::Error, &st("503")));
    assert!(down.events.iter().any(|(name, f)| name == "request failed" && f.get("level") == Some(&st("WARN"))));
    assert!(down.time.0 > 0 && down.time.0 < down.time.1, "{:?}", down.time);
    let calls: Vec<&Span> = spans.iter().filter(|c| c.parent == down.span_id).collect();
    assert_eq!(calls.len(), 3, "its attempts, under it: {calls:?}");
    for c in calls {
        assert_eq!(
            (c.trace_id.as_str(), c.kind, c.status),
            (down.trace_id.as_str(), SpanKind::Client, SpanStatus::Error)
        );
        assert!(
            down.time.0 <= c.time.0 && c.time.0 <= c.time.1 && c.time.1 <= down.time.1,
            "{:?} in {:?}",
            c.time,
            down.time
        );
    }
}

/// The standard variables select the collector (HTTP/protobuf), its headers, the service name and
/// resource attributes; the flag adds a header. Export intervals are long, so everything the
/// receiver holds was flushed by the SIGTERM: the spans and the final cumulative metrics.
#[tokio::test(flavor = "multi_thread")]
async fn http_protobuf_traces_and_metrics() {
    let (endpoint, received) = http_receiver().await;
    let config = config();
    let data = common::temp_dir("telemetry-data");
    let mut gw = Gateway::serve_with(
        &config,
        &data,
        DemoApp::start(),
        // Every trace: the spans of successful requests are asserted on too.
        &["--admin-listen", "127.0.0.1:0", "--otlp-header", "x-flag=from-flag", "--trace-reads", "1"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-collector-key=k-123"),
            ("OTEL_SERVICE_NAME", "scimbridge-under-test"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test"),
            // Nothing is due before the gateway stops: what arrives is the flush at shutdown.
            ("OTEL_BSP_SCHEDULE_DELAY", "60000"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "60000"),
        ],
        reqwest::Client::new(),
    );
    let seq = run_sequence(&gw, "alice@example.com").await;

    // X-Request-Id: the client's when it sent a sane one, else a fresh one.
    assert_eq!(seq.traced.headers["x-request-id"], "req-42");
    let made = seq.created.headers["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(made.len(), 36, "a UUID: {made}");

    // The Prometheus scrape, before the gateway stops.
    let admin = gw.admin_url.clone().expect("admin listener");
    let scrape = reqwest::get(format!("{admin}/metrics")).await.unwrap();
    assert_eq!(scrape.status(), 200);
    assert!(scrape.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let prometheus = scrape.text().await.unwrap();
    assert_eq!(reqwest::get(format!("{admin}/healthz")).await.unwrap().status(), 200);
    assert_eq!(reqwest::get(format!("{admin}/readyz")).await.unwrap().status(), 200);

    assert!(received.traces.lock().unwrap().is_empty(), "spans wait for the batch delay");
    stop(&mut gw);
    assert_eq!(*received.refused.lock().unwrap(), Vec::<String>::new(), "every export decodes");
    let headers = received.headers.lock().unwrap().clone();
    assert!(!headers.is_empty());
    for h in &headers {
        assert_eq!(h.get("x-collector-key").map(String::as_str), Some("k-123"), "OTEL_EXPORTER_OTLP_HEADERS: {h:?}");
        assert_eq!(h.get("x-flag").map(String::as_str), Some("from-flag"), "--otlp-header: {h:?}");
    }

    check_spans(&spans(&received), &seq, &gw.app_url);
    check_metrics(&received, &prometheus);
    // Nothing secret or personal travels: no token, no user name, no id in a metric label.
    let all = format!("{:?}{:?}", received.traces.lock().unwrap(), received.metrics.lock().unwrap());
    for secret in [common::TOKEN, "wrong-token", gw.app_key.as_str(), "k-123"] {
        assert!(!all.contains(secret), "`{secret}` was exported");
    }
    assert!(!prometheus.contains(&seq.user_id) && !prometheus.contains("alice"), "ids stay out of labels");
}

fn check_spans(spans: &[Span], seq: &Sequence, app_url: &str) {
    let server: Vec<&Span> = spans.iter().filter(|s| s.kind == SpanKind::Server).collect();
    fn names<'a>(v: &[&'a Span]) -> Vec<&'a str> {
        v.iter().map(|s| s.name.as_str()).collect()
    }
    for span in spans {
        assert_eq!(span.resource.get("service.name"), Some(&st("scimbridge-under-test")), "OTEL_SERVICE_NAME");
        assert_eq!(span.resource.get("deployment.environment"), Some(&st("test")), "OTEL_RESOURCE_ATTRIBUTES");
    }
    let count = |name: &str| server.iter().filter(|s| s.name == name).count();
    assert_eq!(count("SCIM create Users"), 2, "{:?}", names(&server));
    assert_eq!(count("SCIM get Users"), 3, "{:?}", names(&server));
    assert_eq!(count("SCIM patch Users"), 1, "{:?}", names(&server));
    assert_eq!(count("SCIM list Users"), 4, "{:?}", names(&server));
    assert_eq!(server.len(), 10, "one server span per request: {:?}", names(&server));

    let by_request_id = |id: &str| -> &Span {
        server.iter().copied().find(|s| s.attr("scimbridge.request_id") == &st(id)).expect("the request's span")
    };
    let children = |parent: &Span| -> Vec<&Span> {
        spans.iter().filter(|c| c.parent == parent.span_id && c.trace_id == parent.trace_id).collect()
    };

    // The create: attributes, and its app call and store calls as children.
    let create = by_request_id(seq.created.headers["x-request-id"].to_str().unwrap());
    assert_eq!(create.name, "SCIM create Users");
    for (k, v) in [
        ("scimbridge.tenant", st("demo")),
        ("scim.resource_type", st("Users")),
        ("scim.operation", st("create")),
        ("http.request.method", st("POST")),
        ("http.route", st("/{tenant}/scim/v2/{endpoint}")),
        ("http.response.status_code", json!(201)),
    ] {
        assert_eq!(create.attr(k), &v, "{k} of {create:?}");
    }
    assert_eq!(create.status, SpanStatus::Unset);
    assert_eq!(create.parent, "", "a request without traceparent starts a trace");
    let kids = children(create);
    let app_calls: Vec<&&Span> = kids.iter().filter(|c| c.is_app_call()).collect();
    assert_eq!(app_calls.len(), 1, "one create call: {kids:?}");
    let call = app_calls[0];
    assert_eq!(call.name, "POST create");
    for (k, v) in [
        ("http.request.method", st("POST")),
        ("url.full", st(&format!("{app_url}/api/v1/accounts"))),
        ("server.address", st("127.0.0.1")),
        ("http.response.status_code", json!(201)),
        ("scimbridge.app", st("demo-app")),
        ("scimbridge.app.call", st("create")),
    ] {
        assert_eq!(call.attr(k), &v, "{k} of {call:?}");
    }
    let store: Vec<&&Span> = kids.iter().filter(|c| c.name.starts_with("store ")).collect();
    assert!(store.iter().any(|c| c.name == "store put"), "the new record is stored: {kids:?}");
    for c in &store {
        assert_eq!((c.attr("store.kind"), c.kind), (&st("redb"), SpanKind::Internal));
        assert_eq!(c.attr("store.operation"), &st(c.name.trim_start_matches("store ")));
    }

    // The incoming traceparent: same trace, our span its child; Entra's id and ours recorded.
    let traced = by_request_id("req-42");
    assert_eq!((traced.trace_id.as_str(), traced.parent.as_str()), (TRACE_ID, PARENT_ID));
    assert_eq!(traced.attr("scimbridge.client_request_id"), &st(CLIENT_REQUEST_ID));
    assert_eq!(traced.attr("http.route"), &st("/{tenant}/scim/v2/{endpoint}/{id}"), "the template, not the id");
    let read = children(traced).into_iter().find(|c| c.is_app_call()).expect("the read call");
    assert_eq!((read.name.as_str(), &read.trace_id), ("GET read", &traced.trace_id));
    assert_eq!(read.attr("url.full"), &st(&format!("{app_url}/api/v1/accounts/{}", read_app_id(read))));

    // The duplicate: the SCIM error type; a 4xx is not an error of the server span, but the
    // app's 409 is one of the client span.
    let dup = server.iter().find(|s| s.attr("http.response.status_code") == &json!(409)).expect("the 409");
    assert_eq!(dup.attr("scim.error_type"), &st("uniqueness"));
    assert_eq!(dup.status, SpanStatus::Unset);
    let dup_call = children(dup).into_iter().find(|c| c.is_app_call()).expect("the app call");
    assert_eq!((dup_call.attr("http.response.status_code"), dup_call.status), (&json!(409), SpanStatus::Error));

    // The filtered list: the app's search, its URL without the query (no filter values).
    let list = server
        .iter()
        .find(|s| {
            s.name == "SCIM list Users"
                && s.attr("scimbridge.tenant") == &st("demo")
                && s.attr("http.response.status_code") == &json!(200)
        })
        .expect("the filtered list");
    let search = children(list).into_iter().find(|c| c.is_app_call()).expect("the search call");
    assert_eq!(search.attr("url.full"), &st(&format!("{app_url}/api/v1/accounts")));
    assert!(!format!("{search:?}").contains("alice"), "no filter value in the span: {search:?}");

    // The 404 answers from the store alone.
    let missing = server.iter().find(|s| s.attr("http.response.status_code") == &json!(404)).expect("the 404");
    assert!(!children(missing).iter().any(|c| c.is_app_call()), "no app call for a missing id");

    // The unreachable app: 503 is an error; every attempt is a span, retries counted.
    let down = server.iter().find(|s| s.attr("scimbridge.tenant") == &st("down")).expect("the 503");
    assert_eq!((down.attr("http.response.status_code"), down.status), (&json!(503), SpanStatus::Error));
    assert_eq!(down.attr("error.type"), &st("503"));
    // The warning logged for it is an event of its span, its detail withheld like the log's.
    let (event, fields) = down.events.iter().find(|(name, _)| name == "request failed").expect("the warning");
    assert_eq!(
        (fields.get("level"), fields.get("status")),
        (Some(&st("WARN")), Some(&json!(503))),
        "{event}: {fields:?}"
    );
    assert_eq!(fields.get("detail"), Some(&st("[redacted]")));
    let mut attempts: Vec<&Span> = children(down).into_iter().filter(|c| c.is_app_call()).collect();
    attempts.sort_by_key(|a| a.attr("http.request.resend_count").as_i64().unwrap_or(0));
    assert_eq!(attempts.len(), 3, "three attempts: {attempts:?}");
    for (i, a) in attempts.iter().enumerate() {
        assert_eq!((a.attr("error.type"), a.status), (&st("connect"), SpanStatus::Error));
        let resend = if i == 0 { Value::Null } else { json!(i) };
        assert_eq!(a.attr("http.request.resend_count"), &resend);
    }

    // Unknown tenants never become attribute values.
    let unknown = server.iter().filter(|s| s.attr("scimbridge.tenant") == &st("unknown")).count();
    assert_eq!(unknown, 1);
    assert!(!spans.iter().any(|s| format!("{:?}", s.attrs).contains("no-such-tenant")));
}

/// The app id in a read call's URL (the last path segment).
fn read_app_id(read: &Span) -> String {
    read.attr("url.full").as_str().and_then(|u| u.rsplit('/').next()).unwrap_or_default().to_owned()
}

fn check_metrics(received: &Received, prometheus: &str) {
    let metric = |name: &str| last_metric(received, name).unwrap_or_else(|| panic!("metric {name} exported"));
    let req = |tenant: &str, op: &str, status: i64| {
        vec![("tenant", st(tenant)), ("resource", st("Users")), ("operation", st(op)), ("status", json!(status))]
    };
    let expected = [
        (req("demo", "create", 201), 1.0),
        (req("demo", "create", 409), 1.0),
        (req("demo", "get", 200), 2.0),
        (req("demo", "get", 404), 1.0),
        (req("demo", "patch", 200), 1.0),
        (req("demo", "list", 200), 1.0),
        (req("demo", "list", 401), 1.0),
        (req("down", "list", 503), 1.0),
        (req("unknown", "list", 401), 1.0),
    ];
    let duration = metric("scimbridge.request.duration");
    assert_eq!((duration.unit.as_str(), duration.kind), ("s", "histogram"));
    for (labels, n) in &expected {
        assert_eq!(duration.at(labels), *n, "scimbridge.request.duration count {labels:?}");
    }
    assert_eq!(duration.points.len(), expected.len(), "no other series: {:?}", duration.points);
    assert!(last_metric(received, "scimbridge.requests").is_none(), "the histogram counts requests");
    assert!(duration.points.iter().all(|p| p.sum.is_some_and(|s| s > 0.0 && s < 10.0)), "seconds, not ms");

    let backend = metric("scimbridge.backend.duration");
    assert_eq!((backend.unit.as_str(), backend.kind), ("s", "histogram"));
    let app = |call: &str| vec![("app", st("demo-app")), ("call", st(call))];
    assert_eq!(backend.at(&app("create")), 2.0, "two create calls (one refused by the app)");
    assert_eq!(backend.at(&app("list")), 1.0 + 3.0, "the search, and three attempts at the unreachable app");
    let errors = metric("scimbridge.backend.errors");
    assert_eq!(errors.at(&[("app", st("demo-app")), ("call", st("list")), ("error", st("connect"))]), 3.0);
    assert_eq!(errors.points.len(), 1, "{:?}", errors.points);

    let auth = metric("scimbridge.auth.failures");
    assert_eq!(auth.at(&[("tenant", st("unknown")), ("reason", st("unknown_tenant"))]), 1.0);
    assert_eq!(auth.at(&[("tenant", st("demo")), ("reason", st("unknown"))]), 1.0);

    let store = metric("scimbridge.store.duration");
    assert_eq!((store.unit.as_str(), store.kind), ("s", "histogram"));
    assert_eq!(
        store.at(&[("store", st("redb")), ("operation", st("put")), ("outcome", st("ok"))]),
        2.0,
        "create and patch"
    );
    assert!(store.at(&[("operation", st("get"))]) >= 4.0, "gets, patch, 404, traced get look up the record");

    // The Prometheus text shows the same counts under Prometheus names.
    let line = |series: &str| -> f64 {
        prometheus
            .lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("`{series}` in the scrape:\n{prometheus}"))
    };
    let count = |labels: &str| line(&format!("scimbridge_request_duration_seconds_count{{{labels}}}"));
    assert_eq!(count(r#"operation="create",resource="Users",status="201",tenant="demo""#), 1.0);
    assert_eq!(count(r#"operation="get",resource="Users",status="200",tenant="demo""#), 2.0);
    assert_eq!(count(r#"operation="list",resource="Users",status="503",tenant="down""#), 1.0);
    assert_eq!(
        line(
            r#"scimbridge_request_duration_seconds_count{operation="patch",resource="Users",status="200",tenant="demo"}"#
        ),
        1.0
    );
    assert_eq!(line(r#"scimbridge_backend_errors_total{app="demo-app",call="list",error="connect"}"#), 3.0);
    assert_eq!(line(r#"scimbridge_auth_failures_total{reason="unknown_tenant",tenant="unknown"}"#), 1.0);
    assert!(prometheus.contains("# TYPE scimbridge_request_duration_seconds histogram"));
}

/// An app stand-in that answers every call with an empty account list and keeps each call's
/// `traceparent` header: `http://127.0.0.1:port`.
async fn recording_app() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keep = seen.clone();
    let app = Router::new().fallback(move |headers: HeaderMap| {
        let keep = keep.clone();
        async move {
            let tp = headers.get("traceparent").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            keep.lock().unwrap().push(tp);
            axum::Json(json!({"accounts": [], "paging": {"total": 0}}))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

/// A tenant file on the demo mapping with the demo token; `backend` and `rest` add YAML lines.
fn tenant_file(id: &str, base_url: &str, backend: &str, rest: &str) -> String {
    format!(
        "id: {id}\nmapping: demo-app\nbackend:\n  base_url: \"{base_url}\"\n  credentials:\n    api_key: \"${{DEMO_APP_API_KEY}}\"\n{backend}\
         auth:\n  tokens:\n    - label: development\n      sha256: \"7c43ef5ae21d43ce2743f770c68e24def1a43ee2f416d2438410c8af7af2ff2c\"\n{rest}"
    )
}

/// gRPC, chosen by flags: spans and metrics arrive through the collector's gRPC services. Also
/// what the HTTP test's sequence does not cover: the `traceparent` an app receives, inbound rate
/// limit refusals, outbound limit waits, configuration reloads.
#[tokio::test(flavor = "multi_thread")]
async fn grpc_traces_and_metrics() {
    let (endpoint, received) = grpc_receiver().await;
    let (app_url, traceparents) = recording_app().await;
    let config = common::demo_config();
    let outbound = "  rate_limit: { per_second: 5, burst: 1, max_wait_ms: 5000 }\n";
    std::fs::write(config.join("tenants/paced.yaml"), tenant_file("paced", &app_url, outbound, "")).unwrap();
    let inbound = "limits:\n  per_token: { per_second: 1, burst: 1 }\n";
    std::fs::write(
        config.join("tenants/limited.yaml"),
        tenant_file("limited", &app_url.replace("127.0.0.1", "localhost"), "", inbound),
    )
    .unwrap();
    let data = common::temp_dir("telemetry-grpc");
    let mut gw = Gateway::serve_with(
        &config,
        &data,
        DemoApp::start(),
        &[
            "--otlp-endpoint",
            &endpoint,
            "--otlp-protocol",
            "grpc",
            "--otlp-header",
            "x-flag=grpc",
            "--trace-reads",
            "1",
        ],
        &[("OTEL_BSP_SCHEDULE_DELAY", "100"), ("OTEL_METRIC_EXPORT_INTERVAL", "300")],
        reqwest::Client::new(),
    );
    let created = gw.entra_create_user("grpc@example.com").await;
    created.expect(201, "create");
    let traceparent = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    gw.scim_as(common::TOKEN, Method::GET, &format!("/Users/{}", created.id()), None, &[("traceparent", &traceparent)])
        .await
        .expect(200, "get");
    // Exported while running, not only at shutdown.
    until(&received, "two server spans over gRPC", |r| {
        spans(r).iter().filter(|s| s.kind == SpanKind::Server).count() >= 2
    })
    .await;

    // Two pages in a row under an outbound limit of 5/s with no burst: the second waits its turn.
    let paced = gw.tenant_base("paced");
    for _ in 0..2 {
        gw.scim_as(common::TOKEN, Method::GET, &format!("{paced}/Users"), None, &[]).await.expect(200, "paced");
    }
    // One request a second per token: the second at once is refused.
    let limited = gw.tenant_base("limited");
    gw.scim_as(common::TOKEN, Method::GET, &format!("{limited}/Users"), None, &[]).await.expect(200, "limited");
    gw.scim_as(common::TOKEN, Method::GET, &format!("{limited}/Users"), None, &[]).await.expect(429, "limited");
    // A broken file is rejected, its removal applied.
    let broken = config.join("tenants/broken.yaml");
    std::fs::write(&broken, "id: broken\nmapping: no-such-mapping\n").unwrap();
    assert!(gw.logs.wait_for(&["configuration change rejected"], 1, Duration::from_secs(10)).await);
    std::fs::remove_file(&broken).unwrap();
    assert!(gw.logs.wait_for(&["configuration reloaded"], 1, Duration::from_secs(10)).await);
    stop(&mut gw);

    // The one change is one audit record, through the collector's gRPC logs service.
    let audit = audit_records(&received);
    assert_eq!(audit.len(), 1, "{audit:#?}");
    assert_eq!((audit[0].attr("scim.operation"), audit[0].attr("scim.id")), (&st("create"), &st(&created.id())));

    let spans = spans(&received);
    assert_eq!(spans[0].resource.get("service.name"), Some(&st("scimbridge")), "the default service name");
    let get = spans.iter().find(|s| s.name == "SCIM get Users").expect("the get");
    assert_eq!((get.trace_id.as_str(), get.parent.as_str()), (TRACE_ID, PARENT_ID));
    let read = spans.iter().find(|s| s.name == "GET read").expect("the read call");
    assert_eq!((&read.parent, &read.trace_id), (&get.span_id, &get.trace_id));

    // The app received each call's own span as its parent.
    let calls: Vec<&Span> = spans.iter().filter(|s| s.is_app_call()).collect();
    let sent = traceparents.lock().unwrap().clone();
    assert_eq!(sent.len(), 3, "three list calls reached the app: {sent:?}");
    for tp in &sent {
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts.len(), 4, "a W3C traceparent: `{tp}`");
        let call =
            calls.iter().find(|c| c.span_id == parts[2]).unwrap_or_else(|| panic!("`{tp}` names an app call span"));
        assert_eq!(call.trace_id, parts[1]);
    }
    // The wait under the outbound limit is a span of the request.
    let waits: Vec<&Span> = spans.iter().filter(|s| s.name == "outbound limit wait").collect();
    assert_eq!(waits.len(), 2, "one per call of `paced`");

    let metric = |name: &str| last_metric(&received, name).unwrap_or_else(|| panic!("metric {name} exported"));
    let requests = metric("scimbridge.request.duration");
    assert_eq!(requests.at(&[("operation", st("create")), ("status", json!(201))]), 1.0);
    assert_eq!(requests.at(&[("operation", st("get")), ("status", json!(200))]), 1.0);
    assert_eq!(requests.at(&[("tenant", st("paced")), ("operation", st("list")), ("status", json!(200))]), 2.0);
    assert_eq!(requests.at(&[("tenant", st("limited")), ("status", json!(429))]), 1.0);
    let refused = metric("scimbridge.ratelimit.rejections");
    assert_eq!((refused.unit.as_str(), refused.points.len()), ("{request}", 1));
    assert_eq!(refused.at(&[("tenant", st("limited")), ("reason", st("token"))]), 1.0);
    let waited = metric("scimbridge.backend.queue.wait");
    assert_eq!((waited.unit.as_str(), waited.kind), ("s", "histogram"));
    assert_eq!(waited.at(&[("app", st("demo-app"))]), 2.0);
    let wait_sum = waited.points[0].sum.unwrap_or_default();
    assert!((0.1..2.0).contains(&wait_sum), "the second call waited about 200 ms: {wait_sum} s");
    let reloads = metric("scimbridge.config.reloads");
    assert_eq!(reloads.at(&[("outcome", st("rejected"))]), 1.0);
    assert_eq!(reloads.at(&[("outcome", st("applied"))]), 1.0);
    let headers = received.headers.lock().unwrap().clone();
    assert!(headers.iter().all(|h| h.get("x-flag").map(String::as_str) == Some("grpc")), "{headers:?}");
}

// ---------------------------------------------------------------------------------------------
// The audit trail over OTLP logs
// ---------------------------------------------------------------------------------------------

/// The audit records of `received`, checked for what every one of them carries.
fn audit_records(received: &Received) -> Vec<Record> {
    let all = records(received);
    for r in &all {
        assert_eq!(
            (r.event_name.as_str(), r.severity.as_str(), r.scope.as_str()),
            ("scimbridge.audit", "INFO", "scimbridge")
        );
        for (attr, field) in [("scimbridge.tenant", "tenant"), ("scimbridge.request_id", "request_id")] {
            assert_eq!(r.attr(attr), &r.body[field], "{attr} and the body agree: {r:?}");
        }
        assert_eq!(r.attr("scim.operation"), &r.body["operation"]);
        assert_eq!(r.attr("scim.attributes"), &r.body["attributes"]);
        assert_eq!(r.attr("http.response.status_code"), &r.body["outcome"]["status"]);
        assert_eq!(
            (r.trace_id.as_str(), r.span_id.as_str()),
            (r.body["trace_id"].as_str().unwrap_or(""), r.body["span_id"].as_str().unwrap_or(""))
        );
    }
    all
}

/// The audit trail over OTLP/HTTP (the standard variable): one log record per change, the failed
/// create included and the reads not, each in its request's trace (the server span's trace and
/// span ids), with attribute names and no values (the demo tenant keeps personal data out).
#[tokio::test(flavor = "multi_thread")]
async fn audit_records_over_otlp_http() {
    let (endpoint, received) = http_receiver().await;
    let data = common::temp_dir("telemetry-audit");
    let mut gw = Gateway::serve_with(
        &common::demo_config(),
        &data,
        DemoApp::start(),
        &[],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()), ("OTEL_BLRP_SCHEDULE_DELAY", "100")],
        reqwest::Client::new(),
    );
    let user = "audit.otlp@example.com";
    let created = gw.entra_create_user(user).await;
    created.expect(201, "create");
    let id = created.id();
    let dup = gw.entra_create_user(user).await;
    dup.expect_error(409, Some("uniqueness"), "a duplicate");
    let patched = gw.patch_user(&id, json!([{"op": "Replace", "path": "displayName", "value": "Audit O."}])).await;
    patched.expect_one_of(&[200, 204], "patch");
    let deleted = gw.scim(Method::DELETE, &format!("/Users/{id}"), None).await;
    deleted.expect(204, "delete");
    gw.get(&format!("/Users/{id}")).await.expect_error(404, None, "a read is no change");
    // Exported while running (the batch delay is short), not only at the flush at shutdown.
    until(&received, "four audit records", |r| records(r).len() >= 4).await;
    stop(&mut gw);
    assert_eq!(*received.refused.lock().unwrap(), Vec::<String>::new(), "every export decodes");

    let records = audit_records(&received);
    assert_eq!(records.len(), 4, "one record per change: {records:#?}");
    let spans = spans(&received);
    let request_id = |r: &Resp| r.headers["x-request-id"].to_str().unwrap().to_owned();
    let attrs = json!(["externalId", "userName", "active", "emails", "name", "roles"]);
    // Per change: the answer, and the app calls with the app's last status (the 409 is the app's;
    // the patch reads the account, then writes it).
    let expected = [
        (&created, "create", json!(201), Some(id.as_str()), attrs.clone(), Value::Null, (1, 201)),
        (&dup, "create", json!(409), None, attrs, st("uniqueness"), (1, 409)),
        (&patched, "patch", json!(200), Some(id.as_str()), json!(["displayName"]), Value::Null, (2, 200)),
        (&deleted, "delete", json!(204), Some(id.as_str()), json!([]), Value::Null, (1, 204)),
    ];
    for (resp, operation, status, scim_id, attributes, scim_type, (calls, app_status)) in expected {
        let rid = request_id(resp);
        let r = records.iter().find(|r| r.attr("scimbridge.request_id") == &st(&rid)).expect("the change's record");
        for (k, v) in [
            ("scimbridge.tenant", st("demo")),
            ("scim.operation", st(operation)),
            ("scim.resource_type", st("Users")),
            ("http.response.status_code", status.clone()),
            ("scim.attributes", attributes),
            ("scim.error_type", scim_type),
            ("scim.id", scim_id.map_or(Value::Null, st)),
            ("scimbridge.principal.label", st("development")),
            ("scimbridge.principal.subject", Value::Null),
            ("scimbridge.app.calls", json!(calls)),
            ("scimbridge.app.status_code", json!(app_status)),
        ] {
            assert_eq!(r.attr(k), &v, "{k} of the {operation} {status}: {r:?}");
        }
        assert!(r.body["time"].as_str().is_some_and(|t| t.ends_with('Z')), "RFC 3339 in UTC: {r:?}");
        assert_eq!(r.body.get("values"), None, "no values for the demo tenant");
        assert!(!format!("{r:?}").contains("audit.otlp"), "no user name: {r:?}");
        // Beside the request's trace: the server span's trace and span.
        let server = spans
            .iter()
            .find(|s| s.kind == SpanKind::Server && s.attr("scimbridge.request_id") == &st(&rid))
            .expect("the request's server span");
        assert_eq!((&r.trace_id, &r.span_id), (&server.trace_id, &server.span_id), "{operation}");
    }
}

// ---------------------------------------------------------------------------------------------
// No secret anywhere, personal data only where allowed (issue 6's check)
// ---------------------------------------------------------------------------------------------

/// Everything one run of the lifecycle put out, and what it used.
struct Outputs {
    /// The gateway's stderr: JSON log lines at `debug`.
    log: String,
    /// Its stdout.
    stdout: String,
    /// The `--audit-log` file.
    audit: String,
    /// Every OTLP export, decoded and rendered.
    otlp: String,
    /// Every token and secret the run used.
    secrets: Vec<(&'static str, String)>,
    /// The user's and the group's names.
    names: [String; 2],
}

/// SHA-256 as the tenant files write it.
fn sha256_hex(secret: &str) -> String {
    hex::encode(scimbridge::auth::hash_token(secret))
}

/// A config whose one tenant, `entra`, is called with a static token and with JWTs from its own
/// OAuth endpoint, and reaches the demo app through OAuth client credentials (the app's key is
/// the client secret); `personal` is its `log_personal_data`.
fn lifecycle_config(static_token: &str, client_secret: &str, personal: bool) -> std::path::PathBuf {
    let dir = common::demo_config();
    std::fs::remove_file(dir.join("tenants/demo.yaml")).unwrap();
    let m = dir.join("mappings/demo-app.yaml");
    let mapping = std::fs::read_to_string(&m).unwrap();
    let key_header = "http:\n  headers:\n    X-Api-Key: \"{{ credentials.api_key }}\"\n";
    let oauth = "http:\n  auth:\n    type: oauth2_client_credentials\n    token_url: \"{{ credentials.token_url }}\"\n    client_id: scimbridge\n    client_secret: \"{{ credentials.api_key }}\"\n";
    assert!(mapping.contains(key_header), "the demo mapping changed");
    std::fs::write(&m, mapping.replace(key_header, oauth)).unwrap();
    let tenant = format!(
        "id: entra\nmapping: demo-app\nbackend:\n  base_url: \"${{DEMO_APP_URL}}\"\n  credentials:\n    api_key: \"${{DEMO_APP_API_KEY}}\"\n    token_url: \"${{DEMO_APP_URL}}/api/v1/oauth/token\"\n\
         auth:\n  tokens:\n    - label: entra-static\n      sha256: \"{}\"\n  oauth:\n    signing_secret: \"${{OAUTH_SECRET}}\"\n    clients:\n      - client_id: entra-client\n        secret_sha256: \"{}\"\n\
         options:\n  log_personal_data: {personal}\n",
        sha256_hex(static_token),
        sha256_hex(client_secret),
    );
    std::fs::write(dir.join("tenants/entra.yaml"), tenant).unwrap();
    dir
}

/// Entra's whole lifecycle of a user and a group against tenant `entra`, with every output on.
async fn lifecycle(personal: bool) -> Outputs {
    let (endpoint, received) = http_receiver().await;
    let tag = common::uuid();
    let static_token = format!("static-{tag}");
    let client_secret = format!("client-secret-{tag}");
    let signing_secret = format!("signing-secret-{tag}-of-enough-length");
    let otlp_key = format!("otlp-key-{tag}");
    let config = lifecycle_config(&static_token, &client_secret, personal);
    let data = common::temp_dir("secrets");
    let audit_path = data.join("audit.jsonl");
    let mut gw = Gateway::serve_with(
        &config,
        &data,
        DemoApp::start(),
        &[
            "--log-format",
            "json",
            "--audit-log",
            audit_path.to_str().unwrap(),
            "--otlp-header",
            &format!("x-api-key={otlp_key}"),
            // Every span is searched for secrets, the successful requests' too.
            "--trace-reads",
            "1",
        ],
        &[
            ("RUST_LOG", "debug"),
            ("OAUTH_SECRET", signing_secret.as_str()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ("OTEL_BLRP_SCHEDULE_DELAY", "200"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
        ],
        reqwest::Client::new(),
    );
    let http = reqwest::Client::new();
    let token = http
        .post(format!("{}/entra/oauth/token", gw.url))
        .form(&[("grant_type", "client_credentials"), ("client_id", "entra-client"), ("client_secret", &client_secret)])
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 200);
    let jwt = token.json::<Value>().await.unwrap()["access_token"].as_str().expect("a JWT").to_owned();
    assert_eq!(jwt.split('.').count(), 3, "a JWT: {jwt}");

    let base = gw.tenant_base("entra");
    let call = |token: &str, method: Method, path: &str, body: Option<Value>| {
        let (gw, url, token) = (&gw, format!("{base}{path}"), token.to_owned());
        async move { gw.scim_as(&token, method, &url, body, &[]).await }
    };
    let user = format!("ada.{}@example.com", &tag[..8]);
    let group = format!("Analysts {}", &tag[..8]);
    let found = call(
        &static_token,
        Method::GET,
        &format!("/Users?filter={}", common::urlencode(&format!("userName eq \"{user}\""))),
        None,
    )
    .await;
    found.expect(200, "Entra looks the user up first");
    assert_eq!(found.total(), 0);
    let body = json!({
        "schemas": [common::USER, common::ENTERPRISE],
        "externalId": format!("ext-{tag}"),
        "userName": user,
        "active": true,
        "emails": [{"primary": true, "type": "work", "value": user}],
        "name": {"formatted": "Ada Lovelace", "familyName": "Lovelace", "givenName": "Ada"},
        "password": format!("pw-{tag}"),
    });
    let created = call(&jwt, Method::POST, "/Users", Some(body.clone())).await;
    created.expect(201, "create");
    let uid = created.id();
    call(&jwt, Method::POST, "/Users", Some(body)).await.expect_error(409, Some("uniqueness"), "a duplicate");
    let ops = json!([
        {"op": "Replace", "path": "displayName", "value": "Ada L."},
        {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": user},
    ]);
    call(&jwt, Method::PATCH, &format!("/Users/{uid}"), Some(common::patch(ops)))
        .await
        .expect_one_of(&[200, 204], "patch");
    let deactivate = json!([{"op": "Replace", "path": "active", "value": "False"}]);
    call(&jwt, Method::PATCH, &format!("/Users/{uid}"), Some(common::patch(deactivate)))
        .await
        .expect_one_of(&[200, 204], "deactivate");
    let lookup = format!("/Groups?filter={}", common::urlencode(&format!("displayName eq \"{group}\"")));
    call(&jwt, Method::GET, &lookup, None).await.expect(200, "Entra looks the group up first");
    let g = call(
        &jwt,
        Method::POST,
        "/Groups",
        Some(json!({"schemas": [common::GROUP], "externalId": format!("gx-{tag}"), "displayName": group})),
    )
    .await;
    g.expect(201, "group create");
    let gid = g.id();
    let add = json!([{"op": "Add", "path": "members", "value": [{"value": uid}]}]);
    call(&jwt, Method::PATCH, &format!("/Groups/{gid}"), Some(common::patch(add)))
        .await
        .expect_one_of(&[200, 204], "member add");
    let remove = json!([{"op": "Remove", "path": format!("members[value eq \"{uid}\"]")}]);
    call(&static_token, Method::PATCH, &format!("/Groups/{gid}"), Some(common::patch(remove)))
        .await
        .expect_one_of(&[200, 204], "member remove");
    call(&jwt, Method::DELETE, &format!("/Users/{uid}"), None).await.expect(204, "delete the user");
    call(&jwt, Method::DELETE, &format!("/Groups/{gid}"), None).await.expect(204, "delete the group");
    stop(&mut gw);
    assert_eq!(*received.refused.lock().unwrap(), Vec::<String>::new(), "every export decodes");
    assert!(!received.logs.lock().unwrap().is_empty() && !received.traces.lock().unwrap().is_empty());

    let otlp = format!(
        "{:?}\n{:?}\n{:?}",
        received.traces.lock().unwrap(),
        received.metrics.lock().unwrap(),
        received.logs.lock().unwrap()
    );
    let app_key = gw.app_key.clone();
    Outputs {
        log: gw.logs.text(),
        stdout: gw.proc.stdout().text(),
        audit: std::fs::read_to_string(&audit_path).expect("the audit log"),
        otlp,
        secrets: vec![
            ("the static bearer token", static_token),
            ("the JWT", jwt),
            ("the OAuth client secret", client_secret),
            ("the OAuth signing secret", signing_secret),
            ("the app's key (its OAuth client secret)", app_key),
            ("the OTLP header", otlp_key),
            ("the user's password", format!("pw-{tag}")),
        ],
        names: [user, group],
    }
}

/// Issue 6's check: a full Entra lifecycle (look-up, create, a duplicate, attribute changes,
/// deactivation, a group, a member added and removed, deletes) with JSON logs at `debug`, the
/// audit log, and traces, metrics and audit records over OTLP. No token or secret appears in any of
/// it. The user's and group's names stay out of every output of a tenant that keeps personal data
/// out (the default), and reach the log, the audit log and the audit records of one that lets it in.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_lifecycle_leaks_no_secret_and_personal_data_only_where_allowed() {
    for personal in [false, true] {
        let out = lifecycle(personal).await;
        for (what, secret) in &out.secrets {
            let outputs = [
                ("the log", &out.log),
                ("stdout", &out.stdout),
                ("the audit log", &out.audit),
                ("the OTLP exports", &out.otlp),
            ];
            for (output, text) in outputs {
                assert!(!text.contains(secret.as_str()), "{what} is in {output} (log_personal_data: {personal})");
            }
        }
        // Every log line is JSON; a line logged during a request names the request and its tenant.
        let lines: Vec<Value> =
            out.log.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
        let app_calls: Vec<&Value> = lines.iter().filter(|l| l["fields"]["message"] == "app call").collect();
        assert!(app_calls.len() >= 10, "debug lines of the app calls: {}", app_calls.len());
        for l in lines.iter().filter(|l| l["spans"].as_array().is_some_and(|s| !s.is_empty())) {
            let request = &l["spans"][0];
            assert_eq!(request["name"], "request", "{l}");
            assert_eq!(request["scimbridge.tenant"], "entra", "{l}");
            assert!(request["scimbridge.request_id"].as_str().is_some_and(|id| id.len() == 36), "{l}");
        }
        for l in &app_calls {
            assert!(l["spans"].as_array().is_some_and(|s| !s.is_empty()), "an app call inside its request: {l}");
        }
        let audit: Vec<Value> = out.audit.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(audit.len(), 9, "one event per change: {audit:#?}");
        let by_jwt =
            audit.iter().filter(|e| e["who"] == json!({"label": "entra-client", "subject": "entra-client"})).count();
        assert_eq!(by_jwt, 8, "the changes made with the JWT: {audit:#?}");
        let statics = audit.iter().filter(|e| e["who"] == json!({"label": "entra-static"})).count();
        assert_eq!(statics, 1, "the change made with the static token");

        for name in &out.names {
            let logged = [("the log", &out.log), ("the audit log", &out.audit), ("the OTLP exports", &out.otlp)];
            for (output, text) in logged {
                assert_eq!(
                    text.contains(name.as_str()),
                    personal,
                    "`{name}` in {output} (log_personal_data: {personal})"
                );
            }
        }
        // Values travel only with the switch on, and never a password.
        assert_eq!(audit.iter().any(|e| e.get("values").is_some()), personal);
        if personal {
            let create = audit.iter().find(|e| e["operation"] == "create" && e["outcome"]["status"] == 201).unwrap();
            assert_eq!(create["values"]["password"], "[redacted]");
        }
    }
}
