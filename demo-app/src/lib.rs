//! A deliberately un-SCIM-like legacy REST app ("accounts" and "teams") that
//! scimbridge provisions in its demo, integration tests and benchmarks.
//!
//! Everything lives in memory behind one lock, with indexes for every lookup.
//! See `README.md` for the HTTP contract.

mod api;
mod auth;
mod error;
mod extract;
mod model;
mod page;
mod store;
mod time;

use std::future::Future;

use tokio::net::TcpListener;

pub use error::Error;

/// Runtime settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Shared secret expected in the `X-Api-Key` header of every `/api`
    /// request. An empty key admits no one.
    pub api_key: String,
}

/// The app as an axum router, for in-process tests.
pub fn router(config: Config) -> axum::Router {
    api::router(&config.api_key)
}

/// Serves the app on `listener` until `shutdown` resolves, then finishes
/// in-flight requests and returns.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "demo-app listening");
    }
    axum::serve(listener, router(config)).with_graceful_shutdown(shutdown).await
}
