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
    /// Fault injection for tests: how long an account create waits, after committing, before it
    /// answers (a gateway with a shorter timeout then loses the answer of a create that happened).
    pub create_delay: std::time::Duration,
}

impl Config {
    /// A config with `api_key` and no fault injection.
    pub fn new(api_key: impl Into<String>) -> Self {
        Self { api_key: api_key.into(), create_delay: std::time::Duration::ZERO }
    }
}

/// The app as an axum router, for in-process tests.
pub fn router(config: Config) -> axum::Router {
    api::router(&config.api_key, config.create_delay)
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
