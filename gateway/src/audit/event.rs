//! One audit event: who changed what in which tenant, when, and how it ended, down to the app
//! calls. Built by `server::scim` from the request (its attribute names; values only when the
//! tenant lets personal data into logs, and never a password) and from the outcome.
//!
//! Pure data: no I/O. What names a change comes from the request, so it is filtered here: an
//! attribute name that does not look like one (an e-mail address as a key) is left out.

use std::time::SystemTime;

use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId};
use serde::Serialize;
use serde::ser::{SerializeStruct, Serializer};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::auth::Principal;
use crate::backend::tally::{Attempt, Tally};
use crate::telemetry::personal::REDACTED;

/// The most attribute names one event lists; a body with more is cut, not refused.
const MAX_ATTRIBUTES: usize = 100;
/// The longest attribute name or path kept (extension URNs are long).
const MAX_NAME: usize = 256;

/// What a change does, as the SCIM protocol names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Create,
    Replace,
    Patch,
    Delete,
    /// A bulk request refused as a whole, before any of its operations ran (each operation that
    /// runs is an event of its own kind).
    Bulk,
}

impl Operation {
    /// The name used in events and spans (`scim.operation`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Replace => "replace",
            Self::Patch => "patch",
            Self::Delete => "delete",
            Self::Bulk => "bulk",
        }
    }

    /// The operation of a bulk operation's `method`.
    pub fn of_method(method: &str) -> Option<Self> {
        match method {
            "POST" => Some(Self::Create),
            "PUT" => Some(Self::Replace),
            "PATCH" => Some(Self::Patch),
            "DELETE" => Some(Self::Delete),
            _ => None,
        }
    }
}

/// Who made a change: the credential's configured label and, for a JWT or an OAuth client, its
/// subject or client id. Never the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Who {
    pub label: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

impl From<&Principal> for Who {
    fn from(p: &Principal) -> Self {
        Self { label: p.label.clone(), subject: p.subject.clone() }
    }
}

/// What a change is about, known before it runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub operation: Operation,
    /// The endpoint's resource type as spans and metrics name it (`Users`, `Groups`), `unknown`
    /// for an endpoint the tenant lacks, `Bulk` for a refused bulk request.
    pub resource_type: String,
    /// The SCIM id: the path's, or for a create the one the gateway issued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The operation's `bulkId` within a bulk request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bulk_id: Option<String>,
    /// The attributes the request sets or changes: a body's attribute names, a PATCH's paths
    /// (without their value filters).
    pub attributes: Vec<String>,
    /// The body (the PATCH operations), when the tenant allows personal data; passwords replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub values: Option<Value>,
}

impl Change {
    /// A change of `operation` on `resource_type`, of the resource `id` if the path names one.
    pub fn new(operation: Operation, resource_type: &str, id: Option<&str>) -> Self {
        Self {
            operation,
            resource_type: resource_type.to_owned(),
            id: id.map(str::to_owned),
            bulk_id: None,
            attributes: Vec::new(),
            values: None,
        }
    }

    /// Adds what `body` changes (nothing for a body that did not parse): its attribute names, and
    /// with `values` its content, passwords replaced.
    pub fn with_body(mut self, body: Option<&Value>, values: bool) -> Self {
        let Some(body) = body else { return self };
        let patch = self.operation == Operation::Patch;
        self.attributes = if patch { patch_paths(body) } else { resource_attributes(body) };
        if values {
            self.values = Some(if patch {
                body.get("Operations").map(patch_values).unwrap_or(Value::Null)
            } else {
                resource_values(body)
            });
        }
        self
    }

    /// Sets the operation's `bulkId`.
    pub fn with_bulk_id(mut self, bulk_id: Option<&str>) -> Self {
        self.bulk_id = bulk_id.map(str::to_owned);
        self
    }
}

/// How a change ended: the answer, and the app calls it made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// The HTTP status answered (a bulk operation's own status).
    pub status: u16,
    /// The `scimType` of an error answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scim_type: Option<&'static str>,
    /// App calls sent for the change, retries included.
    pub app_calls: u32,
    /// The status of the app's last answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_status: Option<u16>,
    /// Why the last app call got no answer (`timeout`, `connect`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_error: Option<&'static str>,
}

impl Outcome {
    /// The outcome of a change answered with `status` after the app calls of `tally`.
    pub fn new(status: u16, scim_type: Option<&'static str>, tally: Tally) -> Self {
        let (app_status, app_error) = match tally.last {
            Some(Attempt::Status(s)) => (Some(s), None),
            Some(Attempt::Failed(kind)) => (None, Some(kind)),
            None => (None, None),
        };
        Self { status, scim_type, app_calls: tally.calls, app_status, app_error }
    }
}

/// The request's place in a trace, when it is traced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trace {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub flags: TraceFlags,
}

impl Trace {
    /// The trace of a span context; `None` for an invalid one (no exporter, so no trace).
    pub fn of(cx: &SpanContext) -> Option<Self> {
        cx.is_valid().then(|| Self { trace_id: cx.trace_id(), span_id: cx.span_id(), flags: cx.trace_flags() })
    }
}

impl Serialize for Trace {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Hex straight into buffers: `to_string` goes through `fmt` a byte at a time (2,200
        // instructions per audit record, callgrind).
        let (mut trace, mut span) = ([0u8; 32], [0u8; 16]);
        let mut t = s.serialize_struct("Trace", 2)?;
        t.serialize_field("trace_id", hex_of(&self.trace_id.to_bytes(), &mut trace))?;
        t.serialize_field("span_id", hex_of(&self.span_id.to_bytes(), &mut span))?;
        t.end()
    }
}

/// `bytes` in lower-case hex, written into `out` (twice as long).
fn hex_of<'a>(bytes: &[u8], out: &'a mut [u8]) -> &'a str {
    // The lengths match and hex digits are ASCII, so neither step can fail.
    let _ = hex::encode_to_slice(bytes, out);
    std::str::from_utf8(out).unwrap_or_default()
}

fn rfc3339<S: serde::Serializer>(at: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    let text = OffsetDateTime::from(*at).format(&Rfc3339).map_err(serde::ser::Error::custom)?;
    s.serialize_str(&text)
}

/// One audit event, as written to the audit log (one JSON object a line) and as the body of its
/// OTLP log record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// When the change ended; written as `time`, RFC 3339 in UTC.
    #[serde(rename = "time", serialize_with = "rfc3339")]
    pub at: SystemTime,
    pub tenant: String,
    pub who: Who,
    /// The request's `X-Request-Id`.
    pub request_id: String,
    #[serde(flatten)]
    pub trace: Option<Trace>,
    #[serde(flatten)]
    pub change: Change,
    pub outcome: Outcome,
}

impl Event {
    /// An event that ends now.
    pub fn new(
        tenant: &str,
        who: Who,
        request_id: &str,
        trace: Option<Trace>,
        change: Change,
        outcome: Outcome,
    ) -> Self {
        Self {
            at: SystemTime::now(),
            tenant: tenant.to_owned(),
            who,
            request_id: request_id.to_owned(),
            trace,
            change,
            outcome,
        }
    }
}

/// A name a client may use for an attribute or an attribute path: letters, digits and
/// `_ - $ . :` (URNs), within bounds. Anything else (a value sent as a key) is not listed.
fn plausible_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'$' | b'.' | b':'))
}

fn push(out: &mut Vec<String>, name: String) {
    if out.len() < MAX_ATTRIBUTES && plausible_name(&name) && !out.contains(&name) {
        out.push(name);
    }
}

fn is_urn(key: &str) -> bool {
    key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:"))
}

/// Keys that are not attributes a client changes.
fn is_envelope(key: &str) -> bool {
    ["schemas", "id", "meta"].iter().any(|k| key.eq_ignore_ascii_case(k))
}

/// The attribute names of an object of attributes: its keys, an extension's as `urn:…:name`.
fn add_keys(object: &Map<String, Value>, out: &mut Vec<String>) {
    for (key, value) in object {
        if is_envelope(key) {
            continue;
        }
        match value {
            Value::Object(ext) if is_urn(key) => ext.keys().for_each(|sub| push(out, format!("{key}:{sub}"))),
            _ => push(out, key.clone()),
        }
    }
}

/// The attributes a POST or PUT body sets.
fn resource_attributes(body: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(o) = body.as_object() {
        add_keys(o, &mut out);
    }
    out
}

/// A PATCH path without its value filters: `emails[type eq "work"].value` → `emails.value`.
/// Filters compare with values, which may be personal.
fn without_filters(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let (mut depth, mut quoted, mut escaped) = (0usize, false, false);
    for c in path.chars() {
        if depth == 0 {
            if c == '[' {
                depth = 1;
            } else {
                out.push(c);
            }
        } else if quoted {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => quoted = false,
                _ => {}
            }
        } else {
            match c {
                '"' => quoted = true,
                '[' => depth += 1,
                ']' => depth -= 1,
                _ => {}
            }
        }
    }
    out
}

/// The paths a PATCH body's operations change; an operation without a path changes its value's
/// attributes.
fn patch_paths(body: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for op in body.get("Operations").and_then(Value::as_array).into_iter().flatten() {
        match op.get("path").and_then(Value::as_str) {
            Some(path) => push(&mut out, without_filters(path.trim())),
            None => {
                if let Some(v) = op.get("value").and_then(Value::as_object) {
                    add_keys(v, &mut out);
                }
            }
        }
    }
    out
}

fn is_password(name: &str) -> bool {
    let last = name.rsplit(':').next().unwrap_or(name);
    last.eq_ignore_ascii_case("password")
}

/// `v` with every member named `password` (at any depth) replaced.
fn without_passwords(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| {
                    let x = if is_password(k) { Value::String(REDACTED.to_owned()) } else { without_passwords(x) };
                    (k.clone(), x)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_passwords).collect()),
        other => other.clone(),
    }
}

/// A POST or PUT body's values: its attributes, passwords replaced.
fn resource_values(body: &Value) -> Value {
    match without_passwords(body) {
        Value::Object(mut o) => {
            o.retain(|k, _| !is_envelope(k));
            Value::Object(o)
        }
        other => other,
    }
}

/// A PATCH's operations, the value of an operation on `password` replaced.
fn patch_values(ops: &Value) -> Value {
    let mut ops = without_passwords(ops);
    for op in ops.as_array_mut().into_iter().flatten() {
        let on_password = op.get("path").and_then(Value::as_str).is_some_and(|p| is_password(&without_filters(p)));
        if let (true, Some(o)) = (on_password, op.as_object_mut())
            && o.contains_key("value")
        {
            o.insert("value".to_owned(), Value::String(REDACTED.to_owned()));
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    fn entra_user() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
            "externalId": "ext-1",
            "userName": "ada@example.com",
            "active": true,
            "name": {"givenName": "Ada", "familyName": "Lovelace"},
            "password": "s3cret!",
            ENTERPRISE: {"department": "R&D", "manager": {"value": "m-1"}},
            "meta": {"resourceType": "User"},
            "ada@example.com": "a value as a key"
        })
    }

    #[test]
    fn a_body_lists_its_attribute_names_and_no_values_by_default() {
        let c = Change::new(Operation::Create, "Users", None).with_body(Some(&entra_user()), false);
        assert_eq!(
            c.attributes,
            vec![
                "externalId".to_owned(),
                "userName".into(),
                "active".into(),
                "name".into(),
                "password".into(),
                format!("{ENTERPRISE}:department"),
                format!("{ENTERPRISE}:manager"),
            ]
        );
        assert_eq!(c.values, None);
        let text = serde_json::to_string(&c).unwrap();
        assert!(!text.contains("ada@") && !text.contains("Lovelace") && !text.contains("s3cret"), "{text}");
    }

    #[test]
    fn values_when_allowed_but_never_a_password() {
        let c = Change::new(Operation::Replace, "Users", Some("u-1")).with_body(Some(&entra_user()), true);
        let v = c.values.expect("values");
        assert_eq!(v["userName"], "ada@example.com");
        assert_eq!(v["name"]["familyName"], "Lovelace");
        assert_eq!(v["password"], REDACTED);
        assert!(v.get("schemas").is_none() && v.get("meta").is_none());

        let patch = json!({"Operations": [
            {"op": "replace", "path": "password", "value": "n3w"},
            {"op": "replace", "value": {"password": "n3w2", "displayName": "Ada L."}},
            {"op": "Replace", "path": "active", "value": "False"}
        ]});
        let c = Change::new(Operation::Patch, "Users", Some("u-1")).with_body(Some(&patch), true);
        assert_eq!(c.attributes, vec!["password", "displayName", "active"]);
        let text = c.values.expect("values").to_string();
        assert!(!text.contains("n3w") && text.contains("Ada L.") && text.contains("False"), "{text}");
    }

    #[test]
    fn patch_paths_lose_their_value_filters() {
        assert_eq!(without_filters(r#"emails[type eq "work"].value"#), "emails.value");
        assert_eq!(without_filters(r#"members[value eq "a]\"[b"]"#), "members");
        assert_eq!(without_filters(&format!("{ENTERPRISE}:manager")), format!("{ENTERPRISE}:manager"));
        let patch = json!({"Operations": [
            {"op": "add", "path": "members", "value": [{"value": "u-1"}]},
            {"op": "remove", "path": "members[value eq \"ada@example.com\"]"},
            {"op": "replace", "path": "name.givenName", "value": "Ada"},
            {"op": "add", "path": "bad path with spaces"},
            "not an operation"
        ]});
        let c = Change::new(Operation::Patch, "Groups", Some("g-1")).with_body(Some(&patch), false);
        assert_eq!(c.attributes, vec!["members", "name.givenName"], "deduplicated, only plausible names");
    }

    #[test]
    fn an_event_serializes_as_one_flat_object() {
        let who = Who { label: "entra".into(), subject: Some("app-123".into()) };
        let cx = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            false,
            Default::default(),
        );
        let change = Change::new(Operation::Delete, "Users", Some("u-1"));
        let tally = Tally { calls: 2, last: Some(Attempt::Status(204)) };
        let e = Event::new("acme", who, "req-1", Trace::of(&cx), change, Outcome::new(204, None, tally));
        let v = serde_json::to_value(&e).unwrap();
        let time = v["time"].as_str().unwrap().to_owned();
        assert!(OffsetDateTime::parse(&time, &Rfc3339).is_ok(), "{time}");
        assert_eq!(
            v,
            json!({
                "time": time, "tenant": "acme", "who": {"label": "entra", "subject": "app-123"},
                "request_id": "req-1", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7",
                "operation": "delete", "resource_type": "Users", "id": "u-1", "attributes": [],
                "outcome": {"status": 204, "app_calls": 2, "app_status": 204}
            })
        );
        let failed = Outcome::new(503, None, Tally { calls: 3, last: Some(Attempt::Failed("connect")) });
        assert_eq!(
            serde_json::to_value(&failed).unwrap(),
            json!({"status": 503, "app_calls": 3, "app_error": "connect"})
        );
        assert_eq!(Trace::of(&SpanContext::empty_context()), None, "untraced: no ids");
    }
}
