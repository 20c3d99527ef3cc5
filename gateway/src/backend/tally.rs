//! The app calls of one piece of work (an audited change): how many attempts went to the app, and
//! how the last one ended. [`counted`] scopes the tally with a Tokio task-local; `Backend::send`
//! records every attempt in the innermost scope, if there is one.
//!
//! Touches nothing but the task-local.

use std::cell::Cell;
use std::future::Future;

/// How the app calls of a piece of work went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Attempts sent (or tried: a refused connection counts), retries included.
    pub calls: u32,
    /// How the last attempt ended.
    pub last: Option<Attempt>,
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The app answered with this HTTP status.
    Status(u16),
    /// No usable answer: the `BackendError` kind (`timeout`, `connect`, `response`, `request`).
    Failed(&'static str),
}

tokio::task_local! {
    static TALLY: Cell<Tally>;
}

/// Runs `f` and returns what it sent to apps besides its output. Work nested in another
/// `counted` is tallied by the inner one only.
pub async fn counted<F: Future>(f: F) -> (F::Output, Tally) {
    TALLY
        .scope(Cell::new(Tally::default()), async move {
            let out = f.await;
            (out, TALLY.with(Cell::get))
        })
        .await
}

/// Records one attempt in the current tally, if any.
pub(crate) fn record(attempt: Attempt) {
    let _ = TALLY.try_with(|t| {
        let mut now = t.get();
        now.calls = now.calls.saturating_add(1);
        now.last = Some(attempt);
        t.set(now);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn attempts_are_counted_in_the_innermost_scope() {
        record(Attempt::Status(200)); // outside any scope: nowhere, and no panic
        let ((), t) = counted(async {
            record(Attempt::Failed("connect"));
            record(Attempt::Status(201));
        })
        .await;
        assert_eq!(t, Tally { calls: 2, last: Some(Attempt::Status(201)) });
        let (inner, outer) = counted(async {
            record(Attempt::Status(200));
            counted(async { record(Attempt::Status(409)) }).await.1
        })
        .await;
        assert_eq!(inner, Tally { calls: 1, last: Some(Attempt::Status(409)) });
        assert_eq!(outer, Tally { calls: 1, last: Some(Attempt::Status(200)) });
    }
}
