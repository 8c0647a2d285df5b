//! A tenant's webhook endpoints. Secrets are kept to sign with (they cannot
//! be hashed), sealed at rest; the previous one signs too until
//! `previous_expires_at`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// An endpoint as the API shows it (never its secrets).
#[derive(Debug, sqlx::FromRow)]
pub struct EndpointRow {
    pub endpoint_id: Uuid,
    pub tenant_id: String,
    pub url: String,
    pub event_kinds: Vec<i16>,
    pub secret_issued_at: DateTime<Utc>,
    pub previous_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "endpoint_id, tenant_id, url, event_kinds, secret_issued_at, previous_expires_at, created_at";

/// An endpoint's signing secrets, sealed, as the sender needs them.
#[derive(Debug, sqlx::FromRow)]
pub struct EndpointSecrets {
    pub endpoint_id: Uuid,
    pub secret_sealed: Option<Vec<u8>>,
    pub previous_sealed: Option<Vec<u8>>,
    pub previous_expires_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// A new endpoint with its sealed secret.
pub async fn insert(
    conn: &mut PgConnection,
    id: Uuid,
    tenant: &str,
    url: &str,
    kinds: &[i16],
    secret_sealed: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO webhook_endpoints (endpoint_id, tenant_id, url, event_kinds, secret_sealed, secret_issued_at)
         VALUES ($1, $2, $3, $4, $5, now())",
    )
    .bind(id)
    .bind(tenant)
    .bind(url)
    .bind(kinds)
    .bind(secret_sealed)
    .execute(conn)
    .await?;
    Ok(())
}

/// The tenant's live endpoint `id`, locked.
pub async fn lock(
    conn: &mut PgConnection,
    tenant: &str,
    id: Uuid,
) -> Result<Option<EndpointRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM webhook_endpoints WHERE endpoint_id = $1 AND tenant_id = $2 AND deleted_at IS NULL FOR UPDATE"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(tenant)
        .fetch_optional(conn)
        .await
}

/// The endpoint `id` (known to exist in the caller's transaction).
pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<EndpointRow, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM webhook_endpoints WHERE endpoint_id = $1");
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_one(conn)
        .await
}

/// A new current secret; the old one signs for `overlap_secs` more.
pub async fn rotate(
    conn: &mut PgConnection,
    id: Uuid,
    secret_sealed: &[u8],
    overlap_secs: f64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE webhook_endpoints SET previous_sealed = secret_sealed, previous_expires_at = now() + make_interval(secs => $3),
            secret_sealed = $2, secret_issued_at = now() WHERE endpoint_id = $1",
    )
    .bind(id)
    .bind(secret_sealed)
    .bind(overlap_secs)
    .execute(conn)
    .await?;
    Ok(())
}

/// A page of the tenant's live endpoints after `after` (ids are UUIDv7:
/// creation order).
pub async fn list(
    conn: &mut PgConnection,
    tenant: &str,
    after: Uuid,
    limit: i64,
) -> Result<Vec<EndpointRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 AND deleted_at IS NULL AND endpoint_id > $2
          ORDER BY endpoint_id LIMIT $3"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(after)
        .bind(limit)
        .fetch_all(conn)
        .await
}

/// Marks the endpoint deleted at `at`.
pub async fn delete(
    conn: &mut PgConnection,
    id: Uuid,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE webhook_endpoints SET deleted_at = $2 WHERE endpoint_id = $1")
        .bind(id)
        .bind(at)
        .execute(conn)
        .await?;
    Ok(())
}

/// A live endpoint: id, URL, the event kinds it subscribes to.
pub type Subscribed = (Uuid, String, Vec<i16>);

/// The tenant's live endpoints with the event kinds each subscribes to, in
/// creation order: read once per consumer batch.
pub async fn subscribed(
    conn: &mut PgConnection,
    tenant: &str,
) -> Result<Vec<Subscribed>, sqlx::Error> {
    sqlx::query_as(
        "SELECT endpoint_id, url, event_kinds FROM webhook_endpoints
          WHERE tenant_id = $1 AND deleted_at IS NULL ORDER BY created_at",
    )
    .bind(tenant)
    .fetch_all(conn)
    .await
}

/// The sealed secrets of `ids`, in one query (once per sender round).
pub async fn secrets_for_round(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, EndpointSecrets>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<EndpointSecrets> = sqlx::query_as(
        "SELECT endpoint_id, secret_sealed, previous_sealed, previous_expires_at, deleted_at
           FROM webhook_endpoints WHERE endpoint_id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.endpoint_id, r)).collect())
}

/// A row whose secrets are not sealed under the current key.
pub type Unsealed = (
    Uuid,
    Option<String>,
    Option<String>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
);

/// Endpoints whose secrets need sealing: clear secrets, and sealed ones
/// whose key id (byte 0 its length, then the id) is not `current_key`, so
/// a restart with nothing to do reads nothing.
pub async fn unsealed(
    conn: &mut PgConnection,
    current_key: &str,
) -> Result<Vec<Unsealed>, sqlx::Error> {
    sqlx::query_as(
        "SELECT endpoint_id, secret, previous_secret, secret_sealed, previous_sealed FROM webhook_endpoints
          WHERE secret IS NOT NULL OR previous_secret IS NOT NULL
             OR substring(secret_sealed from 2 for get_byte(secret_sealed, 0)) <> $1
             OR substring(previous_sealed from 2 for get_byte(previous_sealed, 0)) <> $1",
    )
    .bind(current_key.as_bytes())
    .fetch_all(conn)
    .await
}

/// Stores resealed secrets and clears the clear ones.
pub async fn store_sealed(
    conn: &mut PgConnection,
    id: Uuid,
    secret: Option<&[u8]>,
    previous: Option<&[u8]>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE webhook_endpoints SET secret_sealed = $2, previous_sealed = $3, secret = NULL, previous_secret = NULL
          WHERE endpoint_id = $1",
    )
    .bind(id)
    .bind(secret)
    .bind(previous)
    .execute(conn)
    .await?;
    Ok(())
}
