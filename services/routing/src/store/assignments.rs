//! Assignments and the analysts' capacity they hold: the conditional
//! `UPDATE` that takes a slot (never over capacity, whatever the replicas
//! do), the release of a slot, and the assignment rows.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;
use wardline_kit::sql::Named;
use wardline_proto::routing::{AssignmentState, DecisionTrigger};

use super::tickets::{TicketRow, bind_ticket};
use super::timers::timer;

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

/// A new assignment, as written.
pub struct NewAssignment {
    pub id: Uuid,
    pub analyst: String,
    pub attempt: i32,
    pub trigger: DecisionTrigger,
    pub at: DateTime<Utc>,
    pub ack_deadline: DateTime<Utc>,
    pub explanation: Vec<u8>,
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
/// assigned elsewhere. Without `wait` (queue hand-over and drain, which hold
/// locks on queued tickets) that second pass is skipped: a transaction that
/// holds queued tickets never waits for an analyst's row, so it cannot
/// deadlock with one that holds the analyst and waits for the queue.
pub async fn take_capacity(
    conn: &mut PgConnection,
    ticket: Uuid,
    ranked: &[&str],
    wait: bool,
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
    if picked.is_some() || !wait {
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

/// Writes the ticket, its new assignment `a` and the acknowledgement timer
/// in one statement (`SAVE_ASSIGNED`).
pub async fn save_assigned(
    conn: &mut PgConnection,
    t: &TicketRow,
    a: &NewAssignment,
) -> Result<(), sqlx::Error> {
    bind_ticket(sqlx::query(SAVE_ASSIGNED), t)
        .bind(a.id)
        .bind(&a.analyst)
        .bind(a.attempt)
        .bind(Named(AssignmentState::PendingAck))
        .bind(Named(a.trigger))
        .bind(a.at)
        .bind(a.ack_deadline)
        .bind(&a.explanation)
        .bind(timer::ACK)
        .bind(&t.tenant_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Gives back one slot of `analyst`'s capacity (their idle clock restarts
/// when it was their last ticket).
pub async fn free_slot(conn: &mut PgConnection, analyst: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE analysts SET current_load = GREATEST(current_load - 1, 0),
                idle_since = CASE WHEN current_load <= 1 THEN now() ELSE idle_since END
          WHERE analyst_id = $1",
    )
    .bind(analyst)
    .execute(conn)
    .await?;
    Ok(())
}

/// Counts a ticket an analyst took directly (not assigned by routing)
/// against their capacity, whatever it is.
pub async fn take_directly(conn: &mut PgConnection, analyst: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE analysts SET current_load = current_load + 1 WHERE analyst_id = $1")
        .bind(analyst)
        .execute(conn)
        .await?;
    Ok(())
}

/// Ends the ticket's live assignment (pending or acknowledged) as `end`.
pub async fn end_live(
    conn: &mut PgConnection,
    ticket: Uuid,
    end: AssignmentState,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE assignments SET state = $2, ended_at = now() WHERE ticket_id = $1 AND state IN ('pending-ack', 'acknowledged')")
        .bind(ticket)
        .bind(Named(end))
        .execute(conn)
        .await?;
    Ok(())
}

/// Marks the ticket's pending assignment acknowledged.
pub async fn acknowledge(conn: &mut PgConnection, ticket: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE assignments SET state = $2, acknowledged_at = now() WHERE ticket_id = $1 AND state = 'pending-ack'",
    )
    .bind(ticket)
    .bind(Named(AssignmentState::Acknowledged))
    .execute(conn)
    .await?;
    Ok(())
}

/// The ticket's assignment waiting for acknowledgement, if any.
pub async fn pending(conn: &mut PgConnection, ticket: Uuid) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT assignment_id FROM assignments WHERE ticket_id = $1 AND state = 'pending-ack'",
    )
    .bind(ticket)
    .fetch_optional(conn)
    .await
}

/// Who an escalation of a `tenant` ticket goes to: a supervisor covering
/// it (or, for `tier2`, a tier-2 analyst), available ones first.
pub async fn escalation_target(
    conn: &mut PgConnection,
    tenant: &str,
    tier2: bool,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT a.analyst_id FROM analysts a JOIN analyst_coverage c USING (analyst_id)
          WHERE c.tenant_id IN ($1, '*') AND (a.supervisor OR ($2 AND a.tier2))
          ORDER BY a.availability, a.analyst_id LIMIT 1",
    )
    .bind(tenant)
    .bind(tier2)
    .fetch_optional(conn)
    .await
}

/// Takes `n` slots of each analyst in `wants` (id, n) at once, for a batch
/// of new tickets; returns the analysts granted. The same guard as
/// [`take_capacity`], for all of them in one statement: the rows are locked
/// in id order, skipping those another transaction holds, and an analyst
/// whose free capacity (as committed now) is short of `n` is not touched;
/// the caller routes those tickets one by one instead.
pub async fn take_many(
    conn: &mut PgConnection,
    wants: &[(String, i32)],
) -> Result<Vec<String>, sqlx::Error> {
    let (ids, counts): (Vec<&str>, Vec<i32>) = wants.iter().map(|(a, n)| (a.as_str(), *n)).unzip();
    sqlx::query_scalar(
        "WITH want AS (SELECT * FROM UNNEST($1::text[], $2::int[]) AS w(id, n)),
              locked AS MATERIALIZED (
                SELECT x.analyst_id FROM analysts x JOIN want ON want.id = x.analyst_id
                 ORDER BY x.analyst_id FOR UPDATE OF x SKIP LOCKED)
         UPDATE analysts a SET current_load = a.current_load + want.n
           FROM want JOIN locked ON locked.analyst_id = want.id
          WHERE a.analyst_id = want.id AND a.current_load + want.n <= a.max_concurrent AND a.availability = 1
         RETURNING a.analyst_id",
    )
    .bind(ids)
    .bind(counts)
    .fetch_all(conn)
    .await
}
