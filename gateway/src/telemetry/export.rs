//! The OTLP/HTTP export: each batch of spans the SDK's batch processor hands over, and each
//! batch of audit records the outbox gathers, is written as protobuf by
//! [`protobuf`](super::protobuf) and POSTed to the collector, with the OTLP retry rules (429, 502, 503 and 504 and refused connections are tried
//! again, after `Retry-After` when the collector sends one, until the export's timeout).
//!
//! The request goes out on the gateway's Tokio runtime through reqwest (rustls, like every other
//! outbound call): the batch processors run on threads of their own and only wait for the answer.
//! Metrics (one export every few seconds) and gRPC stay with the SDK's exporters (`otlp`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};

use super::protobuf::{self, EncodedResource};

/// The first wait before trying an export again; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Where one signal's exports go, and how.
#[derive(Debug)]
pub struct HttpExport {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
    url: reqwest::Url,
    headers: HeaderMap,
    timeout: Duration,
    resource: EncodedResource,
    shut: AtomicBool,
}

impl HttpExport {
    /// Exports to `url` with `headers` (marked sensitive: they carry API keys), each export
    /// given up after `timeout`. The runtime is the caller's.
    pub(super) fn new(
        client: reqwest::Client,
        url: reqwest::Url,
        headers: HeaderMap,
        timeout: Duration,
    ) -> Result<Self, super::otlp::OtlpError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| super::otlp::OtlpError::NoRuntime)?;
        let resource = EncodedResource::default();
        Ok(Self { client, runtime, url, headers, timeout, resource, shut: AtomicBool::new(false) })
    }

    /// Refuses exports from now on.
    fn shutdown(&self) -> OTelSdkResult {
        self.shut.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Posts `body` from a task of the runtime, trying again while the collector asks for it and
    /// time is left.
    pub(super) async fn post(&self, body: Vec<u8>) -> OTelSdkResult {
        if self.shut.load(Ordering::Relaxed) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        send(&self.client, self.url.clone(), self.headers.clone(), body.into(), self.timeout).await
    }

    /// Sends `body` from a thread of its own (a batch processor's), trying again while the
    /// collector asks for it and time is left.
    async fn send(&self, body: Vec<u8>) -> OTelSdkResult {
        if self.shut.load(Ordering::Relaxed) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        let (client, url, headers, timeout) =
            (self.client.clone(), self.url.clone(), self.headers.clone(), self.timeout);
        // Spawned: the batch processor's thread has no runtime of its own, reqwest and the
        // backoff timer need one.
        let sent = self.runtime.spawn(async move { send(&client, url, headers, body.into(), timeout).await });
        match sent.await {
            Ok(result) => result,
            Err(e) => Err(OTelSdkError::InternalFailure(format!("OTLP export task: {e}"))),
        }
    }
}

/// Posts `body` until it is taken, refused for good, or `timeout` has passed.
async fn send(
    client: &reqwest::Client,
    url: reqwest::Url,
    headers: HeaderMap,
    body: bytes::Bytes,
    timeout: Duration,
) -> OTelSdkResult {
    let deadline = Instant::now() + timeout;
    let mut backoff = FIRST_BACKOFF;
    // Only where the export goes, never its headers (API keys) or the URL's user part.
    let target = format!("{}{}", url.origin().ascii_serialization(), url.path());
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let request = client
            .post(url.clone())
            .headers(headers.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf"))
            .timeout(left)
            .body(body.clone());
        let (retry, why, after) = match request.send().await {
            Ok(answer) if answer.status().is_success() => {
                let answer = answer.bytes().await.unwrap_or_default();
                if let Some((rejected, message)) = protobuf::partial_success(&answer) {
                    tracing::warn!(target: "scimbridge::telemetry", export = %target, rejected, message, "the OTLP collector rejected part of an export");
                }
                return Ok(());
            }
            Ok(answer) => {
                let status = answer.status();
                let after = retry_after(answer.headers());
                (retryable(status), format!("HTTP {}", status.as_u16()), after)
            }
            Err(e) => (
                e.is_connect(),
                if e.is_timeout() { "timed out".to_owned() } else { e.without_url().to_string() },
                None,
            ),
        };
        let wait = after.unwrap_or_else(|| backoff + jitter(backoff));
        if !retry || Instant::now() + wait >= deadline {
            return Err(OTelSdkError::InternalFailure(format!("OTLP export to {target}: {why}")));
        }
        tokio::time::sleep(wait).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The answers OTLP/HTTP says to try again after.
fn retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 502 | 503 | 504)
}

/// `Retry-After` in seconds (the form collectors send), capped so a bad value cannot stall the
/// exporter beyond its timeout anyway.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(60)))
}

/// Up to a fifth of `backoff` more, so exporters of many replicas that failed together do not
/// come back together. The clock's nanoseconds are random enough for that.
fn jitter(backoff: Duration) -> Duration {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    backoff / 5 * (nanos % 1_000) / 1_000
}

/// Spans over OTLP/HTTP.
#[derive(Debug)]
pub struct HttpSpans(pub(super) HttpExport);

impl SpanExporter for HttpSpans {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let body = protobuf::traces(&self.0.resource, &batch);
        drop(batch);
        self.0.send(body).await
    }

    fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
        self.0.shutdown()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.resource = EncodedResource::new(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_overload_and_gateway_trouble_is_tried_again() {
        for s in [429, 502, 503, 504] {
            assert!(retryable(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [400, 401, 403, 404, 413, 500, 501] {
            assert!(!retryable(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_capped() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("86400"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(60)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after(&h), None, "a date falls back to the backoff");
    }

    #[test]
    fn jitter_stays_within_a_fifth() {
        for _ in 0..100 {
            assert!(jitter(Duration::from_millis(100)) <= Duration::from_millis(20));
        }
    }
}
