//! Spans over OTLP: a request's server span, its app calls, store calls and outbound limit
//! waits. `tracing` spans are for the log only (request id and tenant on every line); no span is
//! made twice.
//!
//! [`install`] puts the export in place when traces export; until then (no endpoint, unit tests)
//! every [`Span`] is empty and costs one atomic load: no attributes are built, nothing is
//! allocated. A span's parent is the current OpenTelemetry context, which the request's server
//! span sets while its handler runs ([`Span::run`]); tasks a request spawns take it along with
//! [`inherit`].
//!
//! The spans are ours, not the SDK's: each is recorded in its request's [`Pending`] (name, ids,
//! times, attributes, events) and, once it has ended and its request's fate allows, leaves
//! through the [`Sink`]: written as protobuf where it ended, into the outbox (OTLP/HTTP), or
//! handed to the SDK's batch processor as `SpanData` (gRPC). The SDK's own spans cost 4,000
//! instructions each to start, end and queue, and its batch processor moves every span's many
//! small allocations to another thread, which on the 2-core benchmark machine cost several times
//! what its instructions do (ARCHITECTURE.md).
//!
//! Which traces leave (rules in [`keep`](super::keep)): the head sampler (`OTEL_TRACES_SAMPLER`)
//! decides first, and a trace it leaves out is only passed on (`traceparent` with its flag
//! unset). Of the others, a change's trace is kept as it starts (its audit record names it), and
//! so is one its caller asked for (a sampled `traceparent`) or that the `--trace-reads` ratio
//! picks: their spans leave as they end. Any other read is only recorded; when its server span
//! ends the request's fate is known. Failed: its spans leave. Succeeded: they are dropped. A span
//! that ends later (a task the request spawned) follows that fate, and leaves anyway if it failed
//! itself.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::hash::BuildHasherDefault;
use std::sync::{Arc, LazyLock, Mutex, OnceLock, PoisonError};
use std::time::SystemTime;

use opentelemetry::context::FutureExt as _;
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{Event, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceFlags};
use opentelemetry::{Context, InstrumentationScope, KeyValue};
use opentelemetry_http::HeaderExtractor;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, IdGenerator, RandomIdGenerator, SpanData, SpanEvents as Events, SpanLinks, SpanProcessor,
};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context as LayerContext, Layer};

pub use opentelemetry::trace::SpanKind as Kind;

use super::keep::{self, Sampler};
use super::outbox::Outbox;

/// `ScopeSpans.spans`: the field each span is in its export request.
const SPANS: u32 = 2;
/// Events kept per span (the SDK's default limit); later ones are counted as dropped.
const MAX_EVENTS: usize = 128;

/// Where finished spans go.
#[derive(Debug)]
pub enum Sink {
    /// Written as protobuf where they end, into the outbox (OTLP/HTTP).
    Outbox(Arc<Outbox>),
    /// Handed to the SDK's batch processor (gRPC).
    Batch(Arc<BatchSpanProcessor>),
    /// Kept for a test to look at.
    #[cfg(test)]
    Collect(Mutex<Vec<SpanData>>),
}

impl Sink {
    fn export(&self, span: SpanData) {
        match self {
            Self::Outbox(outbox) => outbox.push(SPANS, |w| w.span(&span)),
            Self::Batch(batch) => batch.on_end(span),
            #[cfg(test)]
            Self::Collect(spans) => spans.lock().unwrap_or_else(PoisonError::into_inner).push(span),
        }
    }
}

/// How traces export: where spans go, the head sampler, and the ratio of `--trace-reads`.
#[derive(Debug)]
pub struct Tracing {
    sink: Sink,
    sampler: Sampler,
    /// The bound of the `--trace-reads` ratio; `None` when every sampled read is exported.
    reads: Option<u64>,
    scope: InstrumentationScope,
}

impl Tracing {
    /// Spans to `sink`, sampled by `sampler`, with the share `trace_reads` (0 to 1) of
    /// successful reads exported.
    pub fn new(sink: Sink, sampler: Sampler, trace_reads: f64) -> Self {
        let reads = (trace_reads < 1.0).then(|| keep::threshold(trace_reads));
        Self { sink, sampler, reads, scope: InstrumentationScope::builder("scimbridge").build() }
    }
}

static TRACING: OnceLock<Tracing> = OnceLock::new();

/// Makes spans export as `tracing` says, for the rest of the process.
pub(super) fn install(tracing: Tracing) {
    // A second init (tests) keeps the first, as it keeps the first subscriber.
    let _ = TRACING.set(tracing);
}

fn tracing() -> Option<&'static Tracing> {
    #[cfg(test)]
    if let Some(t) = tests::TRACING.get() {
        return Some(t);
    }
    TRACING.get()
}

/// A span being recorded; empty when traces do not export, and then every method does nothing.
/// It ends when [`Span::end`] is called or when it is dropped.
#[derive(Debug, Default)]
pub struct Span(Inner);

#[derive(Debug, Default)]
enum Inner {
    #[default]
    Off,
    /// Left out by the head sampler: only its ids, to pass on.
    Unsampled(Unsampled),
    Recording(Current),
}

/// The context of a span the head sampler left out. It is current while its request runs, so
/// the spans under it are left out too, and callees hear of the decision.
#[derive(Debug, Clone)]
struct Unsampled(SpanContext);

impl Span {
    /// The server span of a request: a child of the W3C `traceparent` in `headers` if there is
    /// one, else the root of a new trace. A `read` (no change) waits for its fate unless its
    /// trace is kept from the start (see the module documentation).
    pub fn server(
        headers: &HeaderMap,
        read: bool,
        name: impl FnOnce() -> Cow<'static, str>,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> Self {
        let Some(t) = tracing() else { return Self::default() };
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
        let caller = parent.span().span_context().clone();
        Self::root(t, &caller, SpanKind::Server, read, name, attributes)
    }

    /// A span of `kind` under the current one (the request's); outside any request, the root of
    /// a trace of its own, kept as a read's would be.
    pub fn child(
        kind: Kind,
        name: impl FnOnce() -> Cow<'static, str>,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> Self {
        let Some(t) = tracing() else { return Self::default() };
        let parent = Context::map_current(|cx| match cx.get::<Current>() {
            Some(current) => Inner::Recording(current.clone()),
            None => cx.get::<Unsampled>().map_or(Inner::Off, |u| Inner::Unsampled(u.clone())),
        });
        match parent {
            Inner::Recording(parent) => Self(Inner::Recording(parent.child(kind, name(), attributes()))),
            Inner::Unsampled(Unsampled(sc)) => {
                let sc = in_trace(&sc, RandomIdGenerator::default().new_span_id());
                Self(Inner::Unsampled(Unsampled(sc)))
            }
            Inner::Off => Self::root(t, &SpanContext::empty_context(), kind, true, name, attributes),
        }
    }

    /// The first span of a request (or of a trace of its own), under `caller` if it is valid.
    fn root(
        t: &'static Tracing,
        caller: &SpanContext,
        kind: Kind,
        read: bool,
        name: impl FnOnce() -> Cow<'static, str>,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> Self {
        let ids = RandomIdGenerator::default();
        let trace_id = if caller.is_valid() { caller.trace_id() } else { ids.new_trace_id() };
        let sampled = t.sampler.sample(caller, trace_id);
        let flags = if sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
        let sc = SpanContext::new(trace_id, ids.new_span_id(), flags, false, caller.trace_state().clone());
        if !sampled {
            return Self(Inner::Unsampled(Unsampled(sc)));
        }
        let kept = !read || caller.is_sampled() || t.reads.is_none_or(|bound| keep::picked(bound, trace_id));
        let parent = caller.is_valid().then(|| caller.span_id());
        Self(Inner::Recording(Pending::start(t, sc, parent, kind, kept, name(), attributes())))
    }

    /// Adds an attribute (an outcome known only at the end).
    pub fn set(&self, attribute: impl FnOnce() -> KeyValue) {
        if let Inner::Recording(w) = &self.0 {
            // Made before the lock is taken: making it may log, and a log line takes it too.
            let attribute = attribute();
            w.with(|r| r.attributes.push(attribute));
        }
    }

    /// Marks the span failed, with the `error.type` attribute the semantic conventions ask for.
    pub fn fail(&self, error_type: impl FnOnce() -> opentelemetry::Value) {
        if let Inner::Recording(w) = &self.0 {
            let error_type = KeyValue::new("error.type", error_type());
            w.with(|r| {
                r.attributes.push(error_type);
                r.status = Status::error("");
            });
        }
    }

    /// Ends the span now.
    pub fn end(self) {
        drop(self);
    }

    /// Runs `f` with this span current: spans started inside are its children, and warnings
    /// logged inside become its events.
    pub async fn run<F: Future>(&self, f: F) -> F::Output {
        match &self.0 {
            Inner::Off => f.await,
            Inner::Unsampled(u) => f.with_context(Context::current_with_value(u.clone())).await,
            Inner::Recording(w) => f.with_context(Context::current_with_value(w.clone())).await,
        }
    }

    /// Adds this span's W3C `traceparent` (and `tracestate`, if the trace has one) to `headers`,
    /// so the callee continues the trace.
    pub fn inject(&self, headers: &mut HeaderMap) {
        let sc = match &self.0 {
            Inner::Off => return,
            Inner::Unsampled(u) => &u.0,
            Inner::Recording(w) => &w.sc,
        };
        headers.insert(TRACEPARENT, traceparent(sc));
        let state = sc.trace_state().header();
        if !state.is_empty()
            && let Ok(v) = HeaderValue::from_str(&state)
        {
            headers.insert(TRACESTATE, v);
        }
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        if let Inner::Recording(w) = &self.0 {
            w.end();
        }
    }
}

/// The spans of one request (or of a trace started outside any), recorded as they run.
#[derive(Debug)]
struct Pending {
    tracing: &'static Tracing,
    /// The trace's id, flags and state (the first span's context).
    trace: SpanContext,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The spans that have not left: running ones, and ended ones waiting for the fate.
    spans: Vec<Recorded>,
    fate: Fate,
}

/// Whether a request's spans leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Not known until its first span ends.
    Open,
    Kept,
    /// Only a span that failed itself leaves.
    Dropped,
}

/// One span as recorded.
#[derive(Debug)]
struct Recorded {
    id: SpanId,
    /// Its parent: the caller's span (remote) for a request's first span, if it had one.
    parent: Option<SpanId>,
    remote_parent: bool,
    kind: SpanKind,
    name: Cow<'static, str>,
    start: SystemTime,
    end: Option<SystemTime>,
    attributes: Vec<KeyValue>,
    status: Status,
    events: Vec<Event>,
    dropped_events: u32,
}

/// A recorded span: its request, where it is in it, and its ids (for `traceparent`). It is the
/// current context's value while its request's handler runs, so spans under it are recorded too.
#[derive(Debug, Clone)]
struct Current {
    pending: Arc<Pending>,
    index: usize,
    sc: SpanContext,
}

impl Pending {
    fn start(
        tracing: &'static Tracing,
        sc: SpanContext,
        parent: Option<SpanId>,
        kind: SpanKind,
        kept: bool,
        name: Cow<'static, str>,
        attributes: Vec<KeyValue>,
    ) -> Current {
        let first = Recorded::new(sc.span_id(), parent, parent.is_some(), kind, name, attributes);
        let fate = if kept { Fate::Kept } else { Fate::Open };
        let state = Mutex::new(State { spans: vec![first], fate });
        Current { pending: Arc::new(Pending { tracing, trace: sc.clone(), state }), index: 0, sc }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `span` as the SDK's exporters take it.
    fn data(&self, span: Recorded) -> SpanData {
        let mut events = Events::default();
        events.events = span.events;
        events.dropped_count = span.dropped_events;
        SpanData {
            span_context: in_trace(&self.trace, span.id),
            parent_span_id: span.parent.unwrap_or(SpanId::INVALID),
            parent_span_is_remote: span.remote_parent,
            span_kind: span.kind,
            name: span.name,
            start_time: span.start,
            end_time: span.end.unwrap_or(span.start),
            attributes: span.attributes,
            dropped_attributes_count: 0,
            events,
            links: SpanLinks::default(),
            status: span.status,
            instrumentation_scope: self.tracing.scope.clone(),
        }
    }
}

impl Current {
    fn with(&self, f: impl FnOnce(&mut Recorded)) {
        let mut state = self.pending.lock();
        if let Some(pos) = state.find(self) {
            f(&mut state.spans[pos]);
        }
    }

    fn child(&self, kind: SpanKind, name: Cow<'static, str>, attributes: Vec<KeyValue>) -> Current {
        let id = RandomIdGenerator::default().new_span_id();
        let sc = in_trace(&self.sc, id);
        let mut state = self.pending.lock();
        state.spans.push(Recorded::new(id, Some(self.sc.span_id()), false, kind, name, attributes));
        Current { pending: Arc::clone(&self.pending), index: state.spans.len() - 1, sc }
    }

    /// Ends this span; the end of a waiting request's first span settles its fate. What leaves
    /// is exported after the lock is let go.
    fn end(&self) {
        let now = opentelemetry::time::now();
        let leaving = {
            let mut state = self.pending.lock();
            let Some(pos) = state.find(self) else { return };
            if state.spans[pos].end.is_some() {
                return;
            }
            state.spans[pos].end = Some(now);
            match state.fate {
                Fate::Kept => vec![state.spans.swap_remove(pos)],
                Fate::Dropped => {
                    // A span that ended after its request: it leaves if it failed itself.
                    let span = state.spans.swap_remove(pos);
                    if span.failed() { vec![span] } else { Vec::new() }
                }
                Fate::Open if self.index == 0 => {
                    let failed = state.spans.iter().any(Recorded::failed);
                    state.fate = if failed { Fate::Kept } else { Fate::Dropped };
                    // Spans still running stay, to follow the fate when they end.
                    let (ended, running): (Vec<_>, Vec<_>) =
                        std::mem::take(&mut state.spans).into_iter().partition(|r| r.end.is_some());
                    state.spans = running;
                    if failed { ended } else { Vec::new() }
                }
                Fate::Open => Vec::new(),
            }
        };
        for span in leaving {
            self.pending.tracing.sink.export(self.pending.data(span));
        }
    }
}

impl State {
    /// Where `span` is: at its index until spans before it leave, then wherever it was moved.
    fn find(&self, span: &Current) -> Option<usize> {
        let id = span.sc.span_id();
        match self.spans.get(span.index) {
            Some(r) if r.id == id => Some(span.index),
            _ => self.spans.iter().position(|r| r.id == id),
        }
    }
}

impl Recorded {
    fn new(
        id: SpanId,
        parent: Option<SpanId>,
        remote_parent: bool,
        kind: SpanKind,
        name: Cow<'static, str>,
        attributes: Vec<KeyValue>,
    ) -> Self {
        let start = opentelemetry::time::now();
        let (status, events) = (Status::Unset, Vec::new());
        Self { id, parent, remote_parent, kind, name, start, end: None, attributes, status, events, dropped_events: 0 }
    }

    fn failed(&self) -> bool {
        keep::failure(&self.status, &self.attributes)
    }

    fn add_event(&mut self, event: Event) {
        if self.events.len() < MAX_EVENTS {
            self.events.push(event);
        } else {
            self.dropped_events += 1;
        }
    }
}

/// The context of the span `id` in the trace of `sc`: same trace id, flags and state.
fn in_trace(sc: &SpanContext, id: SpanId) -> SpanContext {
    SpanContext::new(sc.trace_id(), id, sc.trace_flags(), false, sc.trace_state().clone())
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
    Context::map_current(|cx| match cx.get::<Current>() {
        Some(current) => Some(current.sc.clone()),
        None => cx.get::<Unsampled>().map(|u| u.0.clone()),
    })
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
            let Some(current) = cx.get::<Current>() else { return };
            let mut fields = Fields { message: None, attributes: Vec::new() };
            event.record(&mut fields);
            fields.attributes.push(KeyValue::new("level", event.metadata().level().as_str()));
            fields.attributes.push(KeyValue::new("target", event.metadata().target()));
            let name = fields.message.map_or(Cow::Borrowed("event"), Cow::Owned);
            current.with(|r| r.add_event(Event::new(name, opentelemetry::time::now(), fields.attributes, 0)));
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
    use std::cell::Cell;

    use opentelemetry::trace::TraceId;

    use super::*;

    thread_local! {
        /// The export this thread's spans use in a test, instead of the process's.
        static EXPORT: Cell<Option<&'static Tracing>> = const { Cell::new(None) };
    }

    /// What [`tracing`] looks at first in tests.
    pub(super) struct Local;

    pub(super) static TRACING: Local = Local;

    impl Local {
        pub(super) fn get(&self) -> Option<&'static Tracing> {
            EXPORT.with(Cell::get)
        }
    }

    /// Runs `f` with spans exported to a list, with the share `reads` of reads and `sampler`;
    /// returns the spans that left, by name.
    fn exported(reads: f64, sampler: Sampler, f: impl FnOnce()) -> Vec<SpanData> {
        let t: &'static Tracing = Box::leak(Box::new(Tracing::new(Sink::Collect(Mutex::default()), sampler, reads)));
        EXPORT.with(|e| e.set(Some(t)));
        f();
        EXPORT.with(|e| e.set(None));
        let Sink::Collect(spans) = &t.sink else { unreachable!() };
        std::mem::take(&mut *spans.lock().unwrap())
    }

    fn names(spans: &[SpanData]) -> Vec<&str> {
        spans.iter().map(|s| s.name.as_ref()).collect()
    }

    /// A request's server span; `caller`: a `traceparent`.
    fn server(name: &'static str, read: bool, caller: Option<&str>) -> Span {
        let mut headers = HeaderMap::new();
        if let Some(tp) = caller {
            headers.insert(TRACEPARENT, HeaderValue::from_str(tp).unwrap());
        }
        Span::server(&headers, read, || name.into(), Vec::new)
    }

    /// A child of `parent` (current while it is made), answered with `status`.
    fn call(parent: &Span, name: &'static str, status: i64) -> Span {
        let child = under(parent, || Span::child(Kind::Client, || name.into(), Vec::new));
        child.set(|| KeyValue::new("http.response.status_code", status));
        child
    }

    fn under<T>(span: &Span, f: impl FnOnce() -> T) -> T {
        let cx = match &span.0 {
            Inner::Off => Context::current(),
            Inner::Unsampled(u) => Context::current_with_value(u.clone()),
            Inner::Recording(w) => Context::current_with_value(w.clone()),
        };
        let _attached = cx.attach();
        f()
    }

    const CALLER: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn a_read_waits_for_its_fate_and_a_change_leaves_as_it_goes() {
        let spans = exported(0.0, Sampler::default(), || {
            // A read that succeeded: nothing leaves.
            let ok = server("ok read", true, None);
            call(&ok, "ok call", 200).end();
            ok.end();

            // A read answered 409: its call waited for it, then both leave.
            let refused = server("409 read", true, None);
            call(&refused, "409 call", 409).end();
            refused.set(|| KeyValue::new("http.response.status_code", 409_i64));
            refused.end();

            // A failed attempt that a retry made good keeps the read.
            let retried = server("retried read", true, None);
            let attempt = call(&retried, "attempt 1", 200);
            attempt.fail(|| "timeout".into());
            attempt.end();
            call(&retried, "attempt 2", 200).end();
            retried.end();
        });
        // A settled request's spans leave in the order they started.
        assert_eq!(names(&spans), ["409 read", "409 call", "retried read", "attempt 1", "attempt 2"]);

        let spans = exported(0.0, Sampler::default(), || {
            // A change: each span leaves as it ends, before the request does.
            let change = server("patch", false, None);
            call(&change, "app call", 200).end();
            assert_eq!(names(&take()), ["app call"], "no wait for the request");
            change.end();

            // A caller's sampled trace is theirs too: kept though it succeeded.
            let theirs = server("their read", true, Some(CALLER));
            call(&theirs, "their call", 200).end();

            // Spans that end after their request follow its fate; a failure leaves anyway.
            let ok = server("ok read", true, None);
            let late = call(&ok, "late release", 200);
            let late_failure = call(&ok, "late failure", 200);
            ok.end();
            late.end();
            late_failure.fail(|| "timeout".into());
            late_failure.end();
            theirs.end();
        });
        assert_eq!(names(&spans), ["patch", "their call", "late failure", "their read"]);
    }

    /// What left so far, in a test's export.
    fn take() -> Vec<SpanData> {
        let t = EXPORT.with(Cell::get).expect("in a test's export");
        let Sink::Collect(spans) = &t.sink else { unreachable!() };
        std::mem::take(&mut *spans.lock().unwrap())
    }

    #[test]
    fn spans_carry_their_trace_parents_and_events() {
        let spans = exported(1.0, Sampler::default(), || {
            let request = server("SCIM get Users", true, Some(CALLER));
            let call = call(&request, "GET read", 503);
            under(&call, || tracing::warn!("not reached"));
            call.end();
            request.end();
        });
        let [call, request] = &spans[..] else { panic!("{spans:?}") };
        let trace = TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap();
        assert_eq!((request.span_context.trace_id(), call.span_context.trace_id()), (trace, trace));
        assert_eq!(request.parent_span_id, SpanId::from_hex("b7ad6b7169203331").unwrap());
        assert!(request.parent_span_is_remote && !call.parent_span_is_remote);
        assert_eq!(call.parent_span_id, request.span_context.span_id());
        assert_eq!((request.span_kind.clone(), call.span_kind.clone()), (SpanKind::Server, SpanKind::Client));
        assert!(request.span_context.is_sampled() && request.start_time <= call.start_time);
        assert!(call.end_time <= request.end_time);
        assert_eq!(request.instrumentation_scope.name(), "scimbridge");
    }

    #[test]
    fn a_trace_the_sampler_leaves_out_is_only_passed_on() {
        let off = Sampler::from_env(&|k| (k == "OTEL_TRACES_SAMPLER").then(|| "always_off".to_owned())).unwrap();
        let mut headers = HeaderMap::new();
        let spans = exported(1.0, off, || {
            let change = server("patch", false, None);
            let call = call(&change, "PATCH update", 500);
            call.inject(&mut headers);
            assert!(under(&call, current).is_some(), "the audit record still names the trace");
        });
        assert!(spans.is_empty());
        let tp = headers[TRACEPARENT].to_str().unwrap();
        assert!(tp.starts_with("00-") && tp.ends_with("-00"), "{tp}");
    }

    #[test]
    fn without_a_tracer_spans_are_empty_and_build_nothing() {
        let span = Span::child(Kind::Internal, || unreachable!("no name is made"), || unreachable!("nor attributes"));
        assert!(matches!(span.0, Inner::Off));
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
