//! Personal data in logs: off unless the request's tenant allows it (`options.log_personal_data`).
//!
//! `server::observe` runs each request inside [`scope`] with its tenant's choice; every log field
//! that may hold personal data (user names, filter values, app paths, error details quoting either)
//! is written through [`personal`], which prints the value only inside a scope that allows it and
//! `[redacted]` everywhere else: in other tasks, at startup, in tests. Secrets are not personal
//! data: they are never logged at all, whatever a tenant chooses.
//!
//! Touches nothing but a Tokio task-local.

use std::fmt;
use std::future::Future;

/// What a withheld value prints as.
pub const REDACTED: &str = "[redacted]";

tokio::task_local! {
    /// Whether the current request's tenant lets personal data into the logs.
    static ALLOWED: bool;
}

/// Runs `f` (a request) with personal data in its log lines allowed or not.
pub async fn scope<F: Future>(allowed: bool, f: F) -> F::Output {
    ALLOWED.scope(allowed, f).await
}

/// Runs `f` with the current scope's choice: for tasks a request spawns (lock renewals), which do
/// not inherit task-locals.
pub fn inherit<F: Future>(f: F) -> impl Future<Output = F::Output> {
    ALLOWED.scope(allowed(), f)
}

/// Whether the current task may log (and audit) personal data; `false` outside a request.
pub fn allowed() -> bool {
    ALLOWED.try_with(|a| *a).unwrap_or(false)
}

/// A log field value that may be personal data: see [`personal`].
#[derive(Debug, Clone, Copy)]
pub struct Personal<T>(T);

/// Wraps a value for a log field: it prints as itself where the tenant allows personal data in
/// logs, else as `[redacted]`. The choice is made when the line is written, in the writing task.
pub fn personal<T: fmt::Display>(value: T) -> Personal<T> {
    Personal(value)
}

impl<T: fmt::Display> fmt::Display for Personal<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if allowed() { self.0.fmt(f) } else { f.write_str(REDACTED) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_unless_the_scope_allows() {
        let name = "ada@example.com";
        assert_eq!(personal(name).to_string(), REDACTED, "outside a request");
        assert_eq!(ALLOWED.sync_scope(false, || personal(name).to_string()), REDACTED);
        assert_eq!(ALLOWED.sync_scope(true, || personal(name).to_string()), name);
        assert_eq!(ALLOWED.sync_scope(true, || format!("{:>5}", personal(7))), "    7", "formatting passes through");
    }

    #[tokio::test]
    async fn spawned_tasks_inherit_only_when_asked() {
        let shown = scope(true, async {
            let plain = tokio::spawn(async { personal("x").to_string() });
            let inherited = tokio::spawn(inherit(async { personal("x").to_string() }));
            (plain.await.unwrap(), inherited.await.unwrap())
        })
        .await;
        assert_eq!(shown, (REDACTED.to_owned(), "x".to_owned()));
        let hidden = scope(false, inherit(async { personal("x").to_string() })).await;
        assert_eq!(hidden, REDACTED);
    }
}
