//! The admin listener's routes: `/metrics` (Prometheus text), `/healthz` and `/readyz`. It listens
//! on its own address (`serve --admin-listen`), apart from SCIM traffic, so a scraper and probes
//! need no tenant token and the address can stay private.

use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use crate::telemetry::Scrape;
use crate::telemetry::metrics::PROMETHEUS_TEXT;

#[derive(Clone)]
struct Admin {
    app: AppState,
    scrape: Scrape,
}

impl FromRef<Admin> for AppState {
    fn from_ref(admin: &Admin) -> Self {
        admin.app.clone()
    }
}

/// The admin routes over the gateway's state and the metrics it scrapes.
pub fn router(app: AppState, scrape: Scrape) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(super::healthz))
        .route("/readyz", get(super::readyz))
        .with_state(Admin { app, scrape })
}

async fn metrics(State(admin): State<Admin>) -> Response {
    match admin.scrape.render() {
        Ok(text) => ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], text).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot render the metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
