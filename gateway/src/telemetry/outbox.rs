//! Records already encoded for OTLP, waiting to be exported: spans, and the audit trail's log
//! records. A worker writes its record into a buffer of its thread, then appends those bytes to the outbox
//! under a short lock; one task takes the outbox's bytes when enough have gathered (or each
//! second), puts the export request around them and posts it ([`HttpExport`]).
//!
//! Why not the SDK's batch processor: it queues each record as a structure of many small
//! allocations, which its own thread reads, encodes and frees. On the 2-core benchmark machine
//! that cross-thread traffic cost several times what its instructions do: with audit records
//! over OTLP, PATCH lost 7 points of throughput more than without, for 2% more instructions
//! (bench/README.md, "Telemetry cost"). Here a record is encoded where its data is hot, freed on
//! the thread that made it, and what crosses threads is one contiguous run of bytes.
//!
//! What the outbox cannot hold (the collector down for longer than the buffer lasts) or an export
//! that fails for good is lost: counted by the `lost` function the outbox was made with, and
//! logged once per run of losses.
//!
//! May touch: the network, through the exporter it is given.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};

use super::export::HttpExport;
use super::protobuf::Writer;

/// Bytes that make an export worth sending at once, however few records they are. Small enough
/// that what waits stays in the cores' caches, large enough that a POST carries dozens of records.
const EXPORT_AT: usize = 64 * 1024;
/// Bytes held at most, however few records they are: an export request stays under the 4 MiB
/// that collectors take by default.
const HOLD_AT_MOST: usize = 4 * 1024 * 1024 - 64 * 1024;

/// When records leave, as the OpenTelemetry batch settings say it (`OTEL_BLRP_*` for logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long a record waits at most before it is exported.
    pub delay: Duration,
    /// Records held at most; beyond, records are lost and counted.
    pub queue: usize,
    /// Records that make an export worth sending at once. An export takes all that waits.
    pub batch: usize,
}

impl Default for Limits {
    /// The specification's defaults for log records.
    fn default() -> Self {
        Self { delay: Duration::from_secs(1), queue: 2048, batch: 512 }
    }
}

/// Encoded records waiting for export, shared by the workers that write them and the task that
/// exports them.
pub struct Outbox {
    limits: Limits,
    waiting: Mutex<Waiting>,
    ready: Notify,
    /// Counts records that were lost.
    lost: fn(u64),
    /// Whether records were lost since the last export that went through (so a run of losses
    /// is logged once).
    failing: AtomicBool,
    /// Records lost since the start, reported when the export stops.
    lost_in_all: AtomicU64,
}

#[derive(Default)]
struct Waiting {
    bytes: Writer,
    records: u64,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").finish_non_exhaustive()
    }
}

thread_local! {
    /// Where a record is written before it joins the outbox: no lock is held while encoding.
    static SCRATCH: RefCell<Writer> = RefCell::default();
}

impl Outbox {
    /// An empty outbox; `lost` counts every record it loses.
    pub fn new(limits: Limits, lost: fn(u64)) -> Self {
        let (failing, lost_in_all) = (AtomicBool::new(false), AtomicU64::new(0));
        Self { limits, waiting: Mutex::default(), ready: Notify::new(), lost, failing, lost_in_all }
    }

    /// Adds the record that `write` writes, as the repeated field `field` of the message the
    /// records go in (`ScopeSpans.spans`, `ScopeLogs.log_records`: 2). A record the outbox has no
    /// room for is lost.
    pub(crate) fn push(&self, field: u32, write: impl FnOnce(&mut Writer)) {
        let full = SCRATCH.with_borrow_mut(|scratch| {
            scratch.0.clear();
            write(scratch);
            let mut waiting = self.lock();
            let before = waiting.bytes.0.len();
            if before + scratch.0.len() + 8 > HOLD_AT_MOST || waiting.records >= self.limits.queue as u64 {
                return None;
            }
            waiting.bytes.bytes(field, &scratch.0);
            waiting.records += 1;
            // Only the record that crosses a threshold wakes the exporter.
            let crossed = before < EXPORT_AT && waiting.bytes.0.len() >= EXPORT_AT;
            Some(crossed || waiting.records == self.limits.batch as u64)
        });
        // Outside the scratch buffer and the lock: a loss is logged, and a log line may become a
        // span event.
        match full {
            None => self.lose(1, "the OTLP outbox is full (is the collector reachable?)"),
            Some(true) => self.ready.notify_one(),
            Some(false) => {}
        }
    }

    /// Counts `n` records lost, and logs the first loss of a run of them.
    fn lose(&self, n: u64, why: &str) {
        (self.lost)(n);
        self.lost_in_all.fetch_add(n, Ordering::Relaxed);
        if !self.failing.swap(true, Ordering::Relaxed) {
            tracing::warn!(target: "scimbridge::telemetry", records = n, reason = why, "OTLP records lost");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes what waits, leaving room for as much again.
    fn take(&self) -> Waiting {
        let mut waiting = self.lock();
        let room = waiting.bytes.0.len().clamp(1024, EXPORT_AT * 2);
        std::mem::replace(&mut *waiting, Waiting { bytes: Writer(Vec::with_capacity(room)), records: 0 })
    }
}

/// The running export of an outbox; [`Exporting::finish`] sends what is left and stops it.
#[derive(Debug)]
pub struct Exporting {
    stop: oneshot::Sender<std::sync::mpsc::SyncSender<()>>,
}

impl Exporting {
    /// Exports what the outbox holds and stops, waiting up to `timeout` for the last export.
    /// Blocks the calling thread, which must not be one of the runtime's (`main`, after the
    /// server has stopped, like the SDK's own shutdown).
    pub fn finish(self, timeout: Duration) -> bool {
        let (done, finished) = std::sync::mpsc::sync_channel(1);
        if self.stop.send(done).is_err() {
            return false;
        }
        finished.recv_timeout(timeout).is_ok()
    }
}

/// What makes an export request of the records' bytes.
pub type Wrap = Box<dyn Fn(&[u8]) -> Vec<u8> + Send + Sync>;

/// Starts the task that exports `outbox` through `export` on `runtime`, each request made by
/// `wrap` around the records' bytes.
pub fn start(runtime: &tokio::runtime::Handle, outbox: Arc<Outbox>, export: HttpExport, wrap: Wrap) -> Exporting {
    let (stop, mut stopped) = oneshot::channel::<std::sync::mpsc::SyncSender<()>>();
    runtime.spawn(async move {
        let done = loop {
            let done = tokio::select! {
                () = outbox.ready.notified() => None,
                () = tokio::time::sleep(outbox.limits.delay) => None,
                done = &mut stopped => Some(done.ok()),
            };
            send(&outbox, &export, &wrap).await;
            if let Some(done) = done {
                break done;
            }
        };
        let lost = outbox.lost_in_all.load(Ordering::Relaxed);
        if lost > 0 {
            tracing::warn!(target: "scimbridge::telemetry", lost_in_all = lost, "OTLP records were lost while the gateway ran");
        }
        if let Some(done) = done {
            let _ = done.send(());
        }
    });
    Exporting { stop }
}

async fn send(outbox: &Outbox, export: &HttpExport, wrap: &Wrap) {
    let waiting = outbox.take();
    if waiting.records == 0 {
        return;
    }
    let body = wrap(&waiting.bytes.0);
    drop(waiting.bytes);
    match export.post(body).await {
        Ok(()) => outbox.failing.store(false, Ordering::Relaxed),
        Err(e) => outbox.lose(waiting.records, &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static LOST: AtomicU64 = AtomicU64::new(0);

    fn count(n: u64) {
        LOST.fetch_add(n, Ordering::Relaxed);
    }

    #[test]
    fn records_are_framed_as_the_field_they_go_in_and_taken_at_once() {
        let outbox = Outbox::new(Limits::default(), count);
        outbox.push(2, |w| w.text(1, b"ab"));
        outbox.push(2, |w| w.uint(2, 300));
        let taken = outbox.take();
        assert_eq!(taken.records, 2);
        // Field 2 (length-delimited) of 4 bytes: field 1, "ab"; then of 3: field 2, varint 300.
        assert_eq!(taken.bytes.0, [0x12, 4, 0x0a, 2, b'a', b'b', 0x12, 3, 0x10, 0xac, 0x02]);
        assert_eq!(outbox.take().records, 0, "taken once");
    }

    #[test]
    fn what_the_outbox_cannot_hold_is_lost_and_counted() {
        let outbox = Outbox::new(Limits::default(), count);
        let big = vec![7u8; 1024 * 1024];
        let before = LOST.load(Ordering::Relaxed);
        for _ in 0..5 {
            outbox.push(2, |w| w.bytes(1, &big));
        }
        assert_eq!(outbox.take().records, 3, "three mebibytes and a bit fit in four, less room for the request");
        assert_eq!(LOST.load(Ordering::Relaxed) - before, 2);

        let few = Outbox::new(Limits { queue: 3, ..Limits::default() }, count);
        for _ in 0..5 {
            few.push(2, |w| w.uint(1, 1));
        }
        assert_eq!(few.take().records, 3, "the queue's size in records");
        assert_eq!(LOST.load(Ordering::Relaxed) - before, 4);
    }

    #[tokio::test]
    async fn the_record_that_fills_a_batch_wakes_the_exporter() {
        let outbox = Outbox::new(Limits { batch: 2, ..Limits::default() }, count);
        outbox.push(2, |w| w.uint(1, 1));
        let woken = tokio::time::timeout(Duration::from_millis(50), outbox.ready.notified());
        assert!(woken.await.is_err(), "one record waits for the delay");
        outbox.push(2, |w| w.uint(1, 1));
        let woken = tokio::time::timeout(Duration::from_millis(50), outbox.ready.notified());
        assert!(woken.await.is_ok(), "the second fills the batch");
    }
}
