//! The admin HTTP port: `/metrics` (Prometheus), `/healthz` (the process is
//! alive) and `/readyz` (PostgreSQL answers, NATS is connected and the
//! service is not shutting down; load balancers and compose healthchecks
//! use it).

use std::sync::OnceLock;
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
}

async fn metrics_handler() -> String {
    prometheus().render()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(r): State<Readiness>) -> (StatusCode, String) {
    if r.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".into());
    }
    if r.nats.connection_state() != async_nats::connection::State::Connected {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "nats: not connected\n".into(),
        );
    }
    let db = tokio::time::timeout(
        Duration::from_secs(2),
        sqlx::query("SELECT 1").execute(&r.pool),
    )
    .await;
    match db {
        Ok(Ok(_)) => (StatusCode::OK, "ready\n".into()),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("postgres: {e}\n")),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "postgres: timeout\n".into(),
        ),
    }
}

/// Serves the admin port on `listener` until `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
    readiness: Readiness,
    stop: CancellationToken,
) -> std::io::Result<()> {
    prometheus();
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(readiness);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
}
