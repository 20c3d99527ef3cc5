//! The audit trail: one event for every change a client asks for (create, replace, patch, delete,
//! each operation of a bulk request), failed attempts included. `server::scim` builds the events
//! (`event`); [`Audit`] hands each to the sinks that are on:
//!
//! - the audit log (`file`): JSON lines in a file or on stdout, written by a background task from
//!   a bounded queue, so a request never waits on the disk;
//! - OTLP logs (`otlp`): a log record per event, encoded for the telemetry's outbox (or, over
//!   gRPC, handed to the SDK's batch processor).
//!
//! Neither blocks a request. An event the audit log's queue cannot take is dropped, counted in
//! `scimbridge.audit.dropped` and logged (once per run of drops).
//!
//! May touch: the audit file or stdout, the OTLP log pipeline `telemetry` built.

pub mod event;
mod file;
mod otlp;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::mpsc;

use crate::telemetry::{AuditExport, metrics};
pub use event::{Change, Event, Operation, Outcome, Trace, Who};
pub use file::{Target, Writer};

/// Why the audit trail could not start.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot open the audit log `{}`: {source}", path.display())]
    Open { path: PathBuf, source: std::io::Error },
}

/// Where events go. Cheap to clone; [`Audit::off`] (the default) records nothing.
#[derive(Clone, Default)]
pub struct Audit(Option<Arc<Sinks>>);

struct Sinks {
    file: Option<mpsc::Sender<Event>>,
    otlp: Option<AuditExport>,
    drops: Arc<Drops>,
}

/// Drops of the audit log: counted, and logged once per run of them.
#[derive(Default)]
struct Drops {
    dropping: AtomicBool,
}

impl Drops {
    fn dropped(&self, n: u64, why: &str) {
        metrics::get().audit_dropped(n);
        if !self.dropping.swap(true, Ordering::Relaxed) {
            tracing::warn!(reason = why, "audit events dropped; counting them in scimbridge.audit.dropped");
        }
    }

    fn recovered(&self) {
        self.dropping.store(false, Ordering::Relaxed);
    }
}

impl Audit {
    /// Records nothing: no sink is configured.
    pub fn off() -> Self {
        Self(None)
    }

    /// Starts the sinks: the audit log at `file` (opened now, so a path that cannot be written
    /// stops `serve` at once) and the OTLP log records of `otlp`. The [`Writer`], when there is an
    /// audit log, must be finished at shutdown.
    pub async fn start(file: Option<Target>, otlp: Option<AuditExport>) -> Result<(Self, Option<Writer>), AuditError> {
        if file.is_none() && otlp.is_none() {
            return Ok((Self::off(), None));
        }
        let drops = Arc::new(Drops::default());
        let (tx, writer) = match file {
            Some(target) => {
                let (tx, writer) = file::start(target, drops.clone()).await?;
                (Some(tx), Some(writer))
            }
            None => (None, None),
        };
        Ok((Self(Some(Arc::new(Sinks { file: tx, otlp, drops }))), writer))
    }

    /// Whether events go anywhere (so building them is worth it).
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// Hands `event` to every sink without waiting.
    pub fn record(&self, event: Event) {
        let Some(sinks) = &self.0 else { return };
        if let Some(export) = &sinks.otlp {
            otlp::emit(export, &event);
        }
        if let Some(tx) = &sinks.file {
            match tx.try_send(event) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => sinks.drops.dropped(1, "the audit log's queue is full"),
                Err(mpsc::error::TrySendError::Closed(_)) => sinks.drops.dropped(1, "the audit log has stopped"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::tally::Tally;

    fn event(n: usize) -> Event {
        let who = Who { label: "development".into(), subject: None };
        let change = Change::new(Operation::Delete, "Users", Some(&format!("u-{n}")));
        Event::new("demo", who, &format!("req-{n}"), None, change, Outcome::new(204, None, Tally::default()))
    }

    #[tokio::test]
    async fn the_audit_log_gets_one_line_per_event_and_everything_queued_at_shutdown() {
        let path = std::env::temp_dir().join(format!("scimbridge-audit-{}.jsonl", uuid::Uuid::new_v4()));
        std::fs::write(&path, "{\"earlier\":true}\n").unwrap();
        let (audit, writer) = Audit::start(Some(Target::File(path.clone())), None).await.unwrap();
        assert!(audit.is_on());
        for n in 0..300 {
            audit.record(event(n));
        }
        writer.expect("a writer").finish().await;
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 301, "appended, nothing lost");
        for (n, line) in lines[1..].iter().enumerate() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(
                (v["request_id"].as_str(), v["id"].as_str()),
                (Some(&*format!("req-{n}")), Some(&*format!("u-{n}")))
            );
        }
        std::fs::remove_file(&path).unwrap();
    }

    #[tokio::test]
    async fn an_unwritable_path_fails_at_start_and_off_records_nothing() {
        let bad = Target::File("/nonexistent-dir/audit.jsonl".into());
        assert!(matches!(Audit::start(Some(bad), None).await, Err(AuditError::Open { .. })));
        let (off, writer) = Audit::start(None, None).await.unwrap();
        assert!(!off.is_on() && writer.is_none());
        off.record(event(0));
    }
}
