//! A test hook, not part of the legacy API: when each `/api` request arrived and how many were
//! handled at once, so tests can check a client's pace where it lands (`GET /_stats/arrivals`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::Json;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde::Serialize;

use super::AppState;

/// Arrivals kept; older ones are dropped (and counted) so memory stays bounded.
const KEEP: usize = 100_000;

/// One request as it arrived.
#[derive(Debug, Clone, Serialize)]
pub struct Arrival {
    /// Microseconds since the app started.
    pub at_us: u64,
    pub method: String,
    pub path: String,
}

/// Arrival times and the in-flight high-water mark.
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    log: Mutex<Log>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

#[derive(Debug, Default)]
struct Log {
    arrivals: VecDeque<Arrival>,
    dropped: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            log: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        }
    }
}

/// Decrements the in-flight count when a request is done, answered or dropped.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Middleware recording every `/api` request on arrival, before authentication.
pub async fn record(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if !request.uri().path().starts_with("/api/") {
        return next.run(request).await;
    }
    let stats = &state.stats;
    let arrival = Arrival {
        at_us: u64::try_from(stats.started.elapsed().as_micros()).unwrap_or(u64::MAX),
        method: request.method().to_string(),
        path: request.uri().path().to_owned(),
    };
    {
        let mut log = stats.log.lock().unwrap_or_else(PoisonError::into_inner);
        if log.arrivals.len() == KEEP {
            log.arrivals.pop_front();
            log.dropped += 1;
        }
        log.arrivals.push_back(arrival);
    }
    let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let _done = InFlight(&stats.in_flight);
    next.run(request).await
}

#[derive(Serialize)]
pub struct Report {
    arrivals: Vec<Arrival>,
    dropped: u64,
    max_in_flight: usize,
}

/// `GET /_stats/arrivals`: the arrivals in order, oldest first.
pub async fn arrivals(State(state): State<Arc<AppState>>) -> Json<Report> {
    let log = state.stats.log.lock().unwrap_or_else(PoisonError::into_inner);
    Json(Report {
        arrivals: log.arrivals.iter().cloned().collect(),
        dropped: log.dropped,
        max_in_flight: state.stats.max_in_flight.load(Ordering::SeqCst),
    })
}
