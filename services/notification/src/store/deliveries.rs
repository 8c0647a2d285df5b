//! One message to one recipient (or endpoint) on one channel for one
//! event. `UNIQUE (source_event_id, target, channel)` is the
//! de-duplication rule: a redelivered or replayed event can never create a
//! second delivery.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::domain::{DeliveryState, EventKind, NotificationChannel};

/// A delivery as the API shows it.
#[derive(Debug, sqlx::FromRow)]
pub struct DeliveryRow {
    pub delivery_id: Uuid,
    pub tenant_id: String,
    pub source_event_id: Uuid,
    pub event_kind: i16,
    pub channel: i16,
    pub recipient_id: Option<Uuid>,
    pub endpoint_id: Option<Uuid>,
    pub address: String,
    pub ticket_id: Option<Uuid>,
    pub number: String,
    pub priority: i16,
    pub state: i16,
    pub outcome: i16,
    pub attempt_count: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "delivery_id, tenant_id, source_event_id, event_kind, channel, recipient_id, endpoint_id,
    address, ticket_id, number, priority, state, outcome, attempt_count, next_attempt_at, created_at, updated_at, finished_at";

/// ListDeliveries' filters (empty lists and `None`: no filter).
#[derive(Debug, Default)]
pub struct Filter {
    pub kinds: Vec<i16>,
    pub channels: Vec<i16>,
    pub states: Vec<i16>,
    pub outcomes: Vec<i16>,
    pub recipient_id: Option<Uuid>,
    pub endpoint_id: Option<Uuid>,
    pub ticket_id: Option<Uuid>,
    pub source_event_id: Option<Uuid>,
    pub created_from: Option<DateTime<Utc>>,
    pub created_to: Option<DateTime<Utc>>,
    /// Newest-first cursor: (created_at, delivery_id) of the last row seen.
    pub after: Option<(DateTime<Utc>, Uuid)>,
}

/// A page of the tenant's deliveries, newest first.
pub async fn list(
    conn: &mut PgConnection,
    tenant: &str,
    f: &Filter,
    limit: i64,
) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
        "SELECT {COLUMNS} FROM deliveries WHERE tenant_id = "
    ));
    q.push_bind(tenant);
    for (col, list) in [
        ("event_kind", &f.kinds),
        ("channel", &f.channels),
        ("state", &f.states),
        ("outcome", &f.outcomes),
    ] {
        if !list.is_empty() {
            q.push(format!(" AND {col} = ANY("))
                .push_bind(list.clone())
                .push(")");
        }
    }
    for (col, v) in [
        ("recipient_id", f.recipient_id),
        ("endpoint_id", f.endpoint_id),
        ("ticket_id", f.ticket_id),
        ("source_event_id", f.source_event_id),
    ] {
        if let Some(v) = v {
            q.push(format!(" AND {col} = ")).push_bind(v);
        }
    }
    if let Some(from) = f.created_from {
        q.push(" AND created_at >= ").push_bind(from);
    }
    if let Some(to) = f.created_to {
        q.push(" AND created_at < ").push_bind(to);
    }
    if let Some((at, id)) = f.after {
        q.push(" AND (created_at, delivery_id) < (")
            .push_bind(at)
            .push(", ")
            .push_bind(id)
            .push(")");
    }
    q.push(" ORDER BY created_at DESC, delivery_id DESC LIMIT ")
        .push_bind(limit);
    q.build_query_as().fetch_all(conn).await
}

/// A page of the tenant's dead-lettered deliveries, newest first.
pub async fn dead_letters(
    conn: &mut PgConnection,
    tenant: &str,
    channels: &[i16],
    (from, to): (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
        "SELECT {COLUMNS} FROM deliveries WHERE outcome = 3 AND tenant_id = "
    ));
    q.push_bind(tenant);
    if !channels.is_empty() {
        q.push(" AND channel = ANY(").push_bind(channels).push(")");
    }
    if let Some(f) = from {
        q.push(" AND finished_at >= ").push_bind(f);
    }
    if let Some(t) = to {
        q.push(" AND finished_at < ").push_bind(t);
    }
    if let Some((at, id)) = after {
        q.push(" AND (finished_at, delivery_id) < (")
            .push_bind(at)
            .push(", ")
            .push_bind(id)
            .push(")");
    }
    q.push(" ORDER BY finished_at DESC, delivery_id DESC LIMIT ")
        .push_bind(limit);
    q.build_query_as().fetch_all(conn).await
}

/// The tenant's delivery `id`, locked if `lock`.
pub async fn one(
    conn: &mut PgConnection,
    tenant: &str,
    id: Uuid,
    lock: bool,
) -> Result<Option<DeliveryRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM deliveries WHERE delivery_id = $1 AND tenant_id = $2{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(tenant)
        .fetch_optional(conn)
        .await
}

/// A fresh retry schedule for a finished delivery: pending now, counting
/// attempts from the current one.
pub async fn restart(conn: &mut PgConnection, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE deliveries SET state = $2, outcome = 0, attempts_base = attempt_count, next_attempt_at = now(),
            finished_at = NULL, updated_at = now() WHERE delivery_id = $1",
    )
    .bind(id)
    .bind(DeliveryState::Pending as i16)
    .execute(conn)
    .await?;
    Ok(())
}

/// A delivery the consumer records.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub tenant_id: String,
    pub source_event_id: Uuid,
    pub event_kind: EventKind,
    pub channel: NotificationChannel,
    pub recipient_id: Option<Uuid>,
    pub endpoint_id: Option<Uuid>,
    /// recipient_id or endpoint_id as text: the de-duplication target.
    pub target: String,
    pub address: String,
    pub ticket_id: Option<Uuid>,
    pub number: String,
    pub priority: i16,
    /// Template variables (ids, number, codes, links only).
    pub vars: serde_json::Value,
    pub state: DeliveryState,
    pub next_attempt_at: DateTime<Utc>,
    /// Trace context of the event that caused it.
    pub traceparent: Option<String>,
}

/// Records `rows` in one statement; those already recorded (the same
/// event, target and channel) are skipped. Returns the channels of the
/// rows inserted.
pub async fn insert_many(
    conn: &mut PgConnection,
    rows: &[NewDelivery],
) -> Result<Vec<i16>, sqlx::Error> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let col = |f: fn(&NewDelivery) -> i16| rows.iter().map(f).collect::<Vec<i16>>();
    let ids: Vec<Uuid> = rows.iter().map(|_| Uuid::now_v7()).collect();
    let tenants: Vec<&str> = rows.iter().map(|r| r.tenant_id.as_str()).collect();
    let events: Vec<Uuid> = rows.iter().map(|r| r.source_event_id).collect();
    let recipients: Vec<Option<Uuid>> = rows.iter().map(|r| r.recipient_id).collect();
    let endpoints: Vec<Option<Uuid>> = rows.iter().map(|r| r.endpoint_id).collect();
    let targets: Vec<&str> = rows.iter().map(|r| r.target.as_str()).collect();
    let addresses: Vec<&str> = rows.iter().map(|r| r.address.as_str()).collect();
    let tickets: Vec<Option<Uuid>> = rows.iter().map(|r| r.ticket_id).collect();
    let numbers: Vec<&str> = rows.iter().map(|r| r.number.as_str()).collect();
    let vars: Vec<&serde_json::Value> = rows.iter().map(|r| &r.vars).collect();
    let due: Vec<DateTime<Utc>> = rows.iter().map(|r| r.next_attempt_at).collect();
    let parents: Vec<Option<&str>> = rows.iter().map(|r| r.traceparent.as_deref()).collect();
    sqlx::query_scalar(
        "INSERT INTO deliveries (delivery_id, tenant_id, source_event_id, event_kind, channel, recipient_id,
            endpoint_id, target, address, ticket_id, number, priority, vars, state, next_attempt_at, traceparent)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::int2[], $5::int2[], $6::uuid[],
            $7::uuid[], $8::text[], $9::text[], $10::uuid[], $11::text[], $12::int2[], $13::jsonb[],
            $14::int2[], $15::timestamptz[], $16::text[])
         ON CONFLICT (source_event_id, target, channel) DO NOTHING
         RETURNING channel",
    )
    .bind(&ids)
    .bind(&tenants)
    .bind(&events)
    .bind(col(|r| r.event_kind as i16))
    .bind(col(|r| r.channel as i16))
    .bind(&recipients)
    .bind(&endpoints)
    .bind(&targets)
    .bind(&addresses)
    .bind(&tickets)
    .bind(&numbers)
    .bind(col(|r| r.priority))
    .bind(&vars)
    .bind(col(|r| r.state as i16))
    .bind(&due)
    .bind(&parents)
    .fetch_all(conn)
    .await
}

/// A delivery the sender claimed: its attempt row exists, nothing is sent yet.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub delivery_id: Uuid,
    pub tenant_id: String,
    pub source_event_id: Uuid,
    pub event_kind: i16,
    pub channel: i16,
    pub recipient_id: Option<Uuid>,
    pub endpoint_id: Option<Uuid>,
    pub address: String,
    pub number: String,
    pub vars: serde_json::Value,
    pub attempt_count: i32,
    pub attempts_base: i32,
    pub traceparent: Option<String>,
}

impl Claimed {
    /// The event kind.
    pub fn kind(&self) -> EventKind {
        EventKind::try_from(i32::from(self.event_kind)).unwrap_or(EventKind::Unspecified)
    }

    /// The channel.
    pub fn channel(&self) -> NotificationChannel {
        NotificationChannel::try_from(i32::from(self.channel))
            .unwrap_or(NotificationChannel::Unspecified)
    }
}

const CLAIM_COLUMNS: &str =
    "delivery_id, tenant_id, source_event_id, event_kind, channel, recipient_id, endpoint_id,
    address, number, vars, attempt_count, attempts_base, traceparent";

/// Up to `limit` due deliveries of any tenant, locked (`SKIP LOCKED`:
/// replicas never take the same row), first attempts before retries: a
/// backlog retrying against a dead endpoint never delays a fresh one.
pub async fn lock_due(conn: &mut PgConnection, limit: i64) -> Result<Vec<Claimed>, sqlx::Error> {
    let sql = format!(
        "SELECT {CLAIM_COLUMNS} FROM deliveries
          WHERE state <> 4 AND sending_since IS NULL AND next_attempt_at <= now()
          ORDER BY attempt_count, next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(limit)
        .fetch_all(conn)
        .await
}

/// Up to `limit` deliveries whose claim is older than `lease_secs` (their
/// sender died), locked.
pub async fn lock_expired_claims(
    conn: &mut PgConnection,
    lease_secs: f64,
    limit: i64,
) -> Result<Vec<Claimed>, sqlx::Error> {
    let sql = format!(
        "SELECT {CLAIM_COLUMNS} FROM deliveries
          WHERE sending_since IS NOT NULL AND sending_since < now() - make_interval(secs => $1)
          ORDER BY sending_since LIMIT $2 FOR UPDATE SKIP LOCKED"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(lease_secs)
        .bind(limit)
        .fetch_all(conn)
        .await
}

/// Pushes `ids` back by `waits` seconds each (the tenant's rate limit), in
/// one statement.
pub async fn defer(
    conn: &mut PgConnection,
    ids: &[Uuid],
    waits: &[f64],
) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE deliveries d SET next_attempt_at = now() + make_interval(secs => w.secs)
           FROM UNNEST($1::uuid[], $2::float8[]) AS w(id, secs) WHERE d.delivery_id = w.id",
    )
    .bind(ids)
    .bind(waits)
    .execute(conn)
    .await?;
    Ok(())
}

/// The endpoint's deliveries not finished and not in flight, locked:
/// what deleting the endpoint cancels.
pub async fn lock_pending_for_endpoint(
    conn: &mut PgConnection,
    endpoint: Uuid,
) -> Result<Vec<Claimed>, sqlx::Error> {
    let sql = format!(
        "SELECT {CLAIM_COLUMNS} FROM deliveries
          WHERE endpoint_id = $1 AND state <> 4 AND sending_since IS NULL FOR UPDATE"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(endpoint)
        .fetch_all(conn)
        .await
}
