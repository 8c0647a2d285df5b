//! The consumer loop: durable pull consumer, inbox de-duplication, backoff
//! and dead-lettering, written once for every service.
//!
//! Events are handled in batches: one puller hands each message to a
//! worker chosen by its tenant and aggregate (so one ticket's events reach
//! one worker, in stream order), and a worker takes every message it has
//! in hand (up to [`ConsumerSpec::batch`], never waiting for more) and
//! applies each tenant's share in one transaction: one multi-row inbox
//! insert that says which events are fresh, the handler's set-based
//! statements over all of them ([`EventHandler::handle`]), one outbox
//! insert ([`Batch::publish`]), one commit, then the acks. On any error the
//! batch is rolled back and applied one event at a time, so one poison
//! event neither blocks nor dead-letters its neighbours.
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
//! - A batch never mixes tenants: row-level security sets the tenant once
//!   per transaction, from the subject.
//! - All replicas of a service share one durable consumer; JetStream hands
//!   each message to one of them. A replica dedicated to some tenants
//!   (`WARDLINE_TENANTS`) has a durable of its own; the shared pool beside
//!   it lists those tenants in `WARDLINE_EXCLUDE_TENANTS` and acknowledges
//!   their events unhandled, so each tenant's events are handled by one pool.
//! - The subject's tenant is the truth: an envelope naming another tenant
//!   is poison.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull};

type PullConsumer = jetstream::consumer::Consumer<pull::Config>;
use bytes::Bytes;
use futures::{FutureExt as _, StreamExt};
use prost::Message as _;
use sqlx::{PgConnection, PgPool};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, field::Empty};
use uuid::Uuid;
use wardline_proto::events::EventEnvelope;

use crate::db::{Scope, is_unavailable};
use crate::outbox::TraceContext;
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

impl From<crate::outbox::OutboxError> for HandleError {
    fn from(e: crate::outbox::OutboxError) -> Self {
        match e {
            crate::outbox::OutboxError::Db(e) => Self::Db(e),
            other => Self::Poison(other.to_string()),
        }
    }
}

/// An event as a handler sees it.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// Decoded envelope; its tenant is the subject's (checked).
    pub envelope: EventEnvelope,
    /// Subject it arrived on.
    pub subject: String,
    /// 1 on first delivery.
    pub delivered: i64,
    /// The event's own `event.handle` span (a child of the producer's
    /// trace): record allow-listed fields on it; events published because
    /// of this one continue its trace ([`Batch::publish`]).
    pub span: tracing::Span,
}

impl Incoming {
    /// An event as the loop hands it over on its `delivered`-th delivery,
    /// for tests and tools that drive a handler directly ([`apply_with`]).
    pub fn new(envelope: EventEnvelope, delivered: i64) -> Self {
        let subject = crate::events::subject(&envelope).unwrap_or_default();
        let span = tracing::info_span!("event.handle", subject = %subject);
        Self {
            envelope,
            subject,
            delivered,
            span,
        }
    }
}

/// Applies `events` with `handler` in the caller's transaction `conn`, as
/// the loop does after the inbox (the events' outbox rows are written
/// too): for tests and tools that drive a handler directly.
pub async fn apply_with<H: EventHandler>(
    handler: &H,
    conn: &mut PgConnection,
    events: &[Incoming],
) -> Result<(), HandleError> {
    let tenant = events
        .first()
        .map(|e| e.envelope.tenant_id.clone())
        .unwrap_or_default();
    let mut batch = Batch {
        conn: &mut *conn,
        tenant: &tenant,
        outbox: Vec::new(),
    };
    handler.handle(&mut batch, events).await?;
    let outbox = std::mem::take(&mut batch.outbox);
    let rows: Vec<_> = outbox.iter().map(|(e, t)| (e, t)).collect();
    crate::outbox::enqueue_traced(conn, &rows).await?;
    Ok(())
}

/// The transaction of a batch, as a handler sees it.
pub struct Batch<'c> {
    conn: &'c mut PgConnection,
    tenant: &'c str,
    outbox: Vec<(EventEnvelope, TraceContext)>,
}

impl Batch<'_> {
    /// The batch's transaction: state written here commits with the inbox
    /// entries and the published events, or not at all.
    pub fn conn(&mut self) -> &mut PgConnection {
        self.conn
    }

    /// The tenant of every event in the batch (from their subjects).
    pub fn tenant(&self) -> &str {
        self.tenant
    }

    /// Publishes `event` (through the outbox, in the batch's transaction)
    /// as a consequence of `cause`, continuing `cause`'s trace. All of a
    /// batch's events are written in one statement before the commit.
    pub fn publish(&mut self, cause: &Incoming, event: EventEnvelope) {
        self.outbox.push((event, TraceContext::of(&cause.span)));
    }
}

/// Applies events inside the loop's transaction.
pub trait EventHandler: Send + Sync + 'static {
    /// Applies `events`: fresh (never applied by this service), of one
    /// tenant, in stream order (one ticket's events keep their order).
    /// The result must be that of applying them one after another; any
    /// error rolls the whole batch back, and the loop then calls this
    /// again with one event at a time to find the culprit.
    fn handle<'a>(
        &'a self,
        batch: &'a mut Batch<'_>,
        events: &'a [Incoming],
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
    /// it to another worker (a crashed or stuck replica); also the longest
    /// a batch may take. Deliberately no server-side backoff list: with
    /// one, the server ignores the delay of a NAK and early events wait a
    /// whole ack-wait instead of the short [`retry_delay`] (caught by a
    /// test on nats-server 2.15).
    pub ack_wait: Duration,
    /// Messages handed out and not yet acknowledged, across all replicas.
    /// Bounds memory and the redelivery burst after a crash.
    pub max_ack_pending: i64,
    /// Concurrent workers in this process.
    pub workers: usize,
    /// Most events one worker applies in one transaction.
    pub batch: usize,
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
            batch: 64,
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

/// Shared by the puller and the workers of one consumer.
struct Loop<H> {
    js: jetstream::Context,
    pool: PgPool,
    spec: ConsumerSpec,
    handler: Arc<H>,
    /// Set by a worker that found PostgreSQL unreachable: the puller stops
    /// pulling until it answers again.
    db_down: AtomicBool,
}

/// Creates (or updates) the durable consumer and runs it until `shutdown`.
pub async fn run<H: EventHandler>(
    js: jetstream::Context,
    pool: PgPool,
    spec: ConsumerSpec,
    handler: Arc<H>,
    shutdown: CancellationToken,
) -> Result<(), async_nats::Error> {
    let Some(consumer) = durable(&js, &spec, &shutdown).await else {
        return Ok(());
    };
    let workers = spec.workers.max(1);
    let lp = Arc::new(Loop {
        js,
        pool,
        spec,
        handler,
        db_down: AtomicBool::new(false),
    });
    let mut tasks = tokio::task::JoinSet::new();
    let mut queues = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (tx, rx) = mpsc::channel(lp.spec.batch.max(1) * 2);
        queues.push(tx);
        tasks.spawn(worker(lp.clone(), rx, shutdown.clone()));
    }
    tasks.spawn(puller(
        lp.clone(),
        consumer.clone(),
        queues,
        shutdown.clone(),
    ));
    tasks.spawn(lag_reporter(consumer, lp.clone(), shutdown.clone()));
    tasks.spawn(max_deliveries_advisories(lp, shutdown));
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// The durable, created or brought up to date; `None` on shutdown.
async fn durable(
    js: &jetstream::Context,
    spec: &ConsumerSpec,
    shutdown: &CancellationToken,
) -> Option<PullConsumer> {
    loop {
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
            Ok(c) => return Some(c),
            Err(e) => {
                tracing::warn!(durable = %spec.durable, error = %e, "consumer not ready; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

async fn lag_reporter<H>(
    mut consumer: PullConsumer,
    lp: Arc<Loop<H>>,
    shutdown: CancellationToken,
) {
    let durable = crate::admin::consumer_label(lp.spec.service, &lp.spec.durable);
    loop {
        if let Ok(info) = consumer.info().await {
            metrics::gauge!("wardline_consumer_pending", "consumer" => durable.clone())
                .set(info.num_pending as f64);
            metrics::gauge!("wardline_consumer_ack_pending", "consumer" => durable.clone())
                .set(info.num_ack_pending as f64);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
    }
}

/// A message on its way to a worker, its envelope decoded once.
struct Delivery {
    msg: jetstream::Message,
    decoded: Result<(EventEnvelope, Uuid), String>,
}

impl Delivery {
    fn tenant(&self) -> &str {
        crate::nats::tenant_of_subject(&self.msg.subject).unwrap_or_default()
    }
}

/// Pulls for every worker of this process and hands each message to the
/// worker of its tenant and aggregate, so one ticket's events are applied
/// by one worker in stream order. Stops pulling while PostgreSQL is down.
async fn puller<H>(
    lp: Arc<Loop<H>>,
    consumer: PullConsumer,
    queues: Vec<mpsc::Sender<Delivery>>,
    shutdown: CancellationToken,
) {
    while !shutdown.is_cancelled() {
        if lp.db_down.load(Ordering::Acquire) {
            wait_for_db(&lp.pool, &shutdown).await;
            lp.db_down.store(false, Ordering::Release);
        }
        let mut messages = match consumer
            .stream()
            .max_messages_per_batch(lp.spec.batch.clamp(32, 256))
            .expires(Duration::from_secs(5))
            .heartbeat(Duration::from_secs(2))
            .messages()
            .await
        {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(durable = %lp.spec.durable, error = %e, "cannot pull; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        // Dropping the pull ends it: nothing more is handed to this
        // process while it cannot apply anything. Messages it holds come
        // back after the ack wait; redeliveries spend no budget.
        while !lp.db_down.load(Ordering::Acquire) {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                n = messages.next() => n,
            };
            let msg = match next {
                None => break,
                Some(Err(e)) => {
                    tracing::debug!(durable = %lp.spec.durable, error = %e, "pull stream error");
                    break;
                }
                Some(Ok(msg)) => msg,
            };
            let tenant = crate::nats::tenant_of_subject(&msg.subject).unwrap_or_default();
            let decoded = decode(&msg.payload, tenant);
            let mut key = DefaultHasher::new();
            tenant.hash(&mut key);
            if let Ok((env, _)) = &decoded {
                env.aggregate_id.hash(&mut key);
            }
            let queue = &queues[(key.finish() % queues.len() as u64) as usize];
            if queue.send(Delivery { msg, decoded }).await.is_err() {
                return;
            }
        }
    }
}

async fn worker<H: EventHandler>(
    lp: Arc<Loop<H>>,
    mut queue: mpsc::Receiver<Delivery>,
    shutdown: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return,
            d = queue.recv() => match d { Some(d) => d, None => return },
        };
        // Everything in hand, never waiting for more.
        let mut hand = vec![first];
        while hand.len() < lp.spec.batch.max(1) {
            match queue.try_recv() {
                Ok(d) => hand.push(d),
                Err(_) => break,
            }
        }
        for group in by_tenant(hand) {
            if lp.process(group).await == Flow::DbDown {
                lp.db_down.store(true, Ordering::Release);
                wait_for_db(&lp.pool, &shutdown).await;
            }
        }
    }
}

/// Splits deliveries by tenant, keeping stream order within each tenant.
fn by_tenant(hand: Vec<Delivery>) -> Vec<Vec<Delivery>> {
    let mut groups: Vec<Vec<Delivery>> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for d in hand {
        let i = *index.entry(d.tenant().to_owned()).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[i].push(d);
    }
    groups
}

/// What a worker does after a batch.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    /// Take the next messages.
    Continue,
    /// PostgreSQL is unreachable: stop pulling until it is back.
    DbDown,
}

/// One delivery in a batch: the message, its event, its span.
struct Item {
    msg: jetstream::Message,
    event_id: Uuid,
    incoming: Incoming,
}

/// How a batch ended when nothing failed.
struct Applied {
    /// Items whose event the inbox already had (applied before, or twice
    /// in this batch).
    duplicates: std::collections::HashSet<usize>,
    /// Items a previous delivery dead-lettered, with the reason.
    dead_lettered: Vec<(usize, String)>,
}

impl<H: EventHandler> Loop<H> {
    /// Handles one tenant's deliveries: the non-events (another pool's
    /// tenant, undecodable) at once, the events as one batch.
    async fn process(&self, group: Vec<Delivery>) -> Flow {
        let mut items = Vec::with_capacity(group.len());
        for d in group {
            let subject = d.msg.subject.to_string();
            let tenant = d.tenant().to_owned();
            let delivered = d.msg.info().map(|i| i.delivered).unwrap_or(1);
            let span = event_span(&self.spec, &d.msg, &subject, delivered);
            if self.spec.exclude_tenants.contains(&tenant) {
                // Another pool's tenant: its dedicated durable has its own copy.
                self.count(&span, "other_pool");
                if let Err(e) = d.msg.ack().await {
                    tracing::debug!(error = %e, "ack of another pool's event failed; it comes back");
                }
                continue;
            }
            match d.decoded {
                Ok((envelope, event_id)) => {
                    span.record("event_id", envelope.event_id.as_str());
                    span.record("tenant", tenant.as_str());
                    items.push(Item {
                        msg: d.msg,
                        event_id,
                        incoming: Incoming {
                            envelope,
                            subject,
                            delivered,
                            span,
                        },
                    });
                }
                Err(reason) => {
                    self.count(&span, "poison");
                    let letter = Letter {
                        event_id: header_event_id(d.msg.headers.as_ref())
                            .unwrap_or_else(Uuid::now_v7),
                        subject: &subject,
                        tenant: &tenant,
                        payload: &d.msg.payload,
                        reason,
                        deliveries: delivered,
                    };
                    let flow = self.dead_letter(&d.msg, &letter).instrument(span).await;
                    if flow == Flow::DbDown {
                        return flow;
                    }
                }
            }
        }
        if items.is_empty() {
            return Flow::Continue;
        }
        self.batch(items).await
    }

    fn count(&self, span: &tracing::Span, outcome: &'static str) {
        span.record("outcome", outcome);
        metrics::counter!("wardline_events_consumed_total", "consumer" => crate::admin::consumer_label(self.spec.service, &self.spec.durable), "outcome" => outcome)
            .increment(1);
    }

    /// Applies `items` (one tenant) in one transaction; on failure rolls
    /// back and applies them one at a time.
    async fn batch(&self, items: Vec<Item>) -> Flow {
        let started = std::time::Instant::now();
        let tenant = items[0].incoming.envelope.tenant_id.clone();
        let span = tracing::info_span!(
            parent: &items[0].incoming.span,
            "event.batch",
            otel.name = %format!("{} batch", self.spec.service),
            tenant = %tenant,
            batch = items.len(),
            outcome = Empty,
        );
        let outcome = self.attempt(&tenant, &items).instrument(span.clone()).await;
        metrics::histogram!("wardline_consumer_batch_size", "consumer" => crate::admin::consumer_label(self.spec.service, &self.spec.durable))
            .record(items.len() as f64);
        metrics::histogram!("wardline_event_handle_seconds", "consumer" => crate::admin::consumer_label(self.spec.service, &self.spec.durable))
            .record(started.elapsed().as_secs_f64());
        match outcome {
            Ok(applied) => {
                span.record("outcome", "applied");
                self.settle_applied(items, applied).await
            }
            Err(HandleError::Db(e)) if is_unavailable(&e) => {
                span.record("outcome", "db_unavailable");
                tracing::warn!(error = %e, "PostgreSQL unavailable; pausing the consumer");
                for item in &items {
                    self.count(&item.incoming.span, "db_unavailable");
                    nak(&item.msg, Duration::from_secs(1)).await;
                }
                Flow::DbDown
            }
            Err(failure) if items.len() == 1 => {
                span.record("outcome", "failed");
                let item = items.into_iter().next().expect("one item");
                self.failed(item, failure).await
            }
            Err(failure) => {
                span.record("outcome", "split");
                tracing::info!(batch = items.len(), error = %failure, "batch failed; applying its events one at a time");
                metrics::counter!("wardline_consumer_batch_splits_total", "consumer" => crate::admin::consumer_label(self.spec.service, &self.spec.durable))
                    .increment(1);
                for item in items {
                    if Box::pin(self.batch(vec![item])).await == Flow::DbDown {
                        return Flow::DbDown;
                    }
                }
                Flow::Continue
            }
        }
    }

    /// Acks what was applied or found applied; finishes dead letters an
    /// earlier delivery recorded.
    async fn settle_applied(&self, items: Vec<Item>, applied: Applied) -> Flow {
        let mut reasons: HashMap<usize, String> = applied.dead_lettered.into_iter().collect();
        if !applied.duplicates.is_empty() {
            tracing::debug!(
                duplicates = applied.duplicates.len(),
                "events applied before"
            );
        }
        for (i, item) in items.into_iter().enumerate() {
            if let Some(reason) = reasons.remove(&i) {
                // Recorded by an earlier delivery whose stream copy or ack
                // did not happen: finish that job.
                self.count(&item.incoming.span, "dead_lettered_before");
                let letter = item.letter(reason);
                if self.dead_letter(&item.msg, &letter).await == Flow::DbDown {
                    return Flow::DbDown;
                }
                continue;
            }
            let outcome = if applied.duplicates.contains(&i) {
                "duplicate"
            } else {
                "applied"
            };
            self.count(&item.incoming.span, outcome);
            if let Err(e) = item.msg.ack().await {
                // The effect is committed; a redelivery will be a duplicate.
                tracing::warn!(error = %e, "ack failed after commit");
            }
        }
        Flow::Continue
    }

    /// One event failed on its own: poison is dead-lettered, anything else
    /// counted against its budget.
    async fn failed(&self, item: Item, failure: HandleError) -> Flow {
        let span = item.incoming.span.clone();
        let failure = refused_data(failure);
        async {
            if let HandleError::Poison(reason) = failure {
                self.count(&span, "poison");
                return self.dead_letter(&item.msg, &item.letter(reason)).await;
            }
            self.count(
                &span,
                match failure {
                    HandleError::Retry(_) => "retry",
                    _ => "db_error",
                },
            );
            let reason = failure.to_string();
            tracing::warn!(%reason, "event not applied; counted against its budget");
            match record_failure(&self.pool, item.event_id, &item.incoming.subject, &reason).await {
                Ok(failures) if failures >= self.spec.max_failures => {
                    let letter =
                        item.letter(format!("gave up after {failures} failures: {reason}"));
                    self.dead_letter(&item.msg, &letter).await
                }
                Ok(failures) => {
                    nak(&item.msg, retry_delay(failures)).await;
                    Flow::Continue
                }
                Err(e) if is_unavailable(&e) => {
                    nak(&item.msg, Duration::from_secs(1)).await;
                    Flow::DbDown
                }
                Err(e) => {
                    // Not counted: JetStream's ceiling and its advisory
                    // still end this event in the dead letters.
                    tracing::error!(error = %e, "cannot count a failed event; redelivering");
                    nak(&item.msg, retry_delay(item.incoming.delivered)).await;
                    Flow::Continue
                }
            }
        }
        .instrument(span.clone())
        .await
    }

    /// Runs the batch transaction. A panic in the handler, or a batch still
    /// busy when the ack wait ends (JetStream has handed its events to
    /// another worker by then), is a failure like any other: the
    /// transaction is dropped, so rolled back, and the worker lives on.
    async fn attempt(&self, tenant: &str, items: &[Item]) -> Result<Applied, HandleError> {
        let dead_lettered = self.dead_lettered_before(items).await?;
        let applying = AssertUnwindSafe(self.apply(tenant, items, &dead_lettered)).catch_unwind();
        match tokio::time::timeout(self.spec.ack_wait, applying).await {
            Ok(Ok(Ok(duplicates))) => Ok(Applied {
                duplicates,
                dead_lettered,
            }),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(HandleError::Retry("the handler panicked".into())),
            Err(_) => Err(HandleError::Retry(format!(
                "the handler took longer than the ack wait ({:?})",
                self.spec.ack_wait
            ))),
        }
    }

    /// Items of this batch a previous delivery dead-lettered (only
    /// redeliveries are looked up).
    async fn dead_lettered_before(
        &self,
        items: &[Item],
    ) -> Result<Vec<(usize, String)>, HandleError> {
        let redelivered: Vec<Uuid> = items
            .iter()
            .filter(|i| i.incoming.delivered > 1)
            .map(|i| i.event_id)
            .collect();
        if redelivered.is_empty() {
            return Ok(Vec::new());
        }
        // Every tenant's scope: the consumer's own bookkeeping, looking up
        // only the events it holds, by id, and reading only the reason.
        let mut tx = crate::db::begin(&self.pool, Scope::AllTenants).await?;
        let rows: Vec<(Uuid, String)> =
            sqlx::query_as("SELECT event_id, reason FROM dead_letters WHERE event_id = ANY($1)")
                .bind(&redelivered)
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        let reasons: HashMap<Uuid, String> = rows.into_iter().collect();
        Ok(items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| reasons.get(&item.event_id).map(|r| (i, r.clone())))
            .collect())
    }

    /// The transaction: inbox, handler, outbox, failure counts, commit.
    /// Returns the items whose event the inbox already had.
    async fn apply(
        &self,
        tenant: &str,
        items: &[Item],
        dead_lettered: &[(usize, String)],
    ) -> Result<std::collections::HashSet<usize>, HandleError> {
        let candidates: Vec<usize> = (0..items.len())
            .filter(|i| !dead_lettered.iter().any(|(d, _)| d == i))
            .collect();
        if candidates.is_empty() {
            return Ok(Default::default());
        }
        // The batch's tenant (every event's subject names it): the handler
        // sees and writes that tenant's rows only; events about every
        // tenant at once see them all.
        let scope = if tenant == crate::events::ALL_TENANTS_EVENT {
            Scope::AllTenants
        } else {
            Scope::Tenant(tenant)
        };
        let mut tx = crate::db::begin(&self.pool, scope).await?;
        let ids: Vec<Uuid> = candidates.iter().map(|&i| items[i].event_id).collect();
        let subjects: Vec<&str> = candidates
            .iter()
            .map(|&i| items[i].incoming.subject.as_str())
            .collect();
        let fresh: Vec<Uuid> = sqlx::query_scalar(
            "INSERT INTO inbox (event_id, subject)
             SELECT * FROM UNNEST($1::uuid[], $2::text[])
             ON CONFLICT DO NOTHING RETURNING event_id",
        )
        .bind(&ids)
        .bind(&subjects)
        .fetch_all(&mut *tx)
        .await?;
        let mut fresh: std::collections::HashSet<Uuid> = fresh.into_iter().collect();
        // One event twice in one batch (a republish) is fresh once.
        let (fresh_items, duplicates): (Vec<usize>, Vec<usize>) = candidates
            .into_iter()
            .partition(|&i| fresh.remove(&items[i].event_id));
        let duplicates = duplicates.into_iter().collect();
        if fresh_items.is_empty() {
            tx.rollback().await?;
            return Ok(duplicates);
        }
        let events: Vec<Incoming> = fresh_items
            .iter()
            .map(|&i| items[i].incoming.clone())
            .collect();
        let mut batch = Batch {
            conn: &mut tx,
            tenant,
            outbox: Vec::new(),
        };
        self.handler.handle(&mut batch, &events).await?;
        let outbox = std::mem::take(&mut batch.outbox);
        if !outbox.is_empty() {
            let rows: Vec<_> = outbox.iter().map(|(e, t)| (e, t)).collect();
            crate::outbox::enqueue_traced(&mut tx, &rows).await?;
        }
        let redelivered: Vec<Uuid> = events
            .iter()
            .filter(|e| e.delivered > 1)
            .filter_map(|e| Uuid::parse_str(&e.envelope.event_id).ok())
            .collect();
        if !redelivered.is_empty() {
            sqlx::query("DELETE FROM consumer_failures WHERE event_id = ANY($1)")
                .bind(&redelivered)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(duplicates)
    }

    /// Dead-letters `letter` and acknowledges `msg` once both the table row
    /// and the stream copy are written; otherwise leaves it in JetStream.
    async fn dead_letter(&self, msg: &jetstream::Message, letter: &Letter<'_>) -> Flow {
        match write_dead_letter(&self.js, &self.pool, &self.spec, letter).await {
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
                metrics::counter!("wardline_dead_letter_write_failures_total", "consumer" => crate::admin::consumer_label(self.spec.service, &self.spec.durable))
                    .increment(1);
                nak(msg, Duration::from_secs(5)).await;
                Flow::Continue
            }
        }
    }
}

/// The span of one delivery: a child of the producer's trace.
fn event_span(
    spec: &ConsumerSpec,
    msg: &jetstream::Message,
    subject: &str,
    delivered: i64,
) -> tracing::Span {
    let stream_seq = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
    let span = tracing::info_span!(
        "event.handle",
        otel.name = %format!("{} handle", spec.service),
        otel.kind = "consumer",
        subject = %subject,
        event_id = Empty,
        tenant = Empty,
        ticket_id = Empty,
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
    span
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

impl Item {
    fn letter(&self, reason: String) -> Letter<'_> {
        Letter {
            event_id: self.event_id,
            subject: &self.incoming.subject,
            tenant: &self.incoming.envelope.tenant_id,
            payload: &self.msg.payload,
            reason,
            deliveries: self.incoming.delivered,
        }
    }
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

/// A database error about the event's data (SQLSTATE class 22: a NUL
/// byte in text, a value out of range, malformed input for a type; 23514,
/// a CHECK) fails the same way on every delivery: it is poison, dead-
/// lettered at once instead of retried for minutes. The reason names the
/// SQLSTATE only: PostgreSQL's message may quote the offending value.
fn refused_data(failure: HandleError) -> HandleError {
    if let HandleError::Db(sqlx::Error::Database(e)) = &failure
        && let Some(code) = e.code()
        && (code.starts_with("22") || code == "23514")
    {
        return HandleError::Poison(format!(
            "the database refuses the event's data (SQLSTATE {code})"
        ));
    }
    failure
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
    // Every tenant's scope: a dead letter may have no tenant (an
    // undecodable subject) and the row is the letter's own tenant's.
    let mut tx = crate::db::begin(pool, Scope::AllTenants).await?;
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
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    tx.commit().await?;
    if inserted {
        tracing::error!(event_id = %letter.event_id, reason = %letter.reason, "event dead-lettered");
        metrics::counter!("wardline_dead_letters_total", "consumer" => crate::admin::consumer_label(spec.service, &spec.durable))
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
async fn max_deliveries_advisories<H>(lp: Arc<Loop<H>>, shutdown: CancellationToken) {
    let client = lp.js.client();
    let durable = lp.spec.durable.clone();
    let mut advisories = loop {
        match client
            .queue_subscribe(max_deliveries_subject(&durable), durable.clone())
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
        metrics::counter!("wardline_consumer_max_deliveries_total", "consumer" => crate::admin::consumer_label(lp.spec.service, &durable))
            .increment(1);
        let mut delay = Duration::from_millis(200);
        while let Err(e) = dead_letter_from_stream(&lp, &advisory).await {
            tracing::warn!(stream_seq = advisory.stream_seq, error = %e, "cannot dead-letter an event JetStream gave up on; retrying");
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }
}

async fn dead_letter_from_stream<H>(
    lp: &Loop<H>,
    advisory: &MaxDeliveries,
) -> Result<(), DeadLetterError> {
    let stream = lp
        .js
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
            .fetch_one(&lp.pool)
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
    write_dead_letter(&lp.js, &lp.pool, &lp.spec, &letter).await
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

    proptest::proptest! {
        /// Any bytes on a subject: an envelope or a reason, never a panic,
        /// and never an envelope of another tenant than the subject's.
        #[test]
        fn the_decoder_takes_any_bytes(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            tenant in "[a-z]{2,8}",
        ) {
            if let Ok((env, _)) = decode(&bytes, &tenant) {
                proptest::prop_assert_eq!(env.tenant_id, tenant);
                proptest::prop_assert!(env.payload.is_some());
            }
        }

        /// A real envelope with bytes flipped or cut: still no panic.
        #[test]
        fn a_damaged_envelope_is_refused_or_intact(
            flips in proptest::collection::vec((0usize..400, proptest::prelude::any::<u8>()), 0..8),
            cut in 0usize..400,
        ) {
            let env = crate::events::envelope(
                "test",
                "stmarys",
                "t1",
                1,
                wardline_proto::events::event_envelope::Payload::TicketCreated(Default::default()),
            );
            let mut bytes = env.encode_to_vec();
            let len = bytes.len().max(1);
            for (i, b) in flips {
                if let Some(x) = bytes.get_mut(i % len) {
                    *x ^= b;
                }
            }
            bytes.truncate(cut.max(1));
            let _ = decode(&bytes, "stmarys");
        }
    }
}
