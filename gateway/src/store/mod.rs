//! What the gateway must remember and the app cannot hold: SCIM id ↔ app id, `externalId` when the
//! app has no field for it, and `meta` timestamps.
//!
//! Every key is scoped by tenant and resource type, so one tenant's ids can never name another's
//! records. [`Store`] is the seam: `redb` (embedded, the default, one process; its hot reads come
//! from `cache`) and `redis` (shared by replicas) implement it, `suite` holds the tests both must
//! pass, and `instrumented` wraps either with a duration metric per call and a span per call that
//! waits.

pub mod cache;
pub mod instrumented;
pub mod redb;
pub mod redis;
#[cfg(test)]
mod suite;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::mapping::ResourceKind;
use crate::telemetry::{self, personal};

/// A store failure. Callers answer 503: the state is unknown, never guessed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store data is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// A short fixed name, for spans and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "unavailable",
            Self::Corrupt(_) => "corrupt",
        }
    }
}

/// What the store holds per resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The SCIM id the gateway issued.
    pub id: String,
    /// The app's id as JSON text (`1001`, `"a1b2"`), which keeps its type for request bodies.
    pub app_id: String,
    /// `externalId` as last written through the gateway: the value itself when the app cannot hold
    /// it, and an index for `externalId eq` filters on apps that cannot search it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// RFC 3339.
    pub created: String,
    /// RFC 3339.
    pub last_modified: String,
    /// Bumped by every change made through the gateway; the ETag is `W/"<version>"`.
    #[serde(default = "first_version")]
    pub version: u64,
    /// Attributes the app cannot hold, kept by the gateway (`stored` mapping lines), by SCIM path.
    /// String values are indexed case-insensitively for `eq` filters.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub stored: serde_json::Map<String, serde_json::Value>,
}

fn first_version() -> u64 {
    1
}

impl Record {
    /// A fresh record, under a new SCIM id, for an app object the gateway sees for the first time.
    pub fn adopted(app_id: &str, now: &str) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            app_id: app_id.to_owned(),
            external_id: None,
            created: now.to_owned(),
            last_modified: now.to_owned(),
            version: 1,
            stored: Default::default(),
        }
    }

    /// The weak ETag of this version (RFC 7644 §3.14).
    pub fn etag(&self) -> String {
        format!("W/\"{}\"", self.version)
    }
}

/// A boxed future, which keeps [`Store`] usable as a trait object.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Tenant-scoped persistence of [`Record`]s with lookups by SCIM id, app id and externalId.
pub trait Store: Send + Sync + 'static {
    /// Which store this is (`redb`, `redis`): a metric label and span attribute.
    fn kind(&self) -> &'static str;

    /// The record with SCIM id `id`.
    fn get<'a>(&'a self, tenant: &'a str, kind: ResourceKind, id: &'a str) -> StoreFuture<'a, Option<Record>>;

    /// The record of the app object with `app_id`.
    fn by_app_id<'a>(&'a self, tenant: &'a str, kind: ResourceKind, app_id: &'a str)
    -> StoreFuture<'a, Option<Record>>;

    /// The record whose store-held `externalId` is `external_id`.
    fn by_external_id<'a>(
        &'a self,
        tenant: &'a str,
        kind: ResourceKind,
        external_id: &'a str,
    ) -> StoreFuture<'a, Option<Record>>;

    /// The record whose stored attribute `path` equals `value` (strings compared case-insensitively).
    fn by_stored<'a>(
        &'a self,
        tenant: &'a str,
        kind: ResourceKind,
        path: &'a str,
        value: &'a str,
    ) -> StoreFuture<'a, Option<Record>>;

    /// Records for app ids, in order, creating records (fresh SCIM ids, timestamps `now`) for app
    /// objects the gateway has not seen yet, in one transaction.
    fn adopt<'a>(
        &'a self,
        tenant: &'a str,
        kind: ResourceKind,
        app_ids: Vec<String>,
        now: &'a str,
    ) -> StoreFuture<'a, Vec<Record>>;

    /// Inserts or replaces `record` and its indexes. If another record holds the same app id, that
    /// record is returned and nothing is written (the app object was adopted concurrently).
    fn put<'a>(&'a self, tenant: &'a str, kind: ResourceKind, record: Record) -> StoreFuture<'a, Option<Record>>;

    /// Removes the record and its indexes; absent is fine.
    fn delete<'a>(&'a self, tenant: &'a str, kind: ResourceKind, id: &'a str) -> StoreFuture<'a, ()>;

    /// Every record of a tenant, by kind and id. For export and migration only: never on a
    /// request's path.
    fn scan<'a>(&'a self, tenant: &'a str) -> StoreFuture<'a, Vec<(ResourceKind, Record)>>;

    /// Takes the tenant's lock `name` for `token` and at most `ttl` if nobody (in this process or
    /// another replica) holds it now; `false` if someone does.
    fn try_lock<'a>(
        &'a self,
        tenant: &'a str,
        name: &'a str,
        token: &'a LockToken,
        ttl: Duration,
    ) -> StoreFuture<'a, bool>;

    /// Takes the tenant's lock `name` for at most `ttl`, waiting up to `wait` for its holder;
    /// `None` if it is still held then. By default waiters poll, in no order; the embedded store
    /// overrides this and hands its locks over first come, first served.
    fn lock<'a>(
        &'a self,
        tenant: &'a str,
        name: &'a str,
        ttl: Duration,
        wait: Duration,
    ) -> StoreFuture<'a, Option<LockToken>> {
        Box::pin(async move {
            let token = LockToken::new();
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                if self.try_lock(tenant, name, &token, ttl).await? {
                    return Ok(Some(token));
                }
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    return Ok(None);
                }
                tokio::time::sleep_until((now + LOCK_POLL).min(deadline)).await;
            }
        })
    }

    /// Extends a held lock to expire `ttl` from now; `false` (nothing changed) if `token` no
    /// longer holds it.
    fn extend<'a>(
        &'a self,
        tenant: &'a str,
        name: &'a str,
        token: &'a LockToken,
        ttl: Duration,
    ) -> StoreFuture<'a, bool>;

    /// Releases a lock taken with [`Store::lock`]; a lock that expired and was taken by another
    /// holder since is left alone.
    fn unlock<'a>(&'a self, tenant: &'a str, name: &'a str, token: LockToken) -> StoreFuture<'a, ()>;
}

/// Proof of holding a lock: a random value only its holder knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockToken(pub String);

impl LockToken {
    /// A fresh token.
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }
}

impl Default for LockToken {
    fn default() -> Self {
        Self::new()
    }
}

/// A held lock: a short lease, renewed in the background while the guard lives, and released when
/// it is dropped, also when the request holding it is cancelled (a client that disconnects, a
/// request timeout). A process that dies (or loses its store) stops renewing, so its locks free
/// themselves within one lease, however long its requests were meant to take.
pub struct LockGuard {
    store: Arc<dyn Store>,
    tenant: String,
    name: String,
    token: Option<LockToken>,
    renewal: Option<tokio::task::JoinHandle<()>>,
}

impl LockGuard {
    /// Takes the tenant's lock `name` as a lease of `ttl` (see [`Store::lock`]), renewed every
    /// third of it; `None` if still held by another after `wait`.
    pub async fn acquire(
        store: &Arc<dyn Store>,
        tenant: &str,
        name: &str,
        ttl: Duration,
        wait: Duration,
    ) -> Result<Option<Self>, StoreError> {
        let Some(token) = store.lock(tenant, name, ttl, wait).await? else { return Ok(None) };
        let renewal = renew(store.clone(), tenant.to_owned(), name.to_owned(), token.clone(), ttl);
        // Renewals belong to the write's trace.
        let renewal = tokio::spawn(telemetry::inherit(renewal));
        Ok(Some(Self {
            store: store.clone(),
            tenant: tenant.to_owned(),
            name: name.to_owned(),
            token: Some(token),
            renewal: Some(renewal),
        }))
    }
}

/// Keeps a lease alive until aborted, or until it is lost (expired while the store was out of
/// reach, and perhaps taken by another): then the holder is no longer protected, which is logged.
async fn renew(store: Arc<dyn Store>, tenant: String, name: String, token: LockToken, ttl: Duration) {
    let every = ttl / 3;
    loop {
        tokio::time::sleep(every).await;
        match store.extend(&tenant, &name, &token, ttl).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(tenant, lock = %personal(&name), "a lock's lease was lost while held; a concurrent change may interleave");
                return;
            }
            // One failed renewal leaves two more before the lease runs out.
            Err(e) => tracing::warn!(tenant, lock = %personal(&name), error = %e, "cannot renew a lock's lease"),
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
        let Some(token) = self.token.take() else { return };
        let (store, tenant, name) =
            (self.store.clone(), std::mem::take(&mut self.tenant), std::mem::take(&mut self.name));
        // Drop cannot wait; outside a runtime (never in the server) the lock simply expires.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            // In the span that held the lock, so the release shows in the request's trace.
            let release = async move {
                if let Err(e) = store.unlock(&tenant, &name, token).await {
                    tracing::warn!(tenant, error = %e, "cannot release a lock; it expires by itself");
                }
            };
            rt.spawn(telemetry::inherit(release));
        }
    }
}

/// How often a waiting lock looks again, where the store cannot say when it is released.
const LOCK_POLL: Duration = Duration::from_millis(10);

/// Removes every record of a tenant; returns how many.
pub async fn purge(store: &dyn Store, tenant: &str) -> Result<usize, StoreError> {
    let all = store.scan(tenant).await?;
    for (kind, r) in &all {
        store.delete(tenant, *kind, &r.id).await?;
    }
    Ok(all.len())
}
