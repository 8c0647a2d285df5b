//! The transactional outbox and its relay.
//!
//! Why: a service must never commit a state change and lose its event, nor
//! publish an event for a change that rolled back. So the event is written
//! into the `outbox` table inside the same transaction as the change
//! ([`enqueue`]), and the [`Relay`] publishes committed rows to JetStream.
//!
//! What must hold:
//! - A row is marked sent only after JetStream's PubAck. A crash between
//!   publish and mark re-publishes the row; the stream drops the copy
//!   because `Nats-Msg-Id` is the event id and the duplicate window is far
//!   longer than any retry.
//! - Replicas share the work with `FOR UPDATE SKIP LOCKED`; a row is never
//!   published by two relays at once.
//! - The relay is woken by `NOTIFY` on commit (a trigger on the table) and
//!   polls as a fallback, so a lost notification delays, never loses.
//! - The row keeps the `traceparent` of the transaction that wrote it; the
//!   publish span is its child, and consumers continue that trace.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream;
use futures::future::join_all;
use prost::Message as _;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, field::Empty};
use uuid::Uuid;
use wardline_proto::events::EventEnvelope;

use crate::telemetry;

/// Channel the outbox trigger notifies.
pub const CHANNEL: &str = "wardline_outbox";
/// Content type header of every event.
pub const CONTENT_TYPE: &str = "application/protobuf; type=wardline.events.v1.EventEnvelope";

/// Errors writing to the outbox.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The envelope has no payload, so no subject.
    #[error("event {0} has no payload")]
    NoPayload(String),
    /// The event id is not a UUID.
    #[error("event id {0} is not a UUID")]
    BadId(String),
    /// The database refused the row.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Writes `env` to the outbox inside the caller's transaction. The current
/// span's trace context is stored with the row.
pub async fn enqueue(conn: &mut PgConnection, env: &EventEnvelope) -> Result<(), OutboxError> {
    enqueue_many(conn, std::slice::from_ref(env)).await
}

/// Writes several events in one statement (one round trip), all under the
/// current span's trace context.
pub async fn enqueue_many(
    conn: &mut PgConnection,
    envs: &[EventEnvelope],
) -> Result<(), OutboxError> {
    let trace = TraceContext::current();
    let rows: Vec<_> = envs.iter().map(|e| (e, &trace)).collect();
    enqueue_traced(conn, &rows).await
}

/// The W3C trace context an outbox row carries to its publish span.
#[derive(Debug, Clone, Default)]
pub struct TraceContext {
    traceparent: Option<String>,
    tracestate: Option<String>,
}

impl TraceContext {
    /// The context of the current span (taken in a request's own task
    /// before its work is handed to a shared writer, see [`enqueue_traced`]).
    pub fn current() -> Self {
        Self::of(&tracing::Span::current())
    }

    /// The context of `span`.
    pub fn of(span: &tracing::Span) -> Self {
        let mut trace = telemetry::trace_headers(span);
        Self {
            traceparent: trace.remove("traceparent"),
            tracestate: trace.remove("tracestate"),
        }
    }
}

/// Writes events from different requests in one statement, each under its
/// own request's trace context: what a group commit needs, so one trace per
/// ticket survives many tickets sharing a transaction.
pub async fn enqueue_traced(
    conn: &mut PgConnection,
    rows: &[(&EventEnvelope, &TraceContext)],
) -> Result<(), OutboxError> {
    if rows.is_empty() {
        return Ok(());
    }
    let n = rows.len();
    let mut ids = Vec::with_capacity(n);
    let mut subjects = Vec::with_capacity(n);
    let mut payloads = Vec::with_capacity(n);
    let mut parents = Vec::with_capacity(n);
    let mut states = Vec::with_capacity(n);
    for (env, trace) in rows {
        ids.push(
            Uuid::parse_str(&env.event_id).map_err(|_| OutboxError::BadId(env.event_id.clone()))?,
        );
        subjects.push(
            crate::events::subject(env)
                .ok_or_else(|| OutboxError::NoPayload(env.event_id.clone()))?,
        );
        payloads.push(env.encode_to_vec());
        parents.push(trace.traceparent.clone());
        states.push(trace.tracestate.clone());
    }
    sqlx::query(
        "INSERT INTO outbox (event_id, subject, payload, traceparent, tracestate)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::bytea[], $4::text[], $5::text[])",
    )
    .bind(&ids)
    .bind(&subjects)
    .bind(&payloads)
    .bind(&parents)
    .bind(&states)
    .execute(conn)
    .await?;
    Ok(())
}

/// Relay settings.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Rows claimed and published per round.
    pub batch: i64,
    /// Polling interval when no notification arrives.
    pub poll: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch: 512,
            poll: Duration::from_millis(1000),
        }
    }
}

/// Publishes committed outbox rows to JetStream.
pub struct Relay {
    pool: PgPool,
    js: jetstream::Context,
    cfg: RelayConfig,
    service: &'static str,
}

#[derive(sqlx::FromRow)]
struct Row {
    seq: i64,
    event_id: Uuid,
    subject: String,
    payload: Vec<u8>,
    traceparent: Option<String>,
    tracestate: Option<String>,
}

impl Relay {
    /// A relay for `service`'s outbox.
    pub fn new(
        pool: PgPool,
        js: jetstream::Context,
        cfg: RelayConfig,
        service: &'static str,
    ) -> Self {
        Self {
            pool,
            js,
            cfg,
            service,
        }
    }

    /// Runs until `shutdown`, then publishes what is left (best effort, the
    /// next start publishes anything this one could not).
    pub async fn run(self, shutdown: CancellationToken) {
        let wakeup = crate::wakeup::Wakeup::listen(&self.pool, CHANNEL).await;
        let mut last_cleanup = tokio::time::Instant::now();
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.drain().await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => {
                    tracing::warn!(service = self.service, error = %e, "outbox relay round failed; retrying");
                    metrics::counter!("wardline_outbox_relay_errors_total").increment(1);
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
            if last_cleanup.elapsed() > Duration::from_secs(60) {
                last_cleanup = tokio::time::Instant::now();
                if let Err(e) = self.cleanup().await {
                    tracing::warn!(error = %e, "outbox cleanup failed");
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = wakeup.wait(self.cfg.poll) => {}
            }
        }
        if let Err(e) = self.drain().await {
            tracing::warn!(error = %e, "final outbox drain failed; rows stay for the next start");
        }
    }

    /// Publishes batches until no unsent row is left.
    pub async fn drain(&self) -> Result<(), RelayError> {
        loop {
            let n = self.publish_batch().await?;
            if n < self.cfg.batch as usize {
                return Ok(());
            }
        }
    }

    /// Claims one batch, publishes it pipelined, marks what was acknowledged.
    /// Returns the number of rows claimed.
    pub async fn publish_batch(&self) -> Result<usize, RelayError> {
        // Every tenant's scope: the relay publishes every tenant's events
        // (the outbox is not tenant-scoped today; the scope keeps the relay
        // right if it becomes so).
        let mut tx = crate::db::begin(&self.pool, crate::db::Scope::AllTenants).await?;
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT seq, event_id, subject, payload, traceparent, tracestate
               FROM outbox WHERE sent_at IS NULL
              ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(self.cfg.batch)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let claimed = rows.len();

        // Send every publish first, then await the acks together: one round
        // trip's latency for the whole batch instead of one per row.
        let mut pending = Vec::with_capacity(rows.len());
        for row in rows {
            let span = tracing::info_span!(
                "outbox.publish",
                otel.kind = "producer",
                subject = %row.subject,
                event_id = %row.event_id,
                trace_id = Empty,
            );
            let mut carrier = HashMap::new();
            if let Some(tp) = row.traceparent {
                carrier.insert("traceparent".to_owned(), tp);
            }
            if let Some(ts) = row.tracestate {
                carrier.insert("tracestate".to_owned(), ts);
            }
            telemetry::set_remote_parent(&span, &telemetry::MapExtractor(&carrier));
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", row.event_id.to_string().as_str());
            headers.insert("Content-Type", CONTENT_TYPE);
            for (k, v) in telemetry::trace_headers(&span) {
                headers.insert(k.as_str(), v.as_str());
            }
            let sent = self
                .js
                .publish_with_headers(row.subject, headers, row.payload.into())
                .instrument(span.clone())
                .await;
            pending.push((row.seq, span, sent));
        }
        let acks = join_all(pending.into_iter().map(|(seq, span, sent)| async move {
            let result = match sent {
                Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = &result {
                span.in_scope(|| tracing::warn!(error = %e, "publish not acknowledged"));
            }
            (seq, result.is_ok())
        }))
        .await;

        let sent: Vec<i64> = acks.iter().filter(|(_, ok)| *ok).map(|(s, _)| *s).collect();
        let failed: Vec<i64> = acks
            .iter()
            .filter(|(_, ok)| !*ok)
            .map(|(s, _)| *s)
            .collect();
        if !sent.is_empty() {
            sqlx::query("UPDATE outbox SET sent_at = now() WHERE seq = ANY($1)")
                .bind(&sent)
                .execute(&mut *tx)
                .await?;
        }
        if !failed.is_empty() {
            sqlx::query("UPDATE outbox SET attempts = attempts + 1 WHERE seq = ANY($1)")
                .bind(&failed)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        metrics::counter!("wardline_outbox_published_total").increment(sent.len() as u64);
        if !failed.is_empty() {
            return Err(RelayError::NotAcknowledged(failed.len()));
        }
        Ok(claimed)
    }

    /// Reports the backlog (sent rows are purged by [`crate::housekeeping`]).
    async fn cleanup(&self) -> Result<(), sqlx::Error> {
        let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            .fetch_one(&self.pool)
            .await?;
        metrics::gauge!("wardline_outbox_pending").set(pending as f64);
        Ok(())
    }
}

/// Errors of one relay round.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// PostgreSQL failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// Some publishes were not acknowledged by JetStream; they are retried.
    #[error("{0} publishes were not acknowledged")]
    NotAcknowledged(usize),
}
