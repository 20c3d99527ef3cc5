//! The embedded store: one redb file (crash-safe, copy-on-write B-trees), or memory for the demo.
//!
//! redb is synchronous, so every operation runs on tokio's blocking pool, never on a runtime thread.
//! Keys are `tenant \x1f kind \x1f id`; tenant ids cannot contain `\x1f` (they are validated), so no
//! tenant's key range overlaps another's.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{LockToken, Record, Store, StoreError, StoreFuture};
use crate::mapping::ResourceKind;

const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
const BY_APP_ID: TableDefinition<&str, &str> = TableDefinition::new("by_app_id");
const BY_EXTERNAL_ID: TableDefinition<&str, &str> = TableDefinition::new("by_external_id");
const BY_STORED: TableDefinition<&str, &str> = TableDefinition::new("by_stored");

/// The redb-backed [`Store`].
#[derive(Clone)]
pub struct RedbStore {
    db: Arc<Database>,
    /// Locks live in the process: the embedded store serves one process.
    locks: Arc<Locks>,
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
    /// Opens (or creates) the store file at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(unavailable)?;
        }
        let db = Database::create(path).map_err(unavailable)?;
        Self::init(db)
    }

    /// A store that lives in memory only (the demo, whose app is in memory too).
    pub fn in_memory() -> Result<Self, StoreError> {
        let db =
            Database::builder().create_with_backend(redb::backends::InMemoryBackend::new()).map_err(unavailable)?;
        Self::init(db)
    }

    fn init(db: Database) -> Result<Self, StoreError> {
        let tx = db.begin_write().map_err(unavailable)?;
        tx.open_table(RECORDS).map_err(unavailable)?;
        tx.open_table(BY_APP_ID).map_err(unavailable)?;
        tx.open_table(BY_EXTERNAL_ID).map_err(unavailable)?;
        tx.open_table(BY_STORED).map_err(unavailable)?;
        tx.commit().map_err(unavailable)?;
        Ok(Self { db: Arc::new(db), locks: Arc::default() })
    }

    /// Runs `f` on the blocking pool.
    fn blocking<'a, T: Send + 'static>(
        &'a self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'a, T> {
        let db = self.db.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || f(&db)).await.map_err(|e| StoreError::Unavailable(e.to_string()))?
        })
    }

    fn lookup(
        &self,
        index: TableDefinition<'static, &'static str, &'static str>,
        k: String,
    ) -> StoreFuture<'_, Option<Record>> {
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(unavailable)?;
            let idx = tx.open_table(index).map_err(unavailable)?;
            let Some(id_key) = idx.get(k.as_str()).map_err(unavailable)?.map(|g| g.value().to_owned()) else {
                return Ok(None);
            };
            let records = tx.open_table(RECORDS).map_err(unavailable)?;
            records.get(id_key.as_str()).map_err(unavailable)?.map(|g| decode(g.value())).transpose()
        })
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
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(unavailable)?;
            let t = tx.open_table(RECORDS).map_err(unavailable)?;
            t.get(k.as_str()).map_err(unavailable)?.map(|g| decode(g.value())).transpose()
        })
    }

    fn by_app_id<'a>(
        &'a self,
        tenant: &'a str,
        kind: ResourceKind,
        app_id: &'a str,
    ) -> StoreFuture<'a, Option<Record>> {
        self.lookup(BY_APP_ID, key(tenant, kind, app_id))
    }

    fn by_external_id<'a>(
        &'a self,
        tenant: &'a str,
        kind: ResourceKind,
        external_id: &'a str,
    ) -> StoreFuture<'a, Option<Record>> {
        self.lookup(BY_EXTERNAL_ID, key(tenant, kind, external_id))
    }

    fn by_stored<'a>(
        &'a self,
        tenant: &'a str,
        kind: ResourceKind,
        path: &'a str,
        value: &'a str,
    ) -> StoreFuture<'a, Option<Record>> {
        self.lookup(BY_STORED, key(tenant, kind, &format!("{path}\x1f{}", value.to_lowercase())))
    }

    fn adopt<'a>(
        &'a self,
        tenant: &'a str,
        kind: ResourceKind,
        app_ids: Vec<String>,
        now: &'a str,
    ) -> StoreFuture<'a, Vec<Record>> {
        let tenant = tenant.to_owned();
        let now = now.to_owned();
        self.blocking(move |db| {
            // Most lists only name known objects: try a read transaction first, write only if needed.
            let mut out: Vec<Option<Record>> = Vec::with_capacity(app_ids.len());
            {
                let tx = db.begin_read().map_err(unavailable)?;
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
            let tx = db.begin_write().map_err(unavailable)?;
            let mut result = Vec::with_capacity(app_ids.len());
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
                        write_record(&tx, &tenant, kind, &r, None)?;
                        r
                    }
                };
                result.push(rec);
            }
            tx.commit().map_err(unavailable)?;
            Ok(result)
        })
    }

    fn put<'a>(&'a self, tenant: &'a str, kind: ResourceKind, record: Record) -> StoreFuture<'a, Option<Record>> {
        let tenant = tenant.to_owned();
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(unavailable)?;
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
            write_record(&tx, &tenant, kind, &record, previous.as_ref())?;
            tx.commit().map_err(unavailable)?;
            Ok(None)
        })
    }

    fn delete<'a>(&'a self, tenant: &'a str, kind: ResourceKind, id: &'a str) -> StoreFuture<'a, ()> {
        let tenant = tenant.to_owned();
        let id = id.to_owned();
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(unavailable)?;
            {
                let mut records = tx.open_table(RECORDS).map_err(unavailable)?;
                let prev =
                    records.remove(key(&tenant, kind, &id).as_str()).map_err(unavailable)?.map(|g| decode(g.value()));
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
            }
            tx.commit().map_err(unavailable)?;
            Ok(())
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
            let tx = db.begin_read().map_err(unavailable)?;
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
            let s = RedbStore::open(&path).unwrap();
            s.put("t", ResourceKind::Group, rec).await.unwrap();
        }
        let s = RedbStore::open(&path).unwrap();
        assert_eq!(s.get("t", ResourceKind::Group, "g").await.unwrap().unwrap().app_id, "501");
        let _ = std::fs::remove_dir_all(dir);
    }
}
