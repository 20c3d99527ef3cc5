//! The embedded store: one redb file (crash-safe, copy-on-write B-trees), or memory for the demo.
//!
//! redb is synchronous, so every operation runs on tokio's blocking pool, never on a runtime thread,
//! except reads the [`RecordCache`] answers from memory. Writes hold `writer` from the start of
//! their transaction until the cache has their result, so the cache sees writes in commit order.
//! Keys are `tenant \x1f kind \x1f id`; tenant ids cannot contain `\x1f` (they are validated), so no
//! tenant's key range overlaps another's.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::cache::{RecordCache, Ticket};
use super::{LockToken, Record, Store, StoreError, StoreFuture};
use crate::mapping::ResourceKind;

const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
const BY_APP_ID: TableDefinition<&str, &str> = TableDefinition::new("by_app_id");
const BY_EXTERNAL_ID: TableDefinition<&str, &str> = TableDefinition::new("by_external_id");
const BY_STORED: TableDefinition<&str, &str> = TableDefinition::new("by_stored");

/// How much of the file redb keeps in its own page cache. Hot reads are served by the record cache;
/// redb's default (1 GiB) would let the process grow with the file.
const PAGE_CACHE_BYTES: usize = 16 * 1024 * 1024;

/// The record cache's default size: about 50,000 records.
pub const DEFAULT_CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// The redb-backed [`Store`].
#[derive(Clone)]
pub struct RedbStore {
    db: Arc<Db>,
    /// Locks live in the process: the embedded store serves one process.
    locks: Arc<std::sync::Mutex<HashMap<String, (String, std::time::Instant)>>>,
    /// Wakes waiting lockers when a lock is released, so a waiter does not sleep out a poll
    /// interval (many writes to one busy group would otherwise queue in 10 ms steps).
    released: Arc<tokio::sync::Notify>,
}

/// The database and what its blocking closures need beside it.
struct Db {
    redb: Database,
    cache: RecordCache,
    /// Held by a write from its transaction's start until the cache has its result.
    writer: std::sync::Mutex<()>,
}

impl Db {
    /// Runs `f` in a write transaction and, once it committed, its cache changes.
    fn write<T>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T, StoreError>,
        cached: impl FnOnce(&T, &super::cache::Writes<'_>),
    ) -> Result<T, StoreError> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let tx = self.redb.begin_write().map_err(unavailable)?;
        let out = f(&tx)?;
        if let Err(e) = tx.commit() {
            // Whether it reached the file is unknown: nothing cached may be trusted.
            self.cache.clear();
            return Err(unavailable(e));
        }
        self.cache.written(|w| cached(&out, w));
        Ok(out)
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn lock_key(tenant: &str, name: &str) -> String {
    format!("{tenant}\x1f{name}")
}

fn key(tenant: &str, kind: ResourceKind, id: &str) -> String {
    format!("{tenant}\x1f{}\x1f{id}", kind.name())
}

/// Index keys of a record's stored string attributes: `path \x1f lowercased value`.
fn stored_keys(tenant: &str, kind: ResourceKind, r: &Record) -> Vec<String> {
    r.stored
        .iter()
        .filter_map(|(path, v)| v.as_str().map(|s| key(tenant, kind, &format!("{path}\x1f{}", s.to_lowercase()))))
        .collect()
}

fn decode(bytes: &[u8]) -> Result<Record, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn encode(r: &Record) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(r).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl RedbStore {
    /// Opens (or creates) the store file at `path`, with a record cache of `cache_bytes`.
    pub fn open(path: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(unavailable)?;
        }
        let db = Database::builder().set_cache_size(PAGE_CACHE_BYTES).create(path).map_err(unavailable)?;
        Self::init(db, cache_bytes)
    }

    /// A store that lives in memory only (the demo, whose app is in memory too).
    pub fn in_memory() -> Result<Self, StoreError> {
        let db =
            Database::builder().create_with_backend(redb::backends::InMemoryBackend::new()).map_err(unavailable)?;
        Self::init(db, DEFAULT_CACHE_BYTES)
    }

    fn init(db: Database, cache_bytes: u64) -> Result<Self, StoreError> {
        let tx = db.begin_write().map_err(unavailable)?;
        tx.open_table(RECORDS).map_err(unavailable)?;
        tx.open_table(BY_APP_ID).map_err(unavailable)?;
        tx.open_table(BY_EXTERNAL_ID).map_err(unavailable)?;
        tx.open_table(BY_STORED).map_err(unavailable)?;
        tx.commit().map_err(unavailable)?;
        let db = Db { redb: db, cache: RecordCache::new(cache_bytes), writer: std::sync::Mutex::new(()) };
        Ok(Self { db: Arc::new(db), locks: Arc::default(), released: Arc::default() })
    }

    /// Runs `f` on the blocking pool.
    fn blocking<'a, T: Send + 'static>(
        &'a self,
        f: impl FnOnce(&Db) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'a, T> {
        let db = self.db.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || f(&db)).await.map_err(|e| StoreError::Unavailable(e.to_string()))?
        })
    }

    /// The record an index entry names; what it finds fills the cache.
    fn lookup<'a>(
        &'a self,
        tenant: &'a str,
        kind: ResourceKind,
        index: TableDefinition<'static, &'static str, &'static str>,
        k: String,
    ) -> StoreFuture<'a, Option<Record>> {
        let ticket = self.db.cache.ticket();
        let found = self.blocking(move |db| {
            let tx = db.redb.begin_read().map_err(unavailable)?;
            let idx = tx.open_table(index).map_err(unavailable)?;
            let Some(id_key) = idx.get(k.as_str()).map_err(unavailable)?.map(|g| g.value().to_owned()) else {
                return Ok(None);
            };
            let records = tx.open_table(RECORDS).map_err(unavailable)?;
            records.get(id_key.as_str()).map_err(unavailable)?.map(|g| decode(g.value())).transpose()
        });
        Box::pin(async move {
            let found = found.await?;
            self.fill(ticket, tenant, kind, found.iter());
            Ok(found)
        })
    }

    /// Caches records a read found (see [`RecordCache::fill`]).
    fn fill<'r>(&self, ticket: Ticket, tenant: &str, kind: ResourceKind, found: impl Iterator<Item = &'r Record>) {
        self.db.cache.fill(ticket, found.map(|r| (key(tenant, kind, &r.id), key(tenant, kind, &r.app_id), r)));
    }

    /// When the current holder's lease of lock `name` runs out, if it is held.
    fn expiry(&self, tenant: &str, name: &str) -> Option<tokio::time::Instant> {
        let locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.get(&lock_key(tenant, name)).map(|(_, e)| tokio::time::Instant::from_std(*e))
    }
}

fn write_record(
    tx: &redb::WriteTransaction,
    tenant: &str,
    kind: ResourceKind,
    record: &Record,
    previous: Option<&Record>,
) -> Result<(), StoreError> {
    let rkey = key(tenant, kind, &record.id);
    let mut records = tx.open_table(RECORDS).map_err(unavailable)?;
    let mut by_app = tx.open_table(BY_APP_ID).map_err(unavailable)?;
    let mut by_ext = tx.open_table(BY_EXTERNAL_ID).map_err(unavailable)?;
    let mut by_stored = tx.open_table(BY_STORED).map_err(unavailable)?;
    if let Some(prev) = previous {
        for k in stored_keys(tenant, kind, prev) {
            by_stored.remove(k.as_str()).map_err(unavailable)?;
        }
        if prev.app_id != record.app_id {
            by_app.remove(key(tenant, kind, &prev.app_id).as_str()).map_err(unavailable)?;
        }
        if let Some(e) = &prev.external_id
            && record.external_id.as_ref() != Some(e)
        {
            by_ext.remove(key(tenant, kind, e).as_str()).map_err(unavailable)?;
        }
    }
    records.insert(rkey.as_str(), encode(record)?.as_slice()).map_err(unavailable)?;
    by_app.insert(key(tenant, kind, &record.app_id).as_str(), rkey.as_str()).map_err(unavailable)?;
    if let Some(e) = &record.external_id {
        by_ext.insert(key(tenant, kind, e).as_str(), rkey.as_str()).map_err(unavailable)?;
    }
    for k in stored_keys(tenant, kind, record) {
        by_stored.insert(k.as_str(), rkey.as_str()).map_err(unavailable)?;
    }
    Ok(())
}

impl Store for RedbStore {
    fn kind(&self) -> &'static str {
        "redb"
    }

    fn get<'a>(&'a self, tenant: &'a str, kind: ResourceKind, id: &'a str) -> StoreFuture<'a, Option<Record>> {
        let k = key(tenant, kind, id);
        if let Some(r) = self.db.cache.get(&k) {
            return Box::pin(std::future::ready(Ok(Some(r))));
        }
        let ticket = self.db.cache.ticket();
        let found = self.blocking(move |db| {
            let tx = db.redb.begin_read().map_err(unavailable)?;
            let t = tx.open_table(RECORDS).map_err(unavailable)?;
            t.get(k.as_str()).map_err(unavailable)?.map(|g| decode(g.value())).transpose()
        });
        Box::pin(async move {
            let found = found.await?;
            self.fill(ticket, tenant, kind, found.iter());
            Ok(found)
        })
    }

    fn by_app_id<'a>(
        &'a self,
        tenant: &'a str,
        kind: ResourceKind,
        app_id: &'a str,
    ) -> StoreFuture<'a, Option<Record>> {
        let k = key(tenant, kind, app_id);
        if let Some(r) = self.db.cache.by_app(&k, app_id) {
            return Box::pin(std::future::ready(Ok(Some(r))));
        }
        self.lookup(tenant, kind, BY_APP_ID, k)
    }

    fn by_external_id<'a>(
        &'a self,
        tenant: &'a str,
        kind: ResourceKind,
        external_id: &'a str,
    ) -> StoreFuture<'a, Option<Record>> {
        self.lookup(tenant, kind, BY_EXTERNAL_ID, key(tenant, kind, external_id))
    }

    fn by_stored<'a>(
        &'a self,
        tenant: &'a str,
        kind: ResourceKind,
        path: &'a str,
        value: &'a str,
    ) -> StoreFuture<'a, Option<Record>> {
        self.lookup(tenant, kind, BY_STORED, key(tenant, kind, &format!("{path}\x1f{}", value.to_lowercase())))
    }

    fn adopt<'a>(
        &'a self,
        tenant: &'a str,
        kind: ResourceKind,
        app_ids: Vec<String>,
        now: &'a str,
    ) -> StoreFuture<'a, Vec<Record>> {
        // A list's objects are mostly known and cached: then no store call at all.
        let cached: Option<Vec<Record>> =
            app_ids.iter().map(|a| self.db.cache.by_app(&key(tenant, kind, a), a)).collect();
        if let Some(all) = cached {
            return Box::pin(std::future::ready(Ok(all)));
        }
        let ticket = self.db.cache.ticket();
        let owned_tenant = tenant.to_owned();
        let now = now.to_owned();
        let adopted = self.blocking(move |db| {
            let tenant = owned_tenant;
            // Most lists only name known objects: try a read transaction first, write only if needed.
            let mut out: Vec<Option<Record>> = Vec::with_capacity(app_ids.len());
            {
                let tx = db.redb.begin_read().map_err(unavailable)?;
                let by_app = tx.open_table(BY_APP_ID).map_err(unavailable)?;
                let records = tx.open_table(RECORDS).map_err(unavailable)?;
                for app_id in &app_ids {
                    let rk = by_app.get(key(&tenant, kind, app_id).as_str()).map_err(unavailable)?;
                    let rec = match rk {
                        Some(rk) => {
                            records.get(rk.value()).map_err(unavailable)?.map(|g| decode(g.value())).transpose()?
                        }
                        None => None,
                    };
                    out.push(rec);
                }
            }
            if out.iter().all(Option::is_some) {
                return Ok(out.into_iter().flatten().collect());
            }
            let write = |tx: &redb::WriteTransaction| {
                let mut result = Vec::with_capacity(app_ids.len());
                let mut new = Vec::new();
                for (app_id, found) in app_ids.iter().zip(out) {
                    if let Some(r) = found {
                        result.push(r);
                        continue;
                    }
                    // Re-check inside the write transaction: another request may have adopted it.
                    let existing = {
                        let by_app = tx.open_table(BY_APP_ID).map_err(unavailable)?;
                        let rk = by_app
                            .get(key(&tenant, kind, app_id).as_str())
                            .map_err(unavailable)?
                            .map(|g| g.value().to_owned());
                        match rk {
                            Some(rk) => {
                                let records = tx.open_table(RECORDS).map_err(unavailable)?;
                                records.get(rk.as_str()).map_err(unavailable)?.map(|g| decode(g.value())).transpose()?
                            }
                            None => None,
                        }
                    };
                    let rec = match existing {
                        Some(r) => r,
                        None => {
                            let r = Record::adopted(app_id, &now);
                            write_record(tx, &tenant, kind, &r, None)?;
                            new.push(result.len());
                            r
                        }
                    };
                    result.push(rec);
                }
                Ok((result, new))
            };
            let cache_new = |(result, new): &(Vec<Record>, Vec<usize>), w: &super::cache::Writes<'_>| {
                for r in new.iter().filter_map(|&i| result.get(i)) {
                    w.set(&key(&tenant, kind, &r.id), key(&tenant, kind, &r.app_id), r);
                }
            };
            db.write(write, cache_new).map(|(result, _)| result)
        });
        Box::pin(async move {
            let found = adopted.await?;
            self.fill(ticket, tenant, kind, found.iter());
            Ok(found)
        })
    }

    fn put<'a>(&'a self, tenant: &'a str, kind: ResourceKind, record: Record) -> StoreFuture<'a, Option<Record>> {
        let tenant = tenant.to_owned();
        self.blocking(move |db| {
            let write = |tx: &redb::WriteTransaction| {
                let (previous, holder) = {
                    let records = tx.open_table(RECORDS).map_err(unavailable)?;
                    let by_app = tx.open_table(BY_APP_ID).map_err(unavailable)?;
                    let previous = records
                        .get(key(&tenant, kind, &record.id).as_str())
                        .map_err(unavailable)?
                        .map(|g| decode(g.value()))
                        .transpose()?;
                    let holder_key = by_app
                        .get(key(&tenant, kind, &record.app_id).as_str())
                        .map_err(unavailable)?
                        .map(|g| g.value().to_owned());
                    let holder = match holder_key {
                        Some(k) if k != key(&tenant, kind, &record.id) => {
                            records.get(k.as_str()).map_err(unavailable)?.map(|g| decode(g.value())).transpose()?
                        }
                        _ => None,
                    };
                    (previous, holder)
                };
                if let Some(h) = holder {
                    return Ok(Some(h));
                }
                write_record(tx, &tenant, kind, &record, previous.as_ref())?;
                Ok(None)
            };
            // A refused put (another record holds the app id) wrote nothing; the transaction it
            // commits is empty.
            let cache = |holder: &Option<Record>, w: &super::cache::Writes<'_>| {
                if holder.is_none() {
                    w.set(&key(&tenant, kind, &record.id), key(&tenant, kind, &record.app_id), &record);
                }
            };
            db.write(write, cache)
        })
    }

    fn delete<'a>(&'a self, tenant: &'a str, kind: ResourceKind, id: &'a str) -> StoreFuture<'a, ()> {
        let rkey = key(tenant, kind, id);
        let tenant = tenant.to_owned();
        self.blocking(move |db| {
            let write = |tx: &redb::WriteTransaction| {
                let mut records = tx.open_table(RECORDS).map_err(unavailable)?;
                let prev = records.remove(rkey.as_str()).map_err(unavailable)?.map(|g| decode(g.value()));
                if let Some(prev) = prev.transpose()? {
                    let mut by_app = tx.open_table(BY_APP_ID).map_err(unavailable)?;
                    by_app.remove(key(&tenant, kind, &prev.app_id).as_str()).map_err(unavailable)?;
                    if let Some(e) = &prev.external_id {
                        let mut by_ext = tx.open_table(BY_EXTERNAL_ID).map_err(unavailable)?;
                        by_ext.remove(key(&tenant, kind, e).as_str()).map_err(unavailable)?;
                    }
                    let mut by_stored = tx.open_table(BY_STORED).map_err(unavailable)?;
                    for k in stored_keys(&tenant, kind, &prev) {
                        by_stored.remove(k.as_str()).map_err(unavailable)?;
                    }
                }
                Ok(())
            };
            db.write(write, |(), w| w.remove(&rkey))
        })
    }

    fn try_lock<'a>(
        &'a self,
        tenant: &'a str,
        name: &'a str,
        token: &'a LockToken,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let key = lock_key(tenant, name);
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            match locks.get(&key) {
                Some((_, expires)) if *expires > now => Ok(false),
                _ => {
                    locks.insert(key, (token.0.clone(), now + ttl));
                    Ok(true)
                }
            }
        })
    }

    fn extend<'a>(
        &'a self,
        tenant: &'a str,
        name: &'a str,
        token: &'a LockToken,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let key = lock_key(tenant, name);
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            match locks.get_mut(&key) {
                Some((holder, expires)) if *holder == token.0 && *expires > now => {
                    *expires = now + ttl;
                    Ok(true)
                }
                _ => Ok(false),
            }
        })
    }

    /// Wakes on a release in this process, or when the holder's lease runs out.
    fn lock_released<'a>(&'a self, tenant: &'a str, name: &'a str) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        // Registered as it is made: `notify_waiters` wakes it even before it is first polled.
        let released = self.released.notified();
        Box::pin(async move {
            let Some(expiry) = self.expiry(tenant, name) else { return };
            tokio::select! {
                () = released => {}
                () = tokio::time::sleep_until(expiry) => {}
            }
        })
    }

    fn unlock<'a>(&'a self, tenant: &'a str, name: &'a str, token: LockToken) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let key = lock_key(tenant, name);
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            if locks.get(&key).is_some_and(|(t, _)| *t == token.0) {
                locks.remove(&key);
                self.released.notify_waiters();
            }
            Ok(())
        })
    }

    fn scan<'a>(&'a self, tenant: &'a str) -> StoreFuture<'a, Vec<(ResourceKind, Record)>> {
        // Keys are `tenant \x1f kind \x1f id` and tenant ids are `a-z 0-9 -`: the tenant's keys are
        // exactly those from `tenant\x1f` up to (not including) `tenant\x20`.
        let (start, end) = (format!("{tenant}\x1f"), format!("{tenant}\x20"));
        self.blocking(move |db| {
            let tx = db.redb.begin_read().map_err(unavailable)?;
            let records = tx.open_table(RECORDS).map_err(unavailable)?;
            let mut out = Vec::new();
            for entry in records.range(start.as_str()..end.as_str()).map_err(unavailable)? {
                let (k, v) = entry.map_err(unavailable)?;
                let kind = k.value().split('\x1f').nth(1).and_then(ResourceKind::from_name);
                let kind = kind.ok_or_else(|| StoreError::Corrupt(format!("key `{}`", k.value())))?;
                out.push((kind, decode(v.value())?));
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn behaves_as_every_store_must() {
        let s = RedbStore::in_memory().unwrap();
        super::super::suite::run_all(&s, "t").await;
    }

    /// Readers racing a writer (and a deleter) never see a version older than the last completed
    /// write, whether the cache or the file answers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_cache_never_serves_an_older_version_than_the_last_write() {
        let s = Arc::new(RedbStore::in_memory().unwrap());
        let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut readers = Vec::new();
        for _ in 0..4 {
            let (s, done) = (s.clone(), done.clone());
            readers.push(tokio::spawn(async move {
                let mut reads = 0;
                while done.load(std::sync::atomic::Ordering::Acquire) < 200 {
                    let at_least = done.load(std::sync::atomic::Ordering::Acquire);
                    let got = s.get("t", ResourceKind::User, "u").await.unwrap().map_or(0, |r| r.version);
                    assert!(got >= at_least, "read version {got} after write {at_least} completed");
                    let by_app = s.by_app_id("t", ResourceKind::User, "7").await.unwrap().map_or(0, |r| r.version);
                    assert!(by_app == 0 || by_app >= at_least, "by app id: {by_app} after {at_least}");
                    reads += 1;
                }
                reads
            }));
        }
        for v in 1..=200 {
            let mut r = Record::adopted("7", "2026-01-01T00:00:00Z");
            r.id = "u".into();
            r.version = v;
            assert!(s.put("t", ResourceKind::User, r).await.unwrap().is_none());
            done.store(v, std::sync::atomic::Ordering::Release);
        }
        for reader in readers {
            assert!(reader.await.unwrap() > 0);
        }
        s.delete("t", ResourceKind::User, "u").await.unwrap();
        assert_eq!(s.get("t", ResourceKind::User, "u").await.unwrap(), None, "a deleted record is gone");
        assert_eq!(s.by_app_id("t", ResourceKind::User, "7").await.unwrap(), None);
        // Adopting the same app id again makes a new record, found by both ids.
        let adopted = s.adopt("t", ResourceKind::User, vec!["7".into()], "now").await.unwrap();
        let again = s.adopt("t", ResourceKind::User, vec!["7".into()], "now").await.unwrap();
        assert_eq!(adopted, again);
        assert_eq!(s.get("t", ResourceKind::User, &adopted[0].id).await.unwrap().as_ref(), adopted.first());
    }

    #[tokio::test]
    async fn survives_reopen() {
        let dir = std::env::temp_dir().join(format!("scimbridge-store-{}", uuid::Uuid::new_v4()));
        let path = dir.join("state.redb");
        let rec = Record {
            id: "g".into(),
            app_id: "501".into(),
            external_id: None,
            created: "2026-01-01T00:00:00Z".into(),
            last_modified: "2026-01-01T00:00:00Z".into(),
            version: 1,
            stored: Default::default(),
        };
        {
            let s = RedbStore::open(&path, DEFAULT_CACHE_BYTES).unwrap();
            s.put("t", ResourceKind::Group, rec).await.unwrap();
        }
        let s = RedbStore::open(&path, DEFAULT_CACHE_BYTES).unwrap();
        assert_eq!(s.get("t", ResourceKind::Group, "g").await.unwrap().unwrap().app_id, "501");
        let _ = std::fs::remove_dir_all(dir);
    }
}
