//! The admin HTTP port: `/metrics` (Prometheus), `/healthz` (the process is
//! alive) and `/readyz` (PostgreSQL answers, NATS is connected and the
//! service is not shutting down; load balancers and compose healthchecks
//! use it).
//!
//! What must hold (the port has no authentication):
//! - It binds to loopback unless the operator says otherwise
//!   (`<PREFIX>_ADMIN_ADDR`; containers set `0.0.0.0` so the kubelet and
//!   compose can probe it, and a NetworkPolicy keeps it in the cluster).
//! - `/readyz` answers from a state a background task refreshes every
//!   `WARDLINE_READYZ_INTERVAL_MS`: a flood of probes costs no database
//!   connection, and the answer names the failing dependency, never its
//!   error text (which can name hosts, roles and databases).
//! - Metric labels name no tenant unless `WARDLINE_METRICS_TENANT_LABELS`
//!   is true ([`tenant_label`]): the customer list and each hospital's
//!   backlog are not for whoever can reach the port.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Latency buckets in seconds, from a millisecond to an hour: wide enough
/// for RPC latency and for time-to-assign while a queue waits for a shift.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0, 1800.0, 3600.0,
];

static TENANT_LABELS: AtomicBool = AtomicBool::new(false);

/// The label value that stands for every tenant when tenant labels are off.
pub const ALL_TENANTS_LABEL: &str = "_all";

/// Whether metric labels may name tenants (`WARDLINE_METRICS_TENANT_LABELS`;
/// set once at start-up, process-wide like the recorder).
pub fn set_tenant_labels(on: bool) {
    TENANT_LABELS.store(on, Ordering::Relaxed);
}

/// The value of a `tenant` metric label: the tenant when the operator
/// opted in, else [`ALL_TENANTS_LABEL`]. Gauges must sum per label value
/// (several tenants share `_all`).
pub fn tenant_label(tenant: &str) -> String {
    if TENANT_LABELS.load(Ordering::Relaxed) {
        tenant.to_owned()
    } else {
        ALL_TENANTS_LABEL.to_owned()
    }
}

/// The value of a `consumer` metric label: the durable (which names the
/// tenants of a dedicated pool) when tenant labels are on, else the service.
pub fn consumer_label(service: &str, durable: &str) -> String {
    if TENANT_LABELS.load(Ordering::Relaxed) {
        durable.to_owned()
    } else {
        service.to_owned()
    }
}

/// The process-wide Prometheus recorder (installed on first use).
pub fn prometheus() -> &'static PrometheusHandle {
    PROMETHEUS.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .expect("static bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        // A second service in the same process (tests) shares this recorder.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// What `/readyz` checks.
#[derive(Clone)]
pub struct Readiness {
    /// The service's pool.
    pub pool: PgPool,
    /// The service's NATS client.
    pub nats: async_nats::Client,
    /// Cancelled when shutdown begins.
    pub shutdown: CancellationToken,
    /// How often the dependencies are checked (`WARDLINE_READYZ_INTERVAL_MS`).
    pub interval: Duration,
}

/// The last readiness verdict: `Ok` or the failing dependency.
#[derive(Clone)]
struct Cached {
    shutdown: CancellationToken,
    verdict: Arc<RwLock<Result<(), &'static str>>>,
}

async fn metrics_handler() -> String {
    prometheus().render()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(c): State<Cached>) -> (StatusCode, String) {
    if c.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".into());
    }
    match *c.verdict.read().unwrap_or_else(|e| e.into_inner()) {
        Ok(()) => (StatusCode::OK, "ready\n".into()),
        Err(what) => (StatusCode::SERVICE_UNAVAILABLE, format!("{what}\n")),
    }
}

/// One check of the dependencies.
async fn check(r: &Readiness) -> Result<(), &'static str> {
    if r.nats.connection_state() != async_nats::connection::State::Connected {
        return Err("nats: not connected");
    }
    match tokio::time::timeout(
        Duration::from_secs(2),
        sqlx::query("SELECT 1").execute(&r.pool),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: PostgreSQL check failed");
            Err("postgres: unavailable")
        }
        Err(_) => Err("postgres: timeout"),
    }
}

/// Checks `r` every `r.interval` into `verdict` until `stop` (or shutdown,
/// after which `/readyz` answers 503 without looking).
async fn refresh(
    r: Readiness,
    verdict: Arc<RwLock<Result<(), &'static str>>>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = r.shutdown.cancelled() => return,
            _ = tokio::time::sleep(r.interval) => {}
        }
        let now = check(&r).await;
        let before = std::mem::replace(
            &mut *verdict.write().unwrap_or_else(|e| e.into_inner()),
            now,
        );
        if before != now {
            match now {
                Ok(()) => tracing::info!("ready"),
                Err(what) => tracing::warn!(what, "not ready"),
            }
        }
    }
}

/// Serves the admin port on `listener` until `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
    readiness: Readiness,
    stop: CancellationToken,
) -> std::io::Result<()> {
    prometheus();
    // The first verdict before the first answer (the listener is bound,
    // so early probes wait a moment rather than see a false 503).
    let first = check(&readiness).await;
    if let Err(what) = first {
        tracing::warn!(what, "not ready");
    }
    let cached = Cached {
        shutdown: readiness.shutdown.clone(),
        verdict: Arc::new(RwLock::new(first)),
    };
    tokio::spawn(refresh(readiness, cached.verdict.clone(), stop.clone()));
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(cached);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_labels_are_opt_in() {
        assert_eq!(tenant_label("stmarys"), ALL_TENANTS_LABEL);
        assert_eq!(consumer_label("routing", "routing-stmarys"), "routing");
    }
}
