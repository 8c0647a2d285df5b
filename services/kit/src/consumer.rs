//! The consumer loop: durable pull consumer, inbox de-duplication, backoff
//! and dead-lettering, written once for every service.
//!
//! What must hold:
//! - A message is acknowledged only after the service's own transaction
//!   committed, and that transaction inserted the event id into `inbox`
//!   first. A redelivery (crash before the ack, duplicate publish, replay)
//!   finds the id and changes nothing: effects are exactly once.
//! - A handler that cannot apply an event *yet* (it came before the event it
//!   depends on) returns [`HandleError::Retry`]; the message is redelivered
//!   with backoff. After `max_deliver` deliveries, or at once for
//!   [`HandleError::Poison`], the event is dead-lettered: kept in the
//!   `dead_letters` table and on the `WARDLINE_DEADLETTER` stream with its
//!   reason, and counted. Never dropped silently.
//! - When PostgreSQL is unreachable the loop stops pulling until it is back,
//!   so an outage does not burn the message's deliveries.
//! - All replicas of a service share one durable consumer; JetStream hands
//!   each message to one of them. A replica dedicated to some tenants
//!   (`WARDLINE_TENANTS`) has a durable of its own; the shared pool beside
//!   it lists those tenants in `WARDLINE_EXCLUDE_TENANTS` and acknowledges
//!   their events unhandled, so each tenant's events are handled by one pool.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull};

type PullConsumer = jetstream::consumer::Consumer<pull::Config>;
use futures::StreamExt;
use prost::Message as _;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, field::Empty};
use uuid::Uuid;
use wardline_proto::events::EventEnvelope;

use crate::telemetry;

/// Why a handler did not apply an event.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// Try again later (an earlier event is missing, a dependency is busy).
    #[error("retry: {0}")]
    Retry(String),
    /// The event can never be applied; dead-letter it now.
    #[error("poison: {0}")]
    Poison(String),
    /// The database failed; the transaction is rolled back and retried.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// An event as a handler sees it.
#[derive(Debug)]
pub struct Incoming {
    /// Decoded envelope.
    pub envelope: EventEnvelope,
    /// Subject it arrived on.
    pub subject: String,
    /// 1 on first delivery.
    pub delivered: i64,
}

/// Applies events inside the loop's transaction. Anything written through
/// `conn` (state, outbox rows) commits together with the inbox entry.
pub trait EventHandler: Send + Sync + 'static {
    /// Applies one event.
    fn handle<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        event: &'a Incoming,
    ) -> impl Future<Output = Result<(), HandleError>> + Send + 'a;
}

/// A consumer's configuration.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// Service name (metrics, dead-letter subject).
    pub service: &'static str,
    /// Durable name shared by all replicas, e.g. `intake`.
    pub durable: String,
    /// Subjects to take (see [`crate::nats::filter_subjects`]).
    pub filter_subjects: Vec<String>,
    /// Deliveries before an event is dead-lettered.
    pub max_deliver: i64,
    /// How long a delivery may stay unacknowledged before the server hands
    /// it to another worker (a crashed or stuck replica). Deliberately no
    /// server-side backoff list: with one, the server ignores the delay of
    /// a NAK and early events wait a whole ack-wait instead of the short
    /// [`retry_delay`] (caught by a test on nats-server 2.15).
    pub ack_wait: Duration,
    /// Messages handed out and not yet acknowledged, across all replicas.
    /// Bounds memory and the redelivery burst after a crash.
    pub max_ack_pending: i64,
    /// Concurrent workers in this process.
    pub workers: usize,
    /// Tenants whose events this consumer acknowledges without handling:
    /// a dedicated replica (its own durable) handles them.
    pub exclude_tenants: Vec<String>,
}

impl ConsumerSpec {
    /// Defaults for `service` taking `filter_subjects`.
    pub fn new(
        service: &'static str,
        durable: impl Into<String>,
        filter_subjects: Vec<String>,
    ) -> Self {
        Self {
            service,
            durable: durable.into(),
            filter_subjects,
            max_deliver: 10,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 1000,
            workers: 4,
            exclude_tenants: Vec::new(),
        }
    }

    fn pull_config(&self) -> pull::Config {
        pull::Config {
            durable_name: Some(self.durable.clone()),
            description: Some(format!("{} event consumer", self.service)),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            max_deliver: self.max_deliver,
            filter_subjects: self.filter_subjects.clone(),
            max_ack_pending: self.max_ack_pending,
            ..Default::default()
        }
    }
}

/// Delay before redelivering after a `Retry` on delivery `n` (1-based):
/// 250 ms doubling to at most 30 s.
pub fn retry_delay(delivered: i64) -> Duration {
    let exp = delivered.clamp(1, 8) as u32 - 1;
    Duration::from_millis(250u64 << exp).min(Duration::from_secs(30))
}

/// Creates (or updates) the durable consumer and runs its workers until `shutdown`.
pub async fn run<H: EventHandler>(
    js: jetstream::Context,
    pool: PgPool,
    spec: ConsumerSpec,
    handler: Arc<H>,
    shutdown: CancellationToken,
) -> Result<(), async_nats::Error> {
    let consumer = loop {
        let attempt = async {
            let stream = js.get_stream(crate::nats::EVENTS_STREAM).await?;
            // Create or update: a durable left by an older version takes
            // this version's filter, ack wait and limits (get-or-create
            // would keep the old ones and silently skip new event kinds).
            let consumer: PullConsumer = match stream.create_consumer(spec.pull_config()).await {
                Ok(c) => c,
                Err(e) => {
                    // A field the server cannot change in place: keep
                    // consuming with what exists and say so.
                    tracing::warn!(durable = %spec.durable, error = %e, "consumer configuration not updated; using the existing durable");
                    stream.get_consumer(&spec.durable).await?
                }
            };
            Ok::<_, async_nats::Error>(consumer)
        };
        match attempt.await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(durable = %spec.durable, error = %e, "consumer not ready; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    let spec = Arc::new(spec);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..spec.workers.max(1) {
        tasks.spawn(worker(
            consumer.clone(),
            js.clone(),
            pool.clone(),
            spec.clone(),
            handler.clone(),
            shutdown.clone(),
        ));
    }
    tasks.spawn(lag_reporter(
        consumer.clone(),
        spec.clone(),
        shutdown.clone(),
    ));
    while tasks.join_next().await.is_some() {}
    Ok(())
}

async fn lag_reporter(
    mut consumer: PullConsumer,
    spec: Arc<ConsumerSpec>,
    shutdown: CancellationToken,
) {
    loop {
        if let Ok(info) = consumer.info().await {
            metrics::gauge!("wardline_consumer_pending", "consumer" => spec.durable.clone())
                .set(info.num_pending as f64);
            metrics::gauge!("wardline_consumer_ack_pending", "consumer" => spec.durable.clone())
                .set(info.num_ack_pending as f64);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
    }
}

async fn worker<H: EventHandler>(
    consumer: PullConsumer,
    js: jetstream::Context,
    pool: PgPool,
    spec: Arc<ConsumerSpec>,
    handler: Arc<H>,
    shutdown: CancellationToken,
) {
    while !shutdown.is_cancelled() {
        let mut messages = match consumer
            .stream()
            .max_messages_per_batch(32)
            .expires(Duration::from_secs(5))
            .heartbeat(Duration::from_secs(2))
            .messages()
            .await
        {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(durable = %spec.durable, error = %e, "cannot pull; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                n = messages.next() => n,
            };
            match next {
                None => break,
                Some(Err(e)) => {
                    tracing::debug!(durable = %spec.durable, error = %e, "pull stream error");
                    break;
                }
                Some(Ok(msg)) => {
                    let db_down = process(&msg, &js, &pool, &spec, handler.as_ref()).await;
                    if db_down {
                        wait_for_db(&pool, &shutdown).await;
                    }
                }
            }
        }
    }
}

/// Handles one message; returns true when the database was unreachable.
async fn process<H: EventHandler>(
    msg: &jetstream::Message,
    js: &jetstream::Context,
    pool: &PgPool,
    spec: &ConsumerSpec,
    handler: &H,
) -> bool {
    let delivered = msg.info().map(|i| i.delivered).unwrap_or(1);
    let stream_seq = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
    let subject = msg.subject.to_string();
    let span = tracing::info_span!(
        "event.handle",
        otel.name = %format!("{} handle", spec.service),
        otel.kind = "consumer",
        subject = %subject,
        event_id = Empty,
        tenant = Empty,
        stream_seq,
        delivered,
        outcome = Empty,
        trace_id = Empty,
    );
    if let Some(h) = &msg.headers {
        telemetry::set_remote_parent(&span, &telemetry::NatsHeaderExtractor(h));
    } else {
        telemetry::record_trace_id(&span);
    }
    async {
        let started = std::time::Instant::now();
        if let Some(t) = crate::nats::tenant_of_subject(&subject)
            && spec.exclude_tenants.iter().any(|x| x == t)
        {
            // Another pool's tenant: its dedicated durable has its own copy.
            tracing::Span::current().record("outcome", "other_pool");
            metrics::counter!("wardline_events_consumed_total", "consumer" => spec.durable.clone(), "outcome" => "other_pool")
                .increment(1);
            if let Err(e) = msg.ack().await {
                tracing::debug!(error = %e, "ack of another pool's event failed; it comes back");
            }
            return false;
        }
        let envelope = match EventEnvelope::decode(msg.payload.as_ref()) {
            Ok(e) if e.payload.is_some() && Uuid::parse_str(&e.event_id).is_ok() => e,
            Ok(_) => {
                dead_letter(msg, js, pool, spec, None, "envelope without payload or event id", delivered).await;
                return false;
            }
            Err(e) => {
                dead_letter(msg, js, pool, spec, None, &format!("undecodable envelope: {e}"), delivered).await;
                return false;
            }
        };
        let span = tracing::Span::current();
        span.record("event_id", envelope.event_id.as_str());
        span.record("tenant", envelope.tenant_id.as_str());
        let incoming = Incoming { envelope, subject: subject.clone(), delivered };

        let outcome = apply(pool, handler, &incoming).await;
        let label = match &outcome {
            Ok(true) => "applied",
            Ok(false) => "duplicate",
            Err(HandleError::Retry(_)) => "retry",
            Err(HandleError::Poison(_)) => "poison",
            Err(HandleError::Db(_)) => "db_error",
        };
        span.record("outcome", label);
        metrics::counter!("wardline_events_consumed_total", "consumer" => spec.durable.clone(), "outcome" => label)
            .increment(1);
        metrics::histogram!("wardline_event_handle_seconds", "consumer" => spec.durable.clone())
            .record(started.elapsed().as_secs_f64());
        match outcome {
            Ok(_) => {
                if let Err(e) = msg.ack().await {
                    // The effect is committed; a redelivery will be a duplicate.
                    tracing::warn!(error = %e, "ack failed after commit");
                }
                false
            }
            Err(HandleError::Poison(reason)) => {
                dead_letter(msg, js, pool, spec, Some(&incoming.envelope), &reason, delivered).await;
                false
            }
            Err(HandleError::Retry(reason)) => {
                if delivered >= spec.max_deliver {
                    let reason = format!("gave up after {delivered} deliveries: {reason}");
                    dead_letter(msg, js, pool, spec, Some(&incoming.envelope), &reason, delivered).await;
                } else {
                    tracing::debug!(%reason, "event not applicable yet; redelivering");
                    let _ = msg.ack_with(AckKind::Nak(Some(retry_delay(delivered)))).await;
                }
                false
            }
            Err(HandleError::Db(e)) => {
                tracing::warn!(error = %e, "database error handling event; redelivering");
                let _ = msg.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
                is_connection_error(&e)
            }
        }
    }
    .instrument(span)
    .await
}

/// Runs the handler in a transaction that first records the event in the
/// inbox. `Ok(false)` means the event had been applied before.
async fn apply<H: EventHandler>(
    pool: &PgPool,
    handler: &H,
    incoming: &Incoming,
) -> Result<bool, HandleError> {
    let event_id = Uuid::parse_str(&incoming.envelope.event_id)
        .map_err(|_| HandleError::Poison("event id is not a UUID".into()))?;
    let mut tx = pool.begin().await?;
    let fresh =
        sqlx::query("INSERT INTO inbox (event_id, subject) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(event_id)
            .bind(&incoming.subject)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
    if !fresh {
        tx.rollback().await?;
        return Ok(false);
    }
    handler.handle(&mut tx, incoming).await?;
    tx.commit().await?;
    Ok(true)
}

async fn dead_letter(
    msg: &jetstream::Message,
    js: &jetstream::Context,
    pool: &PgPool,
    spec: &ConsumerSpec,
    envelope: Option<&EventEnvelope>,
    reason: &str,
    delivered: i64,
) {
    let event_id = envelope
        .and_then(|e| Uuid::parse_str(&e.event_id).ok())
        .or_else(|| {
            msg.headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .and_then(|v| Uuid::parse_str(v.as_str()).ok())
        })
        .unwrap_or_else(Uuid::now_v7);
    let tenant = envelope
        .map(|e| e.tenant_id.clone())
        .or_else(|| crate::nats::tenant_of_subject(&msg.subject).map(str::to_owned))
        .unwrap_or_default();
    tracing::error!(%event_id, %reason, "event dead-lettered");
    metrics::counter!("wardline_dead_letters_total", "consumer" => spec.durable.clone())
        .increment(1);
    let recorded = sqlx::query(
        "INSERT INTO dead_letters (event_id, subject, tenant_id, reason, deliveries, payload)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(event_id)
    .bind(msg.subject.as_str())
    .bind(&tenant)
    .bind(reason)
    .bind(delivered as i32)
    .bind(msg.payload.as_ref())
    .execute(pool)
    .await;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        "Nats-Msg-Id",
        format!("{}-{}", spec.durable, event_id).as_str(),
    );
    headers.insert("Wardline-Original-Subject", msg.subject.as_str());
    headers.insert(
        "Wardline-Reason",
        reason.replace(['\r', '\n'], " ").as_str(),
    );
    let published = match js
        .publish_with_headers(
            crate::nats::deadletter_subject(spec.service, &tenant),
            headers,
            msg.payload.clone(),
        )
        .await
    {
        Ok(ack) => ack.await.is_ok(),
        Err(_) => false,
    };
    if recorded.is_err() && !published {
        // Neither record took: leave the message to be redelivered rather than lose it.
        let _ = msg
            .ack_with(AckKind::Nak(Some(Duration::from_secs(5))))
            .await;
        return;
    }
    let _ = msg.ack_with(AckKind::Term).await;
}

fn is_connection_error(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
    )
}

async fn wait_for_db(pool: &PgPool, shutdown: &CancellationToken) {
    let mut delay = Duration::from_millis(200);
    loop {
        if sqlx::query("SELECT 1").execute(pool).await.is_ok() {
            return;
        }
        tracing::warn!("PostgreSQL unreachable; consumer paused");
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_grows_and_is_capped() {
        assert_eq!(retry_delay(1), Duration::from_millis(250));
        assert_eq!(retry_delay(2), Duration::from_millis(500));
        assert!(retry_delay(8) <= Duration::from_secs(30));
        assert_eq!(retry_delay(100), retry_delay(8));
        assert_eq!(retry_delay(0), Duration::from_millis(250));
    }
}
