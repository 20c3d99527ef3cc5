//! Audit events as OTLP log records: event name `scimbridge.audit`, the event's JSON as the body,
//! its main fields as attributes (so a backend can filter without parsing the body), and the trace
//! and span of the request, so the record sits beside the request's trace.
//!
//! Emitting hands the record to the SDK's batch processor (`telemetry::init` builds it), which
//! queues it without waiting and exports it from its own thread.

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, Severity};
use opentelemetry_sdk::logs::SdkLogger;

use super::Event;

/// The event name of every audit record.
pub const EVENT_NAME: &str = "scimbridge.audit";

/// Emits `event` as a log record.
pub(super) fn emit(logger: &SdkLogger, event: &Event) {
    let mut r = logger.create_log_record();
    r.set_event_name(EVENT_NAME);
    r.set_timestamp(event.at);
    r.set_observed_timestamp(std::time::SystemTime::now());
    r.set_severity_number(Severity::Info);
    r.set_severity_text("INFO");
    if let Ok(body) = serde_json::to_string(event) {
        r.set_body(AnyValue::from(body));
    }
    let c = &event.change;
    r.add_attribute("scimbridge.tenant", event.tenant.clone());
    r.add_attribute("scimbridge.request_id", event.request_id.clone());
    r.add_attribute("scimbridge.principal.label", event.who.label.clone());
    if let Some(subject) = &event.who.subject {
        r.add_attribute("scimbridge.principal.subject", subject.clone());
    }
    r.add_attribute("scim.operation", c.operation.as_str());
    r.add_attribute("scim.resource_type", c.resource_type.clone());
    if let Some(id) = &c.id {
        r.add_attribute("scim.id", id.clone());
    }
    if let Some(bulk_id) = &c.bulk_id {
        r.add_attribute("scim.bulk_id", bulk_id.clone());
    }
    r.add_attribute("scim.attributes", c.attributes.iter().cloned().collect::<AnyValue>());
    let o = &event.outcome;
    r.add_attribute("http.response.status_code", i64::from(o.status));
    if let Some(t) = o.scim_type {
        r.add_attribute("scim.error_type", t);
    }
    r.add_attribute("scimbridge.app.calls", i64::from(o.app_calls));
    if let Some(s) = o.app_status {
        r.add_attribute("scimbridge.app.status_code", i64::from(s));
    }
    if let Some(e) = o.app_error {
        r.add_attribute("scimbridge.app.error_type", e);
    }
    if let Some(t) = &event.trace {
        r.set_trace_context(t.trace_id, t.span_id, Some(t.flags));
    }
    logger.emit(r);
}
