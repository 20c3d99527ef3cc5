//! A bounded in-memory cache of decoded records for the embedded store, so that the reads on every
//! request's path (a record by SCIM id, by app id) are answered without a trip to the blocking
//! pool. That trip cost more than the read itself: about 2.4 context switches per request and a
//! fifth of the gateway's CPU time on `GET /Users/{id}` (bench/README.md).
//!
//! Coherence rests on one rule: only the process that writes the store may cache it, and every
//! write updates the cache after its commit, in commit order (the embedded store holds its writer
//! lock across commit and [`RecordCache::written`]). A read that missed fills the cache only if no
//! write finished while it read ([`Ticket`]), so a fill can never put back a value older than one a
//! write left. Never in front of Redis: other replicas write it.
//!
//! Entries by app id are hints: a hit is trusted only when the record it names still has that app
//! id, so a stale hint (the app id changed, the record went) costs one store read, never a wrong
//! answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use quick_cache::Weighter;
use quick_cache::sync::Cache;

use super::Record;

/// What an entry costs in memory, roughly: its strings and a fixed overhead per entry.
#[derive(Debug, Clone, Copy)]
struct Bytes;

/// Per-entry bookkeeping (allocations, the cache's slot, `Arc`) beyond the strings themselves.
const ENTRY_OVERHEAD: u64 = 96;

impl Weighter<String, Arc<Record>> for Bytes {
    fn weight(&self, key: &String, r: &Arc<Record>) -> u64 {
        let stored: usize = r.stored.iter().map(|(k, v)| k.len() + v.as_str().map_or(16, str::len)).sum();
        let strings = r.id.len()
            + r.app_id.len()
            + r.external_id.as_ref().map_or(0, String::len)
            + r.created.len()
            + r.last_modified.len();
        ENTRY_OVERHEAD + (key.len() + strings + stored) as u64
    }
}

impl Weighter<String, String> for Bytes {
    fn weight(&self, key: &String, v: &String) -> u64 {
        ENTRY_OVERHEAD + (key.len() + v.len()) as u64
    }
}

/// A snapshot of the write count, taken before a store read that may fill the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

/// Records by store key, and store keys by app-id key. See the module documentation.
pub struct RecordCache {
    records: Cache<String, Arc<Record>, Bytes>,
    by_app: Cache<String, String, Bytes>,
    /// Completed writes; fills compare it with their [`Ticket`].
    writes: AtomicU64,
    /// Orders fills against writes' updates (held for a few map operations, never across I/O).
    gate: std::sync::Mutex<()>,
}

/// The changes one write makes to the cache, applied under the gate.
pub struct Writes<'a>(&'a RecordCache);

impl Writes<'_> {
    /// `record` (now stored under `key`) is findable by `app_key`.
    pub fn set(&self, key: &str, app_key: String, record: &Record) {
        self.0.records.insert(key.to_owned(), Arc::new(record.clone()));
        self.0.by_app.insert(app_key, key.to_owned());
    }

    /// The record under `key` is gone.
    pub fn remove(&self, key: &str) {
        self.0.records.remove(key);
    }
}

impl RecordCache {
    /// A cache of at most about `bytes` of records (four fifths) and app-id hints (the rest).
    pub fn new(bytes: u64) -> Self {
        let records = bytes / 5 * 4;
        let hints = bytes - records;
        // The tables start small and grow with what is cached: an idle gateway stays small.
        let start = |weight: u64, per_entry: u64| (weight / per_entry).min(1024) as usize;
        Self {
            records: Cache::with_weighter(start(records, 300), records.max(1), Bytes),
            by_app: Cache::with_weighter(start(hints, 150), hints.max(1), Bytes),
            writes: AtomicU64::new(0),
            gate: std::sync::Mutex::new(()),
        }
    }

    /// The record stored under `key`, if cached.
    pub fn get(&self, key: &str) -> Option<Record> {
        self.records.get(key).map(|r| Record::clone(&r))
    }

    /// The record whose app id is `app_id` (app-id key `app_key`), if cached and still current.
    pub fn by_app(&self, app_key: &str, app_id: &str) -> Option<Record> {
        let key = self.by_app.get(app_key)?;
        self.records.get(key.as_str()).filter(|r| r.app_id == app_id).map(|r| Record::clone(&r))
    }

    /// Taken before a store read whose result may [`fill`](Self::fill) the cache.
    pub fn ticket(&self) -> Ticket {
        Ticket(self.writes.load(Ordering::Acquire))
    }

    /// Caches what a read found, unless a write finished since `ticket` (the read may predate it).
    pub fn fill<'r>(&self, ticket: Ticket, found: impl IntoIterator<Item = (String, String, &'r Record)>) {
        let _gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        if self.writes.load(Ordering::Acquire) != ticket.0 {
            return;
        }
        let w = Writes(self);
        for (key, app_key, record) in found {
            w.set(&key, app_key, record);
        }
    }

    /// Applies a committed write's changes. Callers hold the store's writer lock, so writes update
    /// the cache in the order they committed.
    pub fn written(&self, changes: impl FnOnce(&Writes<'_>)) {
        let _gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        self.writes.fetch_add(1, Ordering::AcqRel);
        changes(&Writes(self));
    }

    /// Forgets everything (after a write whose effects are not listed, such as a failed commit).
    pub fn clear(&self) {
        let _gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        self.writes.fetch_add(1, Ordering::AcqRel);
        self.records.clear();
        self.by_app.clear();
    }

    /// Bytes held (by the weights above).
    pub fn weight(&self) -> u64 {
        self.records.weight() + self.by_app.weight()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, app_id: &str, version: u64) -> Record {
        Record { id: id.to_owned(), version, ..Record::adopted(app_id, "2026-01-01T00:00:00Z") }
    }

    #[test]
    fn a_fill_after_a_write_is_dropped() {
        let c = RecordCache::new(1 << 20);
        let t = c.ticket();
        // A write finishes while the read that took `t` was still reading the old value.
        c.written(|w| w.set("k1", "a1".into(), &rec("k1", "1", 2)));
        c.fill(t, [("k1".to_owned(), "a1".to_owned(), &rec("k1", "1", 1))]);
        assert_eq!(c.get("k1").map(|r| r.version), Some(2), "the write's value stays");
        let t = c.ticket();
        c.written(|w| w.remove("k1"));
        c.fill(t, [("k1".to_owned(), "a1".to_owned(), &rec("k1", "1", 2))]);
        assert_eq!(c.get("k1"), None, "a deleted record is not put back");
        let t = c.ticket();
        c.fill(t, [("k1".to_owned(), "a1".to_owned(), &rec("k1", "1", 3))]);
        assert_eq!(c.get("k1").map(|r| r.version), Some(3), "a fill with no write in between is kept");
    }

    #[test]
    fn app_id_hints_are_checked() {
        let c = RecordCache::new(1 << 20);
        c.written(|w| w.set("k1", "a1".into(), &rec("k1", "1", 1)));
        assert_eq!(c.by_app("a1", "1").map(|r| r.id), Some("k1".to_owned()));
        // The record's app id changes: the old hint must not find it.
        c.written(|w| w.set("k1", "a2".into(), &rec("k1", "2", 2)));
        assert_eq!(c.by_app("a1", "1"), None);
        assert_eq!(c.by_app("a2", "2").map(|r| r.version), Some(2));
        c.written(|w| w.remove("k1"));
        assert_eq!(c.by_app("a2", "2"), None, "a hint to a removed record finds nothing");
    }

    #[test]
    fn grows_beyond_its_starting_tables() {
        let c = RecordCache::new(16 << 20);
        let key = |i: usize| format!("tenant\x1fUser\x1f{i:036}");
        for i in 0..20_000 {
            c.written(|w| w.set(&key(i), format!("a{i}"), &rec(&key(i), &i.to_string(), 1)));
        }
        let kept = (0..20_000).filter(|&i| c.get(&key(i)).is_some()).count();
        assert!(kept > 19_000, "{kept} of 20,000 kept in 16 MiB");
    }

    #[test]
    fn bounded_by_weight() {
        let c = RecordCache::new(64 * 1024);
        for i in 0..10_000 {
            let key = format!("tenant\x1fUser\x1f{i:036}");
            c.written(|w| w.set(&key, format!("tenant\x1fUser\x1f{i}"), &rec(&key, &i.to_string(), 1)));
        }
        assert!(c.weight() <= 64 * 1024, "{} bytes held", c.weight());
        assert!(c.get(&format!("tenant\x1fUser\x1f{:036}", 9_999)).is_some(), "recent entries stay");
    }
}
