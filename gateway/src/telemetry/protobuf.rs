//! OTLP's export requests as protobuf: `ExportTraceServiceRequest` written straight from the
//! SDK's finished spans, field for field what opentelemetry-proto's conversion yields (the tests
//! decode ours with it and compare), and `ExportLogsServiceRequest` around log records that were
//! written beforehand with [`Writer`] (the audit trail's, `audit::otlp`).
//!
//! Why not that conversion: it copies every key and value into owned strings and nested `Vec`s,
//! and prost then measures each nested message again at every level it is nested in. Together
//! that was 38,000 instructions per PATCH on the exporter's thread, more than the request's own
//! telemetry on the worker (callgrind, bench/README.md "Telemetry cost"). Here a message is
//! written once, its length put in front when it is known, and the resource is encoded once, when
//! the exporter is built.
//!
//! Pure: bytes in, bytes out, no I/O. The framing helpers are prost's.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status};
use opentelemetry::{Array, KeyValue, StringValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SpanData;
use prost::encoding::{
    DecodeContext, WireType, decode_key, decode_varint, encode_key, encode_varint, encoded_len_varint, skip_field,
};

/// A message being written. Other telemetry modules write their own records with it (the audit
/// trail's log records), so every OTLP byte the gateway sends is written here.
#[derive(Debug, Default)]
pub(crate) struct Writer(pub(crate) Vec<u8>);

impl Writer {
    fn key(&mut self, field: u32, wire: WireType) {
        encode_key(field, wire, &mut self.0);
    }

    /// A length-delimited field, written even when empty (a present message, a oneof member).
    pub(crate) fn bytes(&mut self, field: u32, bytes: &[u8]) {
        self.key(field, WireType::LengthDelimited);
        encode_varint(bytes.len() as u64, &mut self.0);
        self.0.extend_from_slice(bytes);
    }

    /// A string or bytes field, left out when empty as proto3 leaves out a default.
    pub(crate) fn text(&mut self, field: u32, text: &[u8]) {
        if !text.is_empty() {
            self.bytes(field, text);
        }
    }

    pub(crate) fn uint(&mut self, field: u32, n: u64) {
        if n != 0 {
            self.key(field, WireType::Varint);
            encode_varint(n, &mut self.0);
        }
    }

    pub(crate) fn fixed64(&mut self, field: u32, n: u64) {
        if n != 0 {
            self.key(field, WireType::SixtyFourBit);
            self.0.extend_from_slice(&n.to_le_bytes());
        }
    }

    pub(crate) fn fixed32(&mut self, field: u32, n: u32) {
        if n != 0 {
            self.key(field, WireType::ThirtyTwoBit);
            self.0.extend_from_slice(&n.to_le_bytes());
        }
    }

    /// A nested message that `body` writes. Its length is only known afterwards: a byte is kept
    /// for it, which most of the small messages need, and a longer message is moved up by the
    /// extra bytes (once per level: linear in the output, where re-measuring was quadratic).
    pub(crate) fn message(&mut self, field: u32, body: impl FnOnce(&mut Self)) {
        self.key(field, WireType::LengthDelimited);
        let at = self.0.len();
        self.0.push(0);
        body(self);
        let len = self.0.len() - at - 1;
        if len < 0x80 {
            self.0[at] = len as u8;
        } else {
            let mut prefix = [0u8; 10];
            let mut rest = &mut prefix[..];
            encode_varint(len as u64, &mut rest);
            let n = 10 - rest.len();
            self.0.splice(at..=at, prefix[..n].iter().copied());
        }
    }

    fn attributes<'a>(&mut self, field: u32, attributes: impl IntoIterator<Item = &'a KeyValue>) {
        for kv in attributes {
            let key = kv.key.as_str().as_bytes();
            let Some(value_len) = scalar_len(&kv.value) else {
                self.message(field, |w| {
                    w.text(1, key);
                    w.message(2, |w| w.value(&kv.value));
                });
                continue;
            };
            // Most attributes are one text or number: their lengths are known before they are
            // written, so nothing is patched or moved (fields 1 and 2 take one byte of key each).
            let key_len = if key.is_empty() { 0 } else { 1 + delimited(key.len()) };
            self.key(field, WireType::LengthDelimited);
            encode_varint((key_len + 1 + delimited(value_len)) as u64, &mut self.0);
            self.text(1, key);
            self.key(2, WireType::LengthDelimited);
            encode_varint(value_len as u64, &mut self.0);
            self.value(&kv.value);
        }
    }

    /// An attribute (`KeyValue`) of one text.
    pub(crate) fn attribute_text(&mut self, field: u32, key: &str, text: &str) {
        self.message(field, |w| {
            w.text(1, key.as_bytes());
            w.message(2, |w| w.bytes(1, text.as_bytes()));
        });
    }

    /// An attribute of one integer.
    pub(crate) fn attribute_int(&mut self, field: u32, key: &str, n: i64) {
        self.message(field, |w| {
            w.text(1, key.as_bytes());
            w.message(2, |w| w.scalar_int(n));
        });
    }

    /// An attribute holding a list of texts.
    pub(crate) fn attribute_texts<'a>(&mut self, field: u32, key: &str, texts: impl IntoIterator<Item = &'a str>) {
        self.message(field, |w| {
            w.text(1, key.as_bytes());
            w.message(2, |w| {
                w.message(5, |w| {
                    for t in texts {
                        w.message(1, |w| w.bytes(1, t.as_bytes()));
                    }
                })
            });
        });
    }

    /// `AnyValue`'s members from an attribute value.
    fn value(&mut self, value: &Value) {
        match value {
            Value::String(s) => self.bytes(1, s.as_str().as_bytes()),
            Value::Bool(b) => self.scalar_bool(*b),
            Value::I64(n) => self.scalar_int(*n),
            Value::F64(f) => self.scalar_double(*f),
            Value::Array(array) => self.message(5, |w| w.array(array)),
            // A kind of value newer than this code: its text, rather than nothing.
            other => self.bytes(1, other.as_str().as_bytes()),
        }
    }

    fn array(&mut self, array: &Array) {
        match array {
            Array::Bool(v) => v.iter().for_each(|b| self.message(1, |w| w.scalar_bool(*b))),
            Array::I64(v) => v.iter().for_each(|n| self.message(1, |w| w.scalar_int(*n))),
            Array::F64(v) => v.iter().for_each(|f| self.message(1, |w| w.scalar_double(*f))),
            Array::String(v) => {
                v.iter().for_each(|s: &StringValue| self.message(1, |w| w.bytes(1, s.as_str().as_bytes())))
            }
            other => self.message(1, |w| w.bytes(1, other.to_string().as_bytes())),
        }
    }

    // A oneof member is written even when it holds its type's default.
    fn scalar_bool(&mut self, b: bool) {
        self.key(2, WireType::Varint);
        encode_varint(u64::from(b), &mut self.0);
    }

    fn scalar_int(&mut self, n: i64) {
        self.key(3, WireType::Varint);
        encode_varint(n as u64, &mut self.0);
    }

    fn scalar_double(&mut self, f: f64) {
        self.key(4, WireType::SixtyFourBit);
        self.0.extend_from_slice(&f.to_bits().to_le_bytes());
    }

    pub(crate) fn span(&mut self, span: &SpanData) {
        let sc = &span.span_context;
        self.text(1, &sc.trace_id().to_bytes());
        self.text(2, &sc.span_id().to_bytes());
        self.trace_state(3, sc);
        if span.parent_span_id != SpanId::INVALID {
            self.text(4, &span.parent_span_id.to_bytes());
        }
        self.text(5, span.name.as_bytes());
        self.uint(6, kind(&span.span_kind));
        self.fixed64(7, nanos(span.start_time));
        self.fixed64(8, nanos(span.end_time));
        self.attributes(9, &span.attributes);
        self.uint(10, u64::from(span.dropped_attributes_count));
        for event in span.events.iter() {
            self.message(11, |w| {
                w.fixed64(1, nanos(event.timestamp));
                w.text(2, event.name.as_bytes());
                w.attributes(3, &event.attributes);
                w.uint(4, u64::from(event.dropped_attributes_count));
            });
        }
        self.uint(12, u64::from(span.events.dropped_count));
        for link in span.links.iter() {
            self.message(13, |w| {
                let sc = &link.span_context;
                w.text(1, &sc.trace_id().to_bytes());
                w.text(2, &sc.span_id().to_bytes());
                w.trace_state(3, sc);
                w.attributes(4, &link.attributes);
                w.uint(5, u64::from(link.dropped_attributes_count));
                w.fixed32(6, flags(sc, sc.is_remote()));
            });
        }
        self.uint(14, u64::from(span.links.dropped_count));
        self.message(15, |w| {
            let (code, message) = match &span.status {
                Status::Unset => (0, ""),
                Status::Ok => (1, ""),
                Status::Error { description } => (2, description.as_ref()),
            };
            w.text(2, message.as_bytes());
            w.uint(3, code);
        });
        self.fixed32(16, flags(sc, span.parent_span_is_remote));
    }

    fn trace_state(&mut self, field: u32, sc: &SpanContext) {
        let state = sc.trace_state().header();
        self.text(field, state.as_bytes());
    }
}

/// The length of a length-delimited field's content of `n` bytes, with its length prefix.
fn delimited(n: usize) -> usize {
    encoded_len_varint(n as u64) + n
}

/// How long `value` is as an `AnyValue`, when it is one text or number.
fn scalar_len(value: &Value) -> Option<usize> {
    match value {
        Value::String(s) => Some(1 + delimited(s.as_str().len())),
        Value::Bool(_) => Some(2),
        Value::I64(n) => Some(1 + encoded_len_varint(*n as u64)),
        Value::F64(_) => Some(9),
        _ => None,
    }
}

/// `SpanKind` as the protocol numbers it.
fn kind(kind: &SpanKind) -> u64 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

/// The span's trace flags, and whether its parent (or the link's target) is remote, as
/// `SpanFlags` wants them.
fn flags(sc: &SpanContext, remote: bool) -> u32 {
    const HAS_IS_REMOTE: u32 = 0x100;
    const IS_REMOTE: u32 = 0x200;
    u32::from(sc.trace_flags().to_u8()) | HAS_IS_REMOTE | if remote { IS_REMOTE } else { 0 }
}

pub(crate) fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// A resource, encoded once: the `Resource` message and the schema URL that go with every
/// export request.
#[derive(Debug, Clone, Default)]
pub struct EncodedResource {
    message: Vec<u8>,
    schema_url: String,
}

impl EncodedResource {
    /// Encodes `resource`.
    pub fn new(resource: &Resource) -> Self {
        let mut w = Writer::default();
        for (k, v) in resource.iter() {
            w.message(1, |w| {
                w.text(1, k.as_str().as_bytes());
                w.message(2, |w| w.value(v));
            });
        }
        Self { message: w.0, schema_url: resource.schema_url().unwrap_or_default().to_owned() }
    }

    /// The `ResourceSpans`/`ResourceLogs` around `scopes`, which writes the scope groups (field 2)
    /// into room for `size` bytes.
    fn around(&self, size: usize, scopes: impl FnOnce(&mut Writer)) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(self.message.len() + size + 64));
        w.message(1, |w| {
            w.bytes(1, &self.message);
            scopes(w);
            w.text(3, self.schema_url.as_bytes());
        });
        w.0
    }
}

/// An `ExportTraceServiceRequest` or `ExportLogsServiceRequest` (the same shape on the wire) of
/// one scope, named `scope`, whose spans or log records were written beforehand: `records` holds
/// them as fields of the `ScopeSpans` or `ScopeLogs` (each a field 2, framed).
pub fn request_of(resource: &EncodedResource, scope: &str, records: &[u8]) -> Vec<u8> {
    resource.around(records.len() + scope.len() + 16, |w| {
        w.message(2, |w| {
            w.message(1, |w| w.text(1, scope.as_bytes()));
            w.0.extend_from_slice(records);
        });
    })
}

/// What an export's answer says was rejected, when it says so: the `partial_success` of an
/// `ExportTraceServiceResponse` or `ExportLogsServiceResponse` (the same shape: a count, then a
/// message). An empty or unreadable answer is a full success, as the protocol has it.
pub fn partial_success(answer: &[u8]) -> Option<(i64, String)> {
    let mut partial = field(answer, 1)?;
    let (mut rejected, mut message) = (0, String::new());
    while !partial.is_empty() {
        let (tag, wire) = decode_key(&mut partial).ok()?;
        match (tag, wire) {
            (1, WireType::Varint) => rejected = decode_varint(&mut partial).ok()? as i64,
            (2, WireType::LengthDelimited) => {
                let n = usize::try_from(decode_varint(&mut partial).ok()?).ok()?;
                message = String::from_utf8_lossy(partial.get(..n)?).into_owned();
                partial = &partial[n..];
            }
            (tag, wire) => skip_field(wire, tag, &mut partial, DecodeContext::default()).ok()?,
        }
    }
    (rejected > 0 || !message.is_empty()).then_some((rejected, message))
}

/// The bytes of the first length-delimited field numbered `wanted` in the message `buf`.
fn field(mut buf: &[u8], wanted: u32) -> Option<&[u8]> {
    while !buf.is_empty() {
        let (tag, wire) = decode_key(&mut buf).ok()?;
        if tag == wanted && wire == WireType::LengthDelimited {
            let n = usize::try_from(decode_varint(&mut buf).ok()?).ok()?;
            return buf.get(..n);
        }
        skip_field(wire, tag, &mut buf, DecodeContext::default()).ok()?;
    }
    None
}

/// A resource like the gateway's, with a schema URL, for tests here and of the audit records.
#[cfg(test)]
pub(crate) fn test_resource() -> Resource {
    Resource::builder()
        .with_service_name("scimbridge")
        .with_attribute(KeyValue::new("service.version", "0.1.0"))
        .with_attribute(KeyValue::new("host.cores", 2))
        .with_schema_url([], "https://opentelemetry.io/schemas/1.30.0")
        .build()
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::time::Duration;

    use opentelemetry::InstrumentationScope;
    use opentelemetry::trace::{Event, Link, TraceFlags, TraceId, TraceState};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
    use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use prost::Message as _;

    use super::*;

    fn context(trace: u128, span: u64, remote: bool, state: TraceState) -> SpanContext {
        SpanContext::new(TraceId::from(trace), SpanId::from(span), TraceFlags::SAMPLED, remote, state)
    }

    /// Spans with every kind of field and value, in two scopes, one long enough that its length
    /// takes several bytes.
    fn spans() -> Vec<SpanData> {
        let at = UNIX_EPOCH + Duration::from_nanos(1_763_900_000_123_456_789);
        let ours = InstrumentationScope::builder("scimbridge").build();
        let state = TraceState::from_key_value([("vendor", "x1")]).unwrap();
        let server = SpanData {
            span_context: context(0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c, 0xb7ad_6b71_6920_3331, false, state),
            parent_span_id: SpanId::from(0x00f0_67aa_0ba9_02b7),
            parent_span_is_remote: true,
            span_kind: SpanKind::Server,
            name: Cow::Borrowed("SCIM patch Users"),
            start_time: at,
            end_time: at + Duration::from_micros(250),
            attributes: vec![
                KeyValue::new("http.request.method", "PATCH"),
                KeyValue::new("http.response.status_code", 200_i64),
                KeyValue::new("zero", 0_i64),
                KeyValue::new("negative", -5_i64),
                KeyValue::new("ratio", 0.25),
                KeyValue::new("flag", false),
                KeyValue::new("long", "x".repeat(300)),
                KeyValue::new("empty", ""),
                KeyValue::new("", 1_i64),
                KeyValue::new("big", i64::MAX),
                KeyValue::new("strings", Value::Array(Array::String(vec!["a".into(), "".into()]))),
                KeyValue::new("ints", Value::Array(Array::I64(vec![0, 7]))),
                KeyValue::new("bools", Value::Array(Array::Bool(vec![true]))),
                KeyValue::new("doubles", Value::Array(Array::F64(vec![1.5]))),
            ],
            dropped_attributes_count: 3,
            events: {
                let mut events = SpanEvents::default();
                events.events.push(Event::new("warned", at, vec![KeyValue::new("level", "WARN")], 1));
                events.dropped_count = 2;
                events
            },
            links: {
                let mut links = SpanLinks::default();
                let link = Link::new(context(7, 8, true, TraceState::NONE), vec![KeyValue::new("link.attr", 1_i64)], 4);
                links.links.push(link);
                links.dropped_count = 5;
                links
            },
            status: Status::error("upstream 503"),
            instrumentation_scope: ours.clone(),
        };
        let root = SpanData {
            span_context: context(1, 2, false, TraceState::NONE),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: Cow::Owned("store put".into()),
            start_time: at,
            end_time: at,
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: ours.clone(),
        };
        let mut kinds = Vec::new();
        for (n, kind) in [SpanKind::Client, SpanKind::Producer, SpanKind::Consumer].into_iter().enumerate() {
            kinds.push(SpanData {
                span_kind: kind,
                status: Status::Ok,
                span_context: context(3, n as u64 + 10, false, TraceState::NONE),
                ..root.clone()
            });
        }
        let mut all = vec![server, root];
        all.extend(kinds);
        all
    }

    /// An export request of `spans`, each written as the outbox writes it.
    fn traces(resource: &EncodedResource, spans: &[SpanData]) -> Vec<u8> {
        let mut records = Writer::default();
        for span in spans {
            records.message(2, |w| w.span(span));
        }
        request_of(resource, "scimbridge", &records.0)
    }

    #[test]
    fn spans_decode_as_the_sdks_conversion_makes_them() {
        let resource = test_resource();
        let ours = ExportTraceServiceRequest::decode(traces(&EncodedResource::new(&resource), &spans()).as_slice())
            .expect("our bytes decode");
        let mut theirs = ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(spans(), &ResourceAttributesWithSchema::from(&resource)),
        };
        assert_eq!(ours.resource_spans[0].scope_spans[0].spans.len(), 5);
        // A resource's attributes come in no set order.
        let mut ours = ours;
        for r in [&mut ours, &mut theirs] {
            if let Some(res) = r.resource_spans[0].resource.as_mut() {
                res.attributes.sort_by(|a, b| a.key.cmp(&b.key));
            }
        }
        assert_eq!(ours, theirs);
    }

    #[test]
    fn partial_success_is_read_from_the_answer() {
        use opentelemetry_proto::tonic::collector::trace::v1::{ExportTracePartialSuccess, ExportTraceServiceResponse};
        let answer =
            |p: Option<ExportTracePartialSuccess>| ExportTraceServiceResponse { partial_success: p }.encode_to_vec();
        assert_eq!(partial_success(&answer(None)), None);
        assert_eq!(partial_success(&[]), None, "an empty answer");
        assert_eq!(partial_success(&[0xff, 0xff]), None, "an unreadable one");
        let none_rejected = ExportTracePartialSuccess { rejected_spans: 0, error_message: String::new() };
        assert_eq!(partial_success(&answer(Some(none_rejected))), None);
        let some = ExportTracePartialSuccess { rejected_spans: 3, error_message: "too old".into() };
        assert_eq!(partial_success(&answer(Some(some))), Some((3, "too old".to_owned())));
    }
}
