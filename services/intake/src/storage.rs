//! Intake's repository: every query is scoped by the tenant taken from the
//! caller's token, so another tenant's row is indistinguishable from a
//! missing one.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::domain::routing::RoutingView;

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
    /// The token subject that created the ticket (an id, not PHI).
    pub created_by: String,
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

const TICKET_COLUMNS: &str = "ticket_id, tenant_id, seq, number, facility_id, caller_id, created_by, caller_name, caller_role,
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
    conn: &mut PgConnection,
    after: &str,
    limit: i64,
) -> Result<Vec<TenantRow>, sqlx::Error> {
    let mut rows: Vec<TenantRow> = sqlx::query_as(
        "SELECT tenant_id, name, time_zone, ticket_prefix, reopen_window_hours, active, created_at
           FROM tenants WHERE tenant_id > $1 ORDER BY tenant_id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let ids: Vec<String> = rows.iter().map(|r| r.tenant_id.clone()).collect();
    let facilities: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT tenant_id, facility_id, name FROM facilities WHERE tenant_id = ANY($1) ORDER BY facility_id",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    for (tenant, facility_id, name) in facilities {
        if let Some(r) = rows.iter_mut().find(|r| r.tenant_id == tenant) {
            r.facilities.push(FacilityRow { facility_id, name });
        }
    }
    Ok(rows)
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

/// Routing's view of the tickets `ids` of `tenant` that exist, locked for
/// update (in id order, so two batches never wait on each other in a
/// cycle): one statement for a whole batch of routing's events. Reads no
/// free text.
pub async fn lock_routing_views(
    conn: &mut PgConnection,
    tenant: &str,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, RoutingView)>, sqlx::Error> {
    let rows: Vec<RoutingRow> = sqlx::query_as(
        "SELECT ticket_id, status, assignee_analyst_id, queued, escalation_level, breached_targets,
                routing_seq, version
           FROM tickets WHERE tenant_id = $1 AND ticket_id = ANY($2)
          ORDER BY ticket_id FOR UPDATE",
    )
    .bind(tenant)
    .bind(ids)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.ticket_id,
                RoutingView {
                    status: r.status,
                    assignee_analyst_id: r.assignee_analyst_id,
                    queued: r.queued,
                    escalation_level: r.escalation_level,
                    breached_targets: r.breached_targets,
                    routing_seq: r.routing_seq,
                    version: r.version,
                },
            )
        })
        .collect())
}

#[derive(sqlx::FromRow)]
struct RoutingRow {
    ticket_id: Uuid,
    status: i16,
    assignee_analyst_id: String,
    queued: bool,
    escalation_level: i16,
    breached_targets: Vec<i16>,
    routing_seq: i64,
    version: i64,
}

/// Writes routing's view of several tickets of `tenant` in one statement.
pub async fn update_routing_views(
    conn: &mut PgConnection,
    tenant: &str,
    views: &[(Uuid, &RoutingView)],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    if views.is_empty() {
        return Ok(());
    }
    // A column of arrays cannot be unnested as such (PostgreSQL arrays are
    // rectangular): each ticket's targets travel as an array literal.
    let breached: Vec<String> = views
        .iter()
        .map(|(_, v)| {
            let items: Vec<String> = v.breached_targets.iter().map(i16::to_string).collect();
            format!("{{{}}}", items.join(","))
        })
        .collect();
    sqlx::query(
        "UPDATE tickets t SET status = u.status, assignee_analyst_id = u.assignee, queued = u.queued,
                escalation_level = u.level, breached_targets = u.breached::smallint[],
                routing_seq = u.routing_seq, version = u.version, updated_at = $10
           FROM UNNEST($2::uuid[], $3::int2[], $4::text[], $5::bool[], $6::int2[], $7::text[], $8::int8[],
                       $9::int8[]) AS u(ticket_id, status, assignee, queued, level, breached, routing_seq, version)
          WHERE t.tenant_id = $1 AND t.ticket_id = u.ticket_id",
    )
    .bind(tenant)
    .bind(views.iter().map(|(id, _)| *id).collect::<Vec<_>>())
    .bind(views.iter().map(|(_, v)| v.status).collect::<Vec<_>>())
    .bind(views.iter().map(|(_, v)| v.assignee_analyst_id.as_str()).collect::<Vec<_>>())
    .bind(views.iter().map(|(_, v)| v.queued).collect::<Vec<_>>())
    .bind(views.iter().map(|(_, v)| v.escalation_level).collect::<Vec<_>>())
    .bind(&breached)
    .bind(views.iter().map(|(_, v)| v.routing_seq).collect::<Vec<_>>())
    .bind(views.iter().map(|(_, v)| v.version).collect::<Vec<_>>())
    .bind(now)
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

/// Whose tickets a request may touch: every ticket of the tenant, or only
/// those a requester created or is named on as the caller. The filter is
/// part of every ticket query, so a ticket outside it is indistinguishable
/// from a missing one (NOT_FOUND, never PERMISSION_DENIED).
#[derive(Debug, Clone, Copy)]
pub enum Owner<'a> {
    /// Every ticket of the tenant (the desk and admin roles).
    Any,
    /// Tickets with `created_by` or `caller_id` equal to this subject.
    Subject(&'a str),
}

impl Owner<'_> {
    /// ` AND (created_by = $n OR caller_id = $n)`, or nothing.
    fn push(self, q: &mut QueryBuilder<Postgres>) {
        if let Owner::Subject(s) = self {
            q.push(" AND (created_by = ")
                .push_bind(s.to_owned())
                .push(" OR caller_id = ")
                .push_bind(s.to_owned())
                .push(")");
        }
    }

    fn subject(self) -> Option<String> {
        match self {
            Owner::Any => None,
            Owner::Subject(s) => Some(s.to_owned()),
        }
    }
}

/// One ticket of `tenant` that `owner` may see, optionally locked for update.
pub async fn get_ticket(
    conn: &mut PgConnection,
    tenant: &str,
    owner: Owner<'_>,
    key: TicketKey<'_>,
    for_update: bool,
) -> Result<Option<TicketRow>, sqlx::Error> {
    let lock = if for_update { " FOR UPDATE" } else { "" };
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
        "SELECT {TICKET_COLUMNS} FROM tickets WHERE tenant_id = "
    ));
    q.push_bind(tenant);
    owner.push(&mut q);
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

/// Tickets of `tenant` that `owner` may see, newest first.
pub async fn list_tickets(
    conn: &mut PgConnection,
    tenant: &str,
    owner: Owner<'_>,
    f: &TicketFilter,
    limit: i64,
) -> Result<Vec<TicketRow>, sqlx::Error> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
        "SELECT {TICKET_COLUMNS} FROM tickets WHERE tenant_id = "
    ));
    q.push_bind(tenant);
    owner.push(&mut q);
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
    q.build_query_as().fetch_all(&mut *conn).await
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
/// A page of a ticket's notes after `after` (UUIDv7: creation order), at
/// most `limit`; with `only_for`, just the public ones and that author's.
pub async fn list_notes(
    conn: &mut PgConnection,
    tenant: &str,
    ticket: Uuid,
    only_for: Option<&str>,
    after: Uuid,
    limit: i64,
) -> Result<Vec<NoteRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT note_id, ticket_id, author_id, body, public, created_at FROM notes
          WHERE tenant_id = $1 AND ticket_id = $2 AND note_id > $3
            AND ($4::text IS NULL OR public OR author_id = $4)
          ORDER BY note_id LIMIT $5",
    )
    .bind(tenant)
    .bind(ticket)
    .bind(after)
    .bind(only_for)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
}

/// The free text and caller contact of a ticket `owner` may see, for
/// completing a replayed response whose stored copy leaves them out.
pub async fn ticket_text(
    conn: &mut PgConnection,
    tenant: &str,
    owner: Owner<'_>,
    ticket: Uuid,
) -> Result<Option<(String, String, String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT description, caller_name, caller_email, caller_phone FROM tickets
          WHERE tenant_id = $1 AND ticket_id = $2
            AND ($3::text IS NULL OR created_by = $3 OR caller_id = $3)",
    )
    .bind(tenant)
    .bind(ticket)
    .bind(owner.subject())
    .fetch_optional(&mut *conn)
    .await
}

/// A note's body, for completing a replayed AddNote response; `None` when
/// the note is missing or on a ticket `owner` may not see.
pub async fn note_body(
    conn: &mut PgConnection,
    tenant: &str,
    owner: Owner<'_>,
    note: Uuid,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT n.body FROM notes n
           JOIN tickets t ON t.tenant_id = n.tenant_id AND t.ticket_id = n.ticket_id
          WHERE n.tenant_id = $1 AND n.note_id = $2
            AND ($3::text IS NULL OR t.created_by = $3 OR t.caller_id = $3)",
    )
    .bind(tenant)
    .bind(note)
    .bind(owner.subject())
    .fetch_optional(&mut *conn)
    .await
}

/// How many notes a ticket has.
pub async fn count_notes(
    conn: &mut PgConnection,
    tenant: &str,
    ticket: Uuid,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM notes WHERE tenant_id = $1 AND ticket_id = $2")
        .bind(tenant)
        .bind(ticket)
        .fetch_one(conn)
        .await
}

/// What one batch of new tickets needs to know about a (tenant, facility)
/// pair before numbers are reserved.
#[derive(Debug, Clone)]
pub struct Target {
    pub tenant_exists: bool,
    pub active: bool,
    pub facility_exists: bool,
}

/// Checks every distinct (tenant, facility) pair of a batch in one round trip.
pub async fn check_targets(
    conn: &mut PgConnection,
    pairs: &[(String, String)],
) -> Result<std::collections::HashMap<(String, String), Target>, sqlx::Error> {
    let tenants: Vec<&str> = pairs.iter().map(|p| p.0.as_str()).collect();
    let facilities: Vec<&str> = pairs.iter().map(|p| p.1.as_str()).collect();
    let rows: Vec<(String, String, Option<bool>, bool)> = sqlx::query_as(
        "SELECT p.t, p.f, t.active,
                EXISTS (SELECT 1 FROM facilities f WHERE f.tenant_id = p.t AND f.facility_id = p.f)
           FROM UNNEST($1::text[], $2::text[]) AS p(t, f)
           LEFT JOIN tenants t ON t.tenant_id = p.t",
    )
    .bind(&tenants)
    .bind(&facilities)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(t, f, active, facility_exists)| {
            (
                (t, f),
                Target {
                    tenant_exists: active.is_some(),
                    active: active.unwrap_or(false),
                    facility_exists,
                },
            )
        })
        .collect())
}

/// A block of ticket numbers reserved for one tenant: `first..=last`.
#[derive(Debug, Clone)]
pub struct Block {
    pub first: i64,
    pub prefix: String,
    pub active: bool,
}

/// Reserves `count` consecutive numbers for each (active) tenant in a
/// transaction of its own, so the tenant rows are locked only for this one
/// statement and not until the tickets' commit has been flushed: with the
/// lock held across that flush, every batch touching a tenant queued behind
/// the previous batch's disk write.
///
/// The reservation commits with `synchronous_commit = off`: the tickets'
/// own (synchronous) commit comes later in the WAL, and flushing it flushes
/// everything before it, so a ticket is never durable while the
/// reservation of its number is not. If the tickets' transaction fails, its
/// numbers are skipped (a gap, never a repeat).
///
/// `FOR NO KEY UPDATE`, not `FOR UPDATE`: the tickets' foreign key takes
/// `KEY SHARE` on the tenant row, and a plain `FOR UPDATE` here would make
/// a reservation and an inserting batch wait for each other (deadlock).
/// The lock CTE is `MATERIALIZED` so the rows are locked in tenant order
/// before the update touches any (inlined, two reservations deadlocked).
pub async fn reserve_blocks(
    pool: &PgPool,
    counts: &[(String, i64)],
) -> Result<std::collections::HashMap<String, Block>, sqlx::Error> {
    let tenants: Vec<&str> = counts.iter().map(|c| c.0.as_str()).collect();
    let ns: Vec<i64> = counts.iter().map(|c| c.1).collect();
    // Every tenant's scope: one reservation serves a group commit's
    // tenants (see `create`), each row locked by its own tenant id.
    let mut tx = wardline_kit::db::begin(pool, wardline_kit::db::Scope::AllTenants).await?;
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *tx)
        .await?;
    let rows: Vec<(String, i64, String, bool)> = sqlx::query_as(
        "WITH req AS (SELECT * FROM UNNEST($1::text[], $2::int8[]) AS r(t, n)),
              locked AS MATERIALIZED (SELECT t.tenant_id FROM tenants t JOIN req ON req.t = t.tenant_id
                          WHERE t.active ORDER BY t.tenant_id FOR NO KEY UPDATE OF t)
         UPDATE tenants t SET last_ticket_seq = t.last_ticket_seq + req.n
           FROM req JOIN locked ON locked.tenant_id = req.t
          WHERE t.tenant_id = req.t
         RETURNING t.tenant_id, t.last_ticket_seq - req.n + 1, t.ticket_prefix, t.active",
    )
    .bind(&tenants)
    .bind(&ns)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows
        .into_iter()
        .map(|(t, first, prefix, active)| {
            (
                t,
                Block {
                    first,
                    prefix,
                    active,
                },
            )
        })
        .collect())
}

/// Inserts many new tickets in one statement.
pub async fn insert_tickets(
    conn: &mut PgConnection,
    rows: &[&TicketRow],
) -> Result<(), sqlx::Error> {
    macro_rules! col {
        ($f:ident) => {
            rows.iter().map(|t| t.$f.clone()).collect::<Vec<_>>()
        };
    }
    sqlx::query(
        "INSERT INTO tickets (ticket_id, tenant_id, seq, number, facility_id, caller_id, caller_name, caller_role,
            caller_email, caller_phone, channel, application, category, category_classified, urgency, impact,
            patient_care_blocked, priority, status, description, version, created_at, updated_at, created_by)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::int2[], $9::text[], $10::text[], $11::int2[], $12::text[], $13::int2[], $14::bool[], $15::int2[],
            $16::int2[], $17::bool[], $18::int2[], $19::int2[], $20::text[], $21::int8[], $22::timestamptz[],
            $23::timestamptz[], $24::text[])",
    )
    .bind(col!(ticket_id))
    .bind(col!(tenant_id))
    .bind(col!(seq))
    .bind(col!(number))
    .bind(col!(facility_id))
    .bind(col!(caller_id))
    .bind(col!(caller_name))
    .bind(col!(caller_role))
    .bind(col!(caller_email))
    .bind(col!(caller_phone))
    .bind(col!(channel))
    .bind(col!(application))
    .bind(col!(category))
    .bind(col!(category_classified))
    .bind(col!(urgency))
    .bind(col!(impact))
    .bind(col!(patient_care_blocked))
    .bind(col!(priority))
    .bind(col!(status))
    .bind(col!(description))
    .bind(col!(version))
    .bind(col!(created_at))
    .bind(col!(updated_at))
    .bind(col!(created_by))
    .execute(conn)
    .await?;
    Ok(())
}
