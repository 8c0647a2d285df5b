//! The sender: claims due deliveries, makes one attempt each, records it,
//! and schedules the next one or finishes the delivery. Also reconciles
//! attempts whose sender died.
//!
//! What must hold (see `docs/notification-delivery.md`):
//! - **Claim, then send, then record.** A claim transaction (rows locked
//!   with `FOR UPDATE SKIP LOCKED`, so replicas never claim the same row)
//!   writes the attempt rows and sets `sending_since`, and commits *before*
//!   anything is sent. Results are recorded in later transactions. So
//!   every attempt that may have reached a receiver has a row.
//! - **Per round, not per delivery.** One claim transaction per round
//!   (array statements for the attempts, one read of the round's template
//!   overrides and of its endpoints' secrets); results are recorded as
//!   they come in, every result at hand in one transaction (one array
//!   statement for attempts and deliveries, one outbox insert), while the
//!   other sends of the round go on.
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
//!   transaction that records it, continuing its attempt's trace.
//! - Spans and logs carry delivery id, tenant, ticket number, event kind
//!   and outcome; never an address or a message body.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, field::Empty};
use uuid::Uuid;
use wardline_kit::outbox::TraceContext;
use wardline_proto::events::event_envelope::Payload;
use wardline_proto::events::{DeliveryOutcome, DeliveryStatus, EventEnvelope};

use crate::channels::{Channels, Outgoing};
use crate::domain::retry::{Next, RetryPolicy, Verdict};
use crate::domain::sealing::Keyring;
use crate::domain::template::{self, Rendered, Template, Vars};
use crate::domain::{
    AttemptOutcome, DeliveryState, ErrorClass, NotificationChannel, channel_label, kind_label,
};
use crate::store::attempts::{self, Finish};
use crate::store::deliveries::{self, Claimed};
use crate::store::templates::{self, OverrideKey};
use crate::store::webhooks::{self, EndpointSecrets};
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

/// What a round did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Round {
    /// Due rows looked at (a full round means more may be due).
    pub seen: usize,
    /// The soonest a row the tenant rate limit pushed back falls due.
    pub deferred_for: Option<Duration>,
}

/// What a round read once for all its deliveries.
struct RoundData {
    overrides: HashMap<OverrideKey, (String, String)>,
    secrets: HashMap<Uuid, EndpointSecrets>,
}

/// An attempt made, waiting to be recorded.
struct Done {
    claimed: Claimed,
    verdict: Verdict,
    trace: TraceContext,
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

    /// A transaction over every tenant's deliveries. The sender is the
    /// service's own machinery, not a request: one round claims whatever is
    /// due, whichever hospital it belongs to (a scan per tenant would cost
    /// a transaction per tenant per round and need a list of tenants
    /// notification does not keep). Safe because what it reads goes only
    /// to each row's own recipient, and what it writes is keyed by the
    /// rows it claimed.
    async fn all_tenants(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        wardline_kit::db::begin(&self.pool, wardline_kit::db::Scope::AllTenants).await
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
            // Rows pushed back by the rate limit wake nobody (the trigger
            // fires only for what is due now): wait for the soonest of them.
            let mut wait = self.cfg.scan_interval;
            loop {
                match self.round().await {
                    Ok(r) => {
                        if let Some(d) = r.deferred_for {
                            wait = wait.min(d);
                        }
                        if r.seen as i64 >= BATCH && !stop.is_cancelled() {
                            continue;
                        }
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "delivery round failed; retrying");
                        break;
                    }
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = wakeup.wait(wait) => {}
            }
        }
    }

    /// Claims due deliveries and makes one attempt each, recording results
    /// as they come in.
    pub async fn round(&self) -> Result<Round, sqlx::Error> {
        let (claimed, round, data) = self.claim().await?;
        if claimed.is_empty() {
            return Ok(round);
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Done>();
        let data = &data;
        let sends = async move {
            futures::stream::iter(claimed)
                .for_each_concurrent(self.cfg.concurrency.max(1), |c| {
                    let tx = tx.clone();
                    async move {
                        // The receiver lives until every send is done.
                        let _ = tx.send(self.attempt(c, data).await);
                    }
                })
                .await;
        };
        let record = async {
            let mut buf = Vec::with_capacity(BATCH as usize);
            while rx.recv_many(&mut buf, BATCH as usize).await > 0 {
                self.record(&buf).await;
                buf.clear();
            }
        };
        tokio::join!(sends, record);
        Ok(round)
    }

    /// Claims due deliveries (one transaction for the round) and reads what
    /// their messages need: the tenants' template overrides and the
    /// endpoints' secrets, one query each.
    async fn claim(&self) -> Result<(Vec<Claimed>, Round, RoundData), sqlx::Error> {
        let mut tx = self.all_tenants().await?;
        let rows = deliveries::lock_due(&mut tx, BATCH).await?;
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
        deliveries::defer(&mut tx, &later, &waits).await?;
        let ids: Vec<Uuid> = claimed.iter().map(|c| c.delivery_id).collect();
        let counts: Vec<i32> = claimed.iter().map(|c| c.attempt_count).collect();
        attempts::start(&mut tx, &ids, &counts, true).await?;
        let mut keys: Vec<OverrideKey> = claimed
            .iter()
            .map(|c| (c.tenant_id.clone(), c.event_kind, c.channel))
            .collect();
        keys.sort();
        keys.dedup();
        let overrides = templates::for_round(&mut tx, &keys).await?;
        let mut endpoints: Vec<Uuid> = claimed.iter().filter_map(|c| c.endpoint_id).collect();
        endpoints.sort();
        endpoints.dedup();
        let secrets = webhooks::secrets_for_round(&mut tx, &endpoints).await?;
        tx.commit().await?;
        let deferred_for = waits
            .iter()
            .copied()
            .reduce(f64::min)
            .map(Duration::from_secs_f64);
        let round = Round { seen, deferred_for };
        Ok((claimed, round, RoundData { overrides, secrets }))
    }

    /// Renders and, for webhooks, opens the signing secrets. An error is
    /// the attempt's verdict (nothing is sent).
    async fn prepare(&self, c: &Claimed, data: &RoundData) -> Result<Outgoing, Verdict> {
        let kind = c.kind();
        let channel = c.channel();
        let t = match data
            .overrides
            .get(&(c.tenant_id.clone(), c.event_kind, c.channel))
        {
            Some((subject, body)) => Template {
                subject: subject.clone(),
                body: body.clone(),
            },
            None => template::default_template(kind, channel),
        };
        let mut pairs: BTreeMap<String, String> =
            serde_json::from_value(c.vars.clone()).unwrap_or_default();
        // Deliveries recorded before `recipient.role` existed read as no
        // particular audience (the default wording's general branch).
        pairs.entry("recipient.role".to_owned()).or_default();
        let message = render_off_runtime(t, Vars::from_pairs(pairs)).await?;
        let mut secrets = Vec::new();
        if channel == NotificationChannel::Webhook {
            let found = c.endpoint_id.and_then(|id| data.secrets.get(&id));
            let Some(e) = found.filter(|e| e.deleted_at.is_none()) else {
                return Err(Verdict::failed(ErrorClass::EndpointDeleted, 0));
            };
            let bound_to = e.endpoint_id.to_string();
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

    /// Makes the attempt in its own span (continuing the ticket's trace)
    /// and hands back what to record.
    async fn attempt(&self, c: Claimed, data: &RoundData) -> Done {
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
        let trace = TraceContext::of(&span);
        let verdict = async {
            let started = Instant::now();
            let verdict = match (self.prepare(&c, data).await, self.channels.get(channel)) {
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
            verdict
        }
        .instrument(span)
        .await;
        Done {
            claimed: c,
            verdict,
            trace,
        }
    }

    /// Records the attempts in `done` in one transaction. Retried briefly;
    /// if the database stays away the claims expire and the reconciler
    /// records those attempts as interrupted instead.
    async fn record(&self, done: &[Done]) {
        let items: Vec<(Attempted, Verdict, &TraceContext)> = done
            .iter()
            .map(|d| (Attempted::of(&d.claimed), d.verdict, &d.trace))
            .collect();
        let mut delay = Duration::from_millis(100);
        for _ in 0..5 {
            let result = async {
                let mut tx = self.all_tenants().await?;
                // Only attempts still claimed: one reconciled meanwhile (the
                // lease expired) keeps that record.
                finish_attempts(&mut tx, &items, &self.cfg.policy, true).await?;
                tx.commit().await
            }
            .await;
            match result {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, attempts = done.len(), "recording attempts failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
        tracing::error!(
            attempts = done.len(),
            "attempts not recorded; the reconciler will take them"
        );
    }

    /// Records attempts whose claim outlived the lease as interrupted and
    /// schedules what follows. Returns how many.
    pub async fn reconcile(&self) -> Result<usize, sqlx::Error> {
        let mut tx = self.all_tenants().await?;
        let rows =
            deliveries::lock_expired_claims(&mut tx, self.cfg.lease.as_secs_f64(), 100).await?;
        let trace = TraceContext::current();
        let items: Vec<(Attempted, Verdict, &TraceContext)> = rows
            .iter()
            .map(|c| {
                tracing::warn!(delivery_id = %c.delivery_id, tenant = %c.tenant_id, "attempt interrupted (sender lost); outcome unknown, scheduling the next");
                metrics::counter!("wardline_notification_interrupted_attempts_total", "channel" => channel_label(c.channel()))
                    .increment(1);
                (Attempted::of(c), Verdict::failed(ErrorClass::Timeout, 0), &trace)
            })
            .collect();
        finish_attempts(&mut tx, &items, &self.cfg.policy, true).await?;
        tx.commit().await?;
        Ok(rows.len())
    }
}

/// What [`finish_attempts`] needs about a delivery.
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
    pub(crate) fn of(c: &Claimed) -> Self {
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

/// Completes each attempt with its verdict and moves its delivery on
/// (retry, finish, dead letter) in one array statement, then publishes the
/// final outcomes in one outbox insert, each under its own trace. With
/// `claimed`, deliveries no longer claimed by that attempt are left alone.
/// Returns the deliveries recorded.
pub(crate) async fn finish_attempts(
    conn: &mut PgConnection,
    items: &[(Attempted, Verdict, &TraceContext)],
    policy: &RetryPolicy,
    claimed: bool,
) -> Result<usize, sqlx::Error> {
    if items.is_empty() {
        return Ok(0);
    }
    let now = Utc::now();
    let plans: Vec<(Finish, DeliveryStatus)> = items
        .iter()
        .map(|(a, v, _)| plan(a, *v, policy, now))
        .collect();
    let rows: Vec<Finish> = plans.iter().map(|(f, _)| f.clone()).collect();
    let changed = attempts::finish(conn, &rows, now, claimed).await?;
    let mut outbox: Vec<(EventEnvelope, &TraceContext)> = Vec::new();
    for ((a, _, trace), (f, outcome)) in items.iter().zip(&plans) {
        if !f.finished || !changed.contains(&a.delivery_id) {
            continue;
        }
        let channel = channel_label(a.channel);
        let label = match outcome {
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            _ => "dead_lettered",
        };
        metrics::counter!("wardline_notification_deliveries_total", "channel" => channel, "outcome" => label)
            .increment(1);
        if *outcome == DeliveryStatus::DeadLettered {
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
                status: *outcome as i32,
                attempts: a.attempt as u32,
            }),
        );
        outbox.push((env, *trace));
    }
    let rows: Vec<(&EventEnvelope, &TraceContext)> = outbox.iter().map(|(e, t)| (e, *t)).collect();
    wardline_kit::outbox::enqueue_traced(conn, &rows)
        .await
        .map_err(|e| match e {
            wardline_kit::outbox::OutboxError::Db(e) => e,
            other => sqlx::Error::Protocol(other.to_string()),
        })?;
    Ok(changed.len())
}

/// Where attempt `a.attempt` ending with `v` takes its delivery.
fn plan(
    a: &Attempted,
    v: Verdict,
    policy: &RetryPolicy,
    now: chrono::DateTime<Utc>,
) -> (Finish, DeliveryStatus) {
    let in_schedule = u32::try_from(a.attempt - a.attempts_base)
        .unwrap_or(1)
        .max(1);
    let (state, outcome, next_at) = match policy.next(v, in_schedule) {
        Next::Delivered => (DeliveryState::Finished, DeliveryStatus::Delivered, None),
        Next::Failed => (DeliveryState::Finished, DeliveryStatus::Failed, None),
        Next::DeadLetter => (DeliveryState::Finished, DeliveryStatus::DeadLettered, None),
        Next::RetryIn(d) => (
            DeliveryState::RetryScheduled,
            DeliveryStatus::Unspecified,
            Some(now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::hours(1))),
        ),
    };
    (
        Finish {
            delivery_id: a.delivery_id,
            attempt: a.attempt,
            outcome: v.outcome as i16,
            status_code: v.status_code as i32,
            error_class: v.class as i16,
            next_at,
            state: state as i16,
            delivery_outcome: outcome as i16,
            finished: state == DeliveryState::Finished,
        },
        outcome,
    )
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
