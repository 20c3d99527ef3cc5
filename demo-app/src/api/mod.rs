//! HTTP routes, shared state and response helpers.

mod accounts;
mod members;
mod oauth;
mod stats;
mod teams;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::header::LOCATION;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router, middleware};
use serde::Serialize;
use serde_json::json;
use tokio::sync::RwLock;

use crate::auth::{self, ApiKey};
use crate::error::Error;
use crate::extract::BODY_LIMIT;
use crate::store::Store;

/// State shared by all handlers.
#[derive(Debug)]
pub struct AppState {
    pub store: RwLock<Store>,
    pub api_key: ApiKey,
    /// Test fault injection: delay before answering an account create.
    pub create_delay: std::time::Duration,
    /// Test hook: when requests arrived.
    pub stats: stats::Stats,
    /// Bearer tokens issued at `/oauth/token`.
    pub tokens: oauth::Tokens,
}

/// Builds the full app: `/health` plus the authenticated `/api/v1` routes.
pub fn router(api_key: &str, create_delay: std::time::Duration) -> Router {
    let state = Arc::new(AppState {
        store: RwLock::new(Store::default()),
        api_key: ApiKey::new(api_key),
        create_delay,
        stats: stats::Stats::default(),
        tokens: oauth::Tokens::default(),
    });
    let api = Router::new()
        .route("/accounts", get(accounts::list).post(accounts::create))
        .route("/accounts/feed", get(accounts::feed))
        .route("/accounts/{id}", get(accounts::show).put(accounts::replace).delete(accounts::delete))
        .route("/teams", get(teams::list).post(teams::create))
        .route("/teams/{id}", get(teams::show).put(teams::replace).delete(teams::delete))
        .route("/teams/{id}/members", get(members::list).post(members::add).put(members::set))
        .route("/teams/{id}/members/{account_id}", delete(members::remove))
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(middleware::from_fn_with_state(Arc::clone(&state), auth::require_api_key))
        // Added after the key check's layer: asking for a token needs the client's credentials only.
        .route("/oauth/token", post(oauth::token));
    let hooks = Router::new()
        .route("/_stats/arrivals", get(stats::arrivals))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&state), auth::require_api_key));
    Router::new()
        .route("/health", get(health))
        .method_not_allowed_fallback(method_not_allowed)
        .nest("/api/v1", api)
        .merge(hooks)
        .fallback(no_route)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(Arc::clone(&state), stats::record))
        .with_state(state)
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn no_route(method: Method, uri: Uri) -> Error {
    Error::NotFound(format!("no route for {method} {}", uri.path()))
}

async fn method_not_allowed() -> Error {
    Error::MethodNotAllowed
}

/// `201 Created` with a `Location` header and a JSON body.
fn created(location: String, body: impl Serialize) -> Response {
    (StatusCode::CREATED, [(LOCATION, location)], Json(body)).into_response()
}
