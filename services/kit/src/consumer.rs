//! The consumer loop: durable pull consumer, inbox de-duplication, backoff
//! and dead-lettering, written once for every service.
//!
//! What must hold:
//! - A message is acknowledged only after the service's own transaction
//!   committed, and that transaction inserted the event id into `inbox`
//!   first. A redelivery (crash before the ack, duplicate publish, replay)
//!   finds the id and changes nothing: effects are exactly once.
//! - Every delivery ends applied or dead-lettered, whatever failed. Each
//!   outcome that is not success (the handler asked to retry, a database
//!   error that is not a lost connection, a panic) is counted in
//!   `consumer_failures` against the budget [`ConsumerSpec::max_failures`];
//!   when it is spent, or at once for [`HandleError::Poison`], the event is
//!   dead-lettered: kept in the `dead_letters` table and on the
//!   `WARDLINE_DEADLETTER` stream with its reason, counted, and only then
//!   acknowledged. If either dead-letter write fails the message is not
//!   acknowledged and stays in JetStream.
//! - When PostgreSQL is unreachable ([`crate::db::is_unavailable`]) the
//!   worker stops pulling until it is back and counts nothing, so an outage
//!   of any length spends no budget and drops nothing.
//! - JetStream's own redelivery ceiling ([`ConsumerSpec::max_deliver`]) sits
//!   far above the budget, for deliveries the kit never saw end (a process
//!   killed mid-event, again and again). When the server gives up anyway it
//!   says so in a max-deliveries advisory; the loop dead-letters that
//!   message from the stream and counts it in
//!   `wardline_consumer_max_deliveries_total`.
//! - All replicas of a service share one durable consumer; JetStream hands
//!   each message to one of them. A replica dedicated to some tenants
//!   (`WARDLINE_TENANTS`) has a durable of its own; the shared pool beside
//!   it lists those tenants in `WARDLINE_EXCLUDE_TENANTS` and acknowledges
//!   their events unhandled, so each tenant's events are handled by one pool.
//! - The subject's tenant is the truth: an envelope naming another tenant
//!   is poison.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull};

type PullConsumer = jetstream::consumer::Consumer<pull::Config>;
use bytes::Bytes;
use futures::{FutureExt as _, StreamExt};
use prost::Message as _;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, field::Empty};
use uuid::Uuid;
use wardline_proto::events::EventEnvelope;

use crate::db::is_unavailable;
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
    /// The database failed; the transaction is rolled back. A lost
    /// connection pauses the loop; any other database error counts against
    /// the event's budget like a retry.
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
    /// Failures an event may have before it is dead-lettered: the kit's
    /// delivery budget (see the module documentation).
    pub max_failures: i64,
    /// JetStream's redelivery ceiling, a safety net far above
    /// `max_failures`: it also counts deliveries that never ended (a
    /// process killed mid-event, an ack wait that ran out during an
    /// outage), which the budget deliberately does not.
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
            max_failures: 10,
            max_deliver: 100,
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

/// Delay before redelivering after failure `n` (1-based): 250 ms doubling
/// to at most 30 s.
pub fn retry_delay(failures: i64) -> Duration {
    let exp = failures.clamp(1, 8) as u32 - 1;
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
    tasks.spawn(max_deliveries_advisories(
        js.clone(),
        pool.clone(),
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

/// What a worker does after one message.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    /// Take the next message.
    Continue,
    /// PostgreSQL is unreachable: stop pulling until it is back.
    DbDown,
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
                    if process(&msg, &js, &pool, &spec, handler.as_ref()).await == Flow::DbDown {
                        // Dropping the pull ends it: nothing more is handed
                        // to this worker while it cannot apply anything.
                        // Messages already delivered to it come back after
                        // the ack wait; redeliveries spend no budget.
                        drop(messages);
                        wait_for_db(&pool, &shutdown).await;
                        break;
                    }
                }
            }
        }
    }
}

/// A message on its way to the dead letters: what the table and the
/// dead-letter stream keep.
struct Letter<'a> {
    event_id: Uuid,
    subject: &'a str,
    tenant: &'a str,
    payload: &'a Bytes,
    reason: String,
    deliveries: i64,
}

/// Handles one message.
async fn process<H: EventHandler>(
    msg: &jetstream::Message,
    js: &jetstream::Context,
    pool: &PgPool,
    spec: &ConsumerSpec,
    handler: &H,
) -> Flow {
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
        let subject_tenant = crate::nats::tenant_of_subject(&subject).unwrap_or_default();
        if spec.exclude_tenants.iter().any(|x| x == subject_tenant) {
            // Another pool's tenant: its dedicated durable has its own copy.
            count(spec, "other_pool");
            if let Err(e) = msg.ack().await {
                tracing::debug!(error = %e, "ack of another pool's event failed; it comes back");
            }
            return Flow::Continue;
        }
        let mut letter = Letter {
            event_id: header_event_id(msg.headers.as_ref()).unwrap_or_else(Uuid::now_v7),
            subject: &subject,
            tenant: subject_tenant,
            payload: &msg.payload,
            reason: String::new(),
            deliveries: delivered,
        };
        let incoming = match decode(&msg.payload, subject_tenant) {
            Ok((envelope, event_id)) => {
                letter.event_id = event_id;
                Incoming {
                    envelope,
                    subject: subject.clone(),
                    delivered,
                }
            }
            Err(reason) => {
                count(spec, "poison");
                letter.reason = reason;
                return dead_letter(msg, js, pool, spec, &letter).await;
            }
        };
        let span = tracing::Span::current();
        span.record("event_id", incoming.envelope.event_id.as_str());
        span.record("tenant", subject_tenant);

        let outcome = attempt(pool, handler, &incoming, letter.event_id, spec.ack_wait).await;
        let label = match &outcome {
            Ok(Applied::Fresh) => "applied",
            Ok(Applied::Duplicate) => "duplicate",
            Ok(Applied::DeadLettered(_)) => "dead_lettered_before",
            Err(HandleError::Retry(_)) => "retry",
            Err(HandleError::Poison(_)) => "poison",
            Err(HandleError::Db(e)) if is_unavailable(e) => "db_unavailable",
            Err(HandleError::Db(_)) => "db_error",
        };
        span.record("outcome", label);
        count(spec, label);
        metrics::histogram!("wardline_event_handle_seconds", "consumer" => spec.durable.clone())
            .record(started.elapsed().as_secs_f64());
        match outcome {
            Ok(Applied::Fresh | Applied::Duplicate) => {
                if let Err(e) = msg.ack().await {
                    // The effect is committed; a redelivery will be a duplicate.
                    tracing::warn!(error = %e, "ack failed after commit");
                }
                Flow::Continue
            }
            Ok(Applied::DeadLettered(reason)) => {
                // Recorded by an earlier delivery whose stream copy or ack
                // did not happen: finish that job.
                letter.reason = reason;
                dead_letter(msg, js, pool, spec, &letter).await
            }
            Err(HandleError::Poison(reason)) => {
                letter.reason = reason;
                dead_letter(msg, js, pool, spec, &letter).await
            }
            Err(HandleError::Db(e)) if is_unavailable(&e) => {
                tracing::warn!(error = %e, "PostgreSQL unavailable; pausing the consumer");
                nak(msg, Duration::from_secs(1)).await;
                Flow::DbDown
            }
            Err(failure) => {
                let reason = failure.to_string();
                tracing::warn!(%reason, "event not applied; counted against its budget");
                match record_failure(pool, letter.event_id, &subject, &reason).await {
                    Ok(failures) if failures >= spec.max_failures => {
                        letter.reason = format!("gave up after {failures} failures: {reason}");
                        dead_letter(msg, js, pool, spec, &letter).await
                    }
                    Ok(failures) => {
                        nak(msg, retry_delay(failures)).await;
                        Flow::Continue
                    }
                    Err(e) if is_unavailable(&e) => {
                        nak(msg, Duration::from_secs(1)).await;
                        Flow::DbDown
                    }
                    Err(e) => {
                        // Not counted: JetStream's ceiling and its advisory
                        // still end this event in the dead letters.
                        tracing::error!(error = %e, "cannot count a failed event; redelivering");
                        nak(msg, retry_delay(delivered)).await;
                        Flow::Continue
                    }
                }
            }
        }
    }
    .instrument(span)
    .await
}

fn count(spec: &ConsumerSpec, outcome: &'static str) {
    metrics::counter!("wardline_events_consumed_total", "consumer" => spec.durable.clone(), "outcome" => outcome)
        .increment(1);
}

async fn nak(msg: &jetstream::Message, delay: Duration) {
    if let Err(e) = msg.ack_with(AckKind::Nak(Some(delay))).await {
        tracing::debug!(error = %e, "nak failed; the message comes back after the ack wait");
    }
}

fn header_event_id(headers: Option<&async_nats::HeaderMap>) -> Option<Uuid> {
    headers
        .and_then(|h| h.get("Nats-Msg-Id"))
        .and_then(|v| Uuid::parse_str(v.as_str()).ok())
}

/// Decodes an envelope and checks what the loop relies on: a payload, a
/// UUID event id, and the subject's tenant (the subject is what NATS
/// permissions and consumer filters act on; an envelope claiming another
/// tenant is forged or broken).
fn decode(payload: &[u8], subject_tenant: &str) -> Result<(EventEnvelope, Uuid), String> {
    let envelope =
        EventEnvelope::decode(payload).map_err(|e| format!("undecodable envelope: {e}"))?;
    let event_id = Uuid::parse_str(&envelope.event_id)
        .map_err(|_| "envelope without a UUID event id".to_owned())?;
    if envelope.payload.is_none() {
        return Err("envelope without payload".into());
    }
    if envelope.tenant_id != subject_tenant {
        return Err(format!(
            "tenant mismatch: the envelope names another tenant than the subject ({subject_tenant})"
        ));
    }
    Ok((envelope, event_id))
}

/// How an event ended when the handler did not fail.
enum Applied {
    /// Applied now.
    Fresh,
    /// Applied before (found in the inbox).
    Duplicate,
    /// Dead-lettered by an earlier delivery, with this reason.
    DeadLettered(String),
}

/// Runs the handler in a transaction that first records the event in the
/// inbox. A panic in the handler, or a handler still busy when the ack wait
/// ends (JetStream has handed the event to another worker by then), is a
/// failure like any other: the transaction is dropped, so rolled back, and
/// the worker lives on.
async fn attempt<H: EventHandler>(
    pool: &PgPool,
    handler: &H,
    incoming: &Incoming,
    event_id: Uuid,
    limit: Duration,
) -> Result<Applied, HandleError> {
    if incoming.delivered > 1
        && let Some(reason) =
            sqlx::query_scalar("SELECT reason FROM dead_letters WHERE event_id = $1")
                .bind(event_id)
                .fetch_optional(pool)
                .await?
    {
        return Ok(Applied::DeadLettered(reason));
    }
    let applying = AssertUnwindSafe(apply(pool, handler, incoming, event_id)).catch_unwind();
    match tokio::time::timeout(limit, applying).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(HandleError::Retry("the handler panicked".into())),
        Err(_) => Err(HandleError::Retry(format!(
            "the handler took longer than the ack wait ({limit:?})"
        ))),
    }
}

async fn apply<H: EventHandler>(
    pool: &PgPool,
    handler: &H,
    incoming: &Incoming,
    event_id: Uuid,
) -> Result<Applied, HandleError> {
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
        return Ok(Applied::Duplicate);
    }
    handler.handle(&mut tx, incoming).await?;
    if incoming.delivered > 1 {
        sqlx::query("DELETE FROM consumer_failures WHERE event_id = $1")
            .bind(event_id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(Applied::Fresh)
}

/// Counts one failure of `event_id`; returns how many it has had.
async fn record_failure(
    pool: &PgPool,
    event_id: Uuid,
    subject: &str,
    reason: &str,
) -> Result<i64, sqlx::Error> {
    let failures: i32 = sqlx::query_scalar(
        "INSERT INTO consumer_failures (event_id, subject, failures, last_reason)
         VALUES ($1, $2, 1, $3)
         ON CONFLICT (event_id) DO UPDATE
            SET failures = consumer_failures.failures + 1,
                last_reason = EXCLUDED.last_reason,
                updated_at = now()
         RETURNING failures",
    )
    .bind(event_id)
    .bind(subject)
    .bind(reason)
    .fetch_one(pool)
    .await?;
    Ok(i64::from(failures))
}

/// Dead-letters `letter` and acknowledges `msg` once both the table row and
/// the stream copy are written; otherwise leaves the message in JetStream.
async fn dead_letter(
    msg: &jetstream::Message,
    js: &jetstream::Context,
    pool: &PgPool,
    spec: &ConsumerSpec,
    letter: &Letter<'_>,
) -> Flow {
    match write_dead_letter(js, pool, spec, letter).await {
        Ok(()) => {
            if let Err(e) = msg.ack_with(AckKind::Term).await {
                tracing::debug!(error = %e, "term after dead-lettering failed; the redelivery finds the dead letter");
            }
            Flow::Continue
        }
        Err(DeadLetterError::Db(e)) if is_unavailable(&e) => {
            nak(msg, Duration::from_secs(1)).await;
            Flow::DbDown
        }
        Err(e) => {
            tracing::error!(event_id = %letter.event_id, error = %e, "cannot dead-letter; the event stays in JetStream");
            metrics::counter!("wardline_dead_letter_write_failures_total", "consumer" => spec.durable.clone())
                .increment(1);
            nak(msg, Duration::from_secs(5)).await;
            Flow::Continue
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum DeadLetterError {
    #[error("dead_letters table: {0}")]
    Db(#[from] sqlx::Error),
    #[error("dead-letter stream: {0}")]
    Stream(String),
}

/// Writes the dead-letter row (removing the event's failure count in the
/// same statement) and its copy on the dead-letter stream. Both are
/// idempotent (`ON CONFLICT`, `Nats-Msg-Id`), so a retry after a partial
/// write is harmless.
async fn write_dead_letter(
    js: &jetstream::Context,
    pool: &PgPool,
    spec: &ConsumerSpec,
    letter: &Letter<'_>,
) -> Result<(), DeadLetterError> {
    let inserted = sqlx::query(
        "WITH cleared AS (DELETE FROM consumer_failures WHERE event_id = $1)
         INSERT INTO dead_letters (event_id, subject, tenant_id, reason, deliveries, payload)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(letter.event_id)
    .bind(letter.subject)
    .bind(letter.tenant)
    .bind(&letter.reason)
    .bind(i32::try_from(letter.deliveries).unwrap_or(i32::MAX))
    .bind(letter.payload.as_ref())
    .execute(pool)
    .await?
    .rows_affected()
        == 1;
    if inserted {
        tracing::error!(event_id = %letter.event_id, reason = %letter.reason, "event dead-lettered");
        metrics::counter!("wardline_dead_letters_total", "consumer" => spec.durable.clone())
            .increment(1);
    }
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        "Nats-Msg-Id",
        format!("{}-{}", spec.durable, letter.event_id).as_str(),
    );
    headers.insert("Wardline-Original-Subject", letter.subject);
    headers.insert(
        "Wardline-Reason",
        letter.reason.replace(['\r', '\n'], " ").as_str(),
    );
    let ack = js
        .publish_with_headers(
            crate::nats::deadletter_subject(spec.service, letter.tenant),
            headers,
            letter.payload.clone(),
        )
        .await
        .map_err(|e| DeadLetterError::Stream(e.to_string()))?;
    ack.await
        .map_err(|e| DeadLetterError::Stream(e.to_string()))?;
    Ok(())
}

/// JetStream's max-deliveries advisory, as far as the loop reads it.
#[derive(Debug, serde::Deserialize)]
struct MaxDeliveries {
    stream_seq: u64,
    deliveries: i64,
}

/// Subject of the advisory JetStream publishes when it stops redelivering
/// a message of `durable`.
pub fn max_deliveries_subject(durable: &str) -> String {
    format!(
        "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.{durable}",
        crate::nats::EVENTS_STREAM
    )
}

/// The safety net under the budget: when JetStream gives up on a message
/// (deliveries that never ended, see [`ConsumerSpec::max_deliver`]), read
/// it back from the stream and dead-letter it, unless it was applied. One
/// replica of the service takes each advisory (a queue group).
async fn max_deliveries_advisories(
    js: jetstream::Context,
    pool: PgPool,
    spec: Arc<ConsumerSpec>,
    shutdown: CancellationToken,
) {
    let client = js.client();
    let mut advisories = loop {
        match client
            .queue_subscribe(max_deliveries_subject(&spec.durable), spec.durable.clone())
            .await
        {
            Ok(s) => break s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot subscribe to max-deliveries advisories; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    loop {
        let advisory = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = advisories.next() => match a { Some(a) => a, None => return },
        };
        let Ok(advisory) = serde_json::from_slice::<MaxDeliveries>(&advisory.payload) else {
            tracing::warn!("unreadable max-deliveries advisory");
            continue;
        };
        metrics::counter!("wardline_consumer_max_deliveries_total", "consumer" => spec.durable.clone())
            .increment(1);
        let mut delay = Duration::from_millis(200);
        while let Err(e) = dead_letter_from_stream(&js, &pool, &spec, &advisory).await {
            tracing::warn!(stream_seq = advisory.stream_seq, error = %e, "cannot dead-letter an event JetStream gave up on; retrying");
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }
}

async fn dead_letter_from_stream(
    js: &jetstream::Context,
    pool: &PgPool,
    spec: &ConsumerSpec,
    advisory: &MaxDeliveries,
) -> Result<(), DeadLetterError> {
    let stream = js
        .get_stream(crate::nats::EVENTS_STREAM)
        .await
        .map_err(|e| DeadLetterError::Stream(e.to_string()))?;
    let message = stream
        .get_raw_message(advisory.stream_seq)
        .await
        .map_err(|e| DeadLetterError::Stream(e.to_string()))?;
    let subject = message.subject.to_string();
    let tenant = crate::nats::tenant_of_subject(&subject).unwrap_or_default();
    let event_id = decode(&message.payload, tenant)
        .map(|(_, id)| id)
        .ok()
        .or_else(|| header_event_id(Some(&message.headers)))
        .unwrap_or_else(Uuid::now_v7);
    let applied: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM inbox WHERE event_id = $1)")
            .bind(event_id)
            .fetch_one(pool)
            .await?;
    if applied {
        return Ok(());
    }
    tracing::error!(%event_id, stream_seq = advisory.stream_seq, "JetStream stopped redelivering an unapplied event");
    let letter = Letter {
        event_id,
        subject: &subject,
        tenant,
        payload: &message.payload,
        reason: format!(
            "JetStream stopped redelivering after {} deliveries that never ended",
            advisory.deliveries
        ),
        deliveries: advisory.deliveries,
    };
    write_dead_letter(js, pool, spec, &letter).await
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

    #[test]
    fn an_envelope_must_match_its_subject_tenant() {
        let env = crate::events::envelope(
            "test",
            "stmarys",
            "t1",
            1,
            wardline_proto::events::event_envelope::Payload::TicketCreated(Default::default()),
        );
        let bytes = env.encode_to_vec();
        assert!(decode(&bytes, "stmarys").is_ok());
        let e = decode(&bytes, "lakeside").unwrap_err();
        assert!(e.starts_with("tenant mismatch"), "{e}");
        assert!(decode(b"\xff\xff", "stmarys").is_err());
        let mut no_payload = env.clone();
        no_payload.payload = None;
        assert!(decode(&no_payload.encode_to_vec(), "stmarys").is_err());
    }
}
