//! Who may be notified. CALLER, ANALYST, SUPERVISOR and ON_CALL rows come
//! from intake's and routing's events (`subject_id` = caller or analyst id)
//! and may be edited over the API, after which events no longer change
//! their addresses (`addresses_managed`); CUSTOM rows come from the API only.

use chrono::{DateTime, Utc};
use prost::Message as _;
use sqlx::PgConnection;
use uuid::Uuid;
use wardline_proto::events::{AnalystInfo, CallerContact};
use wardline_proto::notification::Preferences;

use super::VENDOR_TENANT;
use crate::domain::{NotificationChannel, RecipientKind};

/// A recipient as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RecipientRow {
    pub recipient_id: Uuid,
    pub tenant_id: String,
    pub kind: i16,
    pub subject_id: String,
    pub name: String,
    pub email: String,
    pub phone: String,
    pub pager: String,
    pub addresses_managed: bool,
    pub preferences: Option<Vec<u8>>,
    pub active: bool,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Columns of [`RecipientRow`].
const COLUMNS: &str = "recipient_id, tenant_id, kind, subject_id, name, email, phone, pager,
    addresses_managed, preferences, active, version, created_at, updated_at";

impl RecipientRow {
    /// The kind.
    pub fn kind(&self) -> RecipientKind {
        RecipientKind::try_from(i32::from(self.kind)).unwrap_or(RecipientKind::Custom)
    }

    /// Decoded preferences (defaults when none or unreadable).
    pub fn preferences(&self) -> Preferences {
        self.preferences
            .as_deref()
            .and_then(|b| Preferences::decode(b).ok())
            .unwrap_or_default()
    }

    /// The address for `channel`, if any.
    pub fn address(&self, channel: NotificationChannel) -> Option<&str> {
        let a = match channel {
            NotificationChannel::Email => &self.email,
            NotificationChannel::Sms => &self.phone,
            NotificationChannel::Pager => &self.pager,
            _ => return None,
        };
        Some(a.as_str()).filter(|a| !a.is_empty())
    }
}

/// Addresses per channel: email, phone, pager.
pub type Addresses = [String; 3];

/// The recipient `id` of one of `tenants`, locked.
pub async fn lock(
    conn: &mut PgConnection,
    tenants: &[&str],
    id: Uuid,
) -> Result<Option<RecipientRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM recipients WHERE recipient_id = $1 AND tenant_id = ANY($2) FOR UPDATE"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(tenants)
        .fetch_optional(conn)
        .await
}

/// The recipient `id` (known to exist in the caller's transaction).
pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<RecipientRow, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM recipients WHERE recipient_id = $1");
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_one(conn)
        .await
}

/// The tenant's recipient of `kind` for `subject_id`, locked.
pub async fn lock_by_subject(
    conn: &mut PgConnection,
    tenant: &str,
    kind: RecipientKind,
    subject_id: &str,
) -> Result<Option<RecipientRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM recipients WHERE tenant_id = $1 AND kind = $2 AND subject_id = $3 FOR UPDATE"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(kind as i16)
        .bind(subject_id)
        .fetch_optional(conn)
        .await
}

/// An admin's edit: name, addresses (managed from now on), preferences
/// when given; the recipient is active again.
pub async fn update_managed(
    conn: &mut PgConnection,
    id: Uuid,
    name: &str,
    addrs: &Addresses,
    prefs: Option<&[u8]>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE recipients SET name = $2, email = $3, phone = $4, pager = $5, addresses_managed = TRUE,
            preferences = COALESCE($6, preferences), active = TRUE, version = version + 1, updated_at = now()
          WHERE recipient_id = $1",
    )
    .bind(id)
    .bind(name)
    .bind(&addrs[0])
    .bind(&addrs[1])
    .bind(&addrs[2])
    .bind(prefs)
    .execute(conn)
    .await?;
    Ok(())
}

/// A recipient an admin creates (addresses managed).
#[allow(clippy::too_many_arguments)]
pub async fn insert_managed(
    conn: &mut PgConnection,
    id: Uuid,
    tenant: &str,
    kind: RecipientKind,
    subject_id: &str,
    name: &str,
    addrs: &Addresses,
    prefs: Option<&[u8]>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO recipients (recipient_id, tenant_id, kind, subject_id, name, email, phone, pager,
            addresses_managed, preferences) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, TRUE, $9)",
    )
    .bind(id)
    .bind(tenant)
    .bind(kind as i16)
    .bind(subject_id)
    .bind(name)
    .bind(&addrs[0])
    .bind(&addrs[1])
    .bind(&addrs[2])
    .bind(prefs)
    .execute(conn)
    .await?;
    Ok(())
}

/// Replaces the recipient's preferences.
pub async fn set_preferences(
    conn: &mut PgConnection,
    id: Uuid,
    prefs: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE recipients SET preferences = $2, version = version + 1, updated_at = now() WHERE recipient_id = $1",
    )
    .bind(id)
    .bind(prefs)
    .execute(conn)
    .await?;
    Ok(())
}

/// A page of the tenant's recipients after `after` (id order), filtered by
/// `kinds` (none: all) and `subject_id` ('' : any).
pub async fn list(
    conn: &mut PgConnection,
    tenant: &str,
    after: Uuid,
    kinds: &[i16],
    subject_id: &str,
    limit: i64,
) -> Result<Vec<RecipientRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM recipients
          WHERE tenant_id = $1 AND recipient_id > $2
            AND (cardinality($3::smallint[]) = 0 OR kind = ANY($3))
            AND ($4 = '' OR subject_id = $4)
          ORDER BY recipient_id LIMIT $5"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(after)
        .bind(kinds)
        .bind(subject_id)
        .bind(limit)
        .fetch_all(conn)
        .await
}

/// Creates or refreshes the CALLER recipient from a ticket's contact
/// (addresses an admin set are kept). Shown by the caller's id: the name
/// is free text that stays in intake.
pub async fn upsert_caller(
    conn: &mut PgConnection,
    tenant: &str,
    caller_id: &str,
    c: &CallerContact,
) -> Result<(), sqlx::Error> {
    // `WHERE kind <> 5` repeats the predicate of the partial unique index
    // recipients_subject (CUSTOM recipients have no subject).
    sqlx::query(
        "INSERT INTO recipients (recipient_id, tenant_id, kind, subject_id, name, email, phone)
         VALUES ($1, $2, $3, $4, $4, $5, $6)
         ON CONFLICT (tenant_id, kind, subject_id) WHERE kind <> 5 DO UPDATE
            SET name = EXCLUDED.name, email = EXCLUDED.email, phone = EXCLUDED.phone,
                version = recipients.version + 1, updated_at = now()
          WHERE NOT recipients.addresses_managed
            AND (recipients.name, recipients.email, recipients.phone) IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.email, EXCLUDED.phone)",
    )
    .bind(Uuid::now_v7())
    .bind(tenant)
    .bind(RecipientKind::Caller as i16)
    .bind(caller_id)
    .bind(&c.email)
    .bind(&c.phone)
    .execute(conn)
    .await?;
    Ok(())
}

/// Creates or refreshes an analyst's recipient of `kind` in `tenant` from
/// the directory (addresses an admin set are kept); active again.
pub async fn upsert_from_directory(
    conn: &mut PgConnection,
    tenant: &str,
    kind: RecipientKind,
    a: &AnalystInfo,
    name: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO recipients (recipient_id, tenant_id, kind, subject_id, name, email, phone, pager)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (tenant_id, kind, subject_id) WHERE kind <> 5 DO UPDATE
            SET name = EXCLUDED.name,
                email = CASE WHEN recipients.addresses_managed THEN recipients.email ELSE EXCLUDED.email END,
                phone = CASE WHEN recipients.addresses_managed THEN recipients.phone ELSE EXCLUDED.phone END,
                pager = CASE WHEN recipients.addresses_managed THEN recipients.pager ELSE EXCLUDED.pager END,
                active = TRUE, version = recipients.version + 1, updated_at = now()",
    )
    .bind(Uuid::now_v7())
    .bind(tenant)
    .bind(kind as i16)
    .bind(&a.analyst_id)
    .bind(name)
    .bind(&a.email)
    .bind(&a.phone)
    .bind(&a.pager)
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks the analyst's recipient of `kind` in `tenant` inactive (the
/// directory no longer says so).
pub async fn deactivate(
    conn: &mut PgConnection,
    tenant: &str,
    kind: RecipientKind,
    subject_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE recipients SET active = FALSE, version = version + 1, updated_at = now()
          WHERE tenant_id = $1 AND kind = $2 AND subject_id = $3 AND active",
    )
    .bind(tenant)
    .bind(kind as i16)
    .bind(subject_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Who an event may reach, in one query: the ticket's `caller`, the
/// `analyst` (the tenant's own ANALYST row before the vendor-wide one), and
/// with `broadcast` the tenant's supervisors, on-call and custom
/// recipients plus the vendor-wide supervisors and on-call. Active only,
/// in recipient order. The second value says whether `analyst` was found.
pub async fn audience(
    conn: &mut PgConnection,
    tenant: &str,
    caller: Option<&str>,
    analyst: Option<&str>,
    broadcast: bool,
) -> Result<(Vec<RecipientRow>, bool), sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM recipients
          WHERE active AND (
                (tenant_id = $1 AND kind = $5 AND subject_id = $2)
             OR (tenant_id IN ($1, '{VENDOR_TENANT}') AND kind = $6 AND subject_id = $3)
             OR ($4 AND tenant_id = $1 AND kind IN ($7, $8, $9))
             OR ($4 AND tenant_id = '{VENDOR_TENANT}' AND kind IN ($7, $8)))
          ORDER BY recipient_id"
    );
    let rows: Vec<RecipientRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(caller)
        .bind(analyst)
        .bind(broadcast)
        .bind(RecipientKind::Caller as i16)
        .bind(RecipientKind::Analyst as i16)
        .bind(RecipientKind::Supervisor as i16)
        .bind(RecipientKind::OnCall as i16)
        .bind(RecipientKind::Custom as i16)
        .fetch_all(conn)
        .await?;
    // One ANALYST row at most: the tenant's own, else the vendor-wide one.
    let is_analyst = |r: &RecipientRow| {
        r.kind() == RecipientKind::Analyst && Some(r.subject_id.as_str()) == analyst
    };
    let own = rows.iter().any(|r| is_analyst(r) && r.tenant_id == tenant);
    let mut found = false;
    let mut rows: Vec<RecipientRow> = rows
        .into_iter()
        .filter(|r| {
            if !is_analyst(r) {
                return true;
            }
            let keep = !found && (r.tenant_id == tenant || !own);
            found |= keep;
            keep
        })
        .collect();
    // The caller, then the analyst, then the broadcast (as recorded before
    // the lookups were one query), each group in recipient order.
    rows.sort_by_key(|r| match r.kind() {
        RecipientKind::Caller => 0,
        RecipientKind::Analyst => 1,
        _ => 2,
    });
    Ok((rows, found))
}
