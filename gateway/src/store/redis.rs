//! The shared store for replicas: Redis, through one multiplexed, self-reconnecting connection
//! (`redis::aio::ConnectionManager`).
//!
//! Layout, per tenant under one hash tag so that a tenant's keys share a Redis Cluster slot and its
//! scripts stay atomic there:
//!
//! ```text
//! <prefix>:{<tenant>}:r:<Kind>:<id>        the record (JSON)
//! <prefix>:{<tenant>}:x:<Kind>:<id>        the record's index keys (JSON list), for exact removal
//! <prefix>:{<tenant>}:a:<Kind>:<app id>    → id
//! <prefix>:{<tenant>}:e:<Kind>:<ext id>    → id
//! <prefix>:{<tenant>}:s:<Kind>:<path>\x1f<lowercased value>  → id
//! ```
//!
//! Index keys are computed here, in Rust, and written with the record by one Lua script, so the
//! record and its indexes change together or not at all, and Unicode case folding is Rust's.
//! Tenant ids are validated (`a-z 0-9 -`), so no tenant's keys overlap another's.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};

use super::{LockToken, Record, Store, StoreError, StoreFuture};
use crate::mapping::ResourceKind;

/// Writes a record and its indexes unless another record holds its app id (then returns that
/// record). KEYS: record, index list, app-id index. ARGV: id, record JSON, record key prefix,
/// index list JSON.
const PUT: &str = r"
local holder = redis.call('GET', KEYS[3])
if holder and holder ~= ARGV[1] then
  local held = redis.call('GET', ARGV[3] .. holder)
  if held then return held end
end
local old = redis.call('GET', KEYS[2])
if old then
  for _, k in ipairs(cjson.decode(old)) do
    if redis.call('GET', k) == ARGV[1] then redis.call('DEL', k) end
  end
end
for _, k in ipairs(cjson.decode(ARGV[4])) do redis.call('SET', k, ARGV[1]) end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[4])
return false
";

/// Removes a record and the index keys that still point at it. KEYS: record, index list. ARGV: id.
const DELETE: &str = r"
local old = redis.call('GET', KEYS[2])
if old then
  for _, k in ipairs(cjson.decode(old)) do
    if redis.call('GET', k) == ARGV[1] then redis.call('DEL', k) end
  end
end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
";

/// Follows an index key to its record in one round trip. KEYS: index key. ARGV: record key prefix.
const LOOKUP: &str = r"
local id = redis.call('GET', KEYS[1])
if not id then return false end
return redis.call('GET', ARGV[1] .. id)
";

/// GCRA on Redis's own clock (so replicas with skewed clocks agree). KEYS: the quota's key.
/// ARGV: emission interval and burst tolerance, in microseconds. Returns 0 (admitted) or the
/// wait in microseconds.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local allow_at = tat + interval - tolerance
if now < allow_at then return math.ceil(allow_at - now) end
redis.call('SET', KEYS[1], string.format('%d', tat + interval), 'PX', math.ceil(tolerance / 1000) + 1000)
return 0
";

/// Releases a lock only for its holder. KEYS: the lock. ARGV: the holder's token.
const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// Where to reach Redis and how to name keys.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS.
    pub url: String,
    /// First part of every key, so several deployments can share one Redis.
    pub prefix: String,
    /// Timeout of each command; beyond it the request answers 503.
    pub timeout: Duration,
}

/// The Redis-backed [`Store`].
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
    put: Script,
    delete: Script,
    lookup: Script,
    gcra: Script,
    unlock: Script,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn decode(text: &str) -> Result<Record, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl RedisStore {
    /// Connects; fails when Redis cannot be reached now (later outages are answered per request
    /// and healed by reconnecting).
    pub async fn connect(config: &RedisConfig) -> Result<Self, StoreError> {
        let client = redis::Client::open(config.url.as_str()).map_err(unavailable)?;
        let manager_config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(2);
        let conn = tokio::time::timeout(
            config.timeout.max(Duration::from_secs(1)) * 3,
            ConnectionManager::new_with_config(client, manager_config),
        )
        .await
        .map_err(|_| StoreError::Unavailable("connecting to Redis timed out".into()))?
        .map_err(unavailable)?;
        Ok(Self {
            conn,
            prefix: config.prefix.clone(),
            timeout: config.timeout,
            put: Script::new(PUT),
            delete: Script::new(DELETE),
            lookup: Script::new(LOOKUP),
            gcra: Script::new(GCRA),
            unlock: Script::new(UNLOCK),
        })
    }

    fn base(&self, tenant: &str) -> String {
        format!("{}:{{{tenant}}}:", self.prefix)
    }

    fn record_prefix(&self, tenant: &str, kind: ResourceKind) -> String {
        format!("{}r:{}:", self.base(tenant), kind.name())
    }

    fn key(&self, tenant: &str, part: &str, kind: ResourceKind, id: &str) -> String {
        format!("{}{part}:{}:{id}", self.base(tenant), kind.name())
    }

    fn stored_key(&self, tenant: &str, kind: ResourceKind, path: &str, value: &str) -> String {
        self.key(tenant, "s", kind, &format!("{path}\x1f{}", value.to_lowercase()))
    }

    /// Every index key of `r`.
    fn index_keys(&self, tenant: &str, kind: ResourceKind, r: &Record) -> Vec<String> {
        let mut keys = vec![self.key(tenant, "a", kind, &r.app_id)];
        if let Some(e) = &r.external_id {
            keys.push(self.key(tenant, "e", kind, e));
        }
        keys.extend(r.stored.iter().filter_map(|(p, v)| v.as_str().map(|s| self.stored_key(tenant, kind, p, s))));
        keys
    }

    /// Runs one Redis operation within the command timeout.
    async fn run<T>(&self, f: impl Future<Output = redis::RedisResult<T>>) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r.map_err(unavailable),
            Err(_) => Err(StoreError::Unavailable("Redis did not answer in time".into())),
        }
    }

    async fn lookup_key(
        &self,
        tenant: &str,
        kind: ResourceKind,
        index_key: String,
    ) -> Result<Option<Record>, StoreError> {
        let mut conn = self.conn.clone();
        let prefix = self.record_prefix(tenant, kind);
        let mut inv = self.lookup.key(index_key);
        inv.arg(prefix);
        let found: Option<String> = self.run(inv.invoke_async(&mut conn)).await?;
        found.as_deref().map(decode).transpose()
    }

    /// Writes `record` unless another record holds its app id; returns that holder.
    async fn put_record(
        &self,
        tenant: &str,
        kind: ResourceKind,
        record: &Record,
    ) -> Result<Option<Record>, StoreError> {
        let json = serde_json::to_string(record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let index = serde_json::to_string(&self.index_keys(tenant, kind, record))
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut inv = self.put.key(self.key(tenant, "r", kind, &record.id));
        inv.key(self.key(tenant, "x", kind, &record.id))
            .key(self.key(tenant, "a", kind, &record.app_id))
            .arg(&record.id)
            .arg(json)
            .arg(self.record_prefix(tenant, kind))
            .arg(index);
        let mut conn = self.conn.clone();
        let holder: Option<String> = self.run(inv.invoke_async(&mut conn)).await?;
        holder.as_deref().map(decode).transpose()
    }

    /// Every key of `tenant` matching `<base><part>*`, by SCAN (never KEYS, which blocks Redis).
    async fn keys_of(&self, tenant: &str, part: &str) -> Result<Vec<String>, StoreError> {
        let base = self.base(tenant).replace('[', "\\[").replace('{', "\\{").replace('}', "\\}");
        let pattern = format!("{base}{part}*");
        let mut conn = self.conn.clone();
        let (mut cursor, mut out): (u64, Vec<String>) = (0, Vec::new());
        loop {
            let (next, keys): (u64, Vec<String>) = self
                .run(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(500)
                        .query_async(&mut conn),
                )
                .await?;
            out.extend(keys);
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
    }

    /// Deletes every key of `tenant`, locks and rate-limit state included; returns how many.
    /// Tests clean up with it; `tenant purge` goes through records and leaves the rest to expire.
    #[cfg(test)]
    async fn purge_keys(&self, tenant: &str) -> Result<u64, StoreError> {
        let keys = self.keys_of(tenant, "").await?;
        let mut conn = self.conn.clone();
        let mut removed = 0;
        for chunk in keys.chunks(500) {
            let n: u64 = self.run(conn.del(chunk)).await?;
            removed += n;
        }
        Ok(removed)
    }
}

impl crate::ratelimit::SharedLimiter for RedisStore {
    fn admit<'a>(
        &'a self,
        tenant: &'a str,
        key: &'a str,
        per_second: u32,
        burst: u32,
    ) -> crate::ratelimit::SharedFuture<'a> {
        Box::pin(async move {
            let interval = 1_000_000 / u64::from(per_second.max(1));
            let tolerance = interval * u64::from(burst.max(1));
            let mut inv = self.gcra.key(format!("{}rl:{key}", self.base(tenant)));
            inv.arg(interval).arg(tolerance);
            let mut conn = self.conn.clone();
            let wait_us: u64 = self.run(inv.invoke_async(&mut conn)).await.map_err(|e| e.to_string())?;
            Ok(if wait_us == 0 { Ok(()) } else { Err(Duration::from_micros(wait_us)) })
        })
    }
}

impl Store for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn get<'a>(&'a self, tenant: &'a str, kind: ResourceKind, id: &'a str) -> StoreFuture<'a, Option<Record>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let found: Option<String> = self.run(conn.get(self.key(tenant, "r", kind, id))).await?;
            found.as_deref().map(decode).transpose()
        })
    }

    fn by_app_id<'a>(
        &'a self,
        tenant: &'a str,
        kind: ResourceKind,
        app_id: &'a str,
    ) -> StoreFuture<'a, Option<Record>> {
        Box::pin(self.lookup_key(tenant, kind, self.key(tenant, "a", kind, app_id)))
    }

    fn by_external_id<'a>(
        &'a self,
        tenant: &'a str,
        kind: ResourceKind,
        external_id: &'a str,
    ) -> StoreFuture<'a, Option<Record>> {
        Box::pin(self.lookup_key(tenant, kind, self.key(tenant, "e", kind, external_id)))
    }

    fn by_stored<'a>(
        &'a self,
        tenant: &'a str,
        kind: ResourceKind,
        path: &'a str,
        value: &'a str,
    ) -> StoreFuture<'a, Option<Record>> {
        Box::pin(self.lookup_key(tenant, kind, self.stored_key(tenant, kind, path, value)))
    }

    fn adopt<'a>(
        &'a self,
        tenant: &'a str,
        kind: ResourceKind,
        app_ids: Vec<String>,
        now: &'a str,
    ) -> StoreFuture<'a, Vec<Record>> {
        Box::pin(async move {
            if app_ids.is_empty() {
                return Ok(Vec::new());
            }
            // Known objects (the usual case) in two round trips, whatever the page size.
            let mut conn = self.conn.clone();
            let index: Vec<String> = app_ids.iter().map(|a| self.key(tenant, "a", kind, a)).collect();
            let ids: Vec<Option<String>> = self.run(conn.mget(&index)).await?;
            let record_keys: Vec<String> =
                ids.iter().flatten().map(|id| format!("{}{id}", self.record_prefix(tenant, kind))).collect();
            let mut records: Vec<Option<String>> =
                if record_keys.is_empty() { Vec::new() } else { self.run(conn.mget(&record_keys)).await? };
            records.reverse();
            let mut out = Vec::with_capacity(app_ids.len());
            for (app_id, id) in app_ids.iter().zip(&ids) {
                let found = match id {
                    Some(_) => records.pop().flatten().as_deref().map(decode).transpose()?,
                    None => None,
                };
                let record = match found {
                    Some(r) => r,
                    None => {
                        // New to the gateway: the PUT script creates it unless another replica just did.
                        let fresh = Record::adopted(app_id, now);
                        match self.put_record(tenant, kind, &fresh).await? {
                            Some(holder) => holder,
                            None => fresh,
                        }
                    }
                };
                out.push(record);
            }
            Ok(out)
        })
    }

    fn put<'a>(&'a self, tenant: &'a str, kind: ResourceKind, record: Record) -> StoreFuture<'a, Option<Record>> {
        Box::pin(async move { self.put_record(tenant, kind, &record).await })
    }

    fn delete<'a>(&'a self, tenant: &'a str, kind: ResourceKind, id: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut inv = self.delete.key(self.key(tenant, "r", kind, id));
            inv.key(self.key(tenant, "x", kind, id)).arg(id);
            let mut conn = self.conn.clone();
            let _: i64 = self.run(inv.invoke_async(&mut conn)).await?;
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
        Box::pin(async move {
            let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            let mut set = redis::cmd("SET");
            set.arg(format!("{}lock:{name}", self.base(tenant))).arg(&token.0).arg("NX").arg("PX").arg(ttl_ms);
            let mut conn = self.conn.clone();
            let taken: Option<String> = self.run(set.query_async(&mut conn)).await?;
            Ok(taken.is_some())
        })
    }

    fn unlock<'a>(&'a self, tenant: &'a str, name: &'a str, token: LockToken) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut inv = self.unlock.key(format!("{}lock:{name}", self.base(tenant)));
            inv.arg(token.0);
            let mut conn = self.conn.clone();
            let _: i64 = self.run(inv.invoke_async(&mut conn)).await?;
            Ok(())
        })
    }

    fn scan<'a>(&'a self, tenant: &'a str) -> StoreFuture<'a, Vec<(ResourceKind, Record)>> {
        Box::pin(async move {
            let keys = self.keys_of(tenant, "r:").await?;
            let mut conn = self.conn.clone();
            let mut out = Vec::with_capacity(keys.len());
            for chunk in keys.chunks(500) {
                let values: Vec<Option<String>> = self.run(conn.mget(chunk)).await?;
                for (key, value) in chunk.iter().zip(values) {
                    // Deleted between SCAN and MGET: nothing to export.
                    let Some(text) = value else { continue };
                    let kind = key.rsplit(':').nth(1).and_then(ResourceKind::from_name);
                    let kind = kind.ok_or_else(|| StoreError::Corrupt(format!("key `{key}`")))?;
                    out.push((kind, decode(&text)?));
                }
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Redis the tests use: `SCIMBRIDGE_TEST_REDIS_URL`, else the local server CI starts.
    fn config() -> RedisConfig {
        RedisConfig {
            url: std::env::var("SCIMBRIDGE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
            prefix: format!("scimbridge-test-{}", uuid::Uuid::new_v4().simple()),
            timeout: Duration::from_secs(2),
        }
    }

    #[tokio::test]
    async fn behaves_as_every_store_must() {
        let s = RedisStore::connect(&config()).await.expect("a Redis server for the store tests");
        super::super::suite::run_all(&s, "t").await;
        for case in ["a", "b", "c", "d", "e", "f", "g"] {
            s.purge_keys(&format!("t-{case}")).await.unwrap();
            s.purge_keys(&format!("t-{case}-other")).await.unwrap();
        }
    }

    #[tokio::test]
    async fn keys_are_tagged_by_tenant_and_purged_whole() {
        let s = RedisStore::connect(&config()).await.expect("a Redis server for the store tests");
        s.adopt("acme", ResourceKind::User, vec!["1".into(), "2".into()], "now").await.unwrap();
        s.adopt("acme-eu", ResourceKind::User, vec!["1".into()], "now").await.unwrap();
        let mut conn = s.conn.clone();
        let keys: Vec<String> = conn.keys(format!("{}:*", s.prefix)).await.unwrap();
        assert!(keys.iter().all(|k| k.contains(":{acme}:") || k.contains(":{acme-eu}:")), "{keys:?}");
        // Purging one tenant leaves its neighbour (whose id it prefixes) alone.
        assert_eq!(s.purge_keys("acme").await.unwrap(), 6);
        assert!(s.by_app_id("acme", ResourceKind::User, "1").await.unwrap().is_none());
        assert!(s.by_app_id("acme-eu", ResourceKind::User, "1").await.unwrap().is_some());
        s.purge_keys("acme-eu").await.unwrap();
    }

    #[tokio::test]
    async fn the_shared_limit_admits_the_burst_then_the_rate() {
        use crate::ratelimit::SharedLimiter;
        let s = RedisStore::connect(&config()).await.expect("a Redis server for the store tests");
        for _ in 0..3 {
            assert_eq!(s.admit("t", "all", 2, 3).await, Ok(Ok(())));
        }
        let wait = s.admit("t", "all", 2, 3).await.unwrap().unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(500), "{wait:?}");
        assert_eq!(s.admit("t", "other", 2, 3).await, Ok(Ok(())), "keys are separate quotas");
        tokio::time::sleep(wait).await;
        assert_eq!(s.admit("t", "all", 2, 3).await, Ok(Ok(())), "admitted again after the wait");
        s.purge_keys("t").await.unwrap();
    }

    #[tokio::test]
    async fn an_unreachable_server_is_unavailable_not_a_panic() {
        let c = RedisConfig { url: "redis://127.0.0.1:1".into(), ..config() };
        assert!(matches!(RedisStore::connect(&c).await, Err(StoreError::Unavailable(_))));
    }
}
