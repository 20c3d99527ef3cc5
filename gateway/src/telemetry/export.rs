//! The OTLP/HTTP export: each batch of spans or audit records an outbox gathers is POSTed to the
//! collector with the OTLP retry rules (429, 502, 503 and 504 and refused connections are tried
//! again, after `Retry-After` when the collector sends one, until the export's timeout).
//!
//! The request goes out from the outbox's task on the gateway's Tokio runtime, through reqwest
//! (rustls, like every other outbound call). Metrics (one export every few seconds) and gRPC stay
//! with the SDK's exporters (`otlp`).
//!
//! May touch: the network (the collector).

use std::time::{Duration, Instant, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};

use super::protobuf;

/// The first wait before trying an export again; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Where one signal's exports go, and how.
#[derive(Debug)]
pub struct HttpExport {
    client: reqwest::Client,
    url: reqwest::Url,
    headers: HeaderMap,
    timeout: Duration,
    /// Where the exports go, for errors and the log: never the headers (API keys) or the URL's
    /// user part.
    target: String,
}

impl HttpExport {
    /// Exports to `url` with `headers` (marked sensitive: they carry API keys), each export
    /// given up after `timeout`.
    pub(super) fn new(client: reqwest::Client, url: reqwest::Url, headers: HeaderMap, timeout: Duration) -> Self {
        let target = format!("{}{}", url.origin().ascii_serialization(), url.path());
        Self { client, url, headers, timeout, target }
    }

    /// Posts `body` until it is taken, refused for good, or the export's timeout has passed.
    /// Runs on the runtime (the outbox's task).
    pub(super) async fn post(&self, body: Vec<u8>) -> Result<(), ExportError> {
        let body = bytes::Bytes::from(body);
        let deadline = Instant::now() + self.timeout;
        let mut backoff = FIRST_BACKOFF;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let request = self
                .client
                .post(self.url.clone())
                .headers(self.headers.clone())
                .header(CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf"))
                .timeout(left)
                .body(body.clone());
            let (retry, why, after) = match request.send().await {
                Ok(answer) if answer.status().is_success() => {
                    let answer = answer.bytes().await.unwrap_or_default();
                    if let Some((rejected, message)) = protobuf::partial_success(&answer) {
                        tracing::warn!(target: "scimbridge::telemetry", export = %self.target, rejected, message, "the OTLP collector rejected part of an export");
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
                return Err(ExportError { target: self.target.clone(), why });
            }
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// Why an export was given up.
#[derive(Debug, thiserror::Error)]
#[error("OTLP export to {target}: {why}")]
pub struct ExportError {
    /// Where the export went, without the URL's user part or query.
    target: String,
    why: String,
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
