//! Routing's view of tickets (ids and codes only, from intake's
//! snapshots), and the queue: the tickets waiting, in queue order
//! (priority, then creation, then id).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;
use wardline_kit::sql::Named;
use wardline_proto::common::{CallerRole, Category, Priority};
use wardline_proto::routing::AssignmentState;

use super::timers::timer;

/// Routing's ticket states, stored by name (`'waiting'` …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "kebab-case")]
pub enum TicketState {
    /// Waiting in the tenant's queue.
    Waiting,
    /// Assigned, not yet acknowledged.
    Assigned,
    /// Acknowledged by the analyst (being worked).
    Acknowledged,
    /// Resolved or closed.
    Done,
}

/// [`TicketState`]'s values under the names the engine matches on.
pub mod state {
    use super::TicketState;
    /// Waiting in the tenant's queue.
    pub const WAITING: TicketState = TicketState::Waiting;
    /// Assigned, not yet acknowledged.
    pub const ASSIGNED: TicketState = TicketState::Assigned;
    /// Acknowledged by the analyst (being worked).
    pub const ACKNOWLEDGED: TicketState = TicketState::Acknowledged;
    /// Resolved or closed.
    pub const DONE: TicketState = TicketState::Done;
}

/// Routing's view of a ticket.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TicketRow {
    pub ticket_id: Uuid,
    pub tenant_id: String,
    pub number: String,
    pub facility_id: String,
    pub category: Named<Category>,
    pub clinical_category: bool,
    pub caller_role: Named<CallerRole>,
    pub priority: Named<Priority>,
    pub ticket_version: i64,
    pub routing_seq: i64,
    pub state: TicketState,
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

pub(crate) const TICKET_COLUMNS: &str = "ticket_id, tenant_id, number, facility_id, category, clinical_category, caller_role,
    priority, ticket_version, routing_seq, state, assignee, previous_analyst_id, excluded_analysts, queued_at,
    queue_reason, escalation_level, created_at, response_due, resolution_due, responded_at";

impl TicketRow {
    /// The ticket's priority.
    pub fn priority(&self) -> Priority {
        self.priority.get()
    }

    /// "P1" … "P4", as metrics label priorities.
    pub fn label(&self) -> &'static str {
        priority_label(self.priority.get())
    }
}

/// "P1" … "P4", as metrics label priorities.
pub fn priority_label(p: Priority) -> &'static str {
    match p {
        Priority::P1 => "P1",
        Priority::P2 => "P2",
        Priority::P3 => "P3",
        _ => "P4",
    }
}

/// Locks and returns a ticket.
pub async fn lock(
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

/// Whether the transaction sees ticket `id` (row-level security hides
/// other tenants' tickets).
pub async fn visible(conn: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tickets WHERE ticket_id = $1)")
        .bind(id)
        .fetch_one(conn)
        .await
}

/// Writes every mutable column of a ticket (`$1`..`$19`, see [`bind_ticket`]).
pub(crate) const SAVE_TICKET: &str = "UPDATE tickets SET number = $2, facility_id = $3, category = $4, clinical_category = $5,
        caller_role = $6, priority = $7, ticket_version = $8, routing_seq = $9, state = $10, assignee = $11,
        previous_analyst_id = $12, excluded_analysts = $13, queued_at = $14, queue_reason = $15,
        escalation_level = $16, response_due = $17, resolution_due = $18, responded_at = $19, updated_at = now()
  WHERE ticket_id = $1";

pub(crate) type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// Binds the ticket's columns as `$1`..`$19` of [`SAVE_TICKET`].
pub(crate) fn bind_ticket<'q>(q: PgQuery<'q>, t: &'q TicketRow) -> PgQuery<'q> {
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

pub async fn save(conn: &mut PgConnection, t: &TicketRow) -> Result<(), sqlx::Error> {
    bind_ticket(sqlx::query(SAVE_TICKET), t)
        .execute(conn)
        .await?;
    Ok(())
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
          FROM ins, (VALUES ($25::text, $16::timestamptz, NULL::uuid),
                            ($26::text, $17::timestamptz, NULL::uuid),
                            ($27::text, $21::timestamptz, $18::uuid)) AS d(kind, due_at, assignment_id)
         WHERE d.due_at IS NOT NULL),
     asg AS (
        INSERT INTO assignments (assignment_id, ticket_id, tenant_id, analyst_id, attempt, state, trigger,
            assigned_at, ack_deadline, ticket_version, explanation)
        SELECT $18, ins.ticket_id, $2, $12, $19, $20, $22, $23, $21, $9, $24 FROM ins WHERE $18::uuid IS NOT NULL)
  SELECT count(*) FROM ins";

pub async fn insert_routed(
    conn: &mut PgConnection,
    t: &TicketRow,
    a: Option<&super::assignments::NewAssignment>,
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
        .bind(Named(AssignmentState::PendingAck))
        .bind(a.map(|a| a.ack_deadline))
        .bind(a.map(|a| Named(a.trigger)))
        .bind(a.map(|a| a.at))
        .bind(a.map(|a| a.explanation.as_slice()))
        .bind(timer::RESPONSE)
        .bind(timer::RESOLUTION)
        .bind(timer::ACK)
        .fetch_one(&mut *conn)
        .await?;
    Ok(inserted == 1)
}

/// Waiting tickets an analyst may serve (tenants they cover, directly or by
/// `'*'`), in queue order after `$2..$4`, at most `$5`; not locked (the
/// hand-over locks the one it takes, [`lock_waiting`]).
const QUEUE_OF_ANALYST: &str = "SELECT t.ticket_id, t.tenant_id, t.number, t.facility_id, t.category,
        t.clinical_category, t.caller_role, t.priority, t.ticket_version, t.routing_seq, t.state, t.assignee,
        t.previous_analyst_id, t.excluded_analysts, t.queued_at, t.queue_reason, t.escalation_level, t.created_at,
        t.response_due, t.resolution_due, t.responded_at
   FROM tickets t
  WHERE t.state = 'waiting' AND (t.priority, t.created_at, t.ticket_id) > ($2::text, $3, $4)
    AND EXISTS (SELECT 1 FROM analyst_coverage c WHERE c.analyst_id = $1 AND c.tenant_id IN (t.tenant_id, '*'))
  ORDER BY t.priority, t.created_at, t.ticket_id
  LIMIT $5";

/// Up to `limit` waiting tickets `analyst` may serve after `after` in queue
/// order (see `QUEUE_OF_ANALYST`).
pub async fn queue_of_analyst(
    conn: &mut PgConnection,
    analyst: &str,
    after: QueueKey,
    limit: i64,
) -> Result<Vec<TicketRow>, sqlx::Error> {
    sqlx::query_as(QUEUE_OF_ANALYST)
        .bind(analyst)
        .bind(&after.0)
        .bind(after.1)
        .bind(after.2)
        .bind(limit)
        .fetch_all(conn)
        .await
}

/// Locks a ticket if it is still waiting. A plain `FOR UPDATE` (waiting,
/// not skipping): two hand-overs after the same queue head take it in turn,
/// and the second, once the first commits, finds it no longer waiting (the
/// row is checked again after the wait) and goes on to the next one.
pub async fn lock_waiting(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<TicketRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {TICKET_COLUMNS} FROM tickets WHERE ticket_id = $1 AND state = 'waiting' FOR UPDATE"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// A position in the queue: priority, creation, id.
/// The priority is its stored label (`'p1'` sorts before `'p2'`); the
/// start is the empty label, before every ticket.
pub type QueueKey = (String, DateTime<Utc>, Uuid);

/// The start of the queue.
pub fn queue_start() -> QueueKey {
    (String::new(), DateTime::<Utc>::UNIX_EPOCH, Uuid::nil())
}

impl TicketRow {
    /// This ticket's position in the queue.
    pub fn queue_key(&self) -> QueueKey {
        let label = wardline_kit::sql::label(self.priority.get()).unwrap_or_default();
        (label.to_owned(), self.created_at, self.ticket_id)
    }
}

/// Up to `limit` queued tickets of any tenant after `after`, locked,
/// skipping those another transaction holds (the periodic drain).
pub async fn queue_page(
    conn: &mut PgConnection,
    after: QueueKey,
    limit: i64,
) -> Result<Vec<TicketRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {TICKET_COLUMNS} FROM tickets WHERE state = 'waiting' AND (priority, created_at, ticket_id) > ($1::text, $2, $3)
          ORDER BY priority, created_at, ticket_id LIMIT $4 FOR UPDATE SKIP LOCKED"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(&after.0)
        .bind(after.1)
        .bind(after.2)
        .bind(limit)
        .fetch_all(conn)
        .await
}

/// A tenant's waiting tickets in queue order (only `priorities` unless
/// empty), `limit` from `offset`: GetQueue's page.
pub async fn queued(
    conn: &mut PgConnection,
    tenant: &str,
    priorities: &[Named<Priority>],
    offset: i64,
    limit: i64,
) -> Result<Vec<TicketRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {TICKET_COLUMNS} FROM tickets
          WHERE tenant_id = $1 AND state = 'waiting' AND (cardinality($2::text[]) = 0 OR priority = ANY($2))
          ORDER BY priority, created_at, ticket_id OFFSET $3 LIMIT $4"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(priorities)
        .bind(offset)
        .bind(limit)
        .fetch_all(conn)
        .await
}

/// A tenant's waiting tickets per priority: how many, and since when the
/// oldest waits.
pub async fn queue_counts(
    conn: &mut PgConnection,
    tenant: &str,
) -> Result<Vec<(Named<Priority>, i64, Option<DateTime<Utc>>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT priority, count(*), min(queued_at) FROM tickets WHERE tenant_id = $1 AND state = 'waiting'
          GROUP BY priority ORDER BY priority",
    )
    .bind(tenant)
    .fetch_all(conn)
    .await
}

/// Queued tickets per tenant and priority.
pub async fn queue_depths(
    conn: &mut PgConnection,
) -> Result<Vec<(String, Named<Priority>, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT tenant_id, priority, count(*) FROM tickets WHERE state = 'waiting' GROUP BY 1, 2",
    )
    .fetch_all(conn)
    .await
}

/// Inserts a ticket first seen (not routed yet) with its SLA timers, in one
/// statement; `false` when it exists already (another event of it got there
/// first). The timers reference the ticket; foreign keys are checked at the
/// end of the statement, when the ticket row exists.
pub async fn insert_new(conn: &mut PgConnection, t: &TicketRow) -> Result<bool, sqlx::Error> {
    let inserted: i64 = sqlx::query_scalar(
        "WITH ins AS (
             INSERT INTO tickets (ticket_id, tenant_id, number, facility_id, category, clinical_category, caller_role,
                 priority, ticket_version, state, created_at, response_due, resolution_due)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             ON CONFLICT (ticket_id) DO NOTHING
             RETURNING ticket_id, tenant_id),
         tmr AS (
             INSERT INTO timers (ticket_id, kind, tenant_id, due_at)
             SELECT ins.ticket_id, d.kind, ins.tenant_id, d.due_at
               FROM ins, (VALUES ($14::text, $12::timestamptz), ($15::text, $13::timestamptz)) AS d(kind, due_at)
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
    .fetch_one(conn)
    .await?;
    Ok(inserted == 1)
}

/// Tickets first seen, decided together: each with its SLA timers and, when
/// assigned, its assignment and acknowledgement timer, in one statement
/// (foreign keys are checked at its end). Returns how many tickets were
/// inserted: fewer than given when one was stored meanwhile by a concurrent
/// event (the caller rolls back).
pub async fn insert_routed_many(
    conn: &mut PgConnection,
    rows: &[(TicketRow, Option<super::assignments::NewAssignment>)],
) -> Result<i64, sqlx::Error> {
    let col = |f: fn(&TicketRow) -> String| rows.iter().map(|(t, _)| f(t)).collect::<Vec<_>>();
    let at = |f: fn(&TicketRow) -> Option<DateTime<Utc>>| {
        rows.iter().map(|(t, _)| f(t)).collect::<Vec<_>>()
    };
    let asg: Vec<(&TicketRow, &super::assignments::NewAssignment)> = rows
        .iter()
        .filter_map(|(t, a)| a.as_ref().map(|a| (t, a)))
        .collect();
    sqlx::query_scalar(
        "WITH ins AS (
            INSERT INTO tickets (ticket_id, tenant_id, number, facility_id, category, clinical_category, caller_role,
                priority, ticket_version, routing_seq, state, assignee, queued_at, queue_reason, created_at,
                response_due, resolution_due)
            SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bool[],
                $7::text[], $8::text[], $9::bigint[], $10::bigint[], $11::text[], $12::text[],
                $13::timestamptz[], $14::text[], $15::timestamptz[], $16::timestamptz[], $17::timestamptz[])
            ON CONFLICT (ticket_id) DO NOTHING
            RETURNING ticket_id, tenant_id, ticket_version, response_due, resolution_due),
         asg AS (
            INSERT INTO assignments (assignment_id, ticket_id, tenant_id, analyst_id, attempt, state, trigger,
                assigned_at, ack_deadline, ticket_version, explanation)
            SELECT a.id, ins.ticket_id, ins.tenant_id, a.analyst, 1, $24, $25, a.at, a.ack_deadline,
                   ins.ticket_version, a.explanation
              FROM UNNEST($18::uuid[], $19::uuid[], $20::text[], $21::timestamptz[], $22::timestamptz[], $23::bytea[])
                   AS a(id, ticket_id, analyst, at, ack_deadline, explanation)
              JOIN ins USING (ticket_id)
            RETURNING assignment_id, ticket_id, tenant_id, ack_deadline),
         tmr AS (
            INSERT INTO timers (ticket_id, kind, tenant_id, due_at, assignment_id)
            SELECT ins.ticket_id, d.kind, ins.tenant_id, d.due_at, NULL::uuid
              FROM ins, LATERAL (VALUES ($26::text, ins.response_due), ($27::text, ins.resolution_due))
                   AS d(kind, due_at)
            UNION ALL
            SELECT asg.ticket_id, $28::text, asg.tenant_id, asg.ack_deadline, asg.assignment_id FROM asg)
         SELECT count(*) FROM ins",
    )
    .bind(rows.iter().map(|(t, _)| t.ticket_id).collect::<Vec<_>>())
    .bind(col(|t| t.tenant_id.clone()))
    .bind(col(|t| t.number.clone()))
    .bind(col(|t| t.facility_id.clone()))
    .bind(rows.iter().map(|(t, _)| t.category).collect::<Vec<_>>())
    .bind(rows.iter().map(|(t, _)| t.clinical_category).collect::<Vec<_>>())
    .bind(rows.iter().map(|(t, _)| t.caller_role).collect::<Vec<_>>())
    .bind(rows.iter().map(|(t, _)| t.priority).collect::<Vec<_>>())
    .bind(rows.iter().map(|(t, _)| t.ticket_version).collect::<Vec<_>>())
    .bind(rows.iter().map(|(t, _)| t.routing_seq).collect::<Vec<_>>())
    .bind(rows.iter().map(|(t, _)| t.state).collect::<Vec<_>>())
    .bind(col(|t| t.assignee.clone()))
    .bind(at(|t| t.queued_at))
    .bind(col(|t| t.queue_reason.clone()))
    .bind(at(|t| Some(t.created_at)))
    .bind(at(|t| Some(t.response_due)))
    .bind(at(|t| Some(t.resolution_due)))
    .bind(asg.iter().map(|(_, a)| a.id).collect::<Vec<_>>())
    .bind(asg.iter().map(|(t, _)| t.ticket_id).collect::<Vec<_>>())
    .bind(asg.iter().map(|(_, a)| a.analyst.as_str()).collect::<Vec<_>>())
    .bind(asg.iter().map(|(_, a)| a.at).collect::<Vec<_>>())
    .bind(asg.iter().map(|(_, a)| a.ack_deadline).collect::<Vec<_>>())
    .bind(asg.iter().map(|(_, a)| a.explanation.as_slice()).collect::<Vec<_>>())
    .bind(Named(AssignmentState::PendingAck))
    .bind(Named(wardline_proto::routing::DecisionTrigger::TicketCreated))
    .bind(timer::RESPONSE)
    .bind(timer::RESOLUTION)
    .bind(timer::ACK)
    .fetch_one(conn)
    .await
}
