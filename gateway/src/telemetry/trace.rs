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
//! With `--trace-reads` below 1, a read the ratio does not pick (nor its caller asked for) is only
//! recorded as it runs: its spans' names, ids, times, attributes and events, in a [`Pending`]
//! the request's context carries. If the request fails they are made through the SDK as they
//! would have been (the same ids, which its `traceparent` already gave the app, and the same
//! times); if not they are dropped. Every span of every read through the SDK, then dropped by
//! [`keep`](super::keep), was most of what telemetry cost a read.
//!
//! Why not `tracing-opentelemetry`: through it, a GET with two spans cost 69,000 more instructions
//! with export on than off (callgrind, bench/README.md); its registry slot, field visitors that
//! format every attribute as text, and enter/exit on every poll were half of that.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::hash::BuildHasherDefault;
use std::sync::{Arc, LazyLock, Mutex, OnceLock, PoisonError};
use std::time::SystemTime;

use opentelemetry::context::FutureExt as _;
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{
    Event, Span as _, SpanBuilder, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceFlags, TraceId,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::HeaderExtractor;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SdkTracer};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context as LayerContext, Layer};

pub use opentelemetry::trace::SpanKind as Kind;

/// The tracer, and the ratio bound of `--trace-reads` when reads may wait ([`keep`](super::keep)).
struct Tracing {
    tracer: SdkTracer,
    reads: Option<u64>,
    /// Where a change's trace is marked kept as it starts.
    early: Option<super::keep::Early>,
}

static TRACING: OnceLock<Tracing> = OnceLock::new();

/// Makes spans export through `tracer`, for the rest of the process. With `reads` (the share of
/// successful reads to export, below 1) a read's spans are only recorded, and made when it fails.
pub(super) fn install(tracer: SdkTracer, reads: Option<(f64, super::keep::Early)>) {
    let (reads, early) = reads.map_or((None, None), |(r, e)| (Some(super::keep::threshold(r)), Some(e)));
    // A second init (tests) keeps the first tracer, as it keeps the first subscriber.
    let _ = TRACING.set(Tracing { tracer, reads, early });
}

/// A span being recorded; empty when traces do not export, and then every method does nothing.
/// It ends when [`Span::end`] is called or when it is dropped.
#[derive(Debug, Default)]
pub struct Span(Inner);

#[derive(Debug, Default)]
enum Inner {
    #[default]
    Off,
    /// An SDK span, current in its context.
    Live(Context),
    /// A span of a read that waits for its request's fate (see [`Pending`]).
    Waiting(Current),
}

impl Span {
    /// The server span of a request: a child of the W3C `traceparent` in `headers` if there is
    /// one, else the root of a new trace. A `read` (no change) that the `--trace-reads` ratio does
    /// not pick and whose caller did not ask for its trace is only recorded, at the cost of its
    /// attributes: its spans are made if it fails, and dropped if not, which is what `keep` would
    /// have done with them, without the SDK's work for every span of every read.
    pub fn server(
        headers: &HeaderMap,
        read: bool,
        name: impl FnOnce() -> Cow<'static, str>,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> Self {
        let Some(t) = TRACING.get() else { return Self::default() };
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
        let caller = parent.span().span_context().clone();
        let trace_id = if caller.is_valid() { caller.trace_id() } else { RandomIdGenerator::default().new_trace_id() };
        if let Some(reads) = t.reads
            && read
            && !caller.is_sampled()
            && !super::keep::picked(reads, trace_id)
        {
            return Self(Inner::Waiting(Pending::start(t, parent, caller, trace_id, name(), attributes())));
        }
        // A change's trace is kept whatever happens: its spans need not wait for its end.
        if let Some(early) = &t.early
            && !read
        {
            early.keep(trace_id);
        }
        // The id drawn above is the trace's: the ratio in `keep` must see the one it was judged by.
        let builder = SpanBuilder::from_name(name()).with_kind(SpanKind::Server).with_attributes(attributes());
        let span = planned(Some(trace_id), None, || builder.start_with_context(&t.tracer, &parent));
        Self(Inner::Live(parent.with_span(span)))
    }

    /// A span of `kind` under the current one (the request's).
    pub fn child(
        kind: Kind,
        name: impl FnOnce() -> Cow<'static, str>,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> Self {
        let Some(t) = TRACING.get() else { return Self::default() };
        Context::map_current(|parent| {
            if let Some(waiting) = parent.get::<Current>() {
                return Self(Inner::Waiting(waiting.child(kind, name(), attributes())));
            }
            // A span left out by the sampler stays in the context all the same: its children
            // follow its decision, and the audit trail still names the trace.
            let builder = SpanBuilder::from_name(name()).with_kind(kind).with_attributes(attributes());
            Self(Inner::Live(parent.with_span(builder.start_with_context(&t.tracer, parent))))
        })
    }

    /// Adds an attribute (an outcome known only at the end).
    pub fn set(&self, attribute: impl FnOnce() -> KeyValue) {
        match &self.0 {
            Inner::Off => {}
            Inner::Live(cx) => cx.span().set_attribute(attribute()),
            Inner::Waiting(w) => w.with(|r| r.attributes.push(attribute())),
        }
    }

    /// Marks the span failed, with the `error.type` attribute the semantic conventions ask for.
    pub fn fail(&self, error_type: impl FnOnce() -> opentelemetry::Value) {
        match &self.0 {
            Inner::Off => {}
            Inner::Live(cx) => {
                cx.span().set_attribute(KeyValue::new("error.type", error_type()));
                cx.span().set_status(Status::error(""));
            }
            Inner::Waiting(w) => w.with(|r| {
                r.attributes.push(KeyValue::new("error.type", error_type()));
                r.status = Status::error("");
            }),
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
            Inner::Live(cx) => f.with_context(cx.clone()).await,
            Inner::Waiting(w) => f.with_context(w.context()).await,
        }
    }

    /// Adds this span's W3C `traceparent` (and `tracestate`, if the trace has one) to `headers`,
    /// so the callee continues the trace.
    pub fn inject(&self, headers: &mut HeaderMap) {
        let sc = match &self.0 {
            Inner::Off => return,
            Inner::Live(cx) => cx.span().span_context().clone(),
            Inner::Waiting(w) => w.sc.clone(),
        };
        if !sc.is_valid() {
            return;
        }
        headers.insert(TRACEPARENT, traceparent(&sc));
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
        match &self.0 {
            Inner::Off => {}
            Inner::Live(cx) => cx.span().end(),
            Inner::Waiting(w) => w.end(),
        }
    }
}

/// The spans of a read that has not yet answered, recorded but not made: the server span first.
/// When the server span ends the request's fate is known. Failed: every span is made through the
/// SDK, with its recorded ids, times, attributes and events, and goes the way of any span
/// (`keep` keeps it, the exporter sends it). Succeeded: they are dropped. A span that ends later
/// (a task the request spawned) follows that fate, and is made anyway if it failed itself.
#[derive(Debug)]
struct Pending {
    tracer: SdkTracer,
    /// The server span's parent: the caller's context, or none.
    parent: Context,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    spans: Vec<Recorded>,
    /// `None` while the request runs; then whether its spans are made, and the server span's
    /// context once made, for spans that end later.
    fate: Option<Option<Context>>,
}

/// One span as recorded.
#[derive(Debug)]
struct Recorded {
    id: SpanId,
    kind: SpanKind,
    name: Cow<'static, str>,
    start: SystemTime,
    end: Option<SystemTime>,
    attributes: Vec<KeyValue>,
    status: Status,
    events: Vec<Event>,
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
        t: &Tracing,
        parent: Context,
        caller: SpanContext,
        trace_id: TraceId,
        name: Cow<'static, str>,
        attributes: Vec<KeyValue>,
    ) -> Current {
        let id = RandomIdGenerator::default().new_span_id();
        // What parent-based sampling would give it: the caller's flags, or sampled.
        let flags = if caller.is_valid() { caller.trace_flags() } else { TraceFlags::SAMPLED };
        let sc = SpanContext::new(trace_id, id, flags, false, caller.trace_state().clone());
        let server = Recorded::new(id, SpanKind::Server, name, attributes);
        let state = State { spans: vec![server], fate: None };
        let pending = Arc::new(Pending { tracer: t.tracer.clone(), parent, state: Mutex::new(state) });
        Current { pending, index: 0, sc }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes `span` through the SDK under `parent`, with its recorded id and start, and returns
    /// its context; it is not ended.
    fn make(&self, span: Recorded, parent: &Context, trace_id: Option<TraceId>) -> (Context, Option<SystemTime>) {
        let builder = SpanBuilder::from_name(span.name)
            .with_kind(span.kind)
            .with_start_time(span.start)
            .with_attributes(span.attributes);
        let mut made = planned(trace_id, Some(span.id), || builder.start_with_context(&self.tracer, parent));
        for e in span.events {
            made.add_event_with_timestamp(e.name, e.timestamp, e.attributes);
        }
        made.set_status(span.status);
        (parent.with_span(made), span.end)
    }
}

impl Current {
    fn context(&self) -> Context {
        self.pending.parent.with_value(self.clone())
    }

    fn with(&self, f: impl FnOnce(&mut Recorded)) {
        let mut state = self.pending.lock();
        if let Some(pos) = state.find(self) {
            f(&mut state.spans[pos]);
        }
    }

    fn child(&self, kind: SpanKind, name: Cow<'static, str>, attributes: Vec<KeyValue>) -> Current {
        let id = RandomIdGenerator::default().new_span_id();
        let sc = SpanContext::new(self.sc.trace_id(), id, self.sc.trace_flags(), false, self.sc.trace_state().clone());
        let mut state = self.pending.lock();
        state.spans.push(Recorded::new(id, kind, name, attributes));
        Current { pending: Arc::clone(&self.pending), index: state.spans.len() - 1, sc }
    }

    /// Ends this span; the server span's end settles the request. Spans are made under the lock,
    /// so a span ending meanwhile sees the fate; the span processors do not call back here.
    fn end(&self) {
        let now = opentelemetry::time::now();
        let pending = &self.pending;
        let mut state = pending.lock();
        let Some(pos) = state.find(self) else { return };
        if state.spans[pos].end.is_some() {
            return;
        }
        state.spans[pos].end = Some(now);
        if self.index == 0 {
            let failed = state.spans.iter().any(|r| super::keep::failure(&r.status, &r.attributes));
            // Spans still running stay, to follow the fate when they end.
            let (ended, open): (Vec<Recorded>, Vec<Recorded>) =
                std::mem::take(&mut state.spans).into_iter().partition(|r| r.end.is_some());
            state.spans = open;
            if !failed {
                state.fate = Some(None);
                return;
            }
            let mut ended = ended.into_iter();
            let Some(server) = ended.next() else { return };
            let (cx, server_end) = pending.make(server, &pending.parent, Some(self.sc.trace_id()));
            for r in ended {
                let (child, end) = pending.make(r, &cx, None);
                child.span().end_with_timestamp(end.unwrap_or(now));
            }
            cx.span().end_with_timestamp(server_end.unwrap_or(now));
            state.fate = Some(Some(cx));
            return;
        }
        let Some(kept) = state.fate.clone() else { return };
        // A span that ended after its request: made if the request's were, or if it failed
        // itself (under the request's ids, as a caller's span would be).
        let r = state.spans.swap_remove(pos);
        let parent = match kept {
            Some(cx) => cx,
            None if super::keep::failure(&r.status, &r.attributes) => {
                pending.parent.with_remote_span_context(self.sc.clone())
            }
            None => return,
        };
        let (made, end) = pending.make(r, &parent, None);
        made.span().end_with_timestamp(end.unwrap_or(now));
    }
}

impl State {
    /// Where `span` is: at its index until its request settles, then wherever it was moved.
    fn find(&self, span: &Current) -> Option<usize> {
        let id = span.sc.span_id();
        match self.spans.get(span.index) {
            Some(r) if r.id == id => Some(span.index),
            _ => self.spans.iter().position(|r| r.id == id),
        }
    }
}

impl Recorded {
    fn new(id: SpanId, kind: SpanKind, name: Cow<'static, str>, attributes: Vec<KeyValue>) -> Self {
        let start = opentelemetry::time::now();
        Self { id, kind, name, start, end: None, attributes, status: Status::Unset, events: Vec::new() }
    }
}

/// Ids the SDK should give the next span this thread starts, where they were chosen before the
/// span was made (a waiting read's, or a trace id judged by the ratio).
#[derive(Debug, Default)]
pub(super) struct Planned(RandomIdGenerator);

thread_local! {
    static PLAN: Cell<(Option<TraceId>, Option<SpanId>)> = const { Cell::new((None, None)) };
}

impl IdGenerator for Planned {
    fn new_trace_id(&self) -> TraceId {
        PLAN.with(|p| {
            let (trace, span) = p.get();
            p.set((None, span));
            trace
        })
        .unwrap_or_else(|| self.0.new_trace_id())
    }

    fn new_span_id(&self) -> SpanId {
        PLAN.with(|p| {
            let (trace, span) = p.get();
            p.set((trace, None));
            span
        })
        .unwrap_or_else(|| self.0.new_span_id())
    }
}

/// Runs `start` (which starts one span) with `trace` and `span` as the ids it is to get.
fn planned<T>(trace: Option<TraceId>, span: Option<SpanId>, start: impl FnOnce() -> T) -> T {
    PLAN.with(|p| p.set((trace, span)));
    let made = start();
    PLAN.with(|p| p.set((None, None)));
    made
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
        Some(waiting) => Some(waiting.sc.clone()),
        None => cx.has_active_span().then(|| cx.span().span_context().clone()),
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
            let waiting = cx.get::<Current>();
            if waiting.is_none() && !cx.has_active_span() {
                return;
            }
            let mut fields = Fields { message: None, attributes: Vec::new() };
            event.record(&mut fields);
            fields.attributes.push(KeyValue::new("level", event.metadata().level().as_str()));
            fields.attributes.push(KeyValue::new("target", event.metadata().target()));
            let name = fields.message.map_or(Cow::Borrowed("event"), Cow::Owned);
            match waiting {
                Some(w) => {
                    w.with(|r| r.events.push(Event::new(name, opentelemetry::time::now(), fields.attributes, 0)))
                }
                None => cx.span().add_event(name, fields.attributes),
            }
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
