//! Timers: acknowledgement and SLA deadlines as rows, fired (deleted) by
//! the scanner in the same transaction as their effect, so a restart loses
//! none.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::tickets::TicketRow;

/// Timer kinds, stored by name (`'ack'` …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "kebab-case")]
pub enum TimerKind {
    /// The assigned analyst must acknowledge.
    Ack,
    /// The response target.
    Response,
    /// The resolution target.
    Resolution,
}

/// [`TimerKind`]'s values under the names the engine matches on.
pub mod timer {
    use super::TimerKind;
    /// The assigned analyst must acknowledge.
    pub const ACK: TimerKind = TimerKind::Ack;
    /// The response target.
    pub const RESPONSE: TimerKind = TimerKind::Response;
    /// The resolution target.
    pub const RESOLUTION: TimerKind = TimerKind::Resolution;
}

/// Sets (or moves) the ticket's timer of `kind`.
pub async fn set(
    conn: &mut PgConnection,
    t: &TicketRow,
    kind: TimerKind,
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

/// Cancels the ticket's timers of `kinds`.
pub async fn cancel(
    conn: &mut PgConnection,
    ticket: Uuid,
    kinds: &[TimerKind],
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM timers WHERE ticket_id = $1 AND kind = ANY($2)")
        .bind(ticket)
        .bind(kinds)
        .execute(conn)
        .await?;
    Ok(())
}

/// A timer that is due.
#[derive(sqlx::FromRow)]
pub struct DueTimer {
    pub ticket_id: Uuid,
    pub kind: TimerKind,
    pub assignment_id: Option<Uuid>,
    pub due_at: DateTime<Utc>,
}

/// Up to 32 due timers, locked, skipping those another replica holds.
pub async fn due(conn: &mut PgConnection) -> Result<Vec<DueTimer>, sqlx::Error> {
    sqlx::query_as(
        "SELECT ticket_id, kind, assignment_id, due_at FROM timers WHERE due_at <= now()
          ORDER BY due_at LIMIT 32 FOR UPDATE SKIP LOCKED",
    )
    .fetch_all(conn)
    .await
}

/// Deletes a timer (it fired).
pub async fn delete(
    conn: &mut PgConnection,
    ticket: Uuid,
    kind: TimerKind,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM timers WHERE ticket_id = $1 AND kind = $2")
        .bind(ticket)
        .bind(kind)
        .execute(conn)
        .await?;
    Ok(())
}
