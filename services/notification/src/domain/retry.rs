//! Classifying a failed attempt and scheduling the next one.
//!
//! Transient failures (no answer in time, connection refused or reset, TLS
//! trouble, HTTP 408/429/5xx, SMTP 4xx) are retried with exponential
//! backoff and jitter; permanent ones (other HTTP 4xx, SMTP 5xx, a bad
//! address, a template that cannot render) are not. After `max_attempts`
//! attempts in one schedule the delivery is dead-lettered.

use std::time::Duration;

use backon::BackoffBuilder;

use super::{AttemptOutcome, ErrorClass};

/// What an attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Succeeded, retryable or permanent.
    pub outcome: AttemptOutcome,
    /// Why it failed (UNSPECIFIED on success).
    pub class: ErrorClass,
    /// HTTP status or SMTP reply code; 0 when none was received.
    pub status_code: u32,
}

impl Verdict {
    /// A success with `status_code`.
    pub fn ok(status_code: u32) -> Self {
        Self {
            outcome: AttemptOutcome::Succeeded,
            class: ErrorClass::Unspecified,
            status_code,
        }
    }

    /// A failure of `class`; retryable or not follows from the class.
    pub fn failed(class: ErrorClass, status_code: u32) -> Self {
        let outcome = if is_transient(class) {
            AttemptOutcome::RetryableFailure
        } else {
            AttemptOutcome::PermanentFailure
        };
        Self {
            outcome,
            class,
            status_code,
        }
    }
}

/// True for the classes that may succeed later.
pub fn is_transient(class: ErrorClass) -> bool {
    matches!(
        class,
        ErrorClass::Timeout
            | ErrorClass::Connection
            | ErrorClass::Tls
            | ErrorClass::RateLimited
            | ErrorClass::RemoteTransient
    )
}

/// An HTTP response status as an attempt's verdict.
pub fn classify_http(status: u16) -> Verdict {
    let code = u32::from(status);
    match status {
        200..=299 => Verdict::ok(code),
        408 => Verdict::failed(ErrorClass::Timeout, code),
        429 => Verdict::failed(ErrorClass::RateLimited, code),
        500..=599 => Verdict::failed(ErrorClass::RemoteTransient, code),
        // Redirects are not followed: the endpoint must be configured with
        // its final URL, so a 3xx is as permanent as a 4xx.
        _ => Verdict::failed(ErrorClass::RemoteRejected, code),
    }
}

/// An SMTP reply code as an attempt's verdict (2xx accepted, 4xx transient,
/// 5xx permanent; 550-553 reject the mailbox itself).
pub fn classify_smtp(code: u16) -> Verdict {
    let c = u32::from(code);
    match code {
        200..=399 => Verdict::ok(c),
        421 | 450..=452 => Verdict::failed(ErrorClass::RemoteTransient, c),
        400..=499 => Verdict::failed(ErrorClass::RemoteTransient, c),
        550 | 551 | 553 => Verdict::failed(ErrorClass::InvalidAddress, c),
        _ => Verdict::failed(ErrorClass::RemoteRejected, c),
    }
}

/// Backoff settings.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in one schedule before dead-lettering.
    pub max_attempts: u32,
    /// Delay after the first failure (before jitter).
    pub base: Duration,
    /// Largest delay (before jitter).
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base: Duration::from_secs(30),
            max: Duration::from_secs(3600),
        }
    }
}

/// What follows an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Delivered: done.
    Delivered,
    /// Permanently failed: done, no retry.
    Failed,
    /// Retry after this delay.
    RetryIn(Duration),
    /// Retries exhausted: dead letter.
    DeadLetter,
}

impl RetryPolicy {
    /// The delay before retry number `n` (1 = after the first failed
    /// attempt): `base * 2^(n-1)` capped at `max`, plus up to as much again
    /// of jitter, so that a receiver that comes back is not hit by every
    /// sender at once.
    pub fn delay(&self, n: u32) -> Duration {
        backon::ExponentialBuilder::default()
            .with_min_delay(self.base)
            .with_max_delay(self.max)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(usize::MAX)
            .build()
            .nth(n.saturating_sub(1) as usize)
            .unwrap_or(self.max)
    }

    /// What follows attempt number `attempt_in_schedule` (1-based) with `v`.
    pub fn next(&self, v: Verdict, attempt_in_schedule: u32) -> Next {
        match v.outcome {
            AttemptOutcome::Succeeded => Next::Delivered,
            AttemptOutcome::PermanentFailure | AttemptOutcome::Unspecified => Next::Failed,
            AttemptOutcome::RetryableFailure if attempt_in_schedule >= self.max_attempts => {
                Next::DeadLetter
            }
            AttemptOutcome::RetryableFailure => Next::RetryIn(self.delay(attempt_in_schedule)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_statuses() {
        for (s, outcome, class) in [
            (200, AttemptOutcome::Succeeded, ErrorClass::Unspecified),
            (204, AttemptOutcome::Succeeded, ErrorClass::Unspecified),
            (
                301,
                AttemptOutcome::PermanentFailure,
                ErrorClass::RemoteRejected,
            ),
            (
                400,
                AttemptOutcome::PermanentFailure,
                ErrorClass::RemoteRejected,
            ),
            (
                404,
                AttemptOutcome::PermanentFailure,
                ErrorClass::RemoteRejected,
            ),
            (408, AttemptOutcome::RetryableFailure, ErrorClass::Timeout),
            (
                429,
                AttemptOutcome::RetryableFailure,
                ErrorClass::RateLimited,
            ),
            (
                500,
                AttemptOutcome::RetryableFailure,
                ErrorClass::RemoteTransient,
            ),
            (
                503,
                AttemptOutcome::RetryableFailure,
                ErrorClass::RemoteTransient,
            ),
        ] {
            let v = classify_http(s);
            assert_eq!(
                (v.outcome, v.class, v.status_code),
                (outcome, class, u32::from(s)),
                "{s}"
            );
        }
    }

    #[test]
    fn smtp_codes() {
        assert_eq!(classify_smtp(250).outcome, AttemptOutcome::Succeeded);
        assert_eq!(classify_smtp(421).outcome, AttemptOutcome::RetryableFailure);
        assert_eq!(classify_smtp(451).class, ErrorClass::RemoteTransient);
        assert_eq!(classify_smtp(550).class, ErrorClass::InvalidAddress);
        assert_eq!(classify_smtp(550).outcome, AttemptOutcome::PermanentFailure);
        assert_eq!(classify_smtp(554).class, ErrorClass::RemoteRejected);
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        };
        for _ in 0..50 {
            let d1 = p.delay(1);
            assert!(
                d1 >= Duration::from_millis(100) && d1 <= Duration::from_millis(200),
                "{d1:?}"
            );
            let d3 = p.delay(3);
            assert!(
                d3 >= Duration::from_millis(400) && d3 <= Duration::from_millis(800),
                "{d3:?}"
            );
            let d9 = p.delay(9);
            assert!(
                d9 >= Duration::from_millis(1000) && d9 <= Duration::from_millis(2000),
                "{d9:?}"
            );
        }
    }

    #[test]
    fn transient_failures_retry_until_the_limit_permanent_ones_never() {
        let p = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        let transient = classify_http(503);
        assert!(matches!(p.next(transient, 1), Next::RetryIn(_)));
        assert!(matches!(p.next(transient, 2), Next::RetryIn(_)));
        assert_eq!(p.next(transient, 3), Next::DeadLetter);
        assert_eq!(p.next(classify_http(400), 1), Next::Failed);
        assert_eq!(p.next(classify_smtp(550), 1), Next::Failed);
        assert_eq!(p.next(classify_http(200), 3), Next::Delivered);
        assert!(matches!(
            p.next(Verdict::failed(ErrorClass::Connection, 0), 1),
            Next::RetryIn(_)
        ));
        assert_eq!(
            p.next(Verdict::failed(ErrorClass::RenderFailed, 0), 1),
            Next::Failed
        );
    }
}
