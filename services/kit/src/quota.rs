//! Per-tenant quotas: one noisy hospital must not take the desk's capacity
//! from the others.
//!
//! A token bucket per tenant (the well-kept `governor` crate), in memory
//! in each replica: N replicas admit up to N times the configured rate in
//! total, which is documented rather than paid for with a round trip per
//! request. Over quota is `RESOURCE_EXHAUSTED` with the time to wait, so
//! clients can back off instead of hammering.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use tonic::Status;

/// A rate per tenant.
pub struct TenantQuota {
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    per_second: u32,
    what: &'static str,
}

impl TenantQuota {
    /// `per_second` sustained with `burst` saved up; `per_second == 0` disables
    /// the quota. `what` names what is limited in messages ("tickets").
    pub fn new(per_second: u32, burst: u32, what: &'static str) -> Self {
        let limiter = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst.max(per_second)).unwrap_or(rate);
            DefaultKeyedRateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        Self {
            limiter,
            per_second,
            what,
        }
    }

    /// Takes one unit of `tenant`'s quota, or returns how long until one is
    /// there (for background work that defers instead of refusing).
    pub fn take(&self, tenant: &str) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter
            .check_key(&tenant.to_owned())
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Takes one unit of `tenant`'s quota, or says how long to wait.
    pub fn check(&self, tenant: &str) -> Result<(), Status> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        match limiter.check_key(&tenant.to_owned()) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait: Duration = not_until.wait_time_from(DefaultClock::default().now());
                metrics::counter!("wardline_quota_rejections_total", "tenant" => crate::admin::tenant_label(tenant), "what" => self.what).increment(1);
                Err(Status::resource_exhausted(format!(
                    "tenant {tenant} is over its quota of {} {} per second; retry in {} ms",
                    self.per_second,
                    self.what,
                    wait.as_millis().max(1)
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_tenant_over_quota_leaves_the_others_alone() {
        let q = TenantQuota::new(2, 3, "tickets");
        assert!(
            (0..3).all(|_| q.check("noisy").is_ok()),
            "the burst is admitted"
        );
        let e = q.check("noisy").unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        assert!(e.message().contains("retry in"), "{}", e.message());
        assert!(q.check("quiet").is_ok());
    }

    #[test]
    fn take_says_how_long_to_wait() {
        let q = TenantQuota::new(1, 1, "notifications");
        assert!(q.take("a").is_ok());
        let wait = q.take("a").unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(q.take("b").is_ok());
    }

    #[test]
    fn zero_disables() {
        let q = TenantQuota::new(0, 0, "tickets");
        assert!((0..1000).all(|_| q.check("any").is_ok()));
    }
}
