//! Audit events as OTLP log records: event name `scimbridge.audit`, the event's JSON as the body,
//! its main fields as attributes (so a backend can filter without parsing the body), and the trace
//! and span of the request, so the record sits beside the request's trace.
//!
//! Over OTLP/HTTP a record is written as protobuf where the request runs and joins the
//! telemetry's outbox (`telemetry::outbox`), which exports it from a task. Over gRPC it is an SDK
//! log record, handed to the SDK's batch processor. Both carry the same record (a test decodes
//! one of each).

use std::time::SystemTime;

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, Severity};
use opentelemetry_sdk::logs::SdkLogger;

use super::Event;
use crate::telemetry::AuditExport;
use crate::telemetry::protobuf::{Writer, nanos};

/// The event name of every audit record.
pub const EVENT_NAME: &str = "scimbridge.audit";

/// `ScopeLogs.log_records`: the field each record is in its export request.
const LOG_RECORDS: u32 = 2;

/// Emits `event` as a log record, without waiting.
pub(super) fn emit(export: &AuditExport, event: &Event) {
    match export {
        AuditExport::Outbox(outbox) => outbox.push(LOG_RECORDS, |w| write(w, event, SystemTime::now())),
        AuditExport::Sdk(logger) => emit_sdk(logger, event),
    }
}

/// The attributes of `event`'s record, in order: key and value.
fn attributes(event: &Event, mut add: impl FnMut(&'static str, Attribute<'_>)) {
    use Attribute::{Int, Text};
    let c = &event.change;
    add("scimbridge.tenant", Text(&event.tenant));
    add("scimbridge.request_id", Text(&event.request_id));
    add("scimbridge.principal.label", Text(&event.who.label));
    if let Some(subject) = &event.who.subject {
        add("scimbridge.principal.subject", Text(subject));
    }
    add("scim.operation", Text(c.operation.as_str()));
    add("scim.resource_type", Text(&c.resource_type));
    if let Some(id) = &c.id {
        add("scim.id", Text(id));
    }
    if let Some(bulk_id) = &c.bulk_id {
        add("scim.bulk_id", Text(bulk_id));
    }
    add("scim.attributes", Attribute::Texts(&c.attributes));
    let o = &event.outcome;
    add("http.response.status_code", Int(i64::from(o.status)));
    if let Some(t) = o.scim_type {
        add("scim.error_type", Text(t));
    }
    add("scimbridge.app.calls", Int(i64::from(o.app_calls)));
    if let Some(s) = o.app_status {
        add("scimbridge.app.status_code", Int(i64::from(s)));
    }
    if let Some(e) = o.app_error {
        add("scimbridge.app.error_type", Text(e));
    }
}

/// An attribute's value.
enum Attribute<'a> {
    Text(&'a str),
    Int(i64),
    Texts(&'a [String]),
}

/// Writes `event` as a `LogRecord` message observed at `observed`.
fn write(w: &mut Writer, event: &Event, observed: SystemTime) {
    w.fixed64(1, nanos(event.at));
    w.uint(2, Severity::Info as u64);
    w.text(3, b"INFO");
    // The body: an `AnyValue` holding the event's JSON, written in place.
    w.message(5, |w| w.message(1, |w| drop(serde_json::to_writer(&mut w.0, event))));
    attributes(event, |key, value| match value {
        Attribute::Text(t) => w.attribute_text(6, key, t),
        Attribute::Int(n) => w.attribute_int(6, key, n),
        Attribute::Texts(list) => w.attribute_texts(6, key, list.iter().map(String::as_str)),
    });
    if let Some(t) = &event.trace {
        w.fixed32(8, u32::from(t.flags.to_u8()));
        w.text(9, &t.trace_id.to_bytes());
        w.text(10, &t.span_id.to_bytes());
    }
    w.fixed64(11, nanos(observed));
    w.text(12, EVENT_NAME.as_bytes());
}

/// Emits `event` as an SDK log record.
fn emit_sdk(logger: &SdkLogger, event: &Event) {
    let mut r = logger.create_log_record();
    r.set_event_name(EVENT_NAME);
    r.set_timestamp(event.at);
    r.set_observed_timestamp(SystemTime::now());
    r.set_severity_number(Severity::Info);
    r.set_severity_text("INFO");
    if let Ok(body) = serde_json::to_string(event) {
        r.set_body(AnyValue::from(body));
    }
    attributes(event, |key, value| match value {
        Attribute::Text(t) => r.add_attribute(key, t.to_owned()),
        Attribute::Int(n) => r.add_attribute(key, n),
        Attribute::Texts(list) => r.add_attribute(key, list.iter().cloned().collect::<AnyValue>()),
    });
    if let Some(t) = &event.trace {
        r.set_trace_context(t.trace_id, t.span_id, Some(t.flags));
    }
    logger.emit(r);
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, UNIX_EPOCH};

    use opentelemetry::logs::LoggerProvider as _;
    use opentelemetry::trace::{SpanId, TraceFlags, TraceId};
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
    use opentelemetry_proto::transform::logs::tonic::group_logs_by_resource_and_scope;
    use opentelemetry_sdk::logs::{LogBatch, LogExporter, SdkLoggerProvider};
    use prost::Message as _;

    use super::*;
    use crate::audit::{Change, Operation, Outcome, Trace, Who};
    use crate::backend::tally::{Attempt, Tally};
    use crate::telemetry::otlp::SCOPE as LOG_SCOPE;
    use crate::telemetry::protobuf::{self, EncodedResource, test_resource};

    /// Converts each batch it is handed as the SDK's OTLP exporters do.
    #[derive(Debug, Clone, Default)]
    struct Converted(Arc<Mutex<Vec<ExportLogsServiceRequest>>>);

    impl LogExporter for Converted {
        async fn export(&self, batch: LogBatch<'_>) -> opentelemetry_sdk::error::OTelSdkResult {
            let resource = ResourceAttributesWithSchema::from(&test_resource());
            let resource_logs = group_logs_by_resource_and_scope(&batch, &resource);
            self.0.lock().unwrap().push(ExportLogsServiceRequest { resource_logs });
            Ok(())
        }
    }

    fn events() -> Vec<Event> {
        let who = Who { label: "entra".into(), subject: Some("app-7".into()) };
        let change = Change::new(Operation::Patch, "Users", Some("2819c223"))
            .with_body(
                Some(&serde_json::json!({"Operations": [{"op": "Replace", "path": "active", "value": false}]})),
                false,
            )
            .with_bulk_id(Some("b1"));
        let tally = Tally { calls: 2, last: Some(Attempt::Failed("timeout")) };
        let trace = Trace { trace_id: TraceId::from(9), span_id: SpanId::from(10), flags: TraceFlags::SAMPLED };
        let mut failed =
            Event::new("contoso", who, "req-1", Some(trace), change, Outcome::new(503, Some("unavailable"), tally));
        failed.at = UNIX_EPOCH + Duration::from_secs(1_763_900_000);
        let who = Who { label: "development".into(), subject: None };
        let tally = Tally { calls: 1, last: Some(Attempt::Status(201)) };
        let created = Event::new(
            "demo",
            who,
            "req-2",
            None,
            Change::new(Operation::Create, "Groups", None),
            Outcome::new(201, None, tally),
        );
        vec![failed, created]
    }

    #[test]
    fn records_over_http_decode_as_the_sdks_records_over_grpc() {
        let converted = Converted::default();
        let provider = SdkLoggerProvider::builder().with_batch_exporter(converted.clone()).build();
        let logger = provider.logger(LOG_SCOPE);
        let mut records = Writer::default();
        for event in &events() {
            emit_sdk(&logger, event);
            let mut record = Writer::default();
            write(&mut record, event, UNIX_EPOCH + Duration::from_secs(1));
            records.bytes(LOG_RECORDS, &record.0);
        }
        provider.shutdown().unwrap();
        let ours = protobuf::request_of(&EncodedResource::new(&test_resource()), LOG_SCOPE, &records.0);
        let mut ours = ExportLogsServiceRequest::decode(ours.as_slice()).unwrap();

        let theirs = converted.0.lock().unwrap().clone();
        assert_eq!(theirs.len(), 1, "one batch");
        // The records were observed at different times; everything else is the same.
        let (ours_records, theirs_records) = (
            &mut ours.resource_logs[0].scope_logs[0].log_records,
            &theirs[0].resource_logs[0].scope_logs[0].log_records,
        );
        assert_eq!(ours_records.len(), 2);
        for (o, t) in ours_records.iter_mut().zip(theirs_records) {
            assert_eq!(o.observed_time_unix_nano, 1_000_000_000);
            o.observed_time_unix_nano = t.observed_time_unix_nano;
        }
        // A resource's attributes come in no set order.
        let mut theirs = theirs[0].clone();
        for r in [&mut ours, &mut theirs] {
            if let Some(res) = r.resource_logs[0].resource.as_mut() {
                res.attributes.sort_by(|a, b| a.key.cmp(&b.key));
            }
        }
        assert_eq!(ours, theirs);
        let body = &ours.resource_logs[0].scope_logs[0].log_records[0].body;
        assert!(format!("{body:?}").contains("2819c223"), "the body is the event's JSON: {body:?}");
    }
}
