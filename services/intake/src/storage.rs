//! Intake's repository: every query is scoped by the tenant taken from the
//! caller's token, so another tenant's row is indistinguishable from a
//! missing one.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

/// A tenant row with its facilities.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TenantRow {
    pub tenant_id: String,
    pub name: String,
    pub time_zone: String,
    pub ticket_prefix: String,
    pub reopen_window_hours: i32,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    #[sqlx(skip)]
    pub facilities: Vec<FacilityRow>,
}

/// A facility row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FacilityRow {
    pub facility_id: String,
    pub name: String,
}

/// A ticket row. `description` may contain PHI and is never logged.
#[derive(Clone, sqlx::FromRow)]
pub struct TicketRow {
    pub ticket_id: Uuid,
    pub tenant_id: String,
    pub seq: i64,
    pub number: String,
    pub facility_id: String,
    pub caller_id: String,
    pub caller_name: String,
    pub caller_role: i16,
    pub caller_email: String,
    pub caller_phone: String,
    pub channel: i16,
    pub application: String,
    pub category: i16,
    pub category_classified: bool,
    pub urgency: i16,
    pub impact: i16,
    pub patient_care_blocked: bool,
    pub priority: i16,
    pub status: i16,
    pub description: String,
    pub assignee_analyst_id: String,
    pub previous_analyst_id: String,
    pub queued: bool,
    pub escalation_level: i16,
    pub breached_targets: Vec<i16>,
    pub resolution_code: i16,
    pub first_contact_resolution: bool,
    pub reopen_count: i32,
    pub version: i64,
    pub routing_seq: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for TicketRow {
    // Hand-written so that the description can never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketRow")
            .field("ticket_id", &self.ticket_id)
            .field("tenant_id", &self.tenant_id)
            .field("number", &self.number)
            .field("status", &self.status)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

const TICKET_COLUMNS: &str = "ticket_id, tenant_id, seq, number, facility_id, caller_id, caller_name, caller_role,
    caller_email, caller_phone, channel, application, category, category_classified, urgency, impact,
    patient_care_blocked, priority, status, description, assignee_analyst_id, previous_analyst_id, queued,
    escalation_level, breached_targets, resolution_code, first_contact_resolution, reopen_count, version,
    routing_seq, created_at, updated_at, acknowledged_at, resolved_at, closed_at";

/// Outcome of inserting a tenant.
pub enum InsertTenant {
    /// Created.
    Created,
    /// The id is taken.
    IdTaken,
    /// The ticket prefix is taken by another tenant.
    PrefixTaken,
}

/// Inserts a tenant and its facilities.
pub async fn insert_tenant(
    conn: &mut PgConnection,
    t: &TenantRow,
) -> Result<InsertTenant, sqlx::Error> {
    let r = sqlx::query(
        "INSERT INTO tenants (tenant_id, name, time_zone, ticket_prefix, reopen_window_hours, created_at)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(&t.tenant_id)
    .bind(&t.name)
    .bind(&t.time_zone)
    .bind(&t.ticket_prefix)
    .bind(t.reopen_window_hours)
    .bind(t.created_at)
    .execute(&mut *conn)
    .await?;
    if r.rows_affected() == 0 {
        let id_taken: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tenants WHERE tenant_id = $1)")
                .bind(&t.tenant_id)
                .fetch_one(&mut *conn)
                .await?;
        return Ok(if id_taken {
            InsertTenant::IdTaken
        } else {
            InsertTenant::PrefixTaken
        });
    }
    for f in &t.facilities {
        insert_facility(conn, &t.tenant_id, f).await?;
    }
    Ok(InsertTenant::Created)
}

/// Inserts a facility; false when the id exists already.
pub async fn insert_facility(
    conn: &mut PgConnection,
    tenant: &str,
    f: &FacilityRow,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "INSERT INTO facilities (tenant_id, facility_id, name) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(tenant)
    .bind(&f.facility_id)
    .bind(&f.name)
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// A tenant with its facilities.
pub async fn get_tenant(
    conn: &mut PgConnection,
    tenant: &str,
) -> Result<Option<TenantRow>, sqlx::Error> {
    let row: Option<TenantRow> = sqlx::query_as(
        "SELECT tenant_id, name, time_zone, ticket_prefix, reopen_window_hours, active, created_at
           FROM tenants WHERE tenant_id = $1",
    )
    .bind(tenant)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(mut row) = row else { return Ok(None) };
    row.facilities = sqlx::query_as(
        "SELECT facility_id, name FROM facilities WHERE tenant_id = $1 ORDER BY facility_id",
    )
    .bind(tenant)
    .fetch_all(&mut *conn)
    .await?;
    Ok(Some(row))
}

/// Tenants ordered by id, after `after`.
pub async fn list_tenants(
    pool: &PgPool,
    after: &str,
    limit: i64,
) -> Result<Vec<TenantRow>, sqlx::Error> {
    let mut rows: Vec<TenantRow> = sqlx::query_as(
        "SELECT tenant_id, name, time_zone, ticket_prefix, reopen_window_hours, active, created_at
           FROM tenants WHERE tenant_id > $1 ORDER BY tenant_id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let ids: Vec<String> = rows.iter().map(|r| r.tenant_id.clone()).collect();
    let facilities: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT tenant_id, facility_id, name FROM facilities WHERE tenant_id = ANY($1) ORDER BY facility_id",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    for (tenant, facility_id, name) in facilities {
        if let Some(r) = rows.iter_mut().find(|r| r.tenant_id == tenant) {
            r.facilities.push(FacilityRow { facility_id, name });
        }
    }
    Ok(rows)
}

/// What a new ticket needs from its tenant, with the next number reserved.
pub struct Reservation {
    pub seq: i64,
    pub prefix: String,
    pub active: bool,
    pub facility_exists: bool,
}

/// Reserves the tenant's next ticket number (row lock until commit) and
/// checks the facility, in one round trip.
pub async fn reserve_number(
    conn: &mut PgConnection,
    tenant: &str,
    facility: &str,
) -> Result<Option<Reservation>, sqlx::Error> {
    let row: Option<(i64, String, bool, bool)> = sqlx::query_as(
        "UPDATE tenants SET last_ticket_seq = last_ticket_seq + 1 WHERE tenant_id = $1
         RETURNING last_ticket_seq, ticket_prefix, active,
                   EXISTS (SELECT 1 FROM facilities WHERE tenant_id = $1 AND facility_id = $2)",
    )
    .bind(tenant)
    .bind(facility)
    .fetch_optional(conn)
    .await?;
    Ok(
        row.map(|(seq, prefix, active, facility_exists)| Reservation {
            seq,
            prefix,
            active,
            facility_exists,
        }),
    )
}

/// Inserts a new ticket.
pub async fn insert_ticket(conn: &mut PgConnection, t: &TicketRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO tickets (ticket_id, tenant_id, seq, number, facility_id, caller_id, caller_name, caller_role,
            caller_email, caller_phone, channel, application, category, category_classified, urgency, impact,
            patient_care_blocked, priority, status, description, version, created_at, updated_at)
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,$23)",
    )
    .bind(t.ticket_id)
    .bind(&t.tenant_id)
    .bind(t.seq)
    .bind(&t.number)
    .bind(&t.facility_id)
    .bind(&t.caller_id)
    .bind(&t.caller_name)
    .bind(t.caller_role)
    .bind(&t.caller_email)
    .bind(&t.caller_phone)
    .bind(t.channel)
    .bind(&t.application)
    .bind(t.category)
    .bind(t.category_classified)
    .bind(t.urgency)
    .bind(t.impact)
    .bind(t.patient_care_blocked)
    .bind(t.priority)
    .bind(t.status)
    .bind(&t.description)
    .bind(t.version)
    .bind(t.created_at)
    .bind(t.updated_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Writes every mutable field of a ticket back.
pub async fn update_ticket(conn: &mut PgConnection, t: &TicketRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE tickets SET category = $3, status = $4, assignee_analyst_id = $5, previous_analyst_id = $6,
            queued = $7, escalation_level = $8, breached_targets = $9, resolution_code = $10,
            first_contact_resolution = $11, reopen_count = $12, version = $13, routing_seq = $14,
            updated_at = $15, acknowledged_at = $16, resolved_at = $17, closed_at = $18
          WHERE tenant_id = $1 AND ticket_id = $2",
    )
    .bind(&t.tenant_id)
    .bind(t.ticket_id)
    .bind(t.category)
    .bind(t.status)
    .bind(&t.assignee_analyst_id)
    .bind(&t.previous_analyst_id)
    .bind(t.queued)
    .bind(t.escalation_level)
    .bind(&t.breached_targets)
    .bind(t.resolution_code)
    .bind(t.first_contact_resolution)
    .bind(t.reopen_count)
    .bind(t.version)
    .bind(t.routing_seq)
    .bind(t.updated_at)
    .bind(t.acknowledged_at)
    .bind(t.resolved_at)
    .bind(t.closed_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// How to find one ticket.
pub enum TicketKey<'a> {
    /// By id.
    Id(Uuid),
    /// By human-readable number.
    Number(&'a str),
}

/// One ticket of `tenant`, optionally locked for update.
pub async fn get_ticket(
    conn: &mut PgConnection,
    tenant: &str,
    key: TicketKey<'_>,
    for_update: bool,
) -> Result<Option<TicketRow>, sqlx::Error> {
    let lock = if for_update { " FOR UPDATE" } else { "" };
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
        "SELECT {TICKET_COLUMNS} FROM tickets WHERE tenant_id = "
    ));
    q.push_bind(tenant);
    match key {
        TicketKey::Id(id) => q.push(" AND ticket_id = ").push_bind(id),
        TicketKey::Number(n) => q.push(" AND number = ").push_bind(n.to_owned()),
    };
    q.push(lock);
    q.build_query_as().fetch_optional(conn).await
}

/// Filters of a ticket listing.
#[derive(Debug, Default)]
pub struct TicketFilter {
    pub statuses: Vec<i16>,
    pub priorities: Vec<i16>,
    pub assignee: Option<String>,
    pub facility: Option<String>,
    pub created_from: Option<DateTime<Utc>>,
    pub created_to: Option<DateTime<Utc>>,
    /// Only tickets older than this id (the cursor).
    pub before: Option<Uuid>,
}

/// Tickets of `tenant`, newest first.
pub async fn list_tickets(
    pool: &PgPool,
    tenant: &str,
    f: &TicketFilter,
    limit: i64,
) -> Result<Vec<TicketRow>, sqlx::Error> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
        "SELECT {TICKET_COLUMNS} FROM tickets WHERE tenant_id = "
    ));
    q.push_bind(tenant);
    if !f.statuses.is_empty() {
        q.push(" AND status = ANY(")
            .push_bind(f.statuses.clone())
            .push(")");
    }
    if !f.priorities.is_empty() {
        q.push(" AND priority = ANY(")
            .push_bind(f.priorities.clone())
            .push(")");
    }
    if let Some(a) = &f.assignee {
        q.push(" AND assignee_analyst_id = ").push_bind(a.clone());
    }
    if let Some(fac) = &f.facility {
        q.push(" AND facility_id = ").push_bind(fac.clone());
    }
    if let Some(t) = f.created_from {
        q.push(" AND created_at >= ").push_bind(t);
    }
    if let Some(t) = f.created_to {
        q.push(" AND created_at < ").push_bind(t);
    }
    if let Some(b) = f.before {
        q.push(" AND ticket_id < ").push_bind(b);
    }
    q.push(" ORDER BY ticket_id DESC LIMIT ").push_bind(limit);
    q.build_query_as().fetch_all(pool).await
}

/// A note row (body may contain PHI).
#[derive(Clone, sqlx::FromRow)]
pub struct NoteRow {
    pub note_id: Uuid,
    pub ticket_id: Uuid,
    pub author_id: String,
    pub body: String,
    pub public: bool,
    pub created_at: DateTime<Utc>,
}

/// Inserts a note.
pub async fn insert_note(
    conn: &mut PgConnection,
    tenant: &str,
    n: &NoteRow,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO notes (note_id, tenant_id, ticket_id, author_id, body, public, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(n.note_id)
    .bind(tenant)
    .bind(n.ticket_id)
    .bind(&n.author_id)
    .bind(&n.body)
    .bind(n.public)
    .bind(n.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Notes of a ticket, oldest first.
pub async fn list_notes(
    pool: &PgPool,
    tenant: &str,
    ticket: Uuid,
) -> Result<Vec<NoteRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT note_id, ticket_id, author_id, body, public, created_at FROM notes
          WHERE tenant_id = $1 AND ticket_id = $2 ORDER BY note_id",
    )
    .bind(tenant)
    .bind(ticket)
    .fetch_all(pool)
    .await
}
