//! The backend connector: sends rendered app requests over a pooled HTTP client.
//!
//! It knows nothing of SCIM or mappings. Its rules are transport rules: a timeout on every call,
//! retries only where a retry cannot duplicate a write (reads, and writes that never left), bounded
//! response sizes, an optional outbound limit (`limit`) before every attempt, and no credentials in
//! any error it returns.
//!
//! Each attempt is a client span (HTTP semantic conventions, the URL without its query) that the
//! app receives as its `traceparent`, and a sample of `scimbridge.backend.duration`; a wait under
//! the outbound limit is a span of its own and a sample of `scimbridge.backend.queue.wait`.
//! Attempts are also counted for the audit trail (`tally`).

pub mod auth;
pub mod limit;
pub mod tally;

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use opentelemetry::KeyValue;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::mapping::call::{AppRequest, Body};
use crate::telemetry::metrics;
use crate::telemetry::trace::{self, Kind, Span};
pub use auth::{Auth, CacheFuture, OAuth2, TokenCache};
pub use limit::{Limiter, OutboundLimit};

/// Largest app response the gateway reads; beyond it the call fails rather than eat memory.
const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;
/// Attempts for a retryable call, including the first.
const MAX_ATTEMPTS: u32 = 3;

/// The one HTTP client of all app calls: one connection pool (per host) and one TLS root store for
/// the process. A client per tenant loaded and parsed the system's roots once each: 1,000 tenants
/// took 3.9 s to start and 120 MiB (bench/README.md). Timeouts are per call (each backend's own).
static CLIENT: LazyLock<Result<reqwest::Client, String>> = LazyLock::new(|| {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("scimbridge/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
});

/// Why a call produced no HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("the application did not answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot reach the application: {0}")]
    Connect(String),
    #[error("the application's answer was unusable: {0}")]
    Response(String),
    #[error("invalid request for the application: {0}")]
    Request(String),
    /// The app's outbound limit is saturated: the call would have waited longer than its
    /// `max_wait`, so it was not sent. The duration says when one might get through.
    #[error("the application's outbound limit is saturated; retry in {0:?}")]
    Throttled(Duration),
}

impl BackendError {
    /// Whether the request may have reached the app (a write may then have happened).
    pub fn maybe_delivered(&self) -> bool {
        !matches!(self, BackendError::Connect(_) | BackendError::Request(_) | BackendError::Throttled(_))
    }

    /// A short fixed name, for spans (`error.type`) and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            Self::Connect(_) => "connect",
            Self::Response(_) => "response",
            Self::Request(_) => "request",
            Self::Throttled(_) => "throttled",
        }
    }
}

/// An app's HTTP answer.
#[derive(Debug, Clone)]
pub struct AppResponse {
    pub status: u16,
    pub headers: HeaderMap,
    /// The body as JSON; `null` when empty; a JSON string when it was not JSON.
    pub body: Value,
}

/// Calls to one app instance, over the process's pooled client.
#[derive(Debug, Clone)]
pub struct Backend {
    client: reqwest::Client,
    /// `base` as text, normalised (host in lowercase, default port dropped) and without a trailing
    /// `/`.
    base_url: String,
    /// The base URL parsed once: each call's URL is this with the rendered path appended.
    base: reqwest::Url,
    /// `scheme://host:port` of `base_url`: absolute URLs from the app (paging links) must match it.
    origin: String,
    timeout: Duration,
    auth: Arc<Auth>,
    /// The app instance's outbound limit, shared with every tenant calling the same base URL.
    limiter: Option<Arc<Limiter>>,
    /// Which app this is in metrics and spans: the mapping's name, bounded by configuration.
    /// Shared text: a span's attribute takes a reference, not a copy.
    app: Arc<str>,
    /// `server.address` and `server.port` of every call's span: calls go to `base`'s origin only.
    server: (Option<Arc<str>>, Option<i64>),
}

impl Backend {
    /// A client for the app at `base_url`; `timeout` bounds each attempt.
    pub fn new(base_url: &str, timeout: Duration, auth: Auth) -> Result<Self, BackendError> {
        let parsed = reqwest::Url::parse(base_url).map_err(|e| BackendError::Request(format!("base_url: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(BackendError::Request("base_url must be http or https".into()));
        }
        let client = CLIENT.as_ref().map_err(|e| BackendError::Request(e.clone()))?.clone();
        let origin = parsed.origin().ascii_serialization();
        let server = (parsed.host_str().map(Arc::from), parsed.port_or_known_default().map(i64::from));
        Ok(Self {
            client,
            base_url: parsed.as_str().trim_end_matches('/').to_owned(),
            base: parsed,
            origin,
            timeout,
            auth: Arc::new(auth),
            limiter: None,
            app: Arc::from(""),
            server,
        })
    }

    /// Names the app (its mapping) in metrics and spans.
    pub fn set_app(&mut self, name: &str) {
        self.app = Arc::from(name);
    }

    /// Which app instance this is, for sharing its outbound limit: the base URL, normalised (host
    /// in lowercase, default port dropped, no trailing `/`).
    pub fn instance(&self) -> String {
        self.base_url.clone()
    }

    /// Puts every call (each attempt, retries included) under `limiter`.
    pub fn set_limiter(&mut self, limiter: Arc<Limiter>) {
        self.limiter = Some(limiter);
    }

    /// The OAuth 2.0 client credentials, if the app is called with them.
    pub fn oauth(&self) -> Option<&OAuth2> {
        match self.auth.as_ref() {
            Auth::OAuth2(o) => Some(o),
            _ => None,
        }
    }

    /// The outbound limiter, if the app has one.
    pub fn limiter(&self) -> Option<&Arc<Limiter>> {
        self.limiter.as_ref()
    }

    /// A URL the app gave (a paging link) as a request path: absolute URLs stay as they are, an
    /// absolute path is taken on the app's origin, anything else relative to the base URL.
    pub fn resolve(&self, link: &str) -> String {
        if link.starts_with("http://") || link.starts_with("https://") {
            link.to_owned()
        } else if link.starts_with('/') {
            format!("{}{link}", self.origin)
        } else {
            format!("{}/{link}", self.base_url)
        }
    }

    /// The base URL requests are relative to.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Sends `req`, retrying with backoff where that is safe. Each attempt first waits for its turn
    /// under the outbound limit; see [`limit`] for when a wait is refused instead.
    pub async fn send(&self, req: &AppRequest) -> Result<AppResponse, BackendError> {
        let idempotent = matches!(req.method.as_str(), "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS");
        let url = self.url(req)?;
        let call = req.call.as_str();
        let mut attempt = 1;
        let mut refreshed = false;
        let mut previous: Option<Result<AppResponse, BackendError>> = None;
        loop {
            let permit = match &self.limiter {
                None => None,
                Some(l) => match self.wait_turn(l).await {
                    Ok(p) => Some(p),
                    // A refused retry reports what the last attempt got, which is what happened.
                    Err(r) => {
                        metrics::get().backend_error(&self.app, call, "throttled");
                        return previous.unwrap_or(Err(BackendError::Throttled(r.retry_after)));
                    }
                },
            };
            let span = self.attempt_span(req, &url, attempt);
            let start = Instant::now();
            let result = self.send_once(req, url.clone(), &span).await;
            drop(permit);
            self.observe(span, req, &result, start.elapsed());
            tally::record(match &result {
                Ok(r) => tally::Attempt::Status(r.status),
                Err(e) => tally::Attempt::Failed(e.kind()),
            });
            if result.as_ref().map_or_else(BackendError::maybe_delivered, |_| true) {
                limit::mark_sent();
            }
            // An OAuth2 token the app no longer accepts is fetched again, once.
            if let (Ok(r), Auth::OAuth2(o)) = (&result, self.auth.as_ref())
                && r.status == 401
                && !refreshed
            {
                o.invalidate().await;
                refreshed = true;
                previous = Some(result);
                continue;
            }
            let retry = match &result {
                Err(e) => !e.maybe_delivered() || (idempotent && matches!(e, BackendError::Timeout(_))),
                Ok(r) => idempotent && matches!(r.status, 502..=504),
            };
            if !retry || attempt >= MAX_ATTEMPTS {
                return result;
            }
            tokio::time::sleep(Duration::from_millis(50 * 2u64.pow(attempt))).await;
            attempt += 1;
            previous = Some(result);
        }
    }

    /// The URL of `req`, before its query parameters.
    fn url(&self, req: &AppRequest) -> Result<reqwest::Url, BackendError> {
        if req.path.starts_with("http://") || req.path.starts_with("https://") {
            // A URL the app gave us (a paging link): follow it only on the app's own origin, so
            // credentials never go elsewhere.
            let u = reqwest::Url::parse(&req.path).map_err(|_| BackendError::Request("bad URL from the app".into()))?;
            if u.origin().ascii_serialization() != self.origin {
                return Err(BackendError::Request("refusing a URL on another origin than the app's".into()));
            }
            Ok(u)
        } else if req.path.contains(['?', '#']) {
            reqwest::Url::parse(&format!("{}{}", self.base_url, req.path))
                .map_err(|_| BackendError::Request("the rendered path is not a valid URL".into()))
        } else {
            // Only the path is new: parse just that, on the base's scheme and authority.
            let mut u = self.base.clone();
            u.set_path(&format!("{}{}", self.base.path().trim_end_matches('/'), req.path));
            Ok(u)
        }
    }

    /// Waits for a turn under the outbound limit, in a span of its own.
    async fn wait_turn(&self, limiter: &Limiter) -> Result<limit::Permit, limit::Refused> {
        let span = Span::child(
            Kind::Internal,
            || "outbound limit wait".into(),
            || vec![KeyValue::new("scimbridge.app", self.app.clone())],
        );
        let start = Instant::now();
        let turn = limiter.acquire(limit::may_refuse()).await;
        span.end();
        if turn.is_ok() {
            metrics::get().outbound_wait(&self.app, start.elapsed());
        }
        turn
    }

    /// The client span of one attempt. `url.full` leaves out the query, which may carry values
    /// the mapping put there (filters, keys); ids in the path are fine in a span, never in a label.
    fn attempt_span(&self, req: &AppRequest, url: &reqwest::Url, attempt: u32) -> Span {
        Span::child(
            Kind::Client,
            || trace::name(trace::http_method(&req.method), req.call.as_str()).into(),
            || {
                // Room for the outcome added at the end: no reallocation then.
                let mut attributes = Vec::with_capacity(10);
                attributes.extend([
                    KeyValue::new("http.request.method", trace::http_method(&req.method)),
                    KeyValue::new("url.full", url_full(url, &self.origin)),
                    KeyValue::new("scimbridge.app", self.app.clone()),
                    KeyValue::new("scimbridge.app.call", req.call.as_str()),
                ]);
                if let Some(host) = &self.server.0 {
                    attributes.push(KeyValue::new("server.address", Arc::clone(host)));
                }
                if let Some(port) = self.server.1 {
                    attributes.push(KeyValue::new("server.port", port));
                }
                if attempt > 1 {
                    attributes.push(KeyValue::new("http.request.resend_count", i64::from(attempt - 1)));
                }
                attributes
            },
        )
    }

    /// Records an attempt's outcome on its span, ending it, and in the metrics. HTTP client
    /// conventions: a 4xx or 5xx answer is an error of the span; only 5xx and no answer count as
    /// app errors.
    fn observe(&self, span: Span, req: &AppRequest, result: &Result<AppResponse, BackendError>, took: Duration) {
        let error = match result {
            Ok(r) => {
                span.set(|| KeyValue::new("http.response.status_code", i64::from(r.status)));
                if r.status >= 400 {
                    span.fail(|| r.status.to_string().into());
                }
                (r.status >= 500).then_some("status_5xx")
            }
            Err(e) => {
                span.fail(|| e.kind().into());
                Some(e.kind())
            }
        };
        span.end();
        metrics::get().backend_attempt(&self.app, req.call.as_str(), took, error);
    }

    /// One attempt; the app continues `span`'s trace.
    async fn send_once(&self, req: &AppRequest, url: reqwest::Url, span: &Span) -> Result<AppResponse, BackendError> {
        let mut headers = HeaderMap::new();
        for (k, v) in &req.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| BackendError::Request(format!("bad header name `{k}`")))?;
            let mut value =
                HeaderValue::from_str(v).map_err(|_| BackendError::Request(format!("bad value for header `{k}`")))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        span.inject(&mut headers);
        let mut builder = self.client.request(req.method.clone(), url).timeout(self.timeout).headers(headers);
        builder = match self.auth.as_ref() {
            Auth::None => builder,
            Auth::Basic { username, password } => builder.basic_auth(username, Some(password)),
            Auth::Bearer(token) => builder.bearer_auth(token),
            Auth::OAuth2(o) => builder.bearer_auth(o.token(&self.client, self.timeout).await?),
        };
        if !req.query.is_empty() {
            builder = builder.query(&req.query);
        }
        match &req.body {
            Some(Body::Json(v)) => builder = builder.json(v),
            Some(Body::Form(fields)) => builder = builder.form(fields),
            None => {}
        }
        let resp = builder.send().await.map_err(|e| self.classify(e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        if resp.content_length().is_some_and(|n| n > MAX_RESPONSE_BYTES as u64) {
            return Err(BackendError::Response("response too large".into()));
        }
        let bytes = read_limited(resp).await.map_err(|e| self.classify(e))??;
        Ok(AppResponse { status, headers, body: parse_body(&bytes) })
    }

    fn classify(&self, e: reqwest::Error) -> BackendError {
        // reqwest errors may embed the URL; ours never carry credentials in URLs, but keep the text short.
        let e = e.without_url();
        if e.is_timeout() {
            BackendError::Timeout(self.timeout)
        } else if e.is_connect() {
            BackendError::Connect(e.to_string())
        } else if e.is_builder() {
            BackendError::Request(e.to_string())
        } else {
            BackendError::Response(e.to_string())
        }
    }
}

async fn read_limited(mut resp: reqwest::Response) -> Result<Result<Bytes, BackendError>, reqwest::Error> {
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if buf.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Ok(Err(BackendError::Response("response too large".into())));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Ok(Bytes::from(buf)))
}

fn parse_body(bytes: &[u8]) -> Value {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Value::Null;
    }
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).chars().take(2000).collect()))
}

/// `url.full` of a span: the URL without its query and fragment (they may carry values the
/// mapping put there), and never with credentials.
fn url_full(url: &reqwest::Url, origin: &str) -> String {
    if url.username().is_empty() && url.password().is_none() {
        let s = url.as_str();
        s[..s.find(['?', '#']).unwrap_or(s.len())].to_owned()
    } else {
        format!("{origin}{}", url.path())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::http::{HeaderMap as AxHeaders, StatusCode};
    use axum::routing::{get, post};
    use reqwest::Method;

    use super::*;

    #[test]
    fn url_full_leaves_out_query_fragment_and_credentials() {
        let u = |s: &str| reqwest::Url::parse(s).unwrap();
        let origin = "https://app.example:8443";
        assert_eq!(
            url_full(&u("https://app.example:8443/v2/people/7?q=secret#x"), origin),
            "https://app.example:8443/v2/people/7"
        );
        assert_eq!(url_full(&u("https://app.example/a/b"), origin), "https://app.example/a/b");
        assert_eq!(url_full(&u("https://me:pw@app.example:8443/a?b"), origin), "https://app.example:8443/a");
    }

    /// A token endpoint issuing `tok-N` and an API that accepts only the newest token, Basic
    /// `u:p`, or the bearer `static`.
    async fn server() -> (String, Arc<AtomicUsize>) {
        let issued = Arc::new(AtomicUsize::new(0));
        let n = issued.clone();
        let m = issued.clone();
        let app = Router::new()
            .route(
                "/token",
                post(move |body: String| {
                    let n = n.clone();
                    async move {
                        assert!(body.contains("grant_type=client_credentials") && body.contains("client_secret=s3"));
                        let i = n.fetch_add(1, Ordering::SeqCst) + 1;
                        axum::Json(serde_json::json!({"access_token": format!("tok-{i}"), "expires_in": 3600}))
                    }
                }),
            )
            .route(
                "/api",
                get(move |h: AxHeaders| {
                    let m = m.clone();
                    async move {
                        let auth = h.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                        let newest = format!("Bearer tok-{}", m.load(Ordering::SeqCst));
                        // "Basic dTpw" is base64("u:p").
                        if auth == newest || auth == "Basic dTpw" || auth == "Bearer static" {
                            StatusCode::OK
                        } else {
                            StatusCode::UNAUTHORIZED
                        }
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), issued)
    }

    fn get_api() -> AppRequest {
        AppRequest {
            call: crate::mapping::call::CallRole::Read,
            method: Method::GET,
            path: "/api".into(),
            query: vec![],
            headers: vec![],
            body: None,
        }
    }

    #[tokio::test]
    async fn basic_and_bearer() {
        let (url, _) = server().await;
        let basic = Auth::Basic { username: "u".into(), password: "p".into() };
        let b = Backend::new(&url, Duration::from_secs(5), basic).unwrap();
        assert_eq!(b.send(&get_api()).await.unwrap().status, 200);
        let b = Backend::new(&url, Duration::from_secs(5), Auth::Bearer("static".into())).unwrap();
        assert_eq!(b.send(&get_api()).await.unwrap().status, 200);
        let b = Backend::new(&url, Duration::from_secs(5), Auth::None).unwrap();
        assert_eq!(b.send(&get_api()).await.unwrap().status, 401);
    }

    #[tokio::test]
    async fn oauth2_tokens_are_cached_and_renewed_after_a_401() {
        let (url, issued) = server().await;
        let oauth = OAuth2::new(format!("{url}/token"), "c".into(), "s3".into(), Some("scim".into()), None);
        let b = Backend::new(&url, Duration::from_secs(5), Auth::OAuth2(oauth)).unwrap();
        for _ in 0..3 {
            assert_eq!(b.send(&get_api()).await.unwrap().status, 200);
        }
        assert_eq!(issued.load(Ordering::SeqCst), 1, "one token serves many calls");
        // The app stops accepting the cached token (another client got a newer one).
        issued.fetch_add(1, Ordering::SeqCst);
        assert_eq!(b.send(&get_api()).await.unwrap().status, 200, "a 401 fetches a new token once");
        assert_eq!(issued.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn urls_are_the_base_and_the_rendered_path() {
        let b = Backend::new("http://App.example:80/prefix/", Duration::from_secs(5), Auth::None).unwrap();
        let url = |path: &str| b.url(&AppRequest { path: path.into(), ..get_api() }).map(|u| u.to_string());
        assert_eq!(url("/api/users/7").unwrap(), "http://app.example/prefix/api/users/7");
        assert_eq!(url("/api/a b").unwrap(), "http://app.example/prefix/api/a%20b");
        assert_eq!(url("/api/users?x=1").unwrap(), "http://app.example/prefix/api/users?x=1");
        assert_eq!(b.instance(), "http://app.example/prefix");
        assert!(url("https://elsewhere.example/api").is_err(), "another origin");
    }

    #[test]
    fn credentials_stay_out_of_debug_output() {
        let a = Auth::Basic { username: "u".into(), password: "hunter2".into() };
        assert!(!format!("{a:?}").contains("hunter2"));
    }
}
