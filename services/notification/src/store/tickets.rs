//! What notification knows of a ticket: codes from intake's snapshots, the
//! caller's id and contact from `TicketCreated`, the assignee from
//! routing. Never a description or a note.

use sqlx::PgConnection;
use uuid::Uuid;
use wardline_proto::events::TicketSnapshot;

/// A ticket as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TicketRow {
    /// The ticket.
    pub ticket_id: Uuid,
    /// The caller's subject id.
    pub caller_id: String,
    /// The tenant's ticket number.
    pub number: String,
    /// Priority (enum value).
    pub priority: i16,
    /// Status (enum value).
    pub status: i16,
    /// Category (enum value).
    pub category: i16,
    /// Version of the newest snapshot applied.
    pub ticket_version: i64,
    /// Sequence of the newest routing event applied.
    pub routing_seq: i64,
}

/// The tickets `ids` that exist, locked for the caller's transaction: a
/// consumer batch reads all its tickets at once.
pub async fn lock_many(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<Vec<TicketRow>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query_as(
        "SELECT ticket_id, caller_id, number, priority, status, category, ticket_version, routing_seq
           FROM tickets WHERE ticket_id = ANY($1) ORDER BY ticket_id FOR UPDATE",
    )
    .bind(ids)
    .fetch_all(conn)
    .await
}

/// Inserts a ticket first seen in `snap` (its `TicketCreated`).
pub async fn insert(
    conn: &mut PgConnection,
    id: Uuid,
    tenant: &str,
    snap: &TicketSnapshot,
    caller: &wardline_proto::events::CallerContact,
    version: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO tickets (ticket_id, tenant_id, number, caller_id, caller_name, caller_email,
            caller_phone, priority, status, category, assignee, ticket_version)
         VALUES ($1, $2, $3, $4, '', $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(id)
    .bind(tenant)
    .bind(&snap.number)
    // The caller's name stays in intake (older events carried it): ''.
    .bind(&snap.caller_id)
    .bind(&caller.email)
    .bind(&caller.phone)
    .bind(snap.priority as i16)
    .bind(snap.status as i16)
    .bind(snap.category as i16)
    .bind(&snap.assignee_analyst_id)
    .bind(version)
    .execute(conn)
    .await?;
    Ok(())
}

/// Applies a newer snapshot (the caller checked it is newer).
pub async fn apply_snapshot(
    conn: &mut PgConnection,
    id: Uuid,
    snap: &TicketSnapshot,
    version: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE tickets SET number = $2, priority = $3, status = $4, category = $5,
            assignee = CASE WHEN $6 = '' THEN assignee ELSE $6 END, ticket_version = $7, updated_at = now()
          WHERE ticket_id = $1",
    )
    .bind(id)
    .bind(&snap.number)
    .bind(snap.priority as i16)
    .bind(snap.status as i16)
    .bind(snap.category as i16)
    .bind(&snap.assignee_analyst_id)
    .bind(version)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records routing's assignee at routing sequence `seq` (the caller checked
/// it is newer).
pub async fn assign(
    conn: &mut PgConnection,
    id: Uuid,
    analyst: &str,
    seq: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE tickets SET assignee = $2, routing_seq = $3, updated_at = now() WHERE ticket_id = $1",
    )
    .bind(id)
    .bind(analyst)
    .bind(seq)
    .execute(conn)
    .await?;
    Ok(())
}
