//! Row-level security from a test's side: a transaction in a scope, or in
//! none (what a forgotten `db::begin` would be), and the checks the
//! services' `tests/row_security.rs` make with it.

use sqlx::{PgPool, Postgres, Transaction};
use wardline_kit::db::{self, Scope};

/// A transaction scoped to `scope`; `None` sets no tenant at all.
pub async fn begin(pool: &PgPool, scope: Option<Scope<'_>>) -> Transaction<'static, Postgres> {
    match scope {
        Some(s) => db::begin(pool, s).await.expect("scoped transaction"),
        None => pool.begin().await.expect("transaction"),
    }
}

/// The SQLSTATE `sql` fails with in `scope` (`None`: it succeeded).
pub async fn refused(pool: &PgPool, scope: Option<Scope<'_>>, sql: &str) -> Option<String> {
    let mut tx = begin(pool, scope).await;
    let e = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut *tx)
        .await
        .err()?;
    e.as_database_error()?.code().map(|c| c.into_owned())
}

/// Asserts that each of `statements` (UPDATEs and DELETEs of another
/// tenant's rows) changes nothing in `scope`.
pub async fn changes_nothing(pool: &PgPool, scope: Option<Scope<'_>>, statements: &[&str]) {
    let mut tx = begin(pool, scope).await;
    for sql in statements {
        let done = sqlx::query(sqlx::AssertSqlSafe((*sql).to_owned()))
            .execute(&mut *tx)
            .await
            .unwrap_or_else(|e| panic!("{scope:?}: {sql}: {e}"));
        assert_eq!(done.rows_affected(), 0, "{scope:?}: {sql}");
    }
    tx.commit().await.expect("commit");
}
