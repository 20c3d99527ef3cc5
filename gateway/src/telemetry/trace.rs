//! Spans over OTLP, made with the OpenTelemetry API: a request's server span, its app calls, store
//! calls and outbound limit waits. `tracing` spans are for the log only (request id and tenant on
//! every line); no span is made twice.
//!
//! [`install`] puts the tracer in place when traces export; until then (no endpoint, unit tests)
//! every [`Span`] is empty and costs one atomic load: no attributes are built, nothing is
//! allocated. A span's parent is the current OpenTelemetry context, which the request's server
//! span sets while its handler runs ([`Span::run`]); tasks a request spawns take it along with
//! [`inherit`].
//!
//! Why not `tracing-opentelemetry`: through it, a GET with two spans cost 69,000 more instructions
//! with export on than off (callgrind, bench/README.md); its registry slot, field visitors that
//! format every attribute as text, and enter/exit on every poll were half of that.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::hash::BuildHasherDefault;
use std::sync::{LazyLock, Mutex, OnceLock, PoisonError};

use opentelemetry::context::FutureExt as _;
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{SpanBuilder, SpanContext, SpanKind, Status, TraceContextExt as _, TraceFlags};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::HeaderExtractor;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracer;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context as LayerContext, Layer};

pub use opentelemetry::trace::SpanKind as Kind;

static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// Makes spans export through `tracer`, for the rest of the process.
pub(super) fn install(tracer: SdkTracer) {
    // A second init (tests) keeps the first tracer, as it keeps the first subscriber.
    let _ = TRACER.set(tracer);
}

/// A span being recorded; empty when traces do not export, and then every method does nothing. It ends when [`Span::end`] is called or when it is dropped.
#[derive(Debug, Default)]
pub struct Span(Option<Context>);

impl Span {
    /// The server span of a request: a child of the W3C `traceparent` in `headers` if there is
    /// one, else the root of a new trace.
    pub fn server(
        headers: &HeaderMap,
        name: impl FnOnce() -> Cow<'static, str>,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> Self {
        let Some(tracer) = TRACER.get() else { return Self(None) };
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
        Self::start(tracer, &parent, SpanBuilder::from_name(name()).with_kind(SpanKind::Server), attributes)
    }

    /// A span of `kind` under the current one (the request's).
    pub fn child(
        kind: Kind,
        name: impl FnOnce() -> Cow<'static, str>,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> Self {
        let Some(tracer) = TRACER.get() else { return Self(None) };
        Context::map_current(|parent| {
            Self::start(tracer, parent, SpanBuilder::from_name(name()).with_kind(kind), attributes)
        })
    }

    fn start(
        tracer: &SdkTracer,
        parent: &Context,
        builder: SpanBuilder,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> Self {
        // A span left out by the sampler stays in the context all the same: its children follow
        // its decision, and the audit trail still names the trace.
        let span = builder.with_attributes(attributes()).start_with_context(tracer, parent);
        Self(Some(parent.with_span(span)))
    }

    /// Adds an attribute (an outcome known only at the end).
    pub fn set(&self, attribute: impl FnOnce() -> KeyValue) {
        if let Some(cx) = &self.0 {
            cx.span().set_attribute(attribute());
        }
    }

    /// Marks the span failed, with the `error.type` attribute the semantic conventions ask for.
    pub fn fail(&self, error_type: impl FnOnce() -> opentelemetry::Value) {
        if let Some(cx) = &self.0 {
            cx.span().set_attribute(KeyValue::new("error.type", error_type()));
            cx.span().set_status(Status::error(""));
        }
    }

    /// Ends the span now.
    pub fn end(self) {
        if let Some(cx) = &self.0 {
            cx.span().end();
        }
    }

    /// Runs `f` with this span current: spans started inside are its children, and warnings
    /// logged inside become its events.
    pub async fn run<F: Future>(&self, f: F) -> F::Output {
        match &self.0 {
            Some(cx) => f.with_context(cx.clone()).await,
            None => f.await,
        }
    }

    /// Adds this span's W3C `traceparent` (and `tracestate`, if the trace has one) to `headers`,
    /// so the callee continues the trace.
    pub fn inject(&self, headers: &mut HeaderMap) {
        let Some(cx) = &self.0 else { return };
        let span = cx.span();
        let sc = span.span_context();
        if !sc.is_valid() {
            return;
        }
        headers.insert(TRACEPARENT, traceparent(sc));
        let state = sc.trace_state().header();
        if !state.is_empty()
            && let Ok(v) = HeaderValue::from_str(&state)
        {
            headers.insert(TRACESTATE, v);
        }
    }
}

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// `00-<trace id>-<span id>-<flags>`, written straight into its 55 bytes: the SDK's propagator
/// formats the ids through `fmt` (6,300 instructions per app call, callgrind).
fn traceparent(sc: &SpanContext) -> HeaderValue {
    let mut buf = *b"00-00000000000000000000000000000000-0000000000000000-00";
    let flags = [(sc.trace_flags() & TraceFlags::SAMPLED).to_u8()];
    // The slices have exactly twice the bytes' lengths, so encoding cannot fail.
    let _ = hex::encode_to_slice(sc.trace_id().to_bytes(), &mut buf[3..35]);
    let _ = hex::encode_to_slice(sc.span_id().to_bytes(), &mut buf[36..52]);
    let _ = hex::encode_to_slice(flags, &mut buf[53..55]);
    HeaderValue::from_bytes(&buf).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `first second`, a span name of two words from fixed sets (`SCIM get Users`, `GET read`):
/// each pair is joined once for the process and then only looked up, where a `format!` per span
/// cost an allocation and 700 instructions (callgrind). Both words are `'static`, so nothing a
/// request carries can get in, and the names stay as few as the pairs the code can form.
pub fn name(first: &'static str, second: &'static str) -> &'static str {
    // Keyed by where the words are (static text does not move): no text is hashed or compared.
    // Each thread keeps its own copy of the lookups, so no lock word bounces between cores; the
    // shared table makes sure each name is made once.
    type Names = HashMap<[u64; 2], &'static str, BuildHasherDefault<super::Addresses>>;
    static SHARED: LazyLock<Mutex<Names>> = LazyLock::new(Mutex::default);
    thread_local! {
        static LOCAL: RefCell<Names> = RefCell::default();
    }
    let key = [super::word(first), super::word(second)];
    LOCAL.with_borrow_mut(|local| {
        *local.entry(key).or_insert_with(|| {
            let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
            *shared.entry(key).or_insert_with(|| format!("{first} {second}").leak())
        })
    })
}

/// `http.request.method` as the HTTP conventions want it: a method they know, else `_OTHER`
/// (a static text either way: nothing to allocate per span).
pub fn http_method(method: &reqwest::Method) -> &'static str {
    use reqwest::Method as M;
    match *method {
        M::GET => "GET",
        M::POST => "POST",
        M::PUT => "PUT",
        M::PATCH => "PATCH",
        M::DELETE => "DELETE",
        M::HEAD => "HEAD",
        M::OPTIONS => "OPTIONS",
        M::CONNECT => "CONNECT",
        M::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

/// The current span's trace and span id, when traces export.
pub fn current() -> Option<SpanContext> {
    Context::map_current(|cx| cx.has_active_span().then(|| cx.span().span_context().clone()))
}

/// Runs `f`, a task a request spawns, in the request's trace: spans it starts are the request's.
pub fn inherit<F: Future>(f: F) -> impl Future<Output = F::Output> {
    f.with_current_context()
}

/// The layer that turns warnings and errors logged during a recorded span into events of that
/// span (the event's message its name, its fields and level its attributes): a trace shows why a
/// request failed without a trip to the logs. [`init`](super::init) gives it a `WARN` filter.
pub struct SpanEvents;

impl<S: tracing::Subscriber> Layer<S> for SpanEvents {
    fn on_event(&self, event: &tracing::Event<'_>, _: LayerContext<'_, S>) {
        // The SDK's own warnings (a dropped span, a failed export) are logged from inside its
        // span handling: never fed back into a span.
        if event.metadata().target().starts_with("opentelemetry") {
            return;
        }
        // Installed only with the tracer: no check for one here.
        Context::map_current(|cx| {
            if !cx.has_active_span() {
                return;
            }
            let mut fields = Fields { message: None, attributes: Vec::new() };
            event.record(&mut fields);
            fields.attributes.push(KeyValue::new("level", event.metadata().level().as_str()));
            fields.attributes.push(KeyValue::new("target", event.metadata().target()));
            let name = fields.message.map_or(Cow::Borrowed("event"), Cow::Owned);
            cx.span().add_event(name, fields.attributes);
        });
    }
}

/// An event's fields as span event attributes.
struct Fields {
    message: Option<String>,
    attributes: Vec<KeyValue>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = Some(value.to_owned()),
            name => self.attributes.push(KeyValue::new(name, value.to_owned())),
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.attributes.push(KeyValue::new(field.name(), value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match i64::try_from(value) {
            Ok(v) => self.record_i64(field, v),
            Err(_) => self.record_str(field, &value.to_string()),
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.attributes.push(KeyValue::new(field.name(), value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.attributes.push(KeyValue::new(field.name(), value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_tracer_spans_are_empty_and_build_nothing() {
        let span = Span::child(Kind::Internal, || unreachable!("no name is made"), || unreachable!("nor attributes"));
        assert!(span.0.is_none());
        span.set(|| unreachable!("nor outcomes"));
        let mut headers = HeaderMap::new();
        span.inject(&mut headers);
        assert!(headers.is_empty());
        assert!(current().is_none());
    }

    #[test]
    fn names_are_joined_once_per_pair() {
        let a = name("SCIM", "get");
        assert_eq!(a, "SCIM get");
        assert!(std::ptr::eq(a, name("SCIM", "get")), "the second time is the same text");
        assert_eq!(name("GET", "read"), "GET read");
    }

    #[test]
    fn traceparent_is_what_the_w3c_propagator_writes() {
        use opentelemetry::trace::{SpanId, TraceId, TraceState};
        use opentelemetry_http::HeaderInjector;
        for flags in [TraceFlags::SAMPLED, TraceFlags::default()] {
            let sc = SpanContext::new(
                TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
                SpanId::from_hex("b7ad6b7169203331").unwrap(),
                flags,
                false,
                TraceState::NONE,
            );
            let mut expected = HeaderMap::new();
            let cx = Context::new().with_remote_span_context(sc.clone());
            TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(&mut expected));
            assert_eq!(Some(&traceparent(&sc)), expected.get(TRACEPARENT));
        }
    }
}
