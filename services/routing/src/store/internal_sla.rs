//! A tenant's internal SLA targets and the alerts they raised. Unlike the
//! contractual targets, these set no timer rows on the path of a new
//! ticket: the watcher ([`crate::jobs::internal_sla`]) finds open tickets
//! past an internal deadline with one query, so a tenant without internal
//! targets pays nothing for them and one with them pays per scan, not per
//! ticket.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::sla::InternalTargets;

fn column(t: &InternalTargets, pick: fn((u32, u32)) -> u32) -> Vec<i32> {
    t.minutes
        .iter()
        .map(|m| m.map_or(0, |m| i32::try_from(pick(m)).unwrap_or(i32::MAX)))
        .collect()
}

/// The tenant's internal targets with when they changed (none set: empty,
/// version 0).
pub async fn get(
    conn: &mut PgConnection,
    tenant: &str,
) -> Result<(InternalTargets, Option<DateTime<Utc>>), sqlx::Error> {
    type Row = (Vec<i32>, Vec<i32>, i64, DateTime<Utc>);
    let row: Option<Row> = sqlx::query_as(
        "SELECT response_minutes, resolution_minutes, version, updated_at
           FROM internal_sla_targets WHERE tenant_id = $1",
    )
    .bind(tenant)
    .fetch_optional(conn)
    .await?;
    let Some((response, resolution, version, at)) = row else {
        return Ok((InternalTargets::default(), None));
    };
    let mut t = InternalTargets {
        version: u64::try_from(version).unwrap_or(0),
        ..Default::default()
    };
    for (i, slot) in t.minutes.iter_mut().enumerate() {
        let (r, s) = (response.get(i).copied(), resolution.get(i).copied());
        if let (Some(r @ 1..), Some(s @ 1..)) = (r, s) {
            *slot = Some((r.unsigned_abs(), s.unsigned_abs()));
        }
    }
    Ok((t, Some(at)))
}

/// Locks the tenant's row until the transaction ends and returns its
/// version (0 when none is stored).
pub async fn lock_version(conn: &mut PgConnection, tenant: &str) -> Result<u64, sqlx::Error> {
    let v: Option<i64> = sqlx::query_scalar(
        "SELECT version FROM internal_sla_targets WHERE tenant_id = $1 FOR UPDATE",
    )
    .bind(tenant)
    .fetch_optional(conn)
    .await?;
    Ok(v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0))
}

/// Stores the tenant's internal targets (version + 1); returns the new
/// version and when.
pub async fn set(
    conn: &mut PgConnection,
    tenant: &str,
    t: &InternalTargets,
) -> Result<(u64, DateTime<Utc>), sqlx::Error> {
    let (version, at): (i64, DateTime<Utc>) = sqlx::query_as(
        "INSERT INTO internal_sla_targets (tenant_id, response_minutes, resolution_minutes)
         VALUES ($1, $2, $3)
         ON CONFLICT (tenant_id) DO UPDATE SET
                response_minutes = EXCLUDED.response_minutes,
                resolution_minutes = EXCLUDED.resolution_minutes,
                version = internal_sla_targets.version + 1, updated_at = now()
         RETURNING version, updated_at",
    )
    .bind(tenant)
    .bind(column(t, |m| m.0))
    .bind(column(t, |m| m.1))
    .fetch_one(conn)
    .await?;
    Ok((u64::try_from(version).unwrap_or(0), at))
}

/// An internal deadline that passed and was not alerted yet.
#[derive(Debug, sqlx::FromRow)]
pub struct Due {
    pub ticket_id: Uuid,
    /// `'response'` or `'resolution'`.
    pub target: String,
    pub deadline: DateTime<Utc>,
}

/// Up to `limit` internal deadlines that passed on open tickets and were
/// not alerted yet, oldest first (a response deadline only while the ticket
/// is not acknowledged). Minutes count from the ticket's creation. Not
/// locked: [`record`] claims each one with its ticket locked.
pub async fn due(conn: &mut PgConnection, limit: i64) -> Result<Vec<Due>, sqlx::Error> {
    sqlx::query_as(
        "SELECT t.ticket_id, d.target, d.deadline
           FROM internal_sla_targets i
           JOIN tickets t ON t.tenant_id = i.tenant_id AND t.state <> 'done'
           CROSS JOIN LATERAL (SELECT substr(t.priority, 2)::int AS p) q
           CROSS JOIN LATERAL (VALUES
               ('response', CASE WHEN t.responded_at IS NULL AND i.response_minutes[q.p] > 0
                                 THEN t.created_at + make_interval(mins => i.response_minutes[q.p]) END),
               ('resolution', CASE WHEN i.resolution_minutes[q.p] > 0
                                   THEN t.created_at + make_interval(mins => i.resolution_minutes[q.p]) END))
                AS d(target, deadline)
          WHERE d.deadline <= now()
            AND NOT EXISTS (SELECT 1 FROM internal_sla_alerts a
                             WHERE a.ticket_id = t.ticket_id AND a.target = d.target)
          ORDER BY d.deadline
          LIMIT $1",
    )
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Records the alert for `d` (the caller holds the ticket's lock); false
/// when it was recorded already.
pub async fn record(conn: &mut PgConnection, tenant: &str, d: &Due) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO internal_sla_alerts (ticket_id, target, tenant_id, deadline) VALUES ($1, $2, $3, $4)
         ON CONFLICT DO NOTHING",
    )
    .bind(d.ticket_id)
    .bind(&d.target)
    .bind(tenant)
    .bind(d.deadline)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
