//! Which finished spans are exported when only a share of successful reads should be
//! (`--trace-reads`): every span of a request that failed or changed something, and the traces a
//! ratio picks among the other reads. A trace's fate is known only when its request's server span
//! ends, after its app and store calls, so their spans wait here until then.
//!
//! A request failed when any of its spans has an error status or answered 4xx/5xx: a refused
//! SCIM request (Entra's "failed" provisioning step) keeps its whole trace whatever the ratio. A
//! change (create, replace, patch, delete, bulk) keeps it too: its audit record names the trace.
//! So does a request whose caller sent a sampled `traceparent` (the head sampler, parent-based by
//! default, drops the others before they get here): the caller's trace stays whole.
//! The ratio looks at the trace id (as the standard `traceidratio` sampler does), so a picked
//! trace skips the waiting and every span of it is picked alike.
//!
//! Most reads the ratio leaves out never get here: `trace::Span` records them without the SDK and
//! makes their spans only if they fail. What arrives is changes, picked reads, traces callers
//! asked for, failed reads, and spans made outside any request; the rules above apply to all.
//!
//! Touches only the spans handed to it; it sits between the SDK and the batch processor.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{SpanId, Status, TraceId};
use opentelemetry::{Context, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};

/// How many decided traces are remembered for spans that end after their request (a lock
/// released by a spawned task, within milliseconds): slots of a table indexed by trace id, a
/// newer trace taking an older one's slot. 128 KiB, where two hash maps of 16,384 traces each
/// took a megabyte, written at a random place per request: enough to push the allocator's and
/// the request's own data out of the core's cache.
const REMEMBERED: usize = 4_096;
const _: () = assert!(REMEMBERED.is_power_of_two());
/// A waiting trace whose request never ended (its server span lost) is let go after this long.
const STALE: Duration = Duration::from_secs(60);
/// Stale traces are looked for once in this many spans.
const SWEEP_EVERY: u64 = 4_096;

/// The processor: see the module documentation.
#[derive(Debug)]
pub struct KeepFailures<P> {
    inner: P,
    /// Traces whose id, read as the `traceidratio` sampler reads it, is below this are picked.
    threshold: u64,
    state: Arc<Mutex<State>>,
}

/// Tells the processor at a request's start that its trace is kept whatever happens (a change):
/// its spans then leave as they end instead of waiting for the request's.
#[derive(Debug, Clone)]
pub struct Early(Arc<Mutex<State>>);

impl Early {
    /// Keeps the trace `id`.
    pub fn keep(&self, id: TraceId) {
        if let Ok(mut state) = self.0.lock() {
            state.remember(id, true);
        }
    }
}

#[derive(Debug)]
struct State {
    waiting: HashMap<TraceId, Waiting>,
    /// The fate of recently decided traces, at [`slot`]. A caller choosing trace ids can only
    /// make its own traces forget others' fates sooner: nothing grows and no lookup slows.
    decided: Box<[Option<(TraceId, bool)>]>,
    ended: u64,
}

/// Where a trace's fate is remembered: its id's halves folded and multiplied, the product's top
/// bits the slot, so a difference anywhere in the id moves it (the SDK's ids are random; a
/// caller's may differ in a few bits only).
fn slot(id: TraceId) -> usize {
    let v = u128::from_be_bytes(id.to_bytes());
    let folded = (v as u64) ^ ((v >> 64) as u64);
    (folded.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - REMEMBERED.trailing_zeros())) as usize
}

#[derive(Debug)]
struct Waiting {
    spans: Vec<SpanData>,
    failed: bool,
    since: SystemTime,
}

impl<P: SpanProcessor> KeepFailures<P> {
    /// Hands `inner` the spans of failed requests and changes, and a `reads` share (0 to 1) of
    /// the other requests'.
    pub fn new(inner: P, reads: f64) -> Self {
        let threshold = threshold(reads);
        let state = State { waiting: HashMap::new(), decided: vec![None; REMEMBERED].into(), ended: 0 };
        Self { inner, threshold, state: Arc::new(Mutex::new(state)) }
    }

    /// The way to keep a trace before its spans end.
    pub fn early(&self) -> Early {
        Early(Arc::clone(&self.state))
    }

    fn picked(&self, id: TraceId) -> bool {
        picked(self.threshold, id)
    }

    /// What to hand on now that `span` ended; the lock is not held while handing on.
    fn settle(&self, span: SpanData) -> Vec<SpanData> {
        let id = span.span_context.trace_id();
        let failed = failed(&span);
        // The request's own span: its parent, if any, is the caller's.
        let root = span.parent_span_id == SpanId::INVALID || span.parent_span_is_remote;
        let Ok(mut state) = self.state.lock() else { return vec![span] };
        state.ended += 1;
        if state.ended % SWEEP_EVERY == 0 {
            state.sweep();
        }
        if root {
            // A caller that sent a sampled `traceparent` asked for this trace: it is theirs too.
            let asked = span.parent_span_is_remote;
            let kept = failed || asked || changed(&span) || state.fate(id) == Some(true);
            let (mut spans, keep) = match state.waiting.remove(&id) {
                Some(w) => (w.spans, w.failed || kept),
                None => (Vec::new(), kept),
            };
            state.remember(id, keep);
            if !keep {
                return Vec::new();
            }
            spans.push(span);
            return spans;
        }
        match state.fate(id) {
            Some(true) => return vec![span],
            Some(false) if !failed => return Vec::new(),
            // A late failure keeps itself, if not its (already dropped) request.
            Some(false) => return vec![span],
            None => {}
        }
        let w = state.waiting.entry(id).or_insert_with(|| Waiting {
            spans: Vec::new(),
            failed: false,
            since: span.end_time,
        });
        w.failed |= failed;
        w.spans.push(span);
        Vec::new()
    }

    /// The spans still waiting whose request failed (at shutdown: nothing more will end).
    fn drain_failed(&self) -> Vec<SpanData> {
        let Ok(mut state) = self.state.lock() else { return Vec::new() };
        state.waiting.drain().filter(|(_, w)| w.failed).flat_map(|(_, w)| w.spans).collect()
    }
}

impl State {
    fn remember(&mut self, id: TraceId, keep: bool) {
        self.decided[slot(id)] = Some((id, keep));
    }

    /// Whether a recently decided trace was kept.
    fn fate(&self, id: TraceId) -> Option<bool> {
        self.decided[slot(id)].filter(|(t, _)| *t == id).map(|(_, keep)| keep)
    }

    /// Lets go of traces whose request never ended.
    fn sweep(&mut self) {
        let now = SystemTime::now();
        self.waiting.retain(|_, w| now.duration_since(w.since).map_or(true, |age| age < STALE));
    }
}

/// The ratio `reads` (0 to 1) as a bound on trace ids: 2^63 scaled, as the SDK's ratio sampler,
/// exact at 0 and at 1.
pub(super) fn threshold(reads: f64) -> u64 {
    (reads.clamp(0.0, 1.0) * (1u64 << 63) as f64) as u64
}

/// Whether the ratio behind `threshold` picks the trace `id`: its low 64 bits, as the SDK's ratio
/// sampler reads them.
pub(super) fn picked(threshold: u64, id: TraceId) -> bool {
    let low = u128::from_be_bytes(id.to_bytes()) as u64;
    (low >> 1) < threshold
}

/// The `scim.operation`s (`server::observe`) that may change what the app or the store holds.
const CHANGES: [&str; 5] = ["create", "replace", "patch", "delete", "bulk"];

/// Whether the `scim.operation` `op` is a change, whose trace is always kept.
pub fn is_change(op: &str) -> bool {
    CHANGES.contains(&op)
}

/// A request span whose operation is a change.
fn changed(span: &SpanData) -> bool {
    span.attributes.iter().any(|kv| {
        kv.key.as_str() == "scim.operation" && matches!(&kv.value, Value::String(op) if is_change(op.as_str()))
    })
}

/// An error status, or an HTTP answer of 400 or above.
fn failed(span: &SpanData) -> bool {
    failure(&span.status, &span.attributes)
}

/// Whether a span with `status` and `attributes` failed: an error status, or an HTTP answer of
/// 400 or above.
pub(super) fn failure(status: &Status, attributes: &[opentelemetry::KeyValue]) -> bool {
    matches!(status, Status::Error { .. })
        || attributes
            .iter()
            .any(|kv| kv.key.as_str() == "http.response.status_code" && matches!(kv.value, Value::I64(s) if s >= 400))
}

impl<P: SpanProcessor> SpanProcessor for KeepFailures<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.picked(span.span_context.trace_id()) {
            self.inner.on_end(span);
            return;
        }
        for s in self.settle(span) {
            self.inner.on_end(s);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        for s in self.drain_failed() {
            self.inner.on_end(s);
        }
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use opentelemetry::KeyValue;
    use opentelemetry::trace::{SpanContext, SpanKind, TraceFlags, TraceState};
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};

    use super::*;

    /// Records what it is handed.
    #[derive(Debug, Default, Clone)]
    struct Handed(Arc<Mutex<Vec<String>>>);

    impl SpanProcessor for Handed {
        fn on_start(&self, _: &mut Span, _: &Context) {}
        fn on_end(&self, span: SpanData) {
            self.0.lock().unwrap().push(span.name.into_owned());
        }
        fn force_flush(&self) -> OTelSdkResult {
            Ok(())
        }
        fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
            Ok(())
        }
    }

    impl Handed {
        fn take(&self) -> Vec<String> {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
    }

    /// A trace id whose low bits put it at `at` (0 to 1) of the ratio's range.
    fn trace(at: f64, n: u8) -> TraceId {
        let low = ((at * (1u64 << 63) as f64) as u64) << 1;
        let mut bytes = [0u8; 16];
        bytes[0] = n;
        bytes[8..].copy_from_slice(&low.to_be_bytes());
        TraceId::from_bytes(bytes)
    }

    fn span(trace: TraceId, name: &str, parent: Option<u64>, status: Option<i64>, error: bool) -> SpanData {
        let id = if parent.is_some() { 2 } else { 1 };
        SpanData {
            span_context: SpanContext::new(
                trace,
                SpanId::from_bytes((id as u64).to_be_bytes()),
                TraceFlags::SAMPLED,
                false,
                TraceState::NONE,
            ),
            parent_span_id: parent.map_or(SpanId::INVALID, |p| SpanId::from_bytes(p.to_be_bytes())),
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: name.to_owned().into(),
            start_time: SystemTime::now(),
            end_time: SystemTime::now(),
            attributes: status.map(|s| KeyValue::new("http.response.status_code", s)).into_iter().collect(),
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: if error { Status::error("") } else { Status::Unset },
            instrumentation_scope: Default::default(),
        }
    }

    #[test]
    fn failures_and_changes_keep_every_span_and_a_share_of_reads_is_picked() {
        let handed = Handed::default();
        let keep = KeepFailures::new(handed.clone(), 0.25);

        // Not picked, succeeded: nothing leaves.
        let ok = trace(0.5, 1);
        keep.on_end(span(ok, "ok call", Some(1), Some(200), false));
        keep.on_end(span(ok, "ok request", None, Some(200), false));
        assert!(handed.take().is_empty());

        // Not picked, the request answered 409: its call waited for it, then both leave.
        let refused = trace(0.9, 2);
        keep.on_end(span(refused, "409 call", Some(1), Some(409), true));
        assert!(handed.take().is_empty(), "the call waits for its request");
        keep.on_end(span(refused, "409 request", None, Some(409), false));
        assert_eq!(handed.take(), ["409 call", "409 request"]);

        // A failed attempt that a retry made good still keeps the request's trace.
        let retried = trace(0.7, 3);
        keep.on_end(span(retried, "attempt 1", Some(1), None, true));
        keep.on_end(span(retried, "attempt 2", Some(1), Some(200), false));
        keep.on_end(span(retried, "request", None, Some(200), false));
        assert_eq!(handed.take(), ["attempt 1", "attempt 2", "request"]);

        // A caller's sampled trace: kept though it succeeded.
        let theirs = trace(0.6, 5);
        keep.on_end(span(theirs, "their call", Some(1), Some(200), false));
        keep.on_end(SpanData {
            parent_span_is_remote: true,
            ..span(theirs, "their request", Some(9), Some(200), false)
        });
        assert_eq!(handed.take(), ["their call", "their request"]);

        // Not picked, a successful change: kept, as its audit record names the trace.
        let change = trace(0.8, 6);
        keep.on_end(span(change, "create call", Some(1), Some(201), false));
        let mut request = span(change, "create request", None, Some(201), false);
        request.attributes.push(KeyValue::new("scim.operation", "create"));
        keep.on_end(request);
        assert_eq!(handed.take(), ["create call", "create request"]);
        let read = trace(0.8, 7);
        let mut request = span(read, "list request", None, Some(200), false);
        request.attributes.push(KeyValue::new("scim.operation", "list"));
        keep.on_end(request);
        assert!(handed.take().is_empty(), "a read is not a change");

        // Picked by the ratio: straight through, nothing waits.
        let picked = trace(0.1, 4);
        keep.on_end(span(picked, "picked call", Some(1), Some(200), false));
        assert_eq!(handed.take(), ["picked call"]);

        // A span ending after its request follows the request's fate.
        keep.on_end(span(ok, "late release", Some(1), None, false));
        keep.on_end(span(refused, "late release", Some(1), None, false));
        assert_eq!(handed.take(), ["late release"]);
        assert!(keep.state.lock().unwrap().waiting.is_empty(), "nothing left waiting");
    }

    #[test]
    fn a_trace_kept_early_hands_its_spans_on_as_they_end() {
        let handed = Handed::default();
        let keep = KeepFailures::new(handed.clone(), 0.0);
        let change = trace(0.8, 1);
        keep.early().keep(change);
        keep.on_end(span(change, "store write", Some(1), None, false));
        assert_eq!(handed.take(), ["store write"], "no wait for the request");
        keep.on_end(span(change, "patch request", None, Some(200), false));
        assert_eq!(handed.take(), ["patch request"]);
        assert!(keep.state.lock().unwrap().waiting.is_empty());
    }

    #[test]
    fn fates_are_remembered_in_slots_a_newer_trace_can_take() {
        let keep = KeepFailures::new(Handed::default(), 0.0);
        let first = trace(0.5, 1);
        let mut state = keep.state.lock().unwrap();
        state.remember(first, true);
        for n in 2..200 {
            state.remember(trace(0.25 + f64::from(n) / 1000.0, n), false);
        }
        assert_eq!(state.fate(first), Some(true), "other slots leave it alone");
        assert_eq!(state.fate(trace(0.5, 2)), None, "a trace never decided has no fate");
        // The same slot: the newer trace's fate replaces it.
        let rival = TraceId::from_bytes({
            let mut b = first.to_bytes();
            b[0] ^= 0x40;
            b[8] ^= 0x40;
            b
        });
        assert_eq!(slot(rival), slot(first));
        state.remember(rival, false);
        assert_eq!((state.fate(first), state.fate(rival)), (None, Some(false)));
    }

    #[test]
    fn the_ratios_ends_are_exact() {
        let none = KeepFailures::new(Handed::default(), 0.0);
        let all = KeepFailures::new(Handed::default(), 1.0);
        for at in [0.0, 0.3, 0.999_999] {
            assert!(!none.picked(trace(at, 0)));
            assert!(all.picked(trace(at, 0)));
        }
    }

    #[test]
    fn at_shutdown_waiting_failures_leave_and_the_rest_is_let_go() {
        let handed = Handed::default();
        let keep = KeepFailures::new(handed.clone(), 0.0);
        keep.on_end(span(trace(0.5, 1), "orphan failure", Some(1), Some(500), true));
        keep.on_end(span(trace(0.5, 2), "orphan success", Some(1), Some(200), false));
        keep.shutdown_with_timeout(Duration::from_secs(1)).unwrap();
        assert_eq!(handed.take(), ["orphan failure"]);
    }
}
