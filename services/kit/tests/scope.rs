//! `db::begin` scopes a transaction to one tenant (or all) in its `BEGIN`,
//! and the setting never outlives the transaction on a pooled connection.

use sqlx::postgres::PgPoolOptions;
use wardline_kit::db::{self, Scope};

fn database_url() -> String {
    std::env::var("WARDLINE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

async fn setting(conn: &mut sqlx::PgConnection) -> Option<String> {
    sqlx::query_scalar("SELECT NULLIF(current_setting('wardline.tenant', true), '')")
        .fetch_one(conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_scope_lives_exactly_as_long_as_its_transaction() {
    // One connection, so every transaction below reuses it.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&database_url())
        .await
        .expect("PostgreSQL");

    let mut tx = db::begin(&pool, Scope::Tenant("st-olaf")).await.unwrap();
    assert_eq!(setting(&mut tx).await.as_deref(), Some("st-olaf"));
    db::set_scope(&mut tx, Scope::AllTenants).await.unwrap();
    assert_eq!(setting(&mut tx).await.as_deref(), Some("*"));
    tx.commit().await.unwrap();

    let mut conn = pool.acquire().await.unwrap();
    assert_eq!(setting(&mut conn).await, None, "committed scope leaked");
    drop(conn);

    let mut tx = db::begin(&pool, Scope::AllTenants).await.unwrap();
    assert_eq!(setting(&mut tx).await.as_deref(), Some("*"));
    tx.rollback().await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    assert_eq!(setting(&mut conn).await, None, "rolled-back scope leaked");
    drop(conn);

    let bad = db::begin(&pool, Scope::Tenant("x'; RESET ROLE; --")).await;
    assert!(matches!(bad, Err(sqlx::Error::InvalidArgument(_))));
}
