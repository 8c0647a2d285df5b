//! The sender: claims due deliveries, makes one attempt each, records it,
//! and schedules the next one or finishes the delivery. Also reconciles
//! attempts whose sender died.
//!
//! What must hold (see `docs/notification-delivery.md`):
//! - **Claim, then send, then record.** A claim transaction (rows locked
//!   with `FOR UPDATE SKIP LOCKED`, so replicas never claim the same row)
//!   writes the attempt row and sets `sending_since`, and commits *before*
//!   anything is sent. The result is recorded in a second transaction. So
//!   every attempt that may have reached a receiver has a row.
//! - **Exactly once per (event, recipient, channel), with one limit.** A
//!   delivery succeeds at most once: a finished row is never claimed again.
//!   The limit: a sender that dies after the receiver accepted and before
//!   the result committed leaves the row "sending"; after the lease
//!   (`NOTIFICATION_SENDING_LEASE_MS`, longer than any attempt may take) the
//!   reconciler records that attempt as interrupted (outcome unknown) and
//!   schedules another, which can repeat the message. Every attempt
//!   carries the delivery id as its idempotency key so receivers can drop
//!   that copy.
//! - **Retries are rows.** A failed attempt sets `next_attempt_at`; a
//!   restart loses no retry. Permanent failures finish at once; retries
//!   exhausted dead-letter the delivery.
//! - A final outcome publishes `DeliveryOutcome` through the outbox, in the
//!   transaction that records it.
//! - Spans and logs carry delivery id, tenant, ticket number, event kind
//!   and outcome; never an address or a message body.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, field::Empty};
use uuid::Uuid;
use wardline_proto::events::event_envelope::Payload;
use wardline_proto::events::{DeliveryOutcome, DeliveryStatus};

use crate::channels::{Channels, Outgoing};
use crate::domain::retry::{Next, RetryPolicy, Verdict};
use crate::domain::sealing::Keyring;
use crate::domain::template::{self, Rendered, Template, Vars};
use crate::domain::{
    AttemptOutcome, DeliveryState, ErrorClass, EventKind, NotificationChannel, channel_label,
    kind_label,
};
use wardline_kit::quota::TenantQuota;

/// Channel the deliveries trigger notifies.
pub const CHANNEL: &str = "wardline_deliveries";
/// Rows claimed per round.
const BATCH: i64 = 32;

/// Sender settings.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// One attempt's limit.
    pub timeout: Duration,
    /// Claims older than this are reconciled.
    pub lease: Duration,
    /// Attempts in flight at once.
    pub concurrency: usize,
    /// Backoff and limit.
    pub policy: RetryPolicy,
    /// Polling interval without a wake-up.
    pub scan_interval: Duration,
}

/// Sends what is due.
pub struct Sender {
    pool: PgPool,
    channels: Channels,
    /// The per-tenant rate limit (a token bucket per tenant, per replica).
    limiter: TenantQuota,
    cfg: SenderConfig,
    /// Opens webhook secrets.
    secret_keys: Arc<Keyring>,
}

/// A claimed delivery: the attempt row exists, nothing is sent yet.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Claimed {
    delivery_id: Uuid,
    tenant_id: String,
    source_event_id: Uuid,
    event_kind: i16,
    channel: i16,
    recipient_id: Option<Uuid>,
    endpoint_id: Option<Uuid>,
    address: String,
    number: String,
    vars: serde_json::Value,
    attempt_count: i32,
    attempts_base: i32,
    traceparent: Option<String>,
}

/// An endpoint's signing secrets, sealed.
#[derive(Debug, sqlx::FromRow)]
struct EndpointSecrets {
    secret_sealed: Option<Vec<u8>>,
    previous_sealed: Option<Vec<u8>>,
    previous_expires_at: Option<DateTime<Utc>>,
    deleted_at: Option<DateTime<Utc>>,
}

const CLAIM_COLUMNS: &str =
    "delivery_id, tenant_id, source_event_id, event_kind, channel, recipient_id, endpoint_id,
    address, number, vars, attempt_count, attempts_base, traceparent";

impl Claimed {
    fn kind(&self) -> EventKind {
        EventKind::try_from(i32::from(self.event_kind)).unwrap_or(EventKind::Unspecified)
    }
    fn channel(&self) -> NotificationChannel {
        NotificationChannel::try_from(i32::from(self.channel))
            .unwrap_or(NotificationChannel::Unspecified)
    }
}

impl Sender {
    /// A sender over `pool` through `channels`, limited per tenant by `limiter`.
    pub fn new(
        pool: PgPool,
        channels: Channels,
        limiter: TenantQuota,
        cfg: SenderConfig,
        secret_keys: Arc<Keyring>,
    ) -> Self {
        Self {
            pool,
            channels,
            limiter,
            cfg,
            secret_keys,
        }
    }

    /// Runs until `stop`: woken by NOTIFY when deliveries commit, polling
    /// as a fallback; finishes the attempts in flight before returning.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let wakeup = wardline_kit::wakeup::Wakeup::listen(&self.pool, CHANNEL).await;
        let mut last_reconcile = Instant::now() - self.cfg.lease;
        loop {
            if last_reconcile.elapsed() >= (self.cfg.lease / 4).max(Duration::from_millis(100)) {
                last_reconcile = Instant::now();
                if let Err(e) = self.reconcile().await {
                    tracing::warn!(error = %e, "reconciling interrupted attempts failed");
                }
            }
            loop {
                match self.round().await {
                    Ok(n) if n as i64 >= BATCH && !stop.is_cancelled() => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "delivery round failed; retrying");
                        break;
                    }
                }
            }
            let wait = self.cfg.scan_interval;
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = wakeup.wait(wait) => {}
            }
        }
    }

    /// Claims due deliveries and makes one attempt each. Returns how many
    /// rows were looked at.
    pub async fn round(&self) -> Result<usize, sqlx::Error> {
        let (claimed, seen) = self.claim().await?;
        futures::stream::iter(claimed)
            .for_each_concurrent(self.cfg.concurrency.max(1), |c| self.attempt(c))
            .await;
        Ok(seen)
    }

    /// Claims due deliveries, first attempts before retries: a backlog
    /// retrying against a dead endpoint never delays a fresh notification.
    async fn claim(&self) -> Result<(Vec<Claimed>, usize), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let sql = format!(
            "SELECT {CLAIM_COLUMNS} FROM deliveries
              WHERE state <> 4 AND sending_since IS NULL AND next_attempt_at <= now()
              ORDER BY attempt_count, next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED"
        );
        let rows: Vec<Claimed> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(BATCH)
            .fetch_all(&mut *tx)
            .await?;
        let seen = rows.len();
        let mut claimed = Vec::with_capacity(rows.len());
        let (mut later, mut waits) = (Vec::new(), Vec::new());
        for mut row in rows {
            if let Err(wait) = self.limiter.take(&row.tenant_id) {
                metrics::counter!("wardline_notification_rate_limited_total").increment(1);
                later.push(row.delivery_id);
                waits.push(wait.as_secs_f64().max(0.01));
                continue;
            }
            row.attempt_count += 1;
            claimed.push(row);
        }
        // Two statements for the whole round, not two per delivery.
        if !later.is_empty() {
            sqlx::query(
                "UPDATE deliveries d SET next_attempt_at = now() + make_interval(secs => w.secs)
                   FROM UNNEST($1::uuid[], $2::float8[]) AS w(id, secs) WHERE d.delivery_id = w.id",
            )
            .bind(&later)
            .bind(&waits)
            .execute(&mut *tx)
            .await?;
        }
        if !claimed.is_empty() {
            let ids: Vec<Uuid> = claimed.iter().map(|c| c.delivery_id).collect();
            let attempts: Vec<i32> = claimed.iter().map(|c| c.attempt_count).collect();
            sqlx::query(
                "WITH c AS (SELECT * FROM UNNEST($1::uuid[], $2::int4[]) AS c(id, attempt)),
                      marked AS (UPDATE deliveries d SET sending_since = now(), attempt_count = c.attempt,
                                        updated_at = now()
                                   FROM c WHERE d.delivery_id = c.id)
                 INSERT INTO delivery_attempts (delivery_id, attempt, started_at)
                 SELECT id, attempt, now() FROM c",
            )
            .bind(&ids)
            .bind(&attempts)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok((claimed, seen))
    }

    /// Renders and, for webhooks, finds the signing secrets. An error is
    /// the attempt's verdict (nothing is sent).
    async fn prepare(&self, c: &Claimed) -> Result<Outgoing, Verdict> {
        let kind = c.kind();
        let channel = c.channel();
        let db_failed = |e: sqlx::Error| {
            tracing::warn!(error = %e, "database error preparing an attempt");
            Verdict::failed(ErrorClass::Connection, 0)
        };
        let custom: Option<(String, String)> = sqlx::query_as(
            "SELECT subject, body FROM template_overrides WHERE tenant_id = $1 AND event_kind = $2 AND channel = $3",
        )
        .bind(&c.tenant_id)
        .bind(c.event_kind)
        .bind(c.channel)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_failed)?;
        let t = match custom {
            Some((subject, body)) => Template { subject, body },
            None => template::default_template(kind, channel),
        };
        let pairs: BTreeMap<String, String> =
            serde_json::from_value(c.vars.clone()).unwrap_or_default();
        let message = render_off_runtime(t, Vars::from_pairs(pairs)).await?;
        let mut secrets = Vec::new();
        if channel == NotificationChannel::Webhook {
            let row: Option<EndpointSecrets> = sqlx::query_as(
                "SELECT secret_sealed, previous_sealed, previous_expires_at, deleted_at FROM webhook_endpoints WHERE endpoint_id = $1",
            )
            .bind(c.endpoint_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_failed)?;
            let Some(e) = row.filter(|e| e.deleted_at.is_none()) else {
                return Err(Verdict::failed(ErrorClass::EndpointDeleted, 0));
            };
            let bound_to = c.endpoint_id.map(|id| id.to_string()).unwrap_or_default();
            let open = |sealed: &[u8]| {
                self.secret_keys.open(&bound_to, sealed).map_err(|e| {
                    // A key missing from NOTIFICATION_SECRET_KEYS: an
                    // operator error, retried once the key is back.
                    tracing::error!(error = %e, "webhook secret does not open");
                    Verdict::failed(ErrorClass::Connection, 0)
                })
            };
            let current = e.secret_sealed.as_deref().ok_or_else(|| {
                tracing::error!(
                    "webhook endpoint without a sealed secret (not yet sealed at start-up)"
                );
                Verdict::failed(ErrorClass::Connection, 0)
            })?;
            secrets.push(open(current)?);
            if let (Some(p), Some(until)) = (e.previous_sealed.as_deref(), e.previous_expires_at)
                && until > Utc::now()
            {
                secrets.push(open(p)?);
            }
        }
        Ok(Outgoing {
            delivery_id: c.delivery_id,
            tenant: c.tenant_id.clone(),
            event_kind: kind,
            address: c.address.clone(),
            message,
            secrets,
        })
    }

    async fn attempt(&self, c: Claimed) {
        let channel = c.channel();
        let span = tracing::info_span!(
            "notification.send",
            otel.name = %format!("notification send {}", channel_label(channel)),
            otel.kind = "client",
            delivery_id = %c.delivery_id,
            tenant = %c.tenant_id,
            ticket_number = %c.number,
            event_kind = kind_label(c.kind()),
            outcome = Empty,
            trace_id = Empty,
        );
        let mut carrier = std::collections::HashMap::new();
        if let Some(tp) = &c.traceparent {
            carrier.insert("traceparent".to_owned(), tp.clone());
        }
        wardline_kit::telemetry::set_remote_parent(
            &span,
            &wardline_kit::telemetry::MapExtractor(&carrier),
        );
        async {
            let started = Instant::now();
            let verdict = match (self.prepare(&c).await, self.channels.get(channel)) {
                (Err(v), _) => v,
                (Ok(_), None) => Verdict::failed(ErrorClass::RemoteRejected, 0),
                (Ok(out), Some(ch)) => tokio::time::timeout(self.cfg.timeout, ch.send(&out))
                    .await
                    .unwrap_or(Verdict::failed(ErrorClass::Timeout, 0)),
            };
            metrics::histogram!("wardline_notification_send_seconds", "channel" => channel_label(channel))
                .record(started.elapsed().as_secs_f64());
            let outcome = match verdict.outcome {
                AttemptOutcome::Succeeded => "succeeded",
                AttemptOutcome::RetryableFailure => "retryable_failure",
                _ => "permanent_failure",
            };
            tracing::Span::current().record("outcome", outcome);
            metrics::counter!("wardline_notification_attempts_total", "channel" => channel_label(channel), "outcome" => outcome)
                .increment(1);
            // Recording is retried briefly; if the database stays away the
            // claim expires and the reconciler records the attempt as
            // interrupted instead.
            let mut delay = Duration::from_millis(100);
            for _ in 0..5 {
                match self.record(&c, verdict).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "recording an attempt failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                }
            }
            tracing::error!("attempt not recorded; the reconciler will take it");
        }
        .instrument(span)
        .await
    }

    async fn record(&self, c: &Claimed, v: Verdict) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let still_ours: bool = sqlx::query_scalar(
            "SELECT sending_since IS NOT NULL AND attempt_count = $2 FROM deliveries WHERE delivery_id = $1 FOR UPDATE",
        )
        .bind(c.delivery_id)
        .bind(c.attempt_count)
        .fetch_optional(&mut *tx)
        .await?
        .unwrap_or(false);
        if !still_ours {
            // Reconciled meanwhile (the lease expired): that record stands.
            tx.rollback().await?;
            return Ok(());
        }
        finish_attempt(&mut tx, &Attempted::of(c), v, &self.cfg.policy).await?;
        tx.commit().await
    }

    /// Records attempts whose claim outlived the lease as interrupted and
    /// schedules what follows. Returns how many.
    pub async fn reconcile(&self) -> Result<usize, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let sql = format!(
            "SELECT {CLAIM_COLUMNS} FROM deliveries
              WHERE sending_since IS NOT NULL AND sending_since < now() - make_interval(secs => $1)
              ORDER BY sending_since LIMIT 100 FOR UPDATE SKIP LOCKED"
        );
        let rows: Vec<Claimed> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(self.cfg.lease.as_secs_f64())
            .fetch_all(&mut *tx)
            .await?;
        for c in &rows {
            tracing::warn!(delivery_id = %c.delivery_id, tenant = %c.tenant_id, "attempt interrupted (sender lost); outcome unknown, scheduling the next");
            metrics::counter!("wardline_notification_interrupted_attempts_total", "channel" => channel_label(c.channel()))
                .increment(1);
            finish_attempt(
                &mut tx,
                &Attempted::of(c),
                Verdict::failed(ErrorClass::Timeout, 0),
                &self.cfg.policy,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(rows.len())
    }
}

/// What [`finish_attempt`] needs about a delivery.
#[derive(Debug, Clone)]
pub(crate) struct Attempted {
    pub delivery_id: Uuid,
    pub tenant_id: String,
    pub source_event_id: Uuid,
    pub channel: NotificationChannel,
    pub target: Option<Uuid>,
    pub attempt: i32,
    pub attempts_base: i32,
}

impl Attempted {
    fn of(c: &Claimed) -> Self {
        Self {
            delivery_id: c.delivery_id,
            tenant_id: c.tenant_id.clone(),
            source_event_id: c.source_event_id,
            channel: c.channel(),
            target: c.recipient_id.or(c.endpoint_id),
            attempt: c.attempt_count,
            attempts_base: c.attempts_base,
        }
    }
}

/// Completes attempt `a.attempt` with `v` and moves the delivery on
/// (retry, finish, dead letter), publishing the final outcome. The
/// delivery's row must be locked by the caller's transaction.
pub(crate) async fn finish_attempt(
    conn: &mut PgConnection,
    a: &Attempted,
    v: Verdict,
    policy: &RetryPolicy,
) -> Result<Next, sqlx::Error> {
    let now = Utc::now();
    let in_schedule = u32::try_from(a.attempt - a.attempts_base)
        .unwrap_or(1)
        .max(1);
    let next = policy.next(v, in_schedule);
    let (state, outcome, next_at) = match next {
        Next::Delivered => (DeliveryState::Finished, DeliveryStatus::Delivered, None),
        Next::Failed => (DeliveryState::Finished, DeliveryStatus::Failed, None),
        Next::DeadLetter => (DeliveryState::Finished, DeliveryStatus::DeadLettered, None),
        Next::RetryIn(d) => (
            DeliveryState::RetryScheduled,
            DeliveryStatus::Unspecified,
            Some(now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::hours(1))),
        ),
    };
    sqlx::query(
        "UPDATE delivery_attempts SET finished_at = $3, outcome = $4, status_code = $5, error_class = $6, next_retry_at = $7
          WHERE delivery_id = $1 AND attempt = $2",
    )
    .bind(a.delivery_id)
    .bind(a.attempt)
    .bind(now)
    .bind(v.outcome as i16)
    .bind(v.status_code as i32)
    .bind(v.class as i16)
    .bind(next_at)
    .execute(&mut *conn)
    .await?;
    let finished = state == DeliveryState::Finished;
    sqlx::query(
        "UPDATE deliveries SET sending_since = NULL, state = $2, outcome = $3, next_attempt_at = $4,
            finished_at = CASE WHEN $5 THEN $6 ELSE NULL END, updated_at = $6
          WHERE delivery_id = $1",
    )
    .bind(a.delivery_id)
    .bind(state as i16)
    .bind(outcome as i16)
    .bind(next_at)
    .bind(finished)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let channel = channel_label(a.channel);
    if finished {
        let label = match outcome {
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            _ => "dead_lettered",
        };
        metrics::counter!("wardline_notification_deliveries_total", "channel" => channel, "outcome" => label)
            .increment(1);
        if outcome == DeliveryStatus::DeadLettered {
            metrics::counter!("wardline_notification_dead_letters_total", "channel" => channel)
                .increment(1);
            tracing::warn!(delivery_id = %a.delivery_id, tenant = %a.tenant_id, "delivery dead-lettered after its retries");
        }
        let env = wardline_kit::events::envelope(
            "notification",
            &a.tenant_id,
            &a.delivery_id.to_string(),
            a.attempt as u64,
            Payload::DeliveryOutcome(DeliveryOutcome {
                delivery_id: a.delivery_id.to_string(),
                source_event_id: a.source_event_id.to_string(),
                channel: channel.to_owned(),
                recipient_id: a.target.map(|t| t.to_string()).unwrap_or_default(),
                status: outcome as i32,
                attempts: a.attempt as u32,
            }),
        );
        wardline_kit::outbox::enqueue(conn, &env)
            .await
            .map_err(|e| match e {
                wardline_kit::outbox::OutboxError::Db(e) => e,
                other => sqlx::Error::Protocol(other.to_string()),
            })?;
    }
    Ok(next)
}

/// How long one render may take before the attempt fails with RENDER_FAILED
/// (the fuel limit ends it well before; this is the backstop).
const RENDER_TIMEOUT: Duration = Duration::from_secs(2);

/// Renders on a blocking thread, so a costly tenant template cannot stall
/// the runtime that sends every other hospital's messages.
async fn render_off_runtime(t: Template, vars: Vars) -> Result<Rendered, Verdict> {
    let job = tokio::task::spawn_blocking(move || template::render(&t, &vars));
    match tokio::time::timeout(RENDER_TIMEOUT, job).await {
        Ok(Ok(Ok(rendered))) => Ok(rendered),
        Ok(Ok(Err(e))) => {
            // The template's own error (never ticket text).
            tracing::warn!(error = %e, "template did not render");
            Err(Verdict::failed(ErrorClass::RenderFailed, 0))
        }
        Ok(Err(_)) | Err(_) => {
            tracing::warn!("template render panicked or timed out");
            Err(Verdict::failed(ErrorClass::RenderFailed, 0))
        }
    }
}
