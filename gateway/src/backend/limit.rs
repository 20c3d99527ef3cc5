//! The outbound limit of one app instance: a sustained call rate with a burst, a cap on calls in
//! flight, and a bounded wait. Where the inbound limits (`crate::ratelimit`) answer 429 at once,
//! this one queues: a burst of SCIM requests reaches the app at the configured pace.
//!
//! The rate is GCRA, the algorithm governor implements for the inbound limits, in its "virtual
//! scheduling" form: each call *reserves* the next free slot under a lock and sleeps until it.
//! governor can only say "conforming now or not", so waiters would poll and race for each cell
//! (no order, and no way to know a wait before it happens). Reservations are first come, first
//! served, and the wait is known before waiting: a call whose slot lies beyond `max_wait` is
//! refused at once, before anything is sent, and reserves nothing.
//!
//! One [`Limiter`] serves every tenant whose backend has the same base URL (they call the same app
//! instance), and it survives configuration reloads, so neither doubles the rate. With replicas
//! the rate's schedule lives in Redis ([`Limiter::share`]), so all of them together keep it; the
//! cap on calls in flight stays per process. If Redis cannot be reached, each replica keeps the
//! rate on its own until it can.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::ratelimit::SharedLimiter;

/// Longest `max_wait` accepted: the gateway's request timeout (a longer wait could never be used).
pub const MAX_WAIT_LIMIT: Duration = Duration::from_secs(60);
/// Wait bound when the tenant file sets none.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(10);

/// What a tenant file asks of the calls to its app (validated by [`OutboundLimit::new`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboundLimit {
    /// Calls per second, sustained, and calls allowed at once after an idle period.
    rate: Option<(u32, u32)>,
    /// Most calls to the app at once.
    max_in_flight: Option<u32>,
    /// Longest a call may wait for its turn before the SCIM request is refused.
    max_wait: Duration,
}

/// A value of the outbound limit that cannot work; `key` names it under `backend`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}` {message}")]
pub struct LimitError {
    /// The key under `backend` (`rate_limit.per_second`).
    pub key: &'static str,
    pub message: String,
}

impl OutboundLimit {
    /// Checks and combines the `backend.rate_limit` values (`rate`: per second, burst) and
    /// `backend.max_in_flight`. `burst` defaults to `per_second`, `max_wait` to [`DEFAULT_MAX_WAIT`].
    pub fn new(
        rate: Option<(u32, Option<u32>)>,
        max_wait: Option<Duration>,
        max_in_flight: Option<u32>,
    ) -> Result<Self, Vec<LimitError>> {
        let mut errors = Vec::new();
        let mut bad = |key, message: &str| errors.push(LimitError { key, message: message.to_owned() });
        if let Some((per_second, burst)) = rate {
            if per_second == 0 {
                bad("rate_limit.per_second", "must be at least 1");
            }
            if burst == Some(0) {
                bad("rate_limit.burst", "must be at least 1");
            }
        }
        let max_wait = max_wait.unwrap_or(DEFAULT_MAX_WAIT);
        if max_wait > MAX_WAIT_LIMIT {
            bad("rate_limit.max_wait_ms", "must be at most 60000 (the gateway's request timeout)");
        }
        if max_in_flight == Some(0) {
            bad("max_in_flight", "must be at least 1");
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self { rate: rate.map(|(r, b)| (r, b.unwrap_or(r))), max_in_flight, max_wait })
    }

    /// Whether it limits anything.
    pub fn is_limited(&self) -> bool {
        self.rate.is_some() || self.max_in_flight.is_some()
    }
}

/// The GCRA schedule: the theoretical arrival time of the next call, and the interval between
/// calls. `tau` is how far ahead of the schedule a burst may run.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    interval: Duration,
    tau: Duration,
    tat: Option<Instant>,
}

impl Schedule {
    fn new(per_second: u32, burst: u32) -> Self {
        let interval = Duration::from_secs(1) / per_second.max(1);
        Self { interval, tau: interval * burst.max(1).saturating_sub(1), tat: None }
    }

    /// Reserves the earliest slot at or after `now`, unless it is more than `max_wait` away: then
    /// nothing is reserved and the error says how far away it is.
    fn reserve(&mut self, now: Instant, max_wait: Option<Duration>) -> Result<Instant, Duration> {
        let tat = self.tat.map_or(now, |t| t.max(now));
        let at = tat.checked_sub(self.tau).map_or(now, |earliest| earliest.max(now));
        let wait = at - now;
        if max_wait.is_some_and(|m| wait > m) {
            return Err(wait);
        }
        self.tat = Some(tat + self.interval);
        Ok(at)
    }
}

struct State {
    limit: OutboundLimit,
    schedule: Option<Schedule>,
}

/// The shared limiter of one app instance.
pub struct Limiter {
    /// The app's base URL, for logs.
    app: String,
    state: Mutex<State>,
    /// Swapped whole when `max_in_flight` changes: calls in flight release to the one they took.
    in_flight: ArcSwapOption<Semaphore>,
    /// The schedule shared by replicas, and this app instance's scope in it.
    shared: OnceLock<(Arc<dyn SharedLimiter>, String)>,
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter").field("app", &self.app).field("limit", &self.limit()).finish()
    }
}

/// A call may go now; dropping it frees its in-flight place.
#[derive(Debug)]
pub struct Permit {
    _place: Option<OwnedSemaphorePermit>,
}

/// A call was refused: waiting for its turn would have taken longer than `max_wait`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// When a call might get through.
    pub retry_after: Duration,
}

impl Limiter {
    /// A limiter for the app at `app` (its base URL).
    pub fn new(app: &str, limit: OutboundLimit) -> Self {
        let schedule = limit.rate.map(|(r, b)| Schedule::new(r, b));
        let in_flight = limit.max_in_flight.map(|n| Arc::new(Semaphore::new(n as usize)));
        Self {
            app: app.to_owned(),
            state: Mutex::new(State { limit, schedule }),
            in_flight: ArcSwapOption::new(in_flight),
            shared: OnceLock::new(),
        }
    }

    /// Keeps the rate's schedule in `shared` from now on (once; later calls change nothing), under
    /// a scope named by a digest of the base URL, the same in every replica.
    pub fn share(&self, shared: Arc<dyn SharedLimiter>) {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(self.app.as_bytes());
        let _ = self.shared.set((shared, format!("app:{}", hex::encode(&digest[..8]))));
    }

    /// Whether the rate is kept with other replicas.
    pub fn is_shared(&self) -> bool {
        self.shared.get().is_some()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The lock guards plain arithmetic that cannot panic; a poisoned lock still holds valid data.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The limit in force.
    pub fn limit(&self) -> OutboundLimit {
        self.state().limit
    }

    /// Takes a new limit (a configuration reload) without forgetting the schedule: calls already
    /// admitted keep their slots and new ones queue behind them, so a reload never opens a
    /// second burst.
    pub fn reconfigure(&self, limit: OutboundLimit) {
        let mut s = self.state();
        if s.limit == limit {
            return;
        }
        let tat = s.schedule.and_then(|x| x.tat);
        s.schedule = limit.rate.map(|(r, b)| Schedule { tat, ..Schedule::new(r, b) });
        if s.limit.max_in_flight != limit.max_in_flight {
            self.in_flight.store(limit.max_in_flight.map(|n| Arc::new(Semaphore::new(n as usize))));
        }
        s.limit = limit;
    }

    /// Waits for this call's turn: a place in flight, then a slot in the rate. With `bounded`, a
    /// wait beyond `max_wait` is refused instead (for the rate, before waiting at all).
    pub async fn acquire(&self, bounded: bool) -> Result<Permit, Refused> {
        let start = Instant::now();
        let bound = bounded.then(|| self.limit().max_wait);
        // The place in flight comes first: a rate slot taken before it could be spent waiting for
        // a place, and calls held back that way would then leave together, as a burst.
        let place = match self.in_flight.load_full() {
            None => None,
            Some(sem) => {
                let acquired = match bound {
                    Some(b) => tokio::time::timeout(b, sem.acquire_owned()).await.map_err(|_| {
                        tracing::warn!(app = %self.app, "outbound limit: no place in flight within max_wait; call refused");
                        Refused { retry_after: Duration::from_secs(1) }
                    })?,
                    None => sem.acquire_owned().await,
                };
                // The semaphore is never closed; if it were, the call goes without a place.
                acquired.ok()
            }
        };
        let remaining = || bound.map(|b| b.saturating_sub(start.elapsed()));
        // The replicas' shared schedule if there is one and it answers, else this process's.
        let turn = match self.shared_turn(remaining()).await {
            Some(turn) => turn,
            None => {
                let (now, remaining) = (Instant::now(), remaining());
                let slot = self.state().schedule.as_mut().map(|s| s.reserve(now, remaining));
                slot.map_or(Ok(Duration::ZERO), |slot| slot.map(|at| at - now))
            }
        };
        match turn {
            Ok(wait) if !wait.is_zero() => tokio::time::sleep(wait).await,
            Ok(_) => {}
            Err(wait) => {
                tracing::warn!(app = %self.app, wait_ms = wait.as_millis() as u64, shared = self.is_shared(), "outbound limit: the wait would exceed max_wait; call refused");
                return Err(Refused { retry_after: wait });
            }
        }
        Ok(Permit { _place: place })
    }

    /// This call's wait in the schedule the replicas share, or how far away its slot lies when
    /// that is beyond `max_wait`; `None` without a shared schedule, or while it cannot be reached.
    async fn shared_turn(&self, max_wait: Option<Duration>) -> Option<Result<Duration, Duration>> {
        let (shared, scope) = self.shared.get()?;
        let (per_second, burst) = self.limit().rate?;
        match shared.reserve(scope, "rate", per_second, burst, max_wait).await {
            Ok(turn) => Some(turn),
            Err(e) => {
                tracing::warn!(app = %self.app, error = %e, "shared outbound limit unreachable; this replica keeps the rate alone");
                None
            }
        }
    }
}

tokio::task_local! {
    /// Whether the current write operation has sent a call to the app.
    static SENT: std::cell::Cell<bool>;
}

/// Runs one write operation (a create, replace, patch or delete): only its first app call may be
/// refused by the outbound limit. Once a call has gone out, later calls wait their turn however
/// long it takes (within the request timeout), so a refusal never leaves a write half done.
pub async fn operation<F: Future>(f: F) -> F::Output {
    // Nested, it is part of the outer operation, which may already have sent a call.
    if SENT.try_with(|_| ()).is_ok() { f.await } else { SENT.scope(std::cell::Cell::new(false), f).await }
}

/// Whether a call now may be refused: outside an operation always, inside only before its first.
pub(crate) fn may_refuse() -> bool {
    SENT.try_with(|s| !s.get()).unwrap_or(true)
}

/// Records that the current operation has sent a call.
pub(crate) fn mark_sent() {
    let _ = SENT.try_with(|s| s.set(true));
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn limit(per_second: u32, burst: u32, max_wait_ms: u64, in_flight: Option<u32>) -> OutboundLimit {
        OutboundLimit::new(Some((per_second, Some(burst))), Some(Duration::from_millis(max_wait_ms)), in_flight)
            .expect("valid")
    }

    #[test]
    fn validation_names_each_bad_key() {
        let errs = OutboundLimit::new(Some((0, Some(0))), Some(Duration::from_secs(61)), Some(0)).unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.key).collect();
        assert_eq!(keys, ["rate_limit.per_second", "rate_limit.burst", "rate_limit.max_wait_ms", "max_in_flight"]);
        let ok = OutboundLimit::new(Some((50, None)), None, None).unwrap();
        assert_eq!((ok.rate, ok.max_wait), (Some((50, 50)), DEFAULT_MAX_WAIT));
    }

    #[test]
    fn a_burst_goes_at_once_then_calls_are_spaced_and_far_slots_are_refused() {
        let mut s = Schedule::new(10, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(s.reserve(t0, None), Ok(t0));
        }
        let step = Duration::from_millis(100);
        assert_eq!(s.reserve(t0, None), Ok(t0 + step));
        assert_eq!(s.reserve(t0, None), Ok(t0 + step * 2));
        // The next slot is 300 ms away: refused under a 250 ms bound, and nothing is reserved.
        assert_eq!(s.reserve(t0, Some(Duration::from_millis(250))), Err(step * 3));
        assert_eq!(s.reserve(t0, Some(step * 3)), Ok(t0 + step * 3));
        // After an idle second the burst is available again, no more.
        let later = t0 + Duration::from_secs(2);
        for _ in 0..3 {
            assert_eq!(s.reserve(later, None), Ok(later));
        }
        assert_eq!(s.reserve(later, None), Ok(later + step));
    }

    #[tokio::test]
    async fn in_flight_is_capped_and_a_reload_keeps_the_schedule() {
        let l = Arc::new(Limiter::new("http://app", limit(1000, 1000, 5000, Some(3))));
        let now = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..12)
            .map(|_| {
                let (l, now, peak) = (l.clone(), now.clone(), peak.clone());
                tokio::spawn(async move {
                    let _p = l.acquire(true).await.expect("admitted");
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(n, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    now.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task");
        }
        assert_eq!(peak.load(Ordering::SeqCst), 3);

        // A slow limit: one call, then the next slot is a second away.
        let l = Limiter::new("http://app", limit(1, 1, 100, None));
        assert!(l.acquire(true).await.is_ok());
        let refused = l.acquire(true).await.unwrap_err();
        assert!(refused.retry_after > Duration::from_millis(900), "{refused:?}");
        // A reload to a faster rate does not forget the slot already taken.
        l.reconfigure(limit(2, 1, 100, None));
        assert!(l.acquire(true).await.is_err(), "the schedule survived the reload");
    }

    #[tokio::test]
    async fn only_the_first_call_of_an_operation_may_be_refused() {
        assert!(may_refuse());
        operation(async {
            assert!(may_refuse());
            mark_sent();
            assert!(!may_refuse());
            operation(async { assert!(!may_refuse(), "a nested operation is part of the outer one") }).await;
        })
        .await;
        assert!(may_refuse());
    }
}
