//! The embedded store: one redb file (crash-safe, copy-on-write B-trees), or memory for the demo.
//!
//! redb is synchronous, so every operation runs on tokio's blocking pool, never on a runtime thread,
//! except reads the [`RecordCache`] answers from memory. Writes hold `writer` from the start of
//! their transaction until the cache has their result, so the cache sees writes in commit order.
//!
//! Group commit: while other writes wait in the queue behind it, a write commits without syncing
//! to disk (`Durability::None`) and waits, off the queue, for a later commit that syncs; the last
//! write of a group (none queued behind it, or [`MAX_GROUP`] unsynced) syncs, which makes every
//! commit before it durable too. Every write is answered only once it is on disk, as before; under
//! load the disk syncs once per group, not once per write. A write whose follower never came (it
//! was cancelled in the queue) starts a sync of its own after [`FALLBACK_SYNC`].
//!
//! Keys are `tenant \x1f kind \x1f id`; tenant ids cannot contain `\x1f` (they are validated), so no
//! tenant's key range overlaps another's.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::cache::RecordCache;
use super::{LockToken, Record, Store, StoreError, StoreFuture};
use crate::mapping::ResourceKind;

const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
const BY_APP_ID: TableDefinition<&str, &str> = TableDefinition::new("by_app_id");
const BY_EXTERNAL_ID: TableDefinition<&str, &str> = TableDefinition::new("by_external_id");
const BY_STORED: TableDefinition<&str, &str> = TableDefinition::new("by_stored");

/// How much of the file redb keeps in its own page cache. Hot reads are served by the record cache;
/// redb's default (1 GiB) would let the process grow with the file. 4 MiB against 16 cost writes
/// nothing measurable and 15 MiB of peak RSS (bench/README.md).
const PAGE_CACHE_BYTES: usize = 4 * 1024 * 1024;

/// The most writes committed without a sync: the last of them syncs though more wait.
const MAX_GROUP: u64 = 32;
/// How long a write waits for a follower's sync before it starts one.
const FALLBACK_SYNC: Duration = Duration::from_millis(20);

/// The record cache's default size: about 25,000 records.
pub const DEFAULT_CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// The redb-backed [`Store`].
#[derive(Clone)]
pub struct RedbStore {
    db: Arc<Db>,
    /// Locks live in the process: the embedded store serves one process.
    locks: Arc<Locks>,
}

/// The database and what its blocking closures need beside it.
struct Db {
    redb: Database,
    cache: RecordCache,
    /// Held by a write from its transaction's start until the cache has its result.
    writer: std::sync::Mutex<()>,
    /// Writes take their turn here before they go to the blocking pool: redb runs one write at a
    /// time, and 64 writes each parked on a blocking thread cost 64 threads' stacks and allocator
    /// caches (peak RSS, bench/README.md) for no more throughput.
    queue: tokio::sync::Semaphore,
    /// Writes waiting in `queue`: a write with none behind it syncs.
    queued: AtomicU64,
    /// The number of the last write committed (not yet synced, perhaps); set under `writer`.
    committed: AtomicU64,
    /// Whether a fallback sync runs now.
    syncing: AtomicBool,
    /// Commits that synced, in all.
    syncs: AtomicU64,
    /// What the syncs achieved: writes wait here for theirs.
    synced: watch::Sender<Synced>,
}

/// One write waiting in the queue, counted in `Db::queued` while it waits (and not after, if it
/// is cancelled).
struct Queued<'a>(&'a AtomicU64);

impl<'a> Queued<'a> {
    fn join(count: &'a AtomicU64) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The syncs' progress, in write numbers.
#[derive(Debug, Clone, Copy, Default)]
struct Synced {
    /// Every write up to this one is on disk.
    durable: u64,
    /// A sync that should have covered the writes up to this one failed: whether they reached the
    /// disk is unknown.
    failed: u64,
}

/// What a write transaction's body did.
enum Outcome<T> {
    /// It wrote: commit, then update the cache.
    Wrote(T),
    /// It found nothing to write: no commit (and no sync to disk) to pay for.
    Unchanged(T),
}

/// A write's result and the number of the commit that must be on disk before it is answered.
type Committed<T> = (T, u64);

impl Db {
    /// Runs `f` in a write transaction and, once it committed what `f` wrote, its cache changes.
    /// Without `sync` the commit is not on disk until a later one syncs (see the module
    /// documentation).
    fn write<T>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<Outcome<T>, StoreError>,
        cached: impl FnOnce(&T, &super::cache::Writes<'_>),
        sync: bool,
    ) -> Result<Committed<T>, StoreError> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut tx = self.redb.begin_write().map_err(unavailable)?;
        if !sync {
            tx.set_durability(redb::Durability::None).map_err(unavailable)?;
        }
        let out = match f(&tx)? {
            // What it read may be a commit not yet synced: it waits for that one.
            Outcome::Unchanged(out) => return Ok((out, self.committed.load(Ordering::Acquire))),
            Outcome::Wrote(out) => out,
        };
        if let Err(e) = tx.commit() {
            // Whether it reached the file is unknown: nothing cached may be trusted.
            self.cache.clear();
            return Err(unavailable(e));
        }
        self.cache.written(|w| cached(&out, w));
        let seq = self.committed.fetch_add(1, Ordering::AcqRel) + 1;
        if sync {
            self.syncs.fetch_add(1, Ordering::Relaxed);
            self.synced.send_modify(|s| s.durable = s.durable.max(seq));
        }
        Ok((out, seq))
    }

    /// Whether the next write should sync: nothing queued behind it, or a group's worth unsynced.
    fn next_syncs(&self) -> bool {
        let unsynced = self.committed.load(Ordering::Acquire).saturating_sub(self.synced.borrow().durable);
        self.queued.load(Ordering::Acquire) == 0 || unsynced + 1 >= MAX_GROUP
    }

    /// Makes every write committed so far durable (an empty commit that syncs), then tells the
    /// writes waiting for it. Runs on the blocking pool, one at a time (`syncing`).
    fn sync(&self) {
        // Every write up to `target` finished its commit before this transaction begins.
        let target = self.committed.load(Ordering::Acquire);
        let done = match self.redb.begin_write() {
            Ok(tx) => tx.commit().map_err(unavailable),
            Err(e) => Err(unavailable(e)),
        };
        self.syncing.store(false, Ordering::Release);
        self.synced.send_modify(|s| match done {
            Ok(()) => {
                self.syncs.fetch_add(1, Ordering::Relaxed);
                s.durable = s.durable.max(target);
            }
            Err(e) => {
                tracing::error!(error = %e, "store: syncing to disk failed");
                s.failed = s.failed.max(target);
            }
        });
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
        let db = Db {
            redb: db,
            cache: RecordCache::new(cache_bytes),
            writer: std::sync::Mutex::new(()),
            queue: tokio::sync::Semaphore::new(1),
            queued: AtomicU64::new(0),
            committed: AtomicU64::new(0),
            syncing: AtomicBool::new(false),
            syncs: AtomicU64::new(0),
            synced: watch::Sender::new(Synced::default()),
        };
        Ok(Self { db: Arc::new(db), locks: Arc::default() })
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

    /// Runs the write `f` on the blocking pool, once the writes queued before it are done, and
    /// answers once it is on disk. `f` is told whether its commit is to sync.
    fn blocking_write<'a, T: Send + 'static>(
        &'a self,
        f: impl FnOnce(&Db, bool) -> Result<Committed<T>, StoreError> + Send + 'static,
    ) -> StoreFuture<'a, T> {
        Box::pin(async move {
            let turn = {
                let _queued = Queued::join(&self.db.queued);
                self.db.queue.acquire().await.map_err(|e| StoreError::Unavailable(e.to_string()))?
            };
            let sync = self.db.next_syncs();
            let (out, seq) = self.blocking(move |db| f(db, sync)).await?;
            // The next write may commit while this one waits for the disk.
            drop(turn);
            self.durable(seq).await?;
            Ok(out)
        })
    }

    /// Waits until write number `seq` is on disk: synced by a later write, or after
    /// [`FALLBACK_SYNC`] by a sync of its own.
    async fn durable(&self, seq: u64) -> Result<(), StoreError> {
        let mut synced = self.db.synced.subscribe();
        loop {
            let now = *synced.borrow_and_update();
            if now.durable >= seq {
                return Ok(());
            }
            if now.failed >= seq {
                return Err(StoreError::Unavailable("syncing to disk failed".into()));
            }
            match tokio::time::timeout(FALLBACK_SYNC, synced.changed()).await {
                Ok(changed) => changed.map_err(|e| StoreError::Unavailable(e.to_string()))?,
                Err(_) if !self.db.syncing.swap(true, Ordering::AcqRel) => {
                    // Detached: a cancelled request must not stop the sync others wait for.
                    let db = self.db.clone();
                    tokio::task::spawn_blocking(move || db.sync());
                }
                Err(_) => {}
            }
        }
    }

    /// Runs `f` on the blocking pool and caches the records it found (see [`RecordCache::fill`]).
    fn read<'a, T: Send + 'static>(
        &'a self,
        tenant: &'a str,
        kind: ResourceKind,
        f: impl FnOnce(&Db) -> Result<T, StoreError> + Send + 'static,
        records: fn(&T) -> &[Record],
    ) -> StoreFuture<'a, T> {
        let ticket = self.db.cache.ticket();
        let found = self.blocking(f);
        Box::pin(async move {
            let found = found.await?;
            let entries = records(&found).iter().map(|r| (key(tenant, kind, &r.id), key(tenant, kind, &r.app_id), r));
            self.db.cache.fill(ticket, entries);
            Ok(found)
        })
    }

    /// The record an index entry names.
    fn lookup<'a>(
        &'a self,
        tenant: &'a str,
        kind: ResourceKind,
        index: TableDefinition<'static, &'static str, &'static str>,
        k: String,
    ) -> StoreFuture<'a, Option<Record>> {
        let find = move |db: &Db| {
            let tx = db.redb.begin_read().map_err(unavailable)?;
            let idx = tx.open_table(index).map_err(unavailable)?;
            let Some(id_key) = idx.get(k.as_str()).map_err(unavailable)?.map(|g| g.value().to_owned()) else {
                return Ok(None);
            };
            let records = tx.open_table(RECORDS).map_err(unavailable)?;
            records.get(id_key.as_str()).map_err(unavailable)?.map(|g| decode(g.value())).transpose()
        };
        self.read(tenant, kind, find, Option::as_slice)
    }
}

/// The embedded store's locks, by lock key, handed over first come, first served.
///
/// Waking every waiter on each release and letting them race for the lock starves the unlucky:
/// with 16 writes queued on one group, each holding it for about 1 ms, the slowest waited 0.36 s.
/// So each lock key has a queue: a release hands the lock straight to the first waiter, with a
/// lease of that waiter's ttl, and wakes that one only, so a wait is bounded by the queue ahead of
/// it. A holder that neither releases nor renews (a hung or killed request) holds the queue up
/// until its lease ends: waiters also wake then, and the first to look hands the lock to the head
/// of the queue.
///
/// Every change goes through [`Locks::with`], which keeps the invariant: a lock has a live holder
/// whenever anyone waits for it, and a key with neither holder nor waiters has no entry.
#[derive(Default)]
struct Locks(std::sync::Mutex<HashMap<String, Lock>>);

/// One lock key: its holder, and its waiters in arrival order.
#[derive(Default)]
struct Lock {
    holder: Option<Lease>,
    queue: VecDeque<Waiter>,
}

struct Lease {
    token: String,
    expires: Instant,
}

struct Waiter {
    token: String,
    /// The lease it gets when the lock is handed to it.
    ttl: Duration,
    /// Notified when it is handed the lock. A `Notify` keeps a wake-up that comes while its waiter
    /// is not listening yet.
    wake: Arc<Notify>,
}

/// Where a locker stands after [`Locks::claim`].
enum Turn {
    /// It holds the lock.
    Mine,
    /// It is queued; the current lease ends at this instant unless renewed.
    Behind(Instant),
}

impl Lock {
    /// Ends a lease that ran out, and gives a free lock to the first waiter, waking it.
    fn settle(&mut self, now: Instant) {
        if self.holder.as_ref().is_some_and(|lease| lease.expires > now) {
            return;
        }
        self.holder = self.queue.pop_front().map(|w| {
            w.wake.notify_one();
            Lease { token: w.token, expires: now + w.ttl }
        });
    }

    /// Frees the lock if `token` holds it; [`Locks::with`] then hands it on.
    fn release(&mut self, token: &str) {
        if self.holder.as_ref().is_some_and(|lease| lease.token == token) {
            self.holder = None;
        }
    }
}

impl Locks {
    /// Runs `f` on the state of lock `key`, settled before (an ended lease is passed on) and after
    /// (a released lock is handed on); the entry is dropped once nobody holds or waits for it.
    fn with<T>(&self, key: &str, f: impl FnOnce(&mut Lock, Instant) -> T) -> T {
        let mut locks = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let lock = locks.entry(key.to_owned()).or_default();
        lock.settle(now);
        let out = f(lock, now);
        lock.settle(now);
        if lock.holder.is_none() && lock.queue.is_empty() {
            locks.remove(key);
        }
        out
    }

    /// Takes lock `key` for `token` if it is free; never ahead of a waiter (a free lock with
    /// waiters has already been handed to the first).
    fn try_take(&self, key: &str, token: &str, ttl: Duration) -> bool {
        self.with(key, |lock, now| {
            if lock.holder.is_some() {
                return false;
            }
            lock.holder = Some(Lease { token: token.to_owned(), expires: now + ttl });
            true
        })
    }

    /// Where `token` stands for lock `key`: it holds it (handed over, or taken because free), or
    /// it waits, queued at the back if it was not queued yet. A waiter handed the lock that did not
    /// run before that lease ran out has lost it to the next, and queues again.
    fn claim(&self, key: &str, token: &str, ttl: Duration, wake: &Arc<Notify>) -> Turn {
        self.with(key, |lock, now| match &lock.holder {
            Some(lease) if lease.token == token => Turn::Mine,
            Some(lease) => {
                let lease_end = lease.expires;
                if !lock.queue.iter().any(|w| w.token == token) {
                    let wake = wake.clone();
                    lock.queue.push_back(Waiter { token: token.to_owned(), ttl, wake });
                }
                Turn::Behind(lease_end)
            }
            None => {
                lock.holder = Some(Lease { token: token.to_owned(), expires: now + ttl });
                Turn::Mine
            }
        })
    }

    /// `token` stops waiting for lock `key`: out of the queue, and a lock handed to it meanwhile
    /// goes on to the next waiter.
    fn leave(&self, key: &str, token: &str) {
        self.with(key, |lock, _| {
            lock.queue.retain(|w| w.token != token);
            lock.release(token);
        });
    }
}

/// A locker's place in a lock's queue while it waits, given up on drop unless it came to hold
/// the lock: a waiter that runs out of time, or whose request is cancelled, never keeps a place
/// (which would stall those behind it) nor a lock handed to it as it left.
struct Place<'a> {
    locks: &'a Locks,
    key: &'a str,
    token: &'a str,
    holds: bool,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if !self.holds {
            self.locks.leave(self.key, self.token);
        }
    }
}

/// Writes `record` and its index entries. Entries that `previous` already has stay untouched: a
/// change that keeps the app id and `externalId` (most PATCHes) rewrites the record alone, and
/// every page a transaction leaves unchanged is one its commit need not copy.
fn write_record(
    tx: &redb::WriteTransaction,
    tenant: &str,
    kind: ResourceKind,
    record: &Record,
    previous: Option<&Record>,
) -> Result<(), StoreError> {
    let rkey = key(tenant, kind, &record.id);
    let mut records = tx.open_table(RECORDS).map_err(unavailable)?;
    records.insert(rkey.as_str(), encode(record)?.as_slice()).map_err(unavailable)?;
    if previous.is_none_or(|p| p.app_id != record.app_id) {
        let mut by_app = tx.open_table(BY_APP_ID).map_err(unavailable)?;
        if let Some(prev) = previous {
            by_app.remove(key(tenant, kind, &prev.app_id).as_str()).map_err(unavailable)?;
        }
        by_app.insert(key(tenant, kind, &record.app_id).as_str(), rkey.as_str()).map_err(unavailable)?;
    }
    let old_ext = previous.and_then(|p| p.external_id.as_ref());
    if old_ext != record.external_id.as_ref() {
        let mut by_ext = tx.open_table(BY_EXTERNAL_ID).map_err(unavailable)?;
        if let Some(e) = old_ext {
            by_ext.remove(key(tenant, kind, e).as_str()).map_err(unavailable)?;
        }
        if let Some(e) = &record.external_id {
            by_ext.insert(key(tenant, kind, e).as_str(), rkey.as_str()).map_err(unavailable)?;
        }
    }
    let old_stored = previous.map(|p| stored_keys(tenant, kind, p)).unwrap_or_default();
    let new_stored = stored_keys(tenant, kind, record);
    if old_stored != new_stored {
        let mut by_stored = tx.open_table(BY_STORED).map_err(unavailable)?;
        for k in old_stored.iter().filter(|k| !new_stored.contains(k)) {
            by_stored.remove(k.as_str()).map_err(unavailable)?;
        }
        for k in new_stored.iter().filter(|k| !old_stored.contains(k)) {
            by_stored.insert(k.as_str(), rkey.as_str()).map_err(unavailable)?;
        }
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
        let find = move |db: &Db| {
            let tx = db.redb.begin_read().map_err(unavailable)?;
            let t = tx.open_table(RECORDS).map_err(unavailable)?;
            t.get(k.as_str()).map_err(unavailable)?.map(|g| decode(g.value())).transpose()
        };
        self.read(tenant, kind, find, Option::as_slice)
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
        let owned_tenant = tenant.to_owned();
        let now = now.to_owned();
        let adopt = move |db: &Db| {
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
                // Read, not written: like every read, not held back for the disk.
                return Ok((out.into_iter().flatten().collect(), 0));
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
                // Another request adopted them all meanwhile: nothing to commit.
                Ok(if new.is_empty() { Outcome::Unchanged((result, new)) } else { Outcome::Wrote((result, new)) })
            };
            let cache_new = |(result, new): &(Vec<Record>, Vec<usize>), w: &super::cache::Writes<'_>| {
                for r in new.iter().filter_map(|&i| result.get(i)) {
                    w.set(&key(&tenant, kind, &r.id), key(&tenant, kind, &r.app_id), r);
                }
            };
            // Rare (a list naming objects never seen): it syncs, as a write alone would.
            db.write(write, cache_new, true).map(|((result, _), seq)| (result, seq))
        };
        let adopted = self.read(tenant, kind, adopt, |(records, _)| records.as_slice());
        Box::pin(async move {
            let (records, seq) = adopted.await?;
            self.durable(seq).await?;
            Ok(records)
        })
    }

    fn put<'a>(&'a self, tenant: &'a str, kind: ResourceKind, record: Record) -> StoreFuture<'a, Option<Record>> {
        let tenant = tenant.to_owned();
        self.blocking_write(move |db, sync| {
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
                    return Ok(Outcome::Unchanged(Some(h)));
                }
                write_record(tx, &tenant, kind, &record, previous.as_ref())?;
                Ok(Outcome::Wrote(None))
            };
            let cache = |_: &Option<Record>, w: &super::cache::Writes<'_>| {
                w.set(&key(&tenant, kind, &record.id), key(&tenant, kind, &record.app_id), &record);
            };
            db.write(write, cache, sync)
        })
    }

    fn delete<'a>(&'a self, tenant: &'a str, kind: ResourceKind, id: &'a str) -> StoreFuture<'a, ()> {
        let rkey = key(tenant, kind, id);
        let tenant = tenant.to_owned();
        self.blocking_write(move |db, sync| {
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
                Ok(Outcome::Wrote(()))
            };
            db.write(write, |(), w| w.remove(&rkey), sync)
        })
    }

    fn try_lock<'a>(
        &'a self,
        tenant: &'a str,
        name: &'a str,
        token: &'a LockToken,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move { Ok(self.locks.try_take(&lock_key(tenant, name), &token.0, ttl)) })
    }

    /// First come, first served: see `Locks`.
    fn lock<'a>(
        &'a self,
        tenant: &'a str,
        name: &'a str,
        ttl: Duration,
        wait: Duration,
    ) -> StoreFuture<'a, Option<LockToken>> {
        Box::pin(async move {
            let key = lock_key(tenant, name);
            let token = LockToken::new();
            let deadline = Instant::now() + wait;
            let wake = Arc::new(Notify::new());
            // From here until it holds the lock, this locker may be queued: leaving (at the deadline,
            // or when the request is cancelled and this future dropped) goes through the place's drop.
            let mut place = Place { locks: &self.locks, key: &key, token: &token.0, holds: false };
            loop {
                match self.locks.claim(&key, &token.0, ttl, &wake) {
                    Turn::Mine => {
                        place.holds = true;
                        return Ok(Some(token.clone()));
                    }
                    Turn::Behind(_) if Instant::now() >= deadline => return Ok(None),
                    // Woken by a hand-off, or at the holder's lease end to take over from a holder
                    // that never released (or, after a renewal, to look again).
                    Turn::Behind(lease_end) => tokio::select! {
                        () = wake.notified() => {}
                        () = tokio::time::sleep_until(lease_end.min(deadline)) => {}
                    },
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
            Ok(self.locks.with(&lock_key(tenant, name), |lock, now| match &mut lock.holder {
                Some(lease) if lease.token == token.0 => {
                    lease.expires = now + ttl;
                    true
                }
                _ => false,
            }))
        })
    }

    /// Hands the lock to the first waiter, if any.
    fn unlock<'a>(&'a self, tenant: &'a str, name: &'a str, token: LockToken) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.locks.with(&lock_key(tenant, name), |lock, _| lock.release(&token.0));
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

    /// A change rewrites exactly the index entries that changed (read from the file: no cache).
    #[tokio::test]
    async fn changed_index_entries_move_and_unchanged_ones_stay() {
        let dir = std::env::temp_dir().join(format!("scimbridge-store-{}", uuid::Uuid::new_v4()));
        let s = RedbStore::open(&dir.join("state.redb"), 0).unwrap();
        let mut r = Record::adopted("1", "now");
        r.external_id = Some("e1".into());
        r.stored.insert("userName".into(), "Ann".into());
        s.put("t", ResourceKind::User, r.clone()).await.unwrap();
        let mut same = r.clone();
        same.version = 2;
        s.put("t", ResourceKind::User, same).await.unwrap();
        let found = |rec: Option<Record>| rec.map(|x| (x.id, x.version));
        assert_eq!(found(s.by_app_id("t", ResourceKind::User, "1").await.unwrap()), Some((r.id.clone(), 2)));
        assert_eq!(found(s.by_external_id("t", ResourceKind::User, "e1").await.unwrap()), Some((r.id.clone(), 2)));
        assert_eq!(
            found(s.by_stored("t", ResourceKind::User, "userName", "ann").await.unwrap()),
            Some((r.id.clone(), 2))
        );
        let mut moved = r.clone();
        moved.version = 3;
        moved.app_id = "2".into();
        moved.external_id = Some("e2".into());
        moved.stored.insert("userName".into(), "Bea".into());
        s.put("t", ResourceKind::User, moved).await.unwrap();
        assert_eq!(s.by_app_id("t", ResourceKind::User, "1").await.unwrap(), None);
        assert_eq!(s.by_external_id("t", ResourceKind::User, "e1").await.unwrap(), None);
        assert_eq!(s.by_stored("t", ResourceKind::User, "userName", "ann").await.unwrap(), None);
        assert_eq!(found(s.by_app_id("t", ResourceKind::User, "2").await.unwrap()), Some((r.id.clone(), 3)));
        assert_eq!(found(s.by_external_id("t", ResourceKind::User, "e2").await.unwrap()), Some((r.id.clone(), 3)));
        assert_eq!(found(s.by_stored("t", ResourceKind::User, "userName", "bea").await.unwrap()), Some((r.id, 3)));
        let _ = std::fs::remove_dir_all(dir);
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

    fn group_record(n: usize) -> Record {
        Record {
            id: format!("u{n}"),
            app_id: format!("{n}"),
            external_id: None,
            created: "2026-01-01T00:00:00Z".into(),
            last_modified: "2026-01-01T00:00:00Z".into(),
            version: 1,
            stored: Default::default(),
        }
    }

    /// Writes behind one another commit unsynced and the last of them syncs for all: the disk
    /// syncs fewer times than it is written, and nothing is left unsynced. (That a write is
    /// answered only once synced, tests/tenancy.rs checks by killing the gateway.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_share_syncs() {
        let dir = std::env::temp_dir().join(format!("scimbridge-store-{}", uuid::Uuid::new_v4()));
        let s = RedbStore::open(&dir.join("state.redb"), DEFAULT_CACHE_BYTES).unwrap();
        let writes: Vec<_> = (0..64)
            .map(|n| {
                let s = s.clone();
                tokio::spawn(async move {
                    s.put("t", ResourceKind::User, group_record(n)).await.unwrap();
                })
            })
            .collect();
        for w in writes {
            w.await.unwrap();
        }
        assert_eq!(s.db.committed.load(Ordering::Acquire), 64);
        assert_eq!(s.db.synced.borrow().durable, 64, "the last write synced");
        let syncs = s.db.syncs.load(Ordering::Relaxed);
        assert!(syncs < 64, "{syncs} syncs for 64 writes");
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A write committed unsynced whose follower never comes is synced by itself.
    #[tokio::test]
    async fn an_unsynced_write_with_no_follower_syncs_by_itself() {
        let s = RedbStore::in_memory().unwrap();
        let rec = group_record(1);
        let (_, seq) =
            s.db.write(
                |tx| write_record(tx, "t", ResourceKind::User, &rec, None).map(|()| Outcome::Wrote(())),
                |_, _| {},
                false,
            )
            .unwrap();
        assert_eq!(s.db.synced.borrow().durable, 0, "not synced yet");
        tokio::time::timeout(Duration::from_secs(5), s.durable(seq)).await.expect("synced").unwrap();
        assert!(s.db.synced.borrow().durable >= seq);
    }

    const LONG: Duration = Duration::from_secs(10);

    /// Lock `name`'s holder token and its waiters' tokens, in queue order.
    fn lock_state(s: &RedbStore, name: &str) -> (Option<String>, Vec<String>) {
        let locks = s.locks.0.lock().unwrap();
        match locks.get(&lock_key("t", name)) {
            Some(l) => (l.holder.as_ref().map(|h| h.token.clone()), l.queue.iter().map(|w| w.token.clone()).collect()),
            None => (None, Vec::new()),
        }
    }

    fn no_lock_entries(s: &RedbStore) -> bool {
        s.locks.0.lock().unwrap().is_empty()
    }

    /// Starts a task that locks `name` (lease `ttl`, waiting up to `wait`) and reports `(i, token)`
    /// on `tx` when it returns, then lets it enqueue before the next one starts.
    async fn start_waiter(
        s: &RedbStore,
        name: &'static str,
        i: usize,
        ttl: Duration,
        wait: Duration,
        tx: &tokio::sync::mpsc::UnboundedSender<(usize, Option<LockToken>)>,
    ) -> tokio::task::JoinHandle<()> {
        let (s, tx) = (s.clone(), tx.clone());
        let task = tokio::spawn(async move {
            let got = s.lock("t", name, ttl, wait).await.unwrap();
            tx.send((i, got)).unwrap();
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        task
    }

    /// Each release hands the lock to the longest waiter, in the order they came.
    #[tokio::test]
    async fn lock_is_handed_over_first_come_first_served() {
        let s = RedbStore::in_memory().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut holder = s.lock("t", "g", LONG, Duration::ZERO).await.unwrap().unwrap();
        for i in 1..=5 {
            start_waiter(&s, "g", i, LONG, LONG, &tx).await;
        }
        assert_eq!(lock_state(&s, "g").1.len(), 5, "all five queued");
        let mut order = Vec::new();
        for _ in 0..5 {
            s.unlock("t", "g", holder).await.unwrap();
            let (i, token) = rx.recv().await.unwrap();
            let token = token.expect("a waiter gets the lock");
            assert_eq!(lock_state(&s, "g").0.as_deref(), Some(token.0.as_str()), "handed over, not freed");
            // Nobody else got it meanwhile.
            tokio::time::sleep(Duration::from_millis(5)).await;
            assert!(rx.try_recv().is_err(), "one holder at a time");
            order.push(i);
            holder = token;
        }
        assert_eq!(order, [1, 2, 3, 4, 5]);
        s.unlock("t", "g", holder).await.unwrap();
        assert!(no_lock_entries(&s));
    }

    /// A waiter whose wait ends leaves the queue; the one behind it still gets the lock.
    #[tokio::test]
    async fn a_waiter_that_gives_up_leaves_the_queue() {
        let s = RedbStore::in_memory().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let holder = s.lock("t", "g", LONG, Duration::ZERO).await.unwrap().unwrap();
        start_waiter(&s, "g", 1, LONG, Duration::from_millis(100), &tx).await;
        start_waiter(&s, "g", 2, LONG, LONG, &tx).await;
        assert_eq!(rx.recv().await.unwrap(), (1, None), "the first gave up");
        assert_eq!(lock_state(&s, "g").1.len(), 1, "and left the queue");
        s.unlock("t", "g", holder).await.unwrap();
        let (i, token) = rx.recv().await.unwrap();
        assert_eq!(i, 2);
        s.unlock("t", "g", token.expect("the second gets it")).await.unwrap();
        assert!(no_lock_entries(&s));
    }

    /// A waiter handed the lock as its wait ends (before it ran again) takes it: the lock is not
    /// left assigned to a waiter that has gone.
    #[tokio::test]
    async fn a_hand_off_racing_a_timeout_is_not_lost() {
        let s = RedbStore::in_memory().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let holder = s.lock("t", "g", LONG, Duration::ZERO).await.unwrap().unwrap();
        start_waiter(&s, "g", 1, LONG, Duration::from_millis(50), &tx).await;
        start_waiter(&s, "g", 2, LONG, LONG, &tx).await;
        // The first waiter's deadline passes while it cannot run (this test's runtime has one
        // thread, blocked here); then the lock is handed to it.
        std::thread::sleep(Duration::from_millis(100));
        s.unlock("t", "g", holder).await.unwrap();
        let (i, token) = rx.recv().await.unwrap();
        assert_eq!(i, 1);
        let token = token.expect("handed over in time: taken, not dropped");
        s.unlock("t", "g", token).await.unwrap();
        let (i, token) = rx.recv().await.unwrap();
        assert_eq!(i, 2);
        s.unlock("t", "g", token.unwrap()).await.unwrap();
        assert!(no_lock_entries(&s));
    }

    /// A waiter whose request is cancelled leaves the queue, and a lock handed to it just before
    /// goes on to the next waiter.
    #[tokio::test]
    async fn a_cancelled_waiter_passes_the_lock_on() {
        let s = RedbStore::in_memory().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let holder = s.lock("t", "g", LONG, Duration::ZERO).await.unwrap().unwrap();
        let first = start_waiter(&s, "g", 1, LONG, LONG, &tx).await;
        start_waiter(&s, "g", 2, LONG, LONG, &tx).await;
        let third = start_waiter(&s, "g", 3, LONG, LONG, &tx).await;
        third.abort();
        assert!(third.await.unwrap_err().is_cancelled());
        assert_eq!(lock_state(&s, "g").1.len(), 2, "the cancelled one left the queue");
        // Handed to the first, which is cancelled before it runs (one runtime thread, not yielded).
        s.unlock("t", "g", holder).await.unwrap();
        first.abort();
        assert!(first.await.unwrap_err().is_cancelled());
        let (i, token) = rx.recv().await.unwrap();
        assert_eq!(i, 2, "passed on");
        s.unlock("t", "g", token.unwrap()).await.unwrap();
        assert!(no_lock_entries(&s));
    }

    /// A holder that never releases holds the queue up for its lease only; the lease then handed
    /// over is the new holder's own.
    #[tokio::test]
    async fn an_abandoned_lease_passes_to_the_head_of_the_queue() {
        let s = RedbStore::in_memory().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let start = Instant::now();
        let dead = s.lock("t", "g", Duration::from_millis(200), Duration::ZERO).await.unwrap().unwrap();
        start_waiter(&s, "g", 1, Duration::from_millis(300), LONG, &tx).await;
        start_waiter(&s, "g", 2, LONG, LONG, &tx).await;
        let (i, first) = rx.recv().await.unwrap();
        let first_at = start.elapsed();
        assert_eq!(i, 1, "the head of the queue, not the other waiter woken by the lease's end");
        let first = first.expect("taken over");
        assert!(first_at >= Duration::from_millis(190) && first_at < Duration::from_secs(2), "{first_at:?}");
        assert!(!s.extend("t", "g", &dead, LONG).await.unwrap(), "the lost lease cannot be renewed");
        s.unlock("t", "g", dead).await.unwrap();
        let (holder, queue) = lock_state(&s, "g");
        assert_eq!((holder, queue.len()), (Some(first.0), 1), "nor released by its old holder");
        // The first waiter never releases either: its own 300 ms lease holds the second back.
        let (i, second) = rx.recv().await.unwrap();
        let second_at = start.elapsed();
        assert_eq!(i, 2);
        assert!(second_at >= first_at + Duration::from_millis(250), "{first_at:?} then {second_at:?}");
        s.unlock("t", "g", second.unwrap()).await.unwrap();
        assert!(no_lock_entries(&s));
    }

    /// `try_lock` never takes a lock ahead of its waiters, even one whose lease has run out.
    #[tokio::test]
    async fn try_lock_does_not_jump_the_queue() {
        let s = RedbStore::in_memory().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let _dead = s.lock("t", "g", Duration::from_millis(50), Duration::ZERO).await.unwrap().unwrap();
        start_waiter(&s, "g", 1, LONG, LONG, &tx).await;
        assert!(!s.try_lock("t", "g", &LockToken::new(), LONG).await.unwrap(), "held");
        // The lease ends while the waiter cannot run; try_lock finds it ended, and still the
        // waiter gets it.
        std::thread::sleep(Duration::from_millis(100));
        assert!(!s.try_lock("t", "g", &LockToken::new(), LONG).await.unwrap(), "queued");
        let (i, token) = rx.recv().await.unwrap();
        assert_eq!(i, 1);
        s.unlock("t", "g", token.unwrap()).await.unwrap();
        let free = LockToken::new();
        assert!(s.try_lock("t", "g", &free, LONG).await.unwrap(), "free, nobody queued");
        s.unlock("t", "g", free).await.unwrap();
        assert!(no_lock_entries(&s));
    }

    /// Keys nobody holds or waits for leave no entry behind, however their locks ended.
    #[tokio::test]
    async fn idle_locks_leave_no_entries() {
        let s = RedbStore::in_memory().unwrap();
        let short = Duration::from_millis(20);
        let a = s.lock("t", "a", LONG, short).await.unwrap().unwrap();
        assert!(s.lock("t", "a", LONG, short).await.unwrap().is_none(), "timed out");
        let stranger = LockToken::new();
        assert!(!s.extend("t", "b", &stranger, LONG).await.unwrap(), "nothing to extend");
        s.unlock("t", "c", stranger).await.unwrap();
        let b = s.lock("t", "b", short, short).await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
        s.unlock("t", "b", b).await.unwrap(); // after its lease ran out
        assert_eq!(s.locks.0.lock().unwrap().len(), 1, "only `a` is held");
        s.unlock("t", "a", a).await.unwrap();
        assert!(no_lock_entries(&s));
    }

    /// Many lockers at once on a multi-threaded runtime: each gets the lock, one at a time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_lockers_exclude_each_other() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let s = RedbStore::in_memory().unwrap();
        let (count, inside, most) =
            (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let (s, count, inside, most) = (s.clone(), count.clone(), inside.clone(), most.clone());
                tokio::spawn(async move {
                    let token = s.lock("t", "g", LONG, LONG).await.unwrap().expect("every locker gets it");
                    most.fetch_max(inside.fetch_add(1, SeqCst) + 1, SeqCst);
                    // A read-modify-write split by a yield: lost updates if two ran at once.
                    let seen = count.load(SeqCst);
                    tokio::task::yield_now().await;
                    count.store(seen + 1, SeqCst);
                    inside.fetch_sub(1, SeqCst);
                    s.unlock("t", "g", token).await.unwrap();
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(count.load(SeqCst), 32);
        assert_eq!(most.load(SeqCst), 1);
        assert!(no_lock_entries(&s));
    }
}
