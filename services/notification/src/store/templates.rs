//! Tenant overrides of the shipped templates, per event kind and channel.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::domain::{EventKind, NotificationChannel};

/// An override as stored.
#[derive(Debug, sqlx::FromRow)]
pub struct OverrideRow {
    /// Email subject ('' for other channels).
    pub subject: String,
    /// The template body.
    pub body: String,
    /// Bumped by every change.
    pub version: i64,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// The tenant's override for `kind` on `ch`, locked if `lock`.
pub async fn load(
    conn: &mut PgConnection,
    tenant: &str,
    kind: EventKind,
    ch: NotificationChannel,
    lock: bool,
) -> Result<Option<OverrideRow>, sqlx::Error> {
    let sql = format!(
        "SELECT subject, body, version, updated_at FROM template_overrides
          WHERE tenant_id = $1 AND event_kind = $2 AND channel = $3{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(kind as i16)
        .bind(ch as i16)
        .fetch_optional(conn)
        .await
}

/// Writes (or replaces) the override.
pub async fn upsert(
    conn: &mut PgConnection,
    tenant: &str,
    kind: EventKind,
    ch: NotificationChannel,
    subject: &str,
    body: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO template_overrides (tenant_id, event_kind, channel, subject, body)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (tenant_id, event_kind, channel) DO UPDATE
            SET subject = EXCLUDED.subject, body = EXCLUDED.body,
                version = template_overrides.version + 1, updated_at = now()",
    )
    .bind(tenant)
    .bind(kind as i16)
    .bind(ch as i16)
    .bind(subject)
    .bind(body)
    .execute(conn)
    .await?;
    Ok(())
}

/// Removes the override (the shipped default applies again).
pub async fn delete(
    conn: &mut PgConnection,
    tenant: &str,
    kind: EventKind,
    ch: NotificationChannel,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM template_overrides WHERE tenant_id = $1 AND event_kind = $2 AND channel = $3",
    )
    .bind(tenant)
    .bind(kind as i16)
    .bind(ch as i16)
    .execute(conn)
    .await?;
    Ok(())
}

/// Key of an override: tenant, event kind, channel (as stored).
pub type OverrideKey = (String, i16, i16);

/// The overrides for every `(tenant, kind, channel)` in `keys`, in one
/// query: the sender reads them once per round, not once per delivery.
pub async fn for_round(
    conn: &mut PgConnection,
    keys: &[OverrideKey],
) -> Result<HashMap<OverrideKey, (String, String)>, sqlx::Error> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let tenants: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
    let kinds: Vec<i16> = keys.iter().map(|k| k.1).collect();
    let channels: Vec<i16> = keys.iter().map(|k| k.2).collect();
    let rows: Vec<(String, i16, i16, String, String)> = sqlx::query_as(
        "SELECT o.tenant_id, o.event_kind, o.channel, o.subject, o.body
           FROM template_overrides o
           JOIN UNNEST($1::text[], $2::int2[], $3::int2[]) AS k(tenant_id, event_kind, channel)
             USING (tenant_id, event_kind, channel)",
    )
    .bind(&tenants)
    .bind(&kinds)
    .bind(&channels)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(t, k, c, subject, body)| ((t, k, c), (subject, body)))
        .collect())
}
