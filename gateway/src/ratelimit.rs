//! Inbound rate limits per tenant and per token (governor's GCRA), checked right after
//! authentication. Exceeding one answers 429 with `Retry-After`, so a well-behaved client (and
//! Entra's per-job back-off) slows down instead of failing.
//!
//! With replicas, a [`SharedLimiter`] (Redis) holds the same quotas across all of them; the local
//! limiters stay in front, so a replica is still protected when the shared one is unreachable
//! (then the request is admitted by the local tier alone, and that is logged).

use std::fmt;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::tenant::spec::{LimitsSpec, RateSpec};

/// The limits of one tenant.
#[derive(Default)]
pub struct RateLimits {
    /// What these limiters were built from: a reload that keeps it keeps them, and their state.
    spec: LimitsSpec,
    tenant: Option<DefaultDirectRateLimiter>,
    per_token: Option<DefaultKeyedRateLimiter<String>>,
}

impl fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimits")
            .field("tenant", &self.tenant.is_some())
            .field("per_token", &self.per_token.is_some())
            .finish()
    }
}

fn quota(spec: &RateSpec) -> Result<Quota, String> {
    let rate = NonZeroU32::new(spec.per_second).ok_or("`per_second` must be at least 1")?;
    let burst = NonZeroU32::new(spec.burst.unwrap_or(spec.per_second)).ok_or("`burst` must be at least 1")?;
    Ok(Quota::per_second(rate).allow_burst(burst))
}

impl RateLimits {
    /// Limiters for a tenant's `limits:` section.
    pub fn new(spec: &LimitsSpec) -> Result<Self, String> {
        Ok(Self {
            spec: spec.clone(),
            tenant: spec.tenant.as_ref().map(quota).transpose()?.map(RateLimiter::direct),
            per_token: spec.per_token.as_ref().map(quota).transpose()?.map(RateLimiter::keyed),
        })
    }

    /// The spec these limiters were built from (a reload that keeps it keeps them, and their state).
    pub fn spec(&self) -> &LimitsSpec {
        &self.spec
    }

    /// Admits one request of the token labelled `token`, or says which limit refused it and how
    /// long to wait.
    pub fn check(&self, token: &str) -> Result<(), Limited> {
        // The time is read from the refusing limiter's own clock, and only on a refusal: a new
        // clock calibrates itself with CPUID instructions, each a VM exit under a hypervisor
        // (11% of a GET's CPU time when this made one per request, perf on the 2-core VM).
        if let Some(l) = &self.per_token {
            l.check_key(&token.to_owned())
                .map_err(|n| Limited { wait: n.wait_time_from(l.clock().now()), by: Limit::Token })?;
        }
        if let Some(l) = &self.tenant {
            l.check().map_err(|n| Limited { wait: n.wait_time_from(l.clock().now()), by: Limit::Tenant })?;
        }
        Ok(())
    }
}

/// A request refused by an inbound limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// How long until a request would be admitted.
    pub wait: Duration,
    pub by: Limit,
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// This process's per-token limit.
    Token,
    /// This process's tenant-wide limit.
    Tenant,
    /// The per-token quota shared by replicas.
    SharedToken,
    /// The tenant-wide quota shared by replicas.
    SharedTenant,
}

impl Limit {
    /// A short fixed name, for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Tenant => "tenant",
            Self::SharedToken => "shared_token",
            Self::SharedTenant => "shared_tenant",
        }
    }
}

/// A boxed future of a shared reservation: `Ok(Ok(wait))` the call may go after `wait`,
/// `Ok(Err(wait))` refused (its slot lies `wait` away, beyond the caller's bound; nothing was
/// reserved), `Err` when the shared state cannot be reached.
pub type SharedFuture<'a> = Pin<Box<dyn Future<Output = Result<Result<Duration, Duration>, String>> + Send + 'a>>;

/// Quotas held across replicas (Redis): GCRA schedules keyed by a scope (a tenant, or an app
/// instance for outbound limits) and a quota name within it.
pub trait SharedLimiter: Send + Sync {
    /// Reserves the next slot of quota `key` in `scope` at `per_second` with `burst`, unless it
    /// lies more than `max_wait` away (`None`: however far).
    fn reserve<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        per_second: u32,
        burst: u32,
        max_wait: Option<Duration>,
    ) -> SharedFuture<'a>;
}

impl std::fmt::Debug for dyn SharedLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedLimiter")
    }
}

impl RateLimits {
    /// The shared tier: the same quotas, counted across every replica.
    pub async fn check_shared(&self, shared: &dyn SharedLimiter, tenant: &str, token: &str) -> Result<(), Limited> {
        let quotas = [
            self.spec.per_token.as_ref().map(|q| (format!("tok:{token}"), q, Limit::SharedToken)),
            self.spec.tenant.as_ref().map(|q| ("all".to_owned(), q, Limit::SharedTenant)),
        ];
        for (key, q, by) in quotas.into_iter().flatten() {
            // Inbound requests never wait: admitted now, or answered 429.
            match shared
                .reserve(tenant, &key, q.per_second, q.burst.unwrap_or(q.per_second), Some(Duration::ZERO))
                .await
            {
                Ok(Ok(_)) => {}
                Ok(Err(wait)) => return Err(Limited { wait, by }),
                Err(e) => {
                    tracing::warn!(tenant, error = %e, "shared rate limit unreachable; the local limit alone applies");
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_limits_per_token_and_tenant() {
        let spec = LimitsSpec {
            tenant: Some(RateSpec { per_second: 1, burst: Some(4) }),
            per_token: Some(RateSpec { per_second: 1, burst: Some(2) }),
        };
        let l = RateLimits::new(&spec).unwrap();
        assert!(l.check("a").is_ok() && l.check("a").is_ok());
        let Limited { wait, by } = l.check("a").unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
        assert_eq!(by, Limit::Token);
        assert!(l.check("b").is_ok() && l.check("b").is_ok(), "another token has its own budget");
        assert_eq!(l.check("c").map_err(|l| l.by), Err(Limit::Tenant), "the tenant's burst of 4 is used up");
        assert!(
            RateLimits::new(&LimitsSpec { tenant: Some(RateSpec { per_second: 0, burst: None }), per_token: None })
                .is_err()
        );
    }
}
