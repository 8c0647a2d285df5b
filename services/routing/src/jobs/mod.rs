//! Background work `app.rs` spawns: the queue drainer (woken when the API
//! frees capacity, and periodically for shifts that start by the clock),
//! the timer scanner ([`timers`], then the internal-target watcher
//! [`internal_sla`]) and the queue-depth gauges.

pub mod internal_sla;
pub mod timers;

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::cache::PolicyCache;
use crate::queue;
use crate::store::tickets;

/// Drains queues when woken (capacity freed) and every `interval` (shifts start).
pub async fn run_drainer(
    pool: PgPool,
    cache: Arc<PolicyCache>,
    wake: Arc<Notify>,
    interval: Duration,
    stop: CancellationToken,
) {
    loop {
        match queue::drain(&pool, &cache).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(assigned = n, "queue drained"),
            Err(e) => tracing::warn!(error = %e, "queue drain failed; retrying"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// Fires due timers every `interval` until `stop`.
pub async fn run_scanner(
    pool: PgPool,
    cache: Arc<PolicyCache>,
    interval: Duration,
    stop: CancellationToken,
) {
    loop {
        loop {
            match timers::fire_due(&pool, &cache).await {
                Ok(32..) => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "timer scan failed; retrying");
                    break;
                }
            }
        }
        loop {
            match internal_sla::alert_due(&pool).await {
                Ok(n) if n >= internal_sla::BATCH => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "internal SLA scan failed; retrying");
                    break;
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// Publishes queue depth per tenant and priority every 10 s.
pub async fn run_queue_gauges(pool: PgPool, stop: CancellationToken) {
    let mut seen: std::collections::HashSet<(String, wardline_proto::common::Priority)> =
        Default::default();
    loop {
        let rows = tickets::queue_depths(&pool).await;
        if let Ok(rows) = rows {
            // Summed per label: without WARDLINE_METRICS_TENANT_LABELS every
            // tenant is `_all`.
            let mut depth: std::collections::HashMap<
                (String, wardline_proto::common::Priority),
                i64,
            > = Default::default();
            for (tenant, p, n) in &rows {
                *depth
                    .entry((wardline_kit::admin::tenant_label(tenant), p.get()))
                    .or_default() += *n;
            }
            let current: std::collections::HashSet<(String, wardline_proto::common::Priority)> =
                depth.keys().cloned().collect();
            for (tenant, p) in seen.difference(&current) {
                metrics::gauge!("wardline_queue_depth", "tenant" => tenant.clone(), "priority" => tickets::priority_label(*p)).set(0.0);
            }
            for ((tenant, p), n) in &depth {
                metrics::gauge!("wardline_queue_depth", "tenant" => tenant.clone(), "priority" => tickets::priority_label(*p)).set(*n as f64);
            }
            seen = current;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
    }
}
