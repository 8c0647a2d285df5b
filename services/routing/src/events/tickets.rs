//! Intake's ticket events: a new ticket is routed, an acknowledgement
//! confirms (or takes over) an assignment, a resolution or close frees the
//! analyst's slot and hands it to their queue, a reopen or transfer routes
//! the ticket again.
//!
//! Order-tolerant: every event carries a full snapshot and the ticket
//! version; routing applies what is newer than what it holds and skips the
//! rest, so any subset in any order converges.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::Utc;
use sqlx::PgConnection;
use tracing::Instrument as _;
use uuid::Uuid;
use wardline_kit::consumer::{Batch, EventHandler, HandleError, Incoming};
use wardline_kit::sql::Named;
use wardline_proto::common::{CallerRole, Category, Priority};
use wardline_proto::events::event_envelope::Payload;
use wardline_proto::events::{TicketReopened, TicketSnapshot, TicketTransferred};
use wardline_proto::routing::{AssignmentState, DecisionTrigger};

use crate::assignment::{release, route, route_new, route_new_batch};
use crate::cache::{Policy, PolicyCache};
use crate::domain::sla::Targets;
use crate::queue::hand_over_within;
use crate::store::assignments;
use crate::store::tickets::{self, TicketRow, state};
use crate::store::timers::{self, timer};

/// Applies intake's ticket events. Capacity an event frees is handed to the
/// head of the analyst's queue in the event's own transaction
/// ([`crate::queue::hand_over`]).
pub struct TicketEvents {
    /// Rules, targets and analysts per tenant.
    pub cache: Arc<PolicyCache>,
}

/// The snapshot's priority; an unknown or unspecified one counts as P3.
fn priority_of(snap: &TicketSnapshot) -> Priority {
    match Priority::try_from(snap.priority) {
        Ok(Priority::Unspecified) | Err(_) => Priority::P3,
        Ok(p) => p,
    }
}

/// The snapshot's category; an unknown or unspecified one is `Other`.
fn category_of(snap: &TicketSnapshot) -> Category {
    match Category::try_from(snap.category) {
        Ok(Category::Unspecified) | Err(_) => Category::Other,
        Ok(c) => c,
    }
}

/// The caller's role; an unknown or unspecified one is non-clinical (the
/// decision treats it so either way).
fn caller_role_of(snap: &TicketSnapshot) -> CallerRole {
    match CallerRole::try_from(snap.caller_role) {
        Ok(CallerRole::Unspecified) | Err(_) => CallerRole::NonClinical,
        Ok(r) => r,
    }
}

/// Routing's view of a ticket first seen in `snap` (not stored).
fn new_ticket(
    tenant: &str,
    snap: &TicketSnapshot,
    version: i64,
    targets: &Targets,
) -> Result<TicketRow, HandleError> {
    let id = Uuid::parse_str(&snap.ticket_id)
        .map_err(|_| HandleError::Poison("ticket_id is not a UUID".into()))?;
    let created = snap
        .created_at
        .as_ref()
        .and_then(wardline_kit::events::from_timestamp)
        .ok_or_else(|| HandleError::Poison("snapshot without created_at".into()))?;
    let priority = priority_of(snap);
    Ok(TicketRow {
        ticket_id: id,
        tenant_id: tenant.to_owned(),
        number: snap.number.clone(),
        facility_id: snap.facility_id.clone(),
        category: Named(category_of(snap)),
        clinical_category: snap.clinical_category,
        caller_role: Named(caller_role_of(snap)),
        priority: Named(priority),
        ticket_version: version,
        routing_seq: 0,
        state: state::WAITING,
        assignee: String::new(),
        previous_analyst_id: String::new(),
        excluded_analysts: Vec::new(),
        queued_at: None,
        queue_reason: String::new(),
        escalation_level: 0,
        created_at: created,
        response_due: targets.response_due(priority, created),
        resolution_due: targets.resolution_due(priority, created),
        responded_at: None,
    })
}

/// The tenant's policy for this transaction, loaded on first use.
async fn policy_for<'p>(
    cache: &PolicyCache,
    conn: &mut PgConnection,
    tenant: &str,
    slot: &'p mut Option<Policy>,
) -> Result<&'p mut Policy, sqlx::Error> {
    if slot.is_none() {
        *slot = Some(cache.policy(conn, tenant).await?);
    }
    Ok(slot.as_mut().expect("loaded above"))
}

impl EventHandler for TicketEvents {
    /// New tickets (creations of tickets routing does not hold) are decided
    /// together over one live read (`assignment::route_new_batch`); every other event
    /// is applied on its own, in stream order, each in its own span (so
    /// what it publishes continues its trace). A run of new tickets is
    /// routed before the next other event is applied, so the result is that
    /// of applying the events one after another.
    async fn handle(&self, batch: &mut Batch<'_>, events: &[Incoming]) -> Result<(), HandleError> {
        let creations: Vec<Uuid> = events.iter().filter_map(creation_of).collect();
        let mut run = Run::default();
        let tenant = batch.tenant().to_owned();
        if creations.len() > 1 {
            let p = self
                .cache
                .policy_for_tickets(batch.conn(), &tenant, &creations)
                .await?;
            run.known.extend(p.known_tickets.iter().copied());
            run.policy = Some(p);
        }
        for (i, event) in events.iter().enumerate() {
            if creations.len() > 1
                && let Some(id) = creation_of(event)
                && !run.known.contains(&id)
                && run.ids.insert(id)
            {
                run.events.push(i);
                continue;
            }
            self.route_run(batch, events, &mut run).await?;
            self.apply(batch.conn(), &tenant, event)
                .instrument(event.span.clone())
                .await?;
            // What this event changed (loads, the ticket stored) is read
            // again by the next run.
            run.policy = None;
            if let Some(id) = ticket_of(event) {
                run.known.insert(id);
            }
        }
        self.route_run(batch, events, &mut run).await
    }
}

/// New tickets of a batch waiting to be routed together.
#[derive(Default)]
struct Run {
    /// Positions of their creations in the batch.
    events: Vec<usize>,
    /// Their ticket ids.
    ids: HashSet<Uuid>,
    /// Tickets stored before the run (never new).
    known: HashSet<Uuid>,
    /// The tenant's policy, when read since the last event applied.
    policy: Option<Policy>,
}

/// The ticket of a `ticket.created`.
fn creation_of(event: &Incoming) -> Option<Uuid> {
    match event.envelope.payload.as_ref()? {
        Payload::TicketCreated(_) => ticket_of(event),
        _ => None,
    }
}

/// The ticket an event is about.
fn ticket_of(event: &Incoming) -> Option<Uuid> {
    let snap = wardline_kit::events::ticket_snapshot(event.envelope.payload.as_ref()?)?;
    Uuid::parse_str(&snap.ticket_id).ok()
}

impl TicketEvents {
    /// Routes the run of new tickets collected so far, and empties it.
    async fn route_run(
        &self,
        batch: &mut Batch<'_>,
        events: &[Incoming],
        run: &mut Run,
    ) -> Result<(), HandleError> {
        if run.events.is_empty() {
            return Ok(());
        }
        let tenant = batch.tenant().to_owned();
        let mut policy = match run.policy.take() {
            Some(p) => p,
            None => self.cache.policy(batch.conn(), &tenant).await?,
        };
        let mut tickets = Vec::with_capacity(run.events.len());
        let mut spans = Vec::with_capacity(run.events.len());
        for &i in &run.events {
            let (env, span) = (&events[i].envelope, &events[i].span);
            span.record("event_kind", "ticket.created");
            let snap = env
                .payload
                .as_ref()
                .and_then(wardline_kit::events::ticket_snapshot)
                .ok_or_else(|| HandleError::Poison("no snapshot".into()))?;
            let version = env.aggregate_version as i64;
            tickets.push(new_ticket(&tenant, snap, version, policy.targets())?);
            spans.push(span.clone());
        }
        let routed = route_new_batch(batch.conn(), &mut policy, tickets, &spans)
            .await?
            .ok_or_else(stored_concurrently)?;
        for (i, event) in routed.events {
            batch.publish(&events[run.events[i]], event);
        }
        // Picks another replica filled meanwhile: one fresh read for all of
        // them, then one by one (waiting for the analysts' rows).
        let mut fresh = None;
        for (i, mut t) in routed.one_by_one {
            let fresh = match &mut fresh {
                Some(p) => p,
                None => fresh.insert(self.cache.policy(batch.conn(), &tenant).await?),
            };
            let routed = route_new(batch.conn(), &mut t, fresh)
                .instrument(spans[i].clone())
                .await?;
            if routed.is_none() {
                return Err(not_inserted(batch.conn(), t.ticket_id).await);
            }
        }
        run.known.extend(run.ids.drain());
        run.events.clear();
        Ok(())
    }

    /// Applies one event of `tenant`'s batch (the transaction sees that
    /// tenant's rows): a creation is routed before anything is stored; any
    /// other event is applied to the locked ticket when it is newer than
    /// what routing holds (older ones are skipped).
    async fn apply(
        &self,
        conn: &mut PgConnection,
        tenant: &str,
        event: &Incoming,
    ) -> Result<(), HandleError> {
        let env = &event.envelope;
        let payload = env
            .payload
            .as_ref()
            .ok_or_else(|| HandleError::Poison("no payload".into()))?;
        let Some(snap) = wardline_kit::events::ticket_snapshot(payload) else {
            return Ok(());
        };
        let id = Uuid::parse_str(&snap.ticket_id)
            .map_err(|_| HandleError::Poison("ticket_id is not a UUID".into()))?;
        let version = env.aggregate_version as i64;
        tracing::Span::current().record("event_kind", wardline_kit::events::kind(payload).1);
        let mut cx = Cx {
            cache: &self.cache,
            // The batch's (its subject's), which the transaction sees.
            tenant,
            policy: None,
        };
        // A creation is nearly always the ticket's first event: decide before
        // anything is stored, and store the ticket with the outcome in one
        // statement. Otherwise lock what is there and apply the event to it.
        if let Payload::TicketCreated(_) = payload {
            let mut p = self.cache.policy_for_ticket(conn, cx.tenant, id).await?;
            if !p.ticket_known {
                let mut t = new_ticket(cx.tenant, snap, version, p.targets())?;
                if route_new(conn, &mut t, &mut p).await?.is_none() {
                    return Err(not_inserted(conn, id).await);
                }
                return Ok(());
            }
            cx.policy = Some(p);
        }
        let Some((mut t, fresh)) = lock_or_insert(conn, &mut cx, snap, id, version).await? else {
            return Ok(());
        };
        t.ticket_version = version;
        t.number = snap.number.clone();
        t.facility_id = snap.facility_id.clone();
        t.category = Named(category_of(snap));
        t.clinical_category = snap.clinical_category;
        t.priority = Named(priority_of(snap));
        let freed = match payload {
            Payload::TicketCreated(_) if fresh => {
                let policy = cx.policy(conn).await?;
                route(conn, &mut t, DecisionTrigger::TicketCreated, policy).await?;
                return Ok(());
            }
            Payload::TicketReopened(p) => reopened(conn, &mut cx, &mut t, p).await?,
            Payload::TicketTransferred(p) => transferred(conn, &mut cx, &mut t, p).await?,
            Payload::TicketAcknowledged(p) => acknowledged(conn, &mut t, &p.analyst_id).await?,
            Payload::TicketResolved(_) | Payload::TicketClosed(_) if t.state != state::DONE => {
                done(conn, &mut t).await?
            }
            _ => None,
        };
        tickets::save(conn, &t).await?;
        if let Some(analyst) = freed {
            hand_over_within(conn, &self.cache, &analyst, tenant).await?;
        }
        Ok(())
    }
}

/// A new ticket was stored meanwhile by a concurrent event of the same
/// ticket: roll back; the redelivery finds it and applies the event to it.
fn stored_concurrently() -> HandleError {
    HandleError::Retry("ticket stored concurrently by another of its events".into())
}

/// Why ticket `id`, unknown a moment ago, could not be inserted: stored
/// meanwhile by a concurrent event of it ([`stored_concurrently`]), or its
/// id is a ticket of another tenant, which this batch's transaction does
/// not see (row-level security) and never will: poison, not a retry loop.
/// The reason names no tenant.
async fn not_inserted(conn: &mut PgConnection, id: Uuid) -> HandleError {
    match tickets::visible(conn, id).await {
        Ok(true) => stored_concurrently(),
        Ok(false) => HandleError::Poison("ticket_id: taken outside this tenant".into()),
        Err(e) => e.into(),
    }
}

/// One event's context: the tenant, and its policy once loaded.
struct Cx<'a> {
    cache: &'a PolicyCache,
    tenant: &'a str,
    policy: Option<Policy>,
}

impl Cx<'_> {
    async fn policy(&mut self, conn: &mut PgConnection) -> Result<&mut Policy, sqlx::Error> {
        policy_for(self.cache, conn, self.tenant, &mut self.policy).await
    }
}

/// The ticket locked, with whether it was just inserted; `None` when the
/// event is not newer than what routing holds (skipped).
async fn lock_or_insert(
    conn: &mut PgConnection,
    cx: &mut Cx<'_>,
    snap: &TicketSnapshot,
    id: Uuid,
    version: i64,
) -> Result<Option<(TicketRow, bool)>, HandleError> {
    let mut inserted_by_another = false;
    loop {
        match tickets::lock(conn, id, false).await? {
            Some(t) if version <= t.ticket_version => {
                tracing::debug!(
                    version,
                    held = t.ticket_version,
                    "stale ticket event skipped"
                );
                return Ok(None);
            }
            Some(t) => return Ok(Some((t, false))),
            None if inserted_by_another => return Err(not_inserted(conn, id).await),
            None => {
                let targets = cx.policy(conn).await?.targets().clone();
                let t = new_ticket(cx.tenant, snap, version, &targets)?;
                if tickets::insert_new(conn, &t).await? {
                    return Ok(Some((t, true)));
                }
                // Inserted by a concurrent event meanwhile (committed now):
                // lock it. Not there once more: another tenant's id.
                inserted_by_another = true;
            }
        }
    }
}

/// A reopened ticket: new SLA clocks from now, routed again (its previous
/// analyst preferred). Saved by the routing. Returns the analyst freed.
async fn reopened(
    conn: &mut PgConnection,
    cx: &mut Cx<'_>,
    t: &mut TicketRow,
    p: &TicketReopened,
) -> Result<Option<String>, sqlx::Error> {
    let freed = release(conn, t, AssignmentState::Completed).await?;
    if !p.previous_analyst_id.is_empty() {
        t.previous_analyst_id = p.previous_analyst_id.clone();
    }
    let policy = cx.policy(conn).await?;
    let now = Utc::now();
    t.responded_at = None;
    t.response_due = policy.targets().response_due(t.priority(), now);
    t.resolution_due = policy.targets().resolution_due(t.priority(), now);
    timers::set(conn, t, timer::RESPONSE, t.response_due, None).await?;
    timers::set(conn, t, timer::RESOLUTION, t.resolution_due, None).await?;
    t.state = state::WAITING;
    t.queued_at = None;
    route(conn, t, DecisionTrigger::TicketReopened, policy).await?;
    Ok(freed)
}

/// Handed back by its analyst: routed again, never to them.
async fn transferred(
    conn: &mut PgConnection,
    cx: &mut Cx<'_>,
    t: &mut TicketRow,
    p: &TicketTransferred,
) -> Result<Option<String>, sqlx::Error> {
    let freed = release(conn, t, AssignmentState::Transferred).await?;
    if !p.from_analyst_id.is_empty() && !t.excluded_analysts.contains(&p.from_analyst_id) {
        t.excluded_analysts.push(p.from_analyst_id.clone());
    }
    timers::cancel(conn, t.ticket_id, &[timer::ACK]).await?;
    t.state = state::WAITING;
    t.queued_at = None;
    let policy = cx.policy(conn).await?;
    route(conn, t, DecisionTrigger::TicketTransferred, policy).await?;
    Ok(freed)
}

/// Acknowledged by `analyst`: the assignment is confirmed, or, when someone
/// else took the ticket directly (the analyst who answered the phone), it
/// counts against their capacity from now on and the assignee's is freed.
async fn acknowledged(
    conn: &mut PgConnection,
    t: &mut TicketRow,
    analyst: &str,
) -> Result<Option<String>, sqlx::Error> {
    let now = Utc::now();
    let mut freed = None;
    if t.assignee == analyst && t.state == state::ASSIGNED {
        assignments::acknowledge(conn, t.ticket_id).await?;
    } else if t.state != state::ACKNOWLEDGED || t.assignee != analyst {
        freed = release(conn, t, AssignmentState::Transferred).await?;
        assignments::take_directly(conn, analyst).await?;
        t.assignee = analyst.to_owned();
    }
    t.state = state::ACKNOWLEDGED;
    t.queued_at = None;
    if t.responded_at.is_none() {
        t.responded_at = Some(now);
        metrics::histogram!("wardline_routing_time_to_acknowledge_seconds", "priority" => t.label())
            .record((now - t.created_at).num_milliseconds().max(0) as f64 / 1000.0);
    }
    timers::cancel(conn, t.ticket_id, &[timer::ACK, timer::RESPONSE]).await?;
    Ok(freed)
}

/// Resolved or closed: the analyst's slot frees, every clock stops.
async fn done(conn: &mut PgConnection, t: &mut TicketRow) -> Result<Option<String>, sqlx::Error> {
    if t.responded_at.is_none() {
        t.responded_at = Some(Utc::now());
    }
    let freed = release(conn, t, AssignmentState::Completed).await?;
    t.state = state::DONE;
    t.queued_at = None;
    let all = [timer::ACK, timer::RESPONSE, timer::RESOLUTION];
    timers::cancel(conn, t.ticket_id, &all).await?;
    Ok(freed)
}
