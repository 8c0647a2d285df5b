//! The analyst directory as routing publishes it (`analyst.upserted`),
//! newest version wins. Global: an analyst may cover several tenants, so
//! the table has no tenant column (recipients derived from it do).

use sqlx::PgConnection;
use wardline_proto::events::AnalystInfo;

/// The stored version of `analyst_id`, locked for the caller's transaction.
pub async fn lock_version(
    conn: &mut PgConnection,
    analyst_id: &str,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT version FROM analysts WHERE analyst_id = $1 FOR UPDATE")
        .bind(analyst_id)
        .fetch_optional(conn)
        .await
}

/// Writes `a` at `version`.
pub async fn upsert(
    conn: &mut PgConnection,
    a: &AnalystInfo,
    version: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO analysts (analyst_id, version, supervisor, on_call, tenants) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (analyst_id) DO UPDATE SET version = EXCLUDED.version, supervisor = EXCLUDED.supervisor,
            on_call = EXCLUDED.on_call, tenants = EXCLUDED.tenants, updated_at = now()",
    )
    .bind(&a.analyst_id)
    .bind(version)
    .bind(a.supervisor)
    .bind(a.on_call)
    .bind(&a.tenants)
    .execute(conn)
    .await?;
    Ok(())
}

/// Whether the directory knows `analyst_id`.
pub async fn exists(conn: &mut PgConnection, analyst_id: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM analysts WHERE analyst_id = $1)")
        .bind(analyst_id)
        .fetch_one(conn)
        .await
}
