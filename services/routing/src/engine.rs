//! The routing engine: intake's ticket events in, assignments, queueing and
//! escalations out.
//!
//! What must hold:
//! - **One live assignment per ticket.** Every change to a ticket happens
//!   with its routing row locked (`FOR UPDATE`), and a unique index allows
//!   one pending or acknowledged assignment per ticket, so two replicas
//!   cannot both assign it.
//! - **Nobody over capacity.** An analyst's load is raised only by
//!   `UPDATE … SET current_load = current_load + 1 WHERE current_load <
//!   max_concurrent`; when another replica got there first the update
//!   matches nothing and the next-ranked analyst is tried.
//! - **Timers survive restarts.** Acknowledgement and SLA deadlines are rows
//!   in `timers`, deleted by the scanner in the same transaction as their
//!   effect. A crash before commit leaves the row to fire again.
//! - **Order-tolerant.** Every ticket event carries a full snapshot and the
//!   ticket version; routing applies what is newer than what it holds and
//!   skips the rest, so any subset in any order converges.
//! - Routing's own ticket events are numbered per ticket (`routing_seq`) so
//!   intake can apply them in order too.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prost::Message;
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use uuid::Uuid;
use wardline_kit::consumer::{Batch, EventHandler, HandleError, Incoming};
use wardline_kit::events::{envelope, timestamp};
use wardline_proto::common::{CallerRole, Category, Priority};
use wardline_proto::events::event_envelope::Payload;
use wardline_proto::events::{
    EscalationLevel, SlaBreached, SlaTarget, TicketAssigned, TicketEscalated, TicketQueued,
    TicketSnapshot,
};
use wardline_proto::routing::{AssignmentExplanation, AssignmentState, Candidate, DecisionTrigger};

use crate::cache::{Policy, PolicyCache};
use crate::domain::decision::{self, Decision, TicketFacts};
use crate::domain::sla::Targets;
use crate::policy;

/// Routing's ticket states.
pub mod state {
    /// Waiting in the tenant's queue.
    pub const WAITING: i16 = 1;
    /// Assigned, not yet acknowledged.
    pub const ASSIGNED: i16 = 2;
    /// Acknowledged by the analyst (being worked).
    pub const ACKNOWLEDGED: i16 = 3;
    /// Resolved or closed.
    pub const DONE: i16 = 4;
}

/// Timer kinds.
pub mod timer {
    /// The assigned analyst must acknowledge.
    pub const ACK: i16 = 1;
    /// The response target.
    pub const RESPONSE: i16 = 2;
    /// The resolution target.
    pub const RESOLUTION: i16 = 3;
}

/// Routing's view of a ticket.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TicketRow {
    pub ticket_id: Uuid,
    pub tenant_id: String,
    pub number: String,
    pub facility_id: String,
    pub category: i16,
    pub clinical_category: bool,
    pub caller_role: i16,
    pub priority: i16,
    pub ticket_version: i64,
    pub routing_seq: i64,
    pub state: i16,
    pub assignee: String,
    pub previous_analyst_id: String,
    pub excluded_analysts: Vec<String>,
    pub queued_at: Option<DateTime<Utc>>,
    pub queue_reason: String,
    pub escalation_level: i16,
    pub created_at: DateTime<Utc>,
    pub response_due: DateTime<Utc>,
    pub resolution_due: DateTime<Utc>,
    pub responded_at: Option<DateTime<Utc>>,
}

const TICKET_COLUMNS: &str = "ticket_id, tenant_id, number, facility_id, category, clinical_category, caller_role,
    priority, ticket_version, routing_seq, state, assignee, previous_analyst_id, excluded_analysts, queued_at,
    queue_reason, escalation_level, created_at, response_due, resolution_due, responded_at";

impl TicketRow {
    fn priority(&self) -> Priority {
        Priority::try_from(i32::from(self.priority)).unwrap_or(Priority::P3)
    }

    fn label(&self) -> &'static str {
        match self.priority {
            1 => "P1",
            2 => "P2",
            3 => "P3",
            _ => "P4",
        }
    }
}

/// Locks and returns a ticket.
pub async fn lock_ticket(
    conn: &mut PgConnection,
    id: Uuid,
    skip_locked: bool,
) -> Result<Option<TicketRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {TICKET_COLUMNS} FROM tickets WHERE ticket_id = $1 FOR UPDATE{}",
        if skip_locked { " SKIP LOCKED" } else { "" }
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Writes every mutable column of a ticket (`$1`..`$19`, see [`bind_ticket`]).
const SAVE_TICKET: &str = "UPDATE tickets SET number = $2, facility_id = $3, category = $4, clinical_category = $5,
        caller_role = $6, priority = $7, ticket_version = $8, routing_seq = $9, state = $10, assignee = $11,
        previous_analyst_id = $12, excluded_analysts = $13, queued_at = $14, queue_reason = $15,
        escalation_level = $16, response_due = $17, resolution_due = $18, responded_at = $19, updated_at = now()
  WHERE ticket_id = $1";

/// [`SAVE_TICKET`] with a new assignment (`$20`..`$29`) and its
/// acknowledgement timer: what an assignment writes, in one round trip.
const SAVE_ASSIGNED: &str = "WITH asg AS (
        INSERT INTO assignments (assignment_id, ticket_id, tenant_id, analyst_id, attempt, state, trigger,
            assigned_at, ack_deadline, ticket_version, explanation)
        VALUES ($20, $1, $29, $21, $22, $23, $24, $25, $26, $8, $27)),
     tmr AS (
        INSERT INTO timers (ticket_id, kind, tenant_id, due_at, assignment_id)
        VALUES ($1, $28, $29, $26, $20)
        ON CONFLICT (ticket_id, kind) DO UPDATE SET due_at = EXCLUDED.due_at, assignment_id = EXCLUDED.assignment_id)
  UPDATE tickets SET number = $2, facility_id = $3, category = $4, clinical_category = $5,
        caller_role = $6, priority = $7, ticket_version = $8, routing_seq = $9, state = $10, assignee = $11,
        previous_analyst_id = $12, excluded_analysts = $13, queued_at = $14, queue_reason = $15,
        escalation_level = $16, response_due = $17, resolution_due = $18, responded_at = $19, updated_at = now()
  WHERE ticket_id = $1";

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// Binds the ticket's columns as `$1`..`$19` of [`SAVE_TICKET`].
fn bind_ticket<'q>(q: PgQuery<'q>, t: &'q TicketRow) -> PgQuery<'q> {
    q.bind(t.ticket_id)
        .bind(&t.number)
        .bind(&t.facility_id)
        .bind(t.category)
        .bind(t.clinical_category)
        .bind(t.caller_role)
        .bind(t.priority)
        .bind(t.ticket_version)
        .bind(t.routing_seq)
        .bind(t.state)
        .bind(&t.assignee)
        .bind(&t.previous_analyst_id)
        .bind(&t.excluded_analysts)
        .bind(t.queued_at)
        .bind(&t.queue_reason)
        .bind(t.escalation_level)
        .bind(t.response_due)
        .bind(t.resolution_due)
        .bind(t.responded_at)
}

async fn save_ticket(conn: &mut PgConnection, t: &TicketRow) -> Result<(), sqlx::Error> {
    bind_ticket(sqlx::query(SAVE_TICKET), t)
        .execute(conn)
        .await?;
    Ok(())
}

async fn set_timer(
    conn: &mut PgConnection,
    t: &TicketRow,
    kind: i16,
    due: DateTime<Utc>,
    assignment: Option<Uuid>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO timers (ticket_id, kind, tenant_id, due_at, assignment_id) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (ticket_id, kind) DO UPDATE SET due_at = EXCLUDED.due_at, assignment_id = EXCLUDED.assignment_id",
    )
    .bind(t.ticket_id)
    .bind(kind)
    .bind(&t.tenant_id)
    .bind(due)
    .bind(assignment)
    .execute(conn)
    .await?;
    Ok(())
}

async fn cancel_timers(
    conn: &mut PgConnection,
    ticket: Uuid,
    kinds: &[i16],
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM timers WHERE ticket_id = $1 AND kind = ANY($2)")
        .bind(ticket)
        .bind(kinds)
        .execute(conn)
        .await?;
    Ok(())
}

/// Publishes one of routing's events about `t` (next routing sequence).
async fn publish(
    conn: &mut PgConnection,
    t: &mut TicketRow,
    payload: Payload,
) -> Result<(), sqlx::Error> {
    t.routing_seq += 1;
    let env = envelope(
        "routing",
        &t.tenant_id,
        &t.ticket_id.to_string(),
        t.routing_seq as u64,
        payload,
    );
    wardline_kit::outbox::enqueue(conn, &env)
        .await
        .map_err(|e| match e {
            wardline_kit::outbox::OutboxError::Db(e) => e,
            other => sqlx::Error::Protocol(other.to_string()),
        })
}

/// Frees the assignee's capacity and ends their live assignment with `end`.
async fn release(
    conn: &mut PgConnection,
    t: &mut TicketRow,
    end: AssignmentState,
) -> Result<(), sqlx::Error> {
    if t.assignee.is_empty() {
        return Ok(());
    }
    if matches!(t.state, state::ASSIGNED | state::ACKNOWLEDGED) {
        sqlx::query(
            "UPDATE analysts SET current_load = GREATEST(current_load - 1, 0),
                    idle_since = CASE WHEN current_load <= 1 THEN now() ELSE idle_since END
              WHERE analyst_id = $1",
        )
        .bind(&t.assignee)
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query("UPDATE assignments SET state = $2, ended_at = now() WHERE ticket_id = $1 AND state IN (1, 2)")
        .bind(t.ticket_id)
        .bind(end as i16)
        .execute(&mut *conn)
        .await?;
    t.previous_analyst_id = std::mem::take(&mut t.assignee);
    Ok(())
}

/// The result of trying to route a ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routed {
    /// Assigned to this analyst.
    Assigned(String),
    /// Nobody eligible; waiting with this reason.
    Queued(&'static str),
}

fn explanation(
    t: &TicketRow,
    rule: &crate::domain::rules::Rule,
    d: &Decision,
    chosen: &str,
    now: DateTime<Utc>,
) -> AssignmentExplanation {
    AssignmentExplanation {
        assignment: None,
        decided_at: Some(timestamp(now)),
        facility_id: t.facility_id.clone(),
        caller_role: i32::from(t.caller_role),
        clinical_category: t.clinical_category,
        rule: Some(policy::rule_to_proto(rule)),
        credential_required: d.credential_required,
        previous_analyst_id: t.previous_analyst_id.clone(),
        ranking_order: decision::RANKING_ORDER.iter().map(|k| *k as i32).collect(),
        candidates: d
            .verdicts
            .iter()
            .map(|v| Candidate {
                analyst_id: v.analyst_id.clone(),
                eligible: v.eligible,
                reasons: v.reasons.iter().map(|r| *r as i32).collect(),
                skill_gaps: v.skill_gaps.iter().map(|m| *m as i32).collect(),
                skill_level: v.skill_level,
                current_load: v.current_load,
                max_concurrent_tickets: v.max_concurrent,
                idle_since: Some(timestamp(v.idle_since)),
                previous_analyst: v.previous_analyst,
                rank: v.rank,
                availability: v.availability as i32,
            })
            .collect(),
        chosen_analyst_id: chosen.to_owned(),
        queued_seconds: t
            .queued_at
            .map(|q| (now - q).num_seconds().max(0) as u64)
            .unwrap_or(0),
        escalation_level: i32::from(t.escalation_level),
    }
}

/// Takes one unit of capacity from the best-ranked analyst in `ranked` who
/// still has some, and returns them with the attempt number of the new
/// assignment of `ticket`. The row lock taken by the `UPDATE` is what keeps
/// replicas from over-assigning: `current_load < max_concurrent` is checked
/// on the latest committed row, under that lock.
///
/// The pick is `MATERIALIZED` so that it runs exactly once: as a plain
/// subquery the planner may rescan it per analyst row, and each rescan,
/// seeing the load just raised, would pick (and raise) the next analyst too.
///
/// First in one statement, skipping analysts another transaction is
/// assigning to right now (no waiting on the hot, best-ranked rows); only
/// when that finds nobody, one by one in rank order, waiting for the locks,
/// so a ticket is never queued just because its analysts were busy being
/// assigned elsewhere.
async fn take_capacity(
    conn: &mut PgConnection,
    ticket: Uuid,
    ranked: &[&str],
) -> Result<Option<(String, i64)>, sqlx::Error> {
    if ranked.is_empty() {
        return Ok(None);
    }
    let picked: Option<(String, i64)> = sqlx::query_as(
        "WITH pick AS MATERIALIZED (
              SELECT x.analyst_id
                FROM UNNEST($1::text[]) WITH ORDINALITY AS r(id, ord)
                JOIN analysts x ON x.analyst_id = r.id
               WHERE x.current_load < x.max_concurrent AND x.availability = 1
               ORDER BY r.ord LIMIT 1
                 FOR UPDATE OF x SKIP LOCKED)
         UPDATE analysts a SET current_load = a.current_load + 1
           FROM pick
          WHERE a.analyst_id = pick.analyst_id AND a.current_load < a.max_concurrent AND a.availability = 1
         RETURNING a.analyst_id, (SELECT count(*) + 1 FROM assignments WHERE ticket_id = $2)",
    )
    .bind(ranked)
    .bind(ticket)
    .fetch_optional(&mut *conn)
    .await?;
    if picked.is_some() {
        return Ok(picked);
    }
    for id in ranked {
        let took: Option<(String, i64)> = sqlx::query_as(
            "UPDATE analysts SET current_load = current_load + 1
              WHERE analyst_id = $1 AND current_load < max_concurrent AND availability = 1
             RETURNING analyst_id, (SELECT count(*) + 1 FROM assignments WHERE ticket_id = $2)",
        )
        .bind(id)
        .bind(ticket)
        .fetch_optional(&mut *conn)
        .await?;
        if took.is_some() {
            return Ok(took); // otherwise another replica filled them first; next in rank
        }
    }
    Ok(None)
}

/// Decides and records: assigns the best analyst who still has capacity,
/// or queues the ticket. The ticket row must be locked by the caller;
/// `policy` is the tenant's (see [`crate::cache`]).
pub async fn route(
    conn: &mut PgConnection,
    t: &mut TicketRow,
    trigger: DecisionTrigger,
    policy: &mut Policy,
) -> Result<Routed, sqlx::Error> {
    let routed = decide_and_write(conn, t, trigger, policy, false).await?;
    Ok(routed.expect("an update always writes"))
}

/// [`route`] for a ticket not yet stored: the ticket, its SLA timers and
/// the outcome are written by one `INSERT`. `None` when the ticket was
/// inserted meanwhile by a concurrent event (the caller rolls back).
async fn route_new(
    conn: &mut PgConnection,
    t: &mut TicketRow,
    policy: &mut Policy,
) -> Result<Option<Routed>, sqlx::Error> {
    decide_and_write(conn, t, DecisionTrigger::TicketCreated, policy, true).await
}

/// A ticket first seen, its SLA timers, and its assignment with the
/// acknowledgement timer when it has one (`$18` not null): one statement.
/// Foreign keys are checked at the end of the statement, when the ticket
/// row exists. Returns 0 rows inserted when the ticket existed.
const INSERT_ROUTED: &str = "WITH ins AS (
        INSERT INTO tickets (ticket_id, tenant_id, number, facility_id, category, clinical_category, caller_role,
            priority, ticket_version, routing_seq, state, assignee, queued_at, queue_reason, created_at,
            response_due, resolution_due)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
        ON CONFLICT (ticket_id) DO NOTHING
        RETURNING ticket_id),
     tmr AS (
        INSERT INTO timers (ticket_id, kind, tenant_id, due_at, assignment_id)
        SELECT ins.ticket_id, d.kind, $2, d.due_at, d.assignment_id
          FROM ins, (VALUES ($25::smallint, $16::timestamptz, NULL::uuid),
                            ($26::smallint, $17::timestamptz, NULL::uuid),
                            ($27::smallint, $21::timestamptz, $18::uuid)) AS d(kind, due_at, assignment_id)
         WHERE d.due_at IS NOT NULL),
     asg AS (
        INSERT INTO assignments (assignment_id, ticket_id, tenant_id, analyst_id, attempt, state, trigger,
            assigned_at, ack_deadline, ticket_version, explanation)
        SELECT $18, ins.ticket_id, $2, $12, $19, $20, $22, $23, $21, $9, $24 FROM ins WHERE $18::uuid IS NOT NULL)
  SELECT count(*) FROM ins";

/// A new assignment, as written.
struct NewAssignment {
    id: Uuid,
    analyst: String,
    attempt: i32,
    trigger: DecisionTrigger,
    at: DateTime<Utc>,
    ack_deadline: DateTime<Utc>,
    explanation: Vec<u8>,
}

async fn insert_routed(
    conn: &mut PgConnection,
    t: &TicketRow,
    a: Option<&NewAssignment>,
) -> Result<bool, sqlx::Error> {
    let inserted: i64 = sqlx::query_scalar(INSERT_ROUTED)
        .bind(t.ticket_id)
        .bind(&t.tenant_id)
        .bind(&t.number)
        .bind(&t.facility_id)
        .bind(t.category)
        .bind(t.clinical_category)
        .bind(t.caller_role)
        .bind(t.priority)
        .bind(t.ticket_version)
        .bind(t.routing_seq)
        .bind(t.state)
        .bind(&t.assignee)
        .bind(t.queued_at)
        .bind(&t.queue_reason)
        .bind(t.created_at)
        .bind(t.response_due)
        .bind(t.resolution_due)
        .bind(a.map(|a| a.id))
        .bind(a.map(|a| a.attempt))
        .bind(AssignmentState::PendingAck as i16)
        .bind(a.map(|a| a.ack_deadline))
        .bind(a.map_or(0, |a| a.trigger as i16))
        .bind(a.map(|a| a.at))
        .bind(a.map(|a| a.explanation.as_slice()))
        .bind(timer::RESPONSE)
        .bind(timer::RESOLUTION)
        .bind(timer::ACK)
        .fetch_one(&mut *conn)
        .await?;
    Ok(inserted == 1)
}

async fn decide_and_write(
    conn: &mut PgConnection,
    t: &mut TicketRow,
    trigger: DecisionTrigger,
    policy: &mut Policy,
    new: bool,
) -> Result<Option<Routed>, sqlx::Error> {
    let now = Utc::now();
    let category = Category::try_from(i32::from(t.category)).unwrap_or(Category::Other);
    let facts = TicketFacts {
        tenant_id: t.tenant_id.clone(),
        facility_id: t.facility_id.clone(),
        caller_role: CallerRole::try_from(i32::from(t.caller_role))
            .unwrap_or(CallerRole::NonClinical),
        previous_analyst: Some(t.previous_analyst_id.clone()).filter(|p| !p.is_empty()),
        excluded: t.excluded_analysts.clone(),
    };
    let rule = policy.rule(category).into_owned();
    let d = decision::decide(&facts, &rule, &policy.analysts, now);
    metrics::counter!("wardline_routing_decisions_total").increment(1);
    let ranked: Vec<&str> = d.ranked().map(|v| v.analyst_id.as_str()).collect();
    if let Some((chosen, attempt)) = take_capacity(conn, t.ticket_id, &ranked).await? {
        policy.took(&chosen);
        let a = NewAssignment {
            id: Uuid::now_v7(),
            explanation: explanation(t, &rule, &d, &chosen, now).encode_to_vec(),
            analyst: chosen,
            attempt: attempt as i32,
            trigger,
            at: now,
            ack_deadline: policy.targets().ack_deadline(now),
        };
        t.state = state::ASSIGNED;
        t.assignee = a.analyst.clone();
        t.queued_at = None;
        t.queue_reason.clear();
        let payload = Payload::TicketAssigned(TicketAssigned {
            ticket_id: t.ticket_id.to_string(),
            number: t.number.clone(),
            assignment_id: a.id.to_string(),
            analyst_id: a.analyst.clone(),
            priority: i32::from(t.priority),
            ack_deadline: Some(timestamp(a.ack_deadline)),
            attempt: attempt as u32,
            ticket_version: t.ticket_version as u64,
        });
        publish(conn, t, payload).await?;
        if new {
            if !insert_routed(conn, t, Some(&a)).await? {
                return Ok(None);
            }
        } else {
            // The assignment, its acknowledgement timer and the ticket in one statement.
            bind_ticket(sqlx::query(SAVE_ASSIGNED), t)
                .bind(a.id)
                .bind(&a.analyst)
                .bind(a.attempt)
                .bind(AssignmentState::PendingAck as i16)
                .bind(trigger as i16)
                .bind(now)
                .bind(a.ack_deadline)
                .bind(&a.explanation)
                .bind(timer::ACK)
                .bind(&t.tenant_id)
                .execute(&mut *conn)
                .await?;
        }
        metrics::histogram!("wardline_routing_time_to_assign_seconds", "priority" => t.label())
            .record((now - t.created_at).num_milliseconds().max(0) as f64 / 1000.0);
        tracing::info!(ticket_id = %t.ticket_id, analyst_id = %a.analyst, assignment_id = %a.id, "ticket assigned");
        return Ok(Some(Routed::Assigned(a.analyst)));
    }
    let reason = d.queue_reason();
    let newly_queued = t.state != state::WAITING || t.queued_at.is_none();
    t.state = state::WAITING;
    t.assignee.clear();
    if newly_queued {
        t.queued_at = Some(now);
        t.queue_reason = reason.to_owned();
        let payload = Payload::TicketQueued(TicketQueued {
            ticket_id: t.ticket_id.to_string(),
            number: t.number.clone(),
            priority: i32::from(t.priority),
            reason_code: reason.to_owned(),
            ticket_version: t.ticket_version as u64,
        });
        publish(conn, t, payload).await?;
        tracing::info!(ticket_id = %t.ticket_id, reason, "ticket queued");
    }
    if new {
        if !insert_routed(conn, t, None).await? {
            return Ok(None);
        }
    } else {
        save_ticket(conn, t).await?;
    }
    Ok(Some(Routed::Queued(reason)))
}

// ------------------------------------------------------------------ events

/// Event kinds routing consumes.
pub const CONSUMED: &[&str] = &[
    "ticket.created",
    "ticket.acknowledged",
    "ticket.started",
    "ticket.held",
    "ticket.resolved",
    "ticket.closed",
    "ticket.reopened",
    "ticket.transferred",
];

/// Applies intake's ticket events.
pub struct TicketEvents {
    /// Woken when capacity frees, so queued tickets are assigned at once.
    pub wake: Arc<Notify>,
    /// Rules, targets and analysts per tenant.
    pub cache: Arc<PolicyCache>,
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
    let priority = Priority::try_from(snap.priority).unwrap_or(Priority::P3);
    Ok(TicketRow {
        ticket_id: id,
        tenant_id: tenant.to_owned(),
        number: snap.number.clone(),
        facility_id: snap.facility_id.clone(),
        category: snap.category as i16,
        clinical_category: snap.clinical_category,
        caller_role: snap.caller_role as i16,
        priority: priority as i16,
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

/// Inserts routing's view of a ticket first seen in `snap`, with its SLA
/// timers, in one statement. `None` when the ticket exists already (another
/// event of it got there first): the caller locks and updates it instead.
async fn insert_ticket(
    conn: &mut PgConnection,
    tenant: &str,
    snap: &TicketSnapshot,
    version: i64,
    targets: &Targets,
) -> Result<Option<TicketRow>, HandleError> {
    let t = new_ticket(tenant, snap, version, targets)?;
    // The timers reference the ticket; foreign keys are checked at the end
    // of the statement, when the ticket row exists.
    let inserted = sqlx::query(
        "WITH ins AS (
             INSERT INTO tickets (ticket_id, tenant_id, number, facility_id, category, clinical_category, caller_role,
                 priority, ticket_version, state, created_at, response_due, resolution_due)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             ON CONFLICT (ticket_id) DO NOTHING
             RETURNING ticket_id, tenant_id),
         tmr AS (
             INSERT INTO timers (ticket_id, kind, tenant_id, due_at)
             SELECT ins.ticket_id, d.kind, ins.tenant_id, d.due_at
               FROM ins, (VALUES ($14::smallint, $12::timestamptz), ($15::smallint, $13::timestamptz)) AS d(kind, due_at)
             ON CONFLICT (ticket_id, kind) DO UPDATE SET due_at = EXCLUDED.due_at, assignment_id = NULL)
         SELECT count(*) FROM ins",
    )
    .bind(t.ticket_id)
    .bind(&t.tenant_id)
    .bind(&t.number)
    .bind(&t.facility_id)
    .bind(t.category)
    .bind(t.clinical_category)
    .bind(t.caller_role)
    .bind(t.priority)
    .bind(t.ticket_version)
    .bind(t.state)
    .bind(t.created_at)
    .bind(t.response_due)
    .bind(t.resolution_due)
    .bind(timer::RESPONSE)
    .bind(timer::RESOLUTION)
    .fetch_one(&mut *conn)
    .await
    .map(|row: sqlx::postgres::PgRow| sqlx::Row::get::<i64, _>(&row, 0) == 1)?;
    Ok(inserted.then_some(t))
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
    async fn handle(&self, batch: &mut Batch<'_>, events: &[Incoming]) -> Result<(), HandleError> {
        // One event at a time, each in its own span (so what it publishes
        // continues its trace), inside the batch's transaction.
        for event in events {
            self.apply_one(batch.conn(), event)
                .instrument(event.span.clone())
                .await?;
        }
        Ok(())
    }
}

impl TicketEvents {
    async fn apply_one(
        &self,
        conn: &mut PgConnection,
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
        let tenant = env.tenant_id.as_str();
        let mut policy: Option<Policy> = None;
        // A creation is nearly always the ticket's first event: decide before
        // anything is stored, and store the ticket with the outcome in one
        // statement. Otherwise lock what is there and apply the event to it.
        if let Payload::TicketCreated(_) = payload {
            let mut p = self.cache.policy_for_ticket(conn, tenant, id).await?;
            if !p.ticket_known {
                let mut t = new_ticket(tenant, snap, version, p.targets())?;
                return match route_new(conn, &mut t, &mut p).await? {
                    Some(_) => Ok(()),
                    // Stored meanwhile by a concurrent event of the same ticket:
                    // roll back; the redelivery finds it and applies this event to it.
                    None => Err(HandleError::Retry(
                        "ticket stored concurrently by another of its events".into(),
                    )),
                };
            }
            policy = Some(p);
        }
        let mut fresh = false;
        let mut t = loop {
            match lock_ticket(conn, id, false).await? {
                Some(t) if version <= t.ticket_version => {
                    tracing::debug!(
                        version,
                        held = t.ticket_version,
                        "stale ticket event skipped"
                    );
                    return Ok(());
                }
                Some(t) => break t,
                None => {
                    let targets = policy_for(&self.cache, conn, tenant, &mut policy)
                        .await?
                        .targets()
                        .clone();
                    if let Some(t) = insert_ticket(conn, tenant, snap, version, &targets).await? {
                        fresh = true;
                        break t;
                    }
                    // Inserted by a concurrent event meanwhile (committed now): lock it.
                }
            }
        };
        t.ticket_version = version;
        t.number = snap.number.clone();
        t.facility_id = snap.facility_id.clone();
        t.category = snap.category as i16;
        t.clinical_category = snap.clinical_category;
        t.priority = Priority::try_from(snap.priority).unwrap_or(Priority::P3) as i16;
        let mut freed = false;
        match payload {
            Payload::TicketCreated(_) if fresh => {
                let p = policy_for(&self.cache, conn, tenant, &mut policy).await?;
                route(conn, &mut t, DecisionTrigger::TicketCreated, p).await?;
                return Ok(());
            }
            Payload::TicketReopened(p) => {
                release(conn, &mut t, AssignmentState::Completed).await?;
                if !p.previous_analyst_id.is_empty() {
                    t.previous_analyst_id = p.previous_analyst_id.clone();
                }
                let p = policy_for(&self.cache, conn, tenant, &mut policy).await?;
                let targets = p.targets().clone();
                let now = Utc::now();
                t.responded_at = None;
                t.response_due = targets.response_due(t.priority(), now);
                t.resolution_due = targets.resolution_due(t.priority(), now);
                set_timer(conn, &t, timer::RESPONSE, t.response_due, None).await?;
                set_timer(conn, &t, timer::RESOLUTION, t.resolution_due, None).await?;
                t.state = state::WAITING;
                t.queued_at = None;
                route(conn, &mut t, DecisionTrigger::TicketReopened, p).await?;
                return Ok(());
            }
            Payload::TicketTransferred(p) => {
                release(conn, &mut t, AssignmentState::Transferred).await?;
                if !p.from_analyst_id.is_empty()
                    && !t.excluded_analysts.contains(&p.from_analyst_id)
                {
                    t.excluded_analysts.push(p.from_analyst_id.clone());
                }
                cancel_timers(conn, t.ticket_id, &[timer::ACK]).await?;
                t.state = state::WAITING;
                t.queued_at = None;
                let p = policy_for(&self.cache, conn, tenant, &mut policy).await?;
                route(conn, &mut t, DecisionTrigger::TicketTransferred, p).await?;
                freed = true;
            }
            Payload::TicketAcknowledged(p) => {
                let now = Utc::now();
                if t.assignee == p.analyst_id && t.state == state::ASSIGNED {
                    sqlx::query(
                        "UPDATE assignments SET state = $2, acknowledged_at = now() WHERE ticket_id = $1 AND state = 1",
                    )
                    .bind(t.ticket_id)
                    .bind(AssignmentState::Acknowledged as i16)
                    .execute(&mut *conn)
                    .await?;
                } else if t.state != state::ACKNOWLEDGED || t.assignee != p.analyst_id {
                    // Someone took the ticket directly (the analyst who answered
                    // the phone): it counts against their capacity from now on.
                    release(conn, &mut t, AssignmentState::Transferred).await?;
                    sqlx::query(
                        "UPDATE analysts SET current_load = current_load + 1 WHERE analyst_id = $1",
                    )
                    .bind(&p.analyst_id)
                    .execute(&mut *conn)
                    .await?;
                    t.assignee = p.analyst_id.clone();
                }
                t.state = state::ACKNOWLEDGED;
                t.queued_at = None;
                if t.responded_at.is_none() {
                    t.responded_at = Some(now);
                    metrics::histogram!("wardline_routing_time_to_acknowledge_seconds", "priority" => t.label())
                        .record((now - t.created_at).num_milliseconds().max(0) as f64 / 1000.0);
                }
                cancel_timers(conn, t.ticket_id, &[timer::ACK, timer::RESPONSE]).await?;
            }
            Payload::TicketResolved(_) | Payload::TicketClosed(_) if t.state != state::DONE => {
                if t.responded_at.is_none() {
                    t.responded_at = Some(Utc::now());
                }
                release(conn, &mut t, AssignmentState::Completed).await?;
                t.state = state::DONE;
                t.queued_at = None;
                cancel_timers(
                    conn,
                    t.ticket_id,
                    &[timer::ACK, timer::RESPONSE, timer::RESOLUTION],
                )
                .await?;
                freed = true;
            }
            _ => {}
        }
        save_ticket(conn, &t).await?;
        if freed {
            self.wake.notify_one();
        }
        Ok(())
    }
}

// ------------------------------------------------------------------ queue

/// Tries to assign waiting tickets (P1 first, then oldest), page by page.
/// Returns how many were assigned. Rows locked by another replica are skipped.
/// A page is one transaction; each tenant's policy is read once per page
/// (the loads this page takes are counted in as it goes).
pub async fn drain(pool: &PgPool, cache: &PolicyCache) -> Result<usize, sqlx::Error> {
    let mut assigned = 0;
    let mut after: Option<(i16, DateTime<Utc>, Uuid)> = None;
    for _ in 0..50 {
        let mut tx = pool.begin().await?;
        let (p, c, i) = after.unwrap_or((0, DateTime::<Utc>::UNIX_EPOCH, Uuid::nil()));
        let sql = format!(
            "SELECT {TICKET_COLUMNS} FROM tickets WHERE state = 1 AND (priority, created_at, ticket_id) > ($1, $2, $3)
              ORDER BY priority, created_at, ticket_id LIMIT 16 FOR UPDATE SKIP LOCKED"
        );
        let rows: Vec<TicketRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(p)
            .bind(c)
            .bind(i)
            .fetch_all(&mut *tx)
            .await?;
        let Some(last) = rows.last() else { break };
        after = Some((last.priority, last.created_at, last.ticket_id));
        let n = rows.len();
        let mut policies: HashMap<String, Policy> = HashMap::new();
        for mut t in rows {
            let policy = match policies.entry(t.tenant_id.clone()) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert(cache.policy(&mut tx, &t.tenant_id).await?),
            };
            if let Routed::Assigned(_) =
                route(&mut tx, &mut t, DecisionTrigger::QueueDrain, policy).await?
            {
                assigned += 1;
            }
        }
        tx.commit().await?;
        if n < 16 {
            break;
        }
    }
    Ok(assigned)
}

/// Drains queues when woken (capacity freed) and every `interval` (shifts start).
pub async fn run_drainer(
    pool: PgPool,
    cache: Arc<PolicyCache>,
    wake: Arc<Notify>,
    interval: Duration,
    stop: CancellationToken,
) {
    loop {
        match drain(&pool, &cache).await {
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

// ------------------------------------------------------------------ timers

#[derive(sqlx::FromRow)]
struct DueTimer {
    ticket_id: Uuid,
    kind: i16,
    assignment_id: Option<Uuid>,
    due_at: DateTime<Utc>,
}

/// Fires due timers (at most a batch). Returns how many fired.
pub async fn fire_due(pool: &PgPool, cache: &PolicyCache) -> Result<usize, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let due: Vec<DueTimer> = sqlx::query_as(
        "SELECT ticket_id, kind, assignment_id, due_at FROM timers WHERE due_at <= now()
          ORDER BY due_at LIMIT 32 FOR UPDATE SKIP LOCKED",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut fired = 0;
    for d in due {
        // A ticket being changed right now is left for the next round
        // (locking it while holding the timer could deadlock with a consumer).
        let Some(mut t) = lock_ticket(&mut tx, d.ticket_id, true).await? else {
            continue;
        };
        sqlx::query("DELETE FROM timers WHERE ticket_id = $1 AND kind = $2")
            .bind(d.ticket_id)
            .bind(d.kind)
            .execute(&mut *tx)
            .await?;
        fired += 1;
        match d.kind {
            timer::ACK => ack_timeout(&mut tx, cache, &mut t, d.assignment_id).await?,
            timer::RESPONSE if t.responded_at.is_none() && t.state != state::DONE => {
                breach(
                    &mut tx,
                    &mut t,
                    SlaTarget::Response,
                    d.due_at,
                    EscalationLevel::Supervisor,
                )
                .await?
            }
            timer::RESOLUTION if t.state != state::DONE => {
                breach(
                    &mut tx,
                    &mut t,
                    SlaTarget::Resolution,
                    d.due_at,
                    EscalationLevel::Tier2,
                )
                .await?
            }
            _ => {}
        }
        save_ticket(&mut tx, &t).await?;
    }
    tx.commit().await?;
    Ok(fired)
}

/// The assigned analyst did not acknowledge in time: re-route to the next one.
async fn ack_timeout(
    conn: &mut PgConnection,
    cache: &PolicyCache,
    t: &mut TicketRow,
    assignment: Option<Uuid>,
) -> Result<(), sqlx::Error> {
    let live: Option<Uuid> = sqlx::query_scalar(
        "SELECT assignment_id FROM assignments WHERE ticket_id = $1 AND state = 1",
    )
    .bind(t.ticket_id)
    .fetch_optional(&mut *conn)
    .await?;
    if t.state != state::ASSIGNED || live.is_none() || live != assignment {
        return Ok(()); // acknowledged or re-assigned meanwhile
    }
    let timed_out = t.assignee.clone();
    release(conn, t, AssignmentState::TimedOut).await?;
    if !t.excluded_analysts.contains(&timed_out) {
        t.excluded_analysts.push(timed_out.clone());
    }
    t.previous_analyst_id.clear();
    metrics::counter!("wardline_routing_reroutes_total").increment(1);
    tracing::warn!(ticket_id = %t.ticket_id, analyst_id = %timed_out, "assignment not acknowledged in time; re-routing");
    let payload = Payload::TicketEscalated(TicketEscalated {
        ticket_id: t.ticket_id.to_string(),
        number: t.number.clone(),
        priority: i32::from(t.priority),
        level: EscalationLevel::Reroute as i32,
        reason_code: "ack_timeout".into(),
        to_analyst_id: String::new(),
    });
    publish(conn, t, payload).await?;
    t.state = state::WAITING;
    t.queued_at = None;
    let mut policy = cache.policy(conn, &t.tenant_id).await?;
    route(conn, t, DecisionTrigger::AckTimeout, &mut policy).await?;
    Ok(())
}

/// An SLA target was missed: publish the breach and escalate.
async fn breach(
    conn: &mut PgConnection,
    t: &mut TicketRow,
    target: SlaTarget,
    deadline: DateTime<Utc>,
    level: EscalationLevel,
) -> Result<(), sqlx::Error> {
    let now = Utc::now();
    let target_label = if target == SlaTarget::Response {
        "response"
    } else {
        "resolution"
    };
    metrics::counter!("wardline_sla_breaches_total", "target" => target_label, "priority" => t.label()).increment(1);
    metrics::counter!("wardline_routing_escalations_total", "level" => if level == EscalationLevel::Supervisor { "supervisor" } else { "tier2" })
        .increment(1);
    tracing::warn!(ticket_id = %t.ticket_id, target = target_label, "SLA target missed; escalating");
    let supervisor: Option<String> = sqlx::query_scalar(
        "SELECT a.analyst_id FROM analysts a JOIN analyst_coverage c USING (analyst_id)
          WHERE c.tenant_id IN ($1, '*') AND (a.supervisor OR ($2 AND a.tier2))
          ORDER BY a.availability, a.analyst_id LIMIT 1",
    )
    .bind(&t.tenant_id)
    .bind(level == EscalationLevel::Tier2)
    .fetch_optional(&mut *conn)
    .await?;
    publish(
        conn,
        t,
        Payload::SlaBreached(SlaBreached {
            ticket_id: t.ticket_id.to_string(),
            number: t.number.clone(),
            priority: i32::from(t.priority),
            target: target as i32,
            deadline: Some(timestamp(deadline)),
            breached_at: Some(timestamp(now)),
        }),
    )
    .await?;
    publish(
        conn,
        t,
        Payload::TicketEscalated(TicketEscalated {
            ticket_id: t.ticket_id.to_string(),
            number: t.number.clone(),
            priority: i32::from(t.priority),
            level: level as i32,
            reason_code: format!("{target_label}_target_missed"),
            to_analyst_id: supervisor.unwrap_or_default(),
        }),
    )
    .await?;
    t.escalation_level = t.escalation_level.max(level as i16);
    Ok(())
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
            match fire_due(&pool, &cache).await {
                Ok(32..) => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "timer scan failed; retrying");
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
    let mut seen: std::collections::HashSet<(String, i16)> = Default::default();
    loop {
        let rows: Result<Vec<(String, i16, i64)>, _> = sqlx::query_as(
            "SELECT tenant_id, priority, count(*) FROM tickets WHERE state = 1 GROUP BY 1, 2",
        )
        .fetch_all(&pool)
        .await;
        if let Ok(rows) = rows {
            // Summed per label: without WARDLINE_METRICS_TENANT_LABELS every
            // tenant is `_all`.
            let mut depth: std::collections::HashMap<(String, i16), i64> = Default::default();
            for (tenant, p, n) in &rows {
                *depth
                    .entry((wardline_kit::admin::tenant_label(tenant), *p))
                    .or_default() += n;
            }
            let current: std::collections::HashSet<(String, i16)> = depth.keys().cloned().collect();
            for (tenant, p) in seen.difference(&current) {
                metrics::gauge!("wardline_queue_depth", "tenant" => tenant.clone(), "priority" => format!("P{p}")).set(0.0);
            }
            for ((tenant, p), n) in &depth {
                metrics::gauge!("wardline_queue_depth", "tenant" => tenant.clone(), "priority" => format!("P{p}")).set(*n as f64);
            }
            seen = current;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
    }
}
