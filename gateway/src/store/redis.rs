//! The shared store for replicas: Redis, through one multiplexed, self-reconnecting connection
//! (`redis::aio::ConnectionManager`), or a Redis Cluster through the cluster client (which follows
//! slot moves and failovers by itself). Either may use TLS with a private CA and a client
//! certificate, and ACL users.
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

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{AsyncCommands, Cmd, FromRedisValue, Pipeline, RedisFuture, Script, Value};

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

/// GCRA on Redis's own clock (so replicas with skewed clocks agree), in its reserving form: the
/// next slot is at `tat - tau`; it is taken unless it lies more than `max_wait` away. KEYS: the
/// quota's key. ARGV: emission interval, tau (how far a burst runs ahead) and max wait (-1: none),
/// in microseconds. Returns {1, wait} (reserved: go after `wait`) or {0, wait} (refused).
const RESERVE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local wait = tat - tau - now
if wait < 0 then wait = 0 end
if max_wait >= 0 and wait > max_wait then return {0, wait} end
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1000)
return {1, wait}
";

/// Releases a lock only for its holder. KEYS: the lock. ARGV: the holder's token.
const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// Extends a lock's lease only for its holder. KEYS: the lock. ARGV: the holder's token, the new
/// lease in milliseconds.
const EXTEND: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
";

/// Where to reach Redis and how to name keys.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`, `rediss://` for TLS, or
    /// `redis-cluster://[user:password@]host:port,host:port…` (`rediss-cluster://` for TLS) for
    /// a Redis Cluster given by some of its nodes.
    pub url: String,
    /// First part of every key, so several deployments can share one Redis.
    pub prefix: String,
    /// Timeout of each command; beyond it the request answers 503.
    pub timeout: Duration,
    /// Trust and identity for TLS connections.
    pub tls: RedisTls,
}

/// TLS material for `rediss://` connections, as PEM. Without a CA the system's roots are trusted.
#[derive(Clone, Default)]
pub struct RedisTls {
    /// Certificates of the CA that signed the server's certificate.
    pub ca: Option<Vec<u8>>,
    /// Client certificate chain and private key, for servers that require client authentication.
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client key is a secret: say only whether one is set.
        f.debug_struct("RedisTls").field("ca", &self.ca.is_some()).field("client", &self.client.is_some()).finish()
    }
}

impl RedisTls {
    fn certificates(&self) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: self
                .client
                .as_ref()
                .map(|(cert, key)| redis::ClientTlsConfig { client_cert: cert.clone(), client_key: key.clone() }),
            root_cert: self.ca.clone(),
        }
    }

    fn is_set(&self) -> bool {
        self.ca.is_some() || self.client.is_some()
    }
}

/// What a store URL names: one server, or a cluster by some of its nodes (each a plain URL).
#[derive(Debug, PartialEq, Eq)]
enum Topology {
    Single(String),
    Cluster(Vec<String>),
}

impl Topology {
    /// Reads a store URL. A cluster URL lists nodes after one shared `user:password@`; Redis
    /// Cluster has only database 0, so a path is refused.
    fn parse(url: &str) -> Result<Self, StoreError> {
        let cluster = |scheme: &str, rest: &str| -> Result<Self, StoreError> {
            let (auth, hosts) = match rest.rsplit_once('@') {
                Some((auth, hosts)) => (format!("{auth}@"), hosts),
                None => (String::new(), rest),
            };
            let hosts = hosts.strip_suffix('/').unwrap_or(hosts);
            let nodes: Vec<String> = hosts.split(',').map(str::trim).map(|h| format!("{scheme}://{auth}{h}")).collect();
            if hosts.split(',').any(|h| h.trim().is_empty() || h.contains('/')) {
                return Err(StoreError::Unavailable(
                    "a cluster URL lists host:port nodes separated by commas, without a database".into(),
                ));
            }
            Ok(Self::Cluster(nodes))
        };
        if let Some(rest) = url.strip_prefix("redis-cluster://") {
            cluster("redis", rest)
        } else if let Some(rest) = url.strip_prefix("rediss-cluster://") {
            cluster("rediss", rest)
        } else if url.starts_with("redis://") || url.starts_with("rediss://") {
            Ok(Self::Single(url.to_owned()))
        } else {
            Err(StoreError::Unavailable(
                "a Redis store URL starts with redis://, rediss://, redis-cluster:// or rediss-cluster://".into(),
            ))
        }
    }
}

/// One server's self-reconnecting connection, or the cluster client's: both multiplexed, both
/// cheap to clone per command.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

impl Conn {
    /// Runs a keyless command (SCAN) on the node that holds `key`'s slot: in a cluster the client
    /// would otherwise pick any node.
    async fn on_node_of<T: FromRedisValue>(&mut self, key: &str, cmd: Cmd) -> redis::RedisResult<T> {
        match self {
            Self::Single(c) => cmd.query_async(c).await,
            Self::Cluster(c) => {
                let route = Route::with_key(key.as_bytes(), SlotAddr::Master);
                let value =
                    c.route_command(cmd, RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route))).await?;
                Ok(T::from_redis_value(value)?)
            }
        }
    }
}

/// The Redis-backed [`Store`].
#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    prefix: String,
    timeout: Duration,
    put: Script,
    delete: Script,
    lookup: Script,
    reserve: Script,
    unlock: Script,
    extend: Script,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// A TTL in whole milliseconds, at least 1 (Redis refuses 0).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn decode(text: &str) -> Result<Record, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl RedisStore {
    /// Connects; fails when Redis cannot be reached now (later outages are answered per request
    /// and healed by reconnecting).
    pub async fn connect(config: &RedisConfig) -> Result<Self, StoreError> {
        let connecting = async {
            match Topology::parse(&config.url)? {
                Topology::Single(url) => {
                    let client = if config.tls.is_set() {
                        redis::Client::build_with_tls(url.as_str(), config.tls.certificates())
                    } else {
                        redis::Client::open(url.as_str())
                    }
                    .map_err(unavailable)?;
                    let manager_config = redis::aio::ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(config.timeout))
                        .set_response_timeout(Some(config.timeout))
                        .set_number_of_retries(2);
                    let conn = ConnectionManager::new_with_config(client, manager_config).await.map_err(unavailable)?;
                    Ok(Conn::Single(conn))
                }
                Topology::Cluster(nodes) => {
                    let mut builder = redis::cluster::ClusterClient::builder(nodes)
                        .connection_timeout(config.timeout)
                        .response_timeout(config.timeout)
                        .retries(2);
                    if config.tls.is_set() {
                        builder = builder.certs(config.tls.certificates());
                    }
                    let client = builder.build().map_err(unavailable)?;
                    Ok(Conn::Cluster(client.get_async_connection().await.map_err(unavailable)?))
                }
            }
        };
        let conn = tokio::time::timeout(config.timeout.max(Duration::from_secs(1)) * 3, connecting)
            .await
            .map_err(|_| StoreError::Unavailable("connecting to Redis timed out".into()))??;
        Ok(Self {
            conn,
            prefix: config.prefix.clone(),
            timeout: config.timeout,
            put: Script::new(PUT),
            delete: Script::new(DELETE),
            lookup: Script::new(LOOKUP),
            reserve: Script::new(RESERVE),
            unlock: Script::new(UNLOCK),
            extend: Script::new(EXTEND),
        })
    }

    fn base(&self, tenant: &str) -> String {
        format!("{}:{{{tenant}}}:", self.prefix)
    }

    fn lock_key(&self, tenant: &str, name: &str) -> String {
        format!("{}lock:{name}", self.base(tenant))
    }

    /// The shared token under `scope` (an app's OAuth client, `oauth:<digest>`).
    fn token_key(&self, scope: &str) -> String {
        format!("{}token", self.base(scope))
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
        let base = self.base(tenant);
        let pattern = format!("{}{part}*", base.replace('[', "\\[").replace('{', "\\{").replace('}', "\\}"));
        let mut conn = self.conn.clone();
        let (mut cursor, mut out): (u64, Vec<String>) = (0, Vec::new());
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(500);
            // The tenant's hash tag puts all its keys on one node: scan that one.
            let (next, keys): (u64, Vec<String>) = self.run(conn.on_node_of(&base, scan)).await?;
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
    fn reserve<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        per_second: u32,
        burst: u32,
        max_wait: Option<Duration>,
    ) -> crate::ratelimit::SharedFuture<'a> {
        Box::pin(async move {
            let micros = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
            let interval = 1_000_000 / i64::from(per_second.max(1));
            let tau = interval * (i64::from(burst.max(1)) - 1);
            let mut inv = self.reserve.key(format!("{}rl:{key}", self.base(scope)));
            inv.arg(interval).arg(tau).arg(max_wait.map_or(-1, micros));
            let mut conn = self.conn.clone();
            let (taken, wait_us): (i64, i64) =
                self.run(inv.invoke_async(&mut conn)).await.map_err(|e| e.to_string())?;
            let wait = Duration::from_micros(u64::try_from(wait_us).unwrap_or(0));
            Ok(if taken == 1 { Ok(wait) } else { Err(wait) })
        })
    }
}

impl crate::backend::TokenCache for RedisStore {
    fn get<'a>(&'a self, key: &'a str) -> crate::backend::CacheFuture<'a, Option<(Vec<u8>, Duration)>> {
        Box::pin(async move {
            let key = self.token_key(key);
            let mut conn = self.conn.clone();
            let (value, ttl_ms): (Option<Vec<u8>>, i64) = self
                .run(redis::pipe().atomic().get(&key).pttl(&key).query_async(&mut conn))
                .await
                .map_err(|e| e.to_string())?;
            // PTTL is negative for a key without expiry (never written so) or gone.
            Ok(value.filter(|_| ttl_ms > 0).map(|v| (v, Duration::from_millis(ttl_ms.unsigned_abs()))))
        })
    }

    fn put<'a>(&'a self, key: &'a str, value: Vec<u8>, ttl: Duration) -> crate::backend::CacheFuture<'a, ()> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let () =
                self.run(conn.pset_ex(self.token_key(key), value, millis(ttl))).await.map_err(|e| e.to_string())?;
            Ok(())
        })
    }

    fn forget<'a>(&'a self, key: &'a str, value: Vec<u8>) -> crate::backend::CacheFuture<'a, ()> {
        Box::pin(async move {
            // The lock's compare-and-delete: only the value this replica saw rejected goes.
            let mut inv = self.unlock.key(self.token_key(key));
            inv.arg(value);
            let mut conn = self.conn.clone();
            let _: i64 = self.run(inv.invoke_async(&mut conn)).await.map_err(|e| e.to_string())?;
            Ok(())
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
            let mut set = redis::cmd("SET");
            set.arg(self.lock_key(tenant, name)).arg(&token.0).arg("NX").arg("PX").arg(millis(ttl));
            let mut conn = self.conn.clone();
            let taken: Option<String> = self.run(set.query_async(&mut conn)).await?;
            Ok(taken.is_some())
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
            let mut inv = self.extend.key(self.lock_key(tenant, name));
            inv.arg(&token.0).arg(millis(ttl));
            let mut conn = self.conn.clone();
            let extended: i64 = self.run(inv.invoke_async(&mut conn)).await?;
            Ok(extended == 1)
        })
    }

    fn unlock<'a>(&'a self, tenant: &'a str, name: &'a str, token: LockToken) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut inv = self.unlock.key(self.lock_key(tenant, name));
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

/// Redis servers and clusters of the tests' own, shared with the integration tests' harness.
#[cfg(test)]
#[path = "../../../tests/common/redis.rs"]
mod local;

#[cfg(test)]
#[path = "../../../tests/common/certs.rs"]
#[allow(dead_code)]
mod certs;

#[cfg(test)]
mod tests {
    use super::*;

    /// The Redis the tests use: `SCIMBRIDGE_TEST_REDIS_URL`, else the local server CI starts.
    fn config() -> RedisConfig {
        RedisConfig {
            url: std::env::var("SCIMBRIDGE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
            prefix: format!("scimbridge-test-{}", uuid::Uuid::new_v4().simple()),
            timeout: Duration::from_secs(2),
            tls: RedisTls::default(),
        }
    }

    /// Runs the suite's tenants on `s` and removes their keys afterwards.
    async fn run_suite(s: &RedisStore) {
        super::super::suite::run_all(s, "t").await;
        for case in ["a", "b", "c", "d", "e", "f", "g"] {
            s.purge_keys(&format!("t-{case}")).await.unwrap();
            s.purge_keys(&format!("t-{case}-other")).await.unwrap();
        }
    }

    #[tokio::test]
    async fn behaves_as_every_store_must() {
        let s = RedisStore::connect(&config()).await.expect("a Redis server for the store tests");
        run_suite(&s).await;
    }

    #[test]
    fn store_urls_name_a_server_or_a_cluster() {
        use Topology::*;
        let parse = |url: &str| Topology::parse(url).ok();
        assert_eq!(parse("redis://u:p@h:1/2"), Some(Single("redis://u:p@h:1/2".into())));
        assert_eq!(parse("rediss://h:1"), Some(Single("rediss://h:1".into())));
        assert_eq!(
            parse("redis-cluster://scim:p%40ss@a:7000, b:7001/"),
            Some(Cluster(vec!["redis://scim:p%40ss@a:7000".into(), "redis://scim:p%40ss@b:7001".into()]))
        );
        assert_eq!(parse("rediss-cluster://a:1"), Some(Cluster(vec!["rediss://a:1".into()])));
        for bad in ["redis-cluster://a:1,,b:2", "redis-cluster://a:1/3", "redis-cluster://", "http://h", "h:1"] {
            assert!(Topology::parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_cluster_behaves_as_every_store_must() {
        let cluster = local::LocalRedis::cluster(3);
        let s = RedisStore::connect(&RedisConfig { url: cluster.url(), ..config() }).await.expect("the cluster");
        // Tenants hash to different masters, and each tenant's scan and purge must find its keys on its own.
        for t in ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"] {
            s.adopt(t, ResourceKind::User, vec!["1".into(), "2".into()], "now").await.unwrap();
        }
        let holding = cluster
            .ports()
            .iter()
            .filter(|p| {
                let out = std::process::Command::new("redis-cli").args(["-p", &p.to_string(), "dbsize"]).output();
                out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() != "0")
            })
            .count();
        assert!(holding >= 2, "tenants spread over the masters ({holding} hold keys)");
        for t in ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"] {
            assert_eq!(s.scan(t).await.unwrap().len(), 2, "{t}");
            assert_eq!(s.purge_keys(t).await.unwrap(), 6, "{t}");
        }
        run_suite(&s).await;
        // The distributed rate limit runs there too.
        use crate::ratelimit::SharedLimiter;
        let now = Some(Duration::ZERO);
        assert_eq!(s.reserve("alpha", "all", 1, 1, now).await, Ok(Ok(Duration::ZERO)));
        assert!(s.reserve("alpha", "all", 1, 1, now).await.unwrap().is_err());
    }

    #[tokio::test]
    async fn tls_with_a_private_ca_an_acl_user_and_a_client_certificate() {
        let ca = certs::Ca::new("redis test CA");
        let (server, client) = (ca.leaf(), ca.client_leaf());
        let acl = ["--user", "default", "off", "--user", "scim", "on", ">tls-pw", "~*", "&*", "+@all"];
        let redis = local::LocalRedis::tls(&server.cert_pem, &server.key_pem, &ca.pem, true, &acl);
        let url = redis.url().replace("rediss://", "rediss://scim:tls-pw@");
        let tls = RedisTls {
            ca: Some(ca.pem.as_bytes().to_vec()),
            client: Some((client.cert_pem.as_bytes().to_vec(), client.key_pem.as_bytes().to_vec())),
        };
        let s = RedisStore::connect(&RedisConfig { url: url.clone(), tls: tls.clone(), ..config() })
            .await
            .expect("TLS with the private CA and a client certificate");
        run_suite(&s).await;

        // Each missing piece is refused: the server's CA, the client certificate, the password.
        let untrusted = RedisTls { ca: None, ..tls.clone() };
        let no_client = RedisTls { client: None, ..tls.clone() };
        for (what, url, tls) in [
            ("untrusted server", url.clone(), untrusted),
            ("no client certificate", url.clone(), no_client),
            ("wrong password", url.replace("tls-pw", "nope"), tls.clone()),
            ("plain text to a TLS port", url.replace("rediss://", "redis://"), RedisTls::default()),
        ] {
            let c = RedisConfig { url, tls, timeout: Duration::from_millis(500), ..config() };
            assert!(matches!(RedisStore::connect(&c).await, Err(StoreError::Unavailable(_))), "{what}");
        }
        assert!(!format!("{tls:?}").contains("PRIVATE KEY"), "the key stays out of debug output");
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
    async fn the_shared_limit_admits_the_burst_then_the_rate_and_reserves_ahead() {
        use crate::ratelimit::SharedLimiter;
        let s = RedisStore::connect(&config()).await.expect("a Redis server for the store tests");
        let now = Some(Duration::ZERO);
        for _ in 0..3 {
            assert_eq!(s.reserve("t", "all", 2, 3, now).await, Ok(Ok(Duration::ZERO)));
        }
        let wait = s.reserve("t", "all", 2, 3, now).await.unwrap().unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(500), "{wait:?}");
        assert_eq!(s.reserve("t", "other", 2, 3, now).await, Ok(Ok(Duration::ZERO)), "keys are separate quotas");
        tokio::time::sleep(wait).await;
        assert_eq!(s.reserve("t", "all", 2, 3, now).await, Ok(Ok(Duration::ZERO)), "admitted again after the wait");
        // Reserving ahead (outbound calls queue): slots 100 ms apart, none beyond the bound.
        let scope = "app:0123";
        assert_eq!(s.reserve(scope, "rate", 10, 1, None).await, Ok(Ok(Duration::ZERO)));
        let second = s.reserve(scope, "rate", 10, 1, None).await.unwrap().unwrap();
        let third = s.reserve(scope, "rate", 10, 1, None).await.unwrap().unwrap();
        assert!(second > Duration::from_millis(80) && second <= Duration::from_millis(100), "{second:?}");
        assert!(third > Duration::from_millis(180) && third <= Duration::from_millis(200), "{third:?}");
        let refused = s.reserve(scope, "rate", 10, 1, Some(Duration::from_millis(150))).await.unwrap().unwrap_err();
        assert!(refused > Duration::from_millis(250), "{refused:?}: beyond the bound, and nothing reserved");
        let fourth = s.reserve(scope, "rate", 10, 1, None).await.unwrap().unwrap();
        assert!(fourth <= Duration::from_millis(300), "{fourth:?}: the refusal took no slot");
        s.purge_keys("t").await.unwrap();
        s.purge_keys(scope).await.unwrap();
    }

    #[tokio::test]
    async fn an_unreachable_server_is_unavailable_not_a_panic() {
        let c = RedisConfig { url: "redis://127.0.0.1:1".into(), ..config() };
        assert!(matches!(RedisStore::connect(&c).await, Err(StoreError::Unavailable(_))));
    }
}
