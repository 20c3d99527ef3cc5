//! The HTTP server: routes, request limits, and the shape of every response.
//!
//! Layers (outermost first): the request's span, metrics and request id (`observe`), SCIM-shaped
//! error bodies for anything the framework rejects, a request timeout, a body-size limit. Handlers
//! live in `scim` (tenant endpoints, which also emit the audit trail's events) and here (health). The admin listener's routes (metrics,
//! health) are `admin`'s. The connections under them (accept, TLS, HTTP/1.1 and HTTP/2, connection
//! limits, graceful drain) are `listener`'s; the TLS configuration and certificate reload are
//! `tls`'s.

pub mod admin;
pub mod extract;
pub mod listener;
pub mod oauth;
pub mod observe;
pub mod response;
pub mod scim;
pub mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::provision::Provisioner;
use crate::provision::bulk::BulkLimits;
use crate::scim::error::ScimError;
use crate::tenant::Registry;
use response::{ErrorResponse, SCIM_JSON};

/// Request limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body (bulk requests are bounded by `bulk.max_payload_size`, which is smaller
    /// or equal).
    pub body_bytes: usize,
    pub bulk: BulkLimits,
    /// Longest a request may take end to end, app calls included.
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            body_bytes: 1024 * 1024,
            bulk: BulkLimits { max_operations: 1000, max_payload_size: 1024 * 1024 },
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// State shared by all handlers. The registry can be swapped whole (configuration reload) while
/// in-flight requests keep the tenant they started with.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<ArcSwap<Registry>>,
    pub provisioner: Arc<Provisioner>,
    pub limits: Limits,
    /// Rate limits counted across replicas (Redis), in addition to each process's own.
    pub shared_limits: Option<Arc<dyn crate::ratelimit::SharedLimiter>>,
    /// Where the audit events of changes go ([`crate::audit::Audit::off`]: nowhere).
    pub audit: crate::audit::Audit,
}

/// The gateway's routes.
pub fn router(state: AppState) -> Router {
    let base = "/{tenant}/scim/v2";
    let r = |p: &str| format!("{base}{p}");
    let limits = state.limits;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/{tenant}/oauth/token", post(oauth::token))
        .route(&r("/ServiceProviderConfig"), get(scim::service_provider_config))
        .route(&r("/ResourceTypes"), get(scim::resource_types))
        .route(&r("/ResourceTypes/{name}"), get(scim::resource_type))
        .route(&r("/Schemas"), get(scim::schemas))
        .route(&r("/Schemas/{id}"), get(scim::schema))
        .route(&r("/Bulk"), post(scim::bulk))
        .route(&r("/Me"), get(scim::me).post(scim::me).put(scim::me).patch(scim::me).delete(scim::me))
        .route(&r("/.search"), post(scim::root_search))
        .route(&r("/{endpoint}"), get(scim::list).post(scim::create))
        .route(&r("/{endpoint}/.search"), post(scim::search))
        .route(&r("/{endpoint}/{id}"), get(scim::get).put(scim::replace).patch(scim::patch).delete(scim::delete))
        .route(&r("/{endpoint}/{id}/{*rest}"), get(scim::not_found))
        .fallback(fallback)
        .layer(DefaultBodyLimit::max(limits.body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), timeout))
        .layer(middleware::from_fn(scim_errors))
        .layer(middleware::from_fn_with_state(state.clone(), observe::observe))
        .with_state(state)
}

async fn healthz() -> Response {
    (StatusCode::OK, axum::Json(json!({"status": "ok"}))).into_response()
}

async fn readyz(State(state): State<AppState>) -> Response {
    let n = state.registry.load().len();
    let status = if n > 0 { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(json!({"status": if n > 0 { "ready" } else { "no tenants" }, "tenants": n}))).into_response()
}

async fn fallback() -> Response {
    ErrorResponse(ScimError::not_found("no such endpoint")).into_response()
}

async fn timeout(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(state.limits.request_timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ErrorResponse(ScimError::status(503, "the request took too long")).into_response(),
    }
}

/// Rewrites framework rejections (405, 413, bad paths) into SCIM error bodies.
async fn scim_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    // Our own answers carry a JSON content type; the framework's rejections are plain text or empty.
    let ours = resp.headers().get(header::CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v == SCIM_JSON.as_bytes() || v.starts_with(b"application/json")
    });
    if ours || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let detail = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed on this endpoint".to_owned(),
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is too large".to_owned(),
        other => other.canonical_reason().unwrap_or("request failed").to_owned(),
    };
    let mut out = ErrorResponse(ScimError::status(status.as_u16(), detail)).into_response();
    if let Some(allow) = resp.headers().get(header::ALLOW) {
        out.headers_mut().insert(header::ALLOW, allow.clone());
    }
    out
}

/// Serves until `shutdown` resolves, then stops accepting and drains in-flight requests within
/// `limits.drain_timeout`. With `tls`, every connection is TLS (ALPN chooses HTTP/2 or HTTP/1.1).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: listener::ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    listener::serve(listener, router(state), tls.map(tokio_rustls::TlsAcceptor::from), limits, shutdown).await;
}
