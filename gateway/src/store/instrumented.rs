//! A [`Store`] decorator that gives every call a duration in `scimbridge.store.duration` and, when
//! it has to wait (file, blocking pool, network), a span (`store <operation>`, a child of the
//! request that made it). It wraps whichever store serves, so neither store knows about telemetry.
//!
//! A call answered at once (the embedded store's record cache) gets no span: it is a memory read
//! that a span would cost many times over, and it adds nothing to a trace.

use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;

use super::{LockToken, Record, Store, StoreFuture};
use crate::mapping::ResourceKind;
use crate::telemetry::metrics;
use crate::telemetry::trace::{self, Kind, Span};

/// The store `inner`, observed.
pub struct Instrumented {
    inner: Arc<dyn Store>,
}

impl Instrumented {
    /// Observes `inner`.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self { inner }
    }

    fn observe<'a, T: Send + 'a>(&'a self, operation: &'static str, call: StoreFuture<'a, T>) -> StoreFuture<'a, T> {
        let store = self.inner.kind();
        Box::pin(async move {
            let start = Instant::now();
            let mut call = call;
            let first = std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await;
            if let Poll::Ready(result) = first {
                metrics::get().store_call(store, operation, result.is_ok(), start.elapsed());
                return result;
            }
            self.waited(store, operation, start, call).await
        })
    }

    /// The rest of a call that did not answer at once, in its span.
    async fn waited<T>(
        &self,
        store: &'static str,
        operation: &'static str,
        start: Instant,
        call: StoreFuture<'_, T>,
    ) -> Result<T, super::StoreError> {
        // A call to a server (Redis) is a client span; the embedded store works in-process.
        let span_kind = if store == "redis" { Kind::Client } else { Kind::Internal };
        let span = Span::child(
            span_kind,
            || trace::name("store", operation).into(),
            || vec![KeyValue::new("store.kind", store), KeyValue::new("store.operation", operation)],
        );
        let result = call.await;
        metrics::get().store_call(store, operation, result.is_ok(), start.elapsed());
        if let Err(e) = &result {
            span.fail(|| e.kind().into());
        }
        span.end();
        result
    }
}

impl Store for Instrumented {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn get<'a>(&'a self, tenant: &'a str, kind: ResourceKind, id: &'a str) -> StoreFuture<'a, Option<Record>> {
        self.observe("get", self.inner.get(tenant, kind, id))
    }

    fn by_app_id<'a>(
        &'a self,
        tenant: &'a str,
        kind: ResourceKind,
        app_id: &'a str,
    ) -> StoreFuture<'a, Option<Record>> {
        self.observe("by_app_id", self.inner.by_app_id(tenant, kind, app_id))
    }

    fn by_external_id<'a>(
        &'a self,
        tenant: &'a str,
        kind: ResourceKind,
        external_id: &'a str,
    ) -> StoreFuture<'a, Option<Record>> {
        self.observe("by_external_id", self.inner.by_external_id(tenant, kind, external_id))
    }

    fn by_stored<'a>(
        &'a self,
        tenant: &'a str,
        kind: ResourceKind,
        path: &'a str,
        value: &'a str,
    ) -> StoreFuture<'a, Option<Record>> {
        self.observe("by_stored", self.inner.by_stored(tenant, kind, path, value))
    }

    fn adopt<'a>(
        &'a self,
        tenant: &'a str,
        kind: ResourceKind,
        app_ids: Vec<String>,
        now: &'a str,
    ) -> StoreFuture<'a, Vec<Record>> {
        self.observe("adopt", self.inner.adopt(tenant, kind, app_ids, now))
    }

    fn put<'a>(&'a self, tenant: &'a str, kind: ResourceKind, record: Record) -> StoreFuture<'a, Option<Record>> {
        self.observe("put", self.inner.put(tenant, kind, record))
    }

    fn delete<'a>(&'a self, tenant: &'a str, kind: ResourceKind, id: &'a str) -> StoreFuture<'a, ()> {
        self.observe("delete", self.inner.delete(tenant, kind, id))
    }

    fn scan<'a>(&'a self, tenant: &'a str) -> StoreFuture<'a, Vec<(ResourceKind, Record)>> {
        self.observe("scan", self.inner.scan(tenant))
    }

    fn try_lock<'a>(
        &'a self,
        tenant: &'a str,
        name: &'a str,
        token: &'a LockToken,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        self.observe("try_lock", self.inner.try_lock(tenant, name, token, ttl))
    }

    /// One span for the whole wait, not one per poll.
    fn lock<'a>(
        &'a self,
        tenant: &'a str,
        name: &'a str,
        ttl: Duration,
        wait: Duration,
    ) -> StoreFuture<'a, Option<LockToken>> {
        self.observe("lock", self.inner.lock(tenant, name, ttl, wait))
    }

    fn extend<'a>(
        &'a self,
        tenant: &'a str,
        name: &'a str,
        token: &'a LockToken,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        self.observe("extend", self.inner.extend(tenant, name, token, ttl))
    }

    fn unlock<'a>(&'a self, tenant: &'a str, name: &'a str, token: LockToken) -> StoreFuture<'a, ()> {
        self.observe("unlock", self.inner.unlock(tenant, name, token))
    }
}
