//! Row-level security, proven on the four services' real migrated
//! databases (docs/access-model.md, "Row-level security"):
//!
//! - every table with a `tenant_id` column has RLS enabled and FORCEd and
//!   the kit's policy, so a new table without it fails here;
//! - as the runtime role the services serve as, a transaction that set no
//!   tenant sees none of the rows a table has, one scoped to tenant A sees
//!   A's rows only and cannot write B's, and `*` sees all;
//! - the runtime role cannot ALTER, CREATE, DROP or TRUNCATE, nor undo the
//!   policy; the start-up check accepts it and refuses a superuser in
//!   production.

use sqlx::PgPool;
use sqlx::migrate::Migrator;
use wardline_kit::db::{self, DbError, Scope};
use wardline_kit::roles;
use wardline_kit::tls::Profile;
use wardline_testkit::TestDb;

/// The kit's tenant-scoped tables, in every service's database.
const KIT_TABLES: &[&str] = &["idempotency_keys", "audit_log", "dead_letters"];

fn services() -> [(&'static str, &'static Migrator); 4] {
    [
        ("intake", &wardline_intake::MIGRATOR),
        ("routing", &wardline_routing::MIGRATOR),
        ("billing", &wardline_billing::MIGRATOR),
        ("notification", &wardline_notification::MIGRATOR),
    ]
}

/// A service's database migrated exactly as start-up does it: as the
/// owner, then grants to the runtime role; returns the runtime pool.
async fn migrated(service: &str, migrator: &Migrator) -> (TestDb, PgPool) {
    let db = TestDb::create(&format!("rls_{service}")).await;
    let pool = db.runtime_pool(migrator).await;
    (db, pool)
}

fn sqlstate(e: &sqlx::Error) -> Option<String> {
    e.as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.into_owned())
}

#[tokio::test]
async fn every_tenant_scoped_table_of_every_service_forces_the_tenant_policy() {
    let mut unprotected = Vec::new();
    for (service, migrator) in services() {
        let (db, _runtime) = migrated(service, migrator).await;
        let admin = db.pool().await;
        let tables: Vec<(String, bool, bool, i64)> = sqlx::query_as(
            "SELECT c.relname::text, c.relrowsecurity, c.relforcerowsecurity,
                    (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid
                        AND pg_get_expr(p.polqual, p.polrelid) LIKE '%wardline.tenant%')
               FROM information_schema.columns col
               JOIN pg_class c ON c.relname = col.table_name
               JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = col.table_schema
              WHERE col.table_schema = 'public' AND col.column_name = 'tenant_id'
                AND c.relkind IN ('r', 'p')
              ORDER BY 1",
        )
        .fetch_all(&admin)
        .await
        .unwrap();
        for kit in KIT_TABLES {
            assert!(
                tables.iter().any(|t| t.0 == *kit),
                "{service}: kit table {kit} has a tenant_id"
            );
        }
        for (table, enabled, forced, policies) in tables {
            let ok = enabled && forced && policies > 0;
            if !ok {
                unprotected.push(format!(
                    "{service}.{table} (enabled {enabled}, forced {forced}, tenant policies {policies})"
                ));
            }
        }
    }
    assert!(
        unprotected.is_empty(),
        "tables with a tenant_id but without the forced tenant policy \
         (call wardline_protect('<table>') in a migration): {unprotected:#?}"
    );
}

/// Counts `table`'s rows as the runtime role: (unscoped, alpha, everyone).
async fn visible(runtime: &PgPool, table: &str) -> (i64, Vec<String>, i64) {
    let count = format!("SELECT count(*) FROM {table}");
    let unscoped: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(count.clone()))
        .fetch_one(runtime)
        .await
        .unwrap();
    let mut tx = db::begin(runtime, Scope::Tenant("alpha")).await.unwrap();
    let alpha: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT tenant_id FROM {table}"
    )))
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let mut tx = db::begin(runtime, Scope::AllTenants).await.unwrap();
    let all: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(count))
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    (unscoped, alpha, all)
}

#[tokio::test]
async fn the_runtime_role_sees_nothing_unscoped_and_only_its_tenant_when_scoped() {
    for (service, migrator) in services() {
        let (db, runtime) = migrated(service, migrator).await;
        let admin = db.pool().await;
        // Rows of two tenants (one of alpha's, two of bravo's), written as
        // the superuser, past row-level security.
        let mut cases = vec![(
            "audit_log",
            "INSERT INTO audit_log (tenant_id, subject, roles, method)
             VALUES ('alpha', 'ops', '{}', 'Get'), ('bravo', 'ops', '{}', 'Get'),
                    ('bravo', 'ops', '{}', 'List')",
        )];
        if service == "intake" {
            cases.push((
                "tenants",
                "INSERT INTO tenants (tenant_id, name, time_zone, ticket_prefix, reopen_window_hours)
                 VALUES ('alpha', 'Alpha', 'UTC', 'ALP', 72), ('bravo', 'Bravo', 'UTC', 'BRV', 72),
                        ('charlie', 'Charlie', 'UTC', 'CHA', 72)",
            ));
        }
        for (table, insert) in cases {
            sqlx::raw_sql(sqlx::AssertSqlSafe(insert))
                .execute(&admin)
                .await
                .unwrap_or_else(|e| panic!("seed {table}: {e}"));
            let (unscoped, alpha, all) = visible(&runtime, table).await;
            assert_eq!(
                unscoped, 0,
                "{service}.{table}: a transaction without a tenant sees nothing"
            );
            assert_eq!(
                alpha,
                vec!["alpha".to_owned()],
                "{service}.{table}: alpha sees its own row only"
            );
            assert_eq!(all, 3, "{service}.{table}: '*' sees every tenant");
        }

        // Writing another tenant's row from alpha's scope is refused.
        let mut tx = db::begin(&runtime, Scope::Tenant("alpha")).await.unwrap();
        let e = sqlx::query(
            "INSERT INTO audit_log (tenant_id, subject, roles, method) VALUES ('bravo', 'x', '{}', 'm')",
        )
        .execute(&mut *tx)
        .await
        .expect_err("alpha cannot write bravo's rows");
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{service}: {e}");
        drop(tx);
        // Nor can an unscoped statement change or remove what it cannot see.
        let n = sqlx::query("DELETE FROM dead_letters")
            .execute(&runtime)
            .await
            .unwrap()
            .rows_affected();
        assert_eq!(n, 0, "{service}");
    }
}

#[tokio::test]
async fn the_runtime_role_has_no_ddl_and_cannot_undo_the_policy() {
    for (service, migrator) in services() {
        let (db, runtime) = migrated(service, migrator).await;
        assert_eq!(
            roles::runtime_role_problems(&runtime).await.unwrap(),
            Vec::<String>::new(),
            "{service}: the runtime role passes the start-up check"
        );
        for sql in [
            "ALTER TABLE audit_log NO FORCE ROW LEVEL SECURITY",
            "ALTER TABLE audit_log DISABLE ROW LEVEL SECURITY",
            "ALTER TABLE idempotency_keys ADD COLUMN x int",
            "DROP POLICY tenant_rows ON audit_log",
            "CREATE TABLE sneaky (x int)",
            "DROP TABLE dead_letters",
            "TRUNCATE idempotency_keys",
            "UPDATE audit_log SET subject = 'someone else'",
            "SET ROLE wardline_test_owner",
        ] {
            let e = sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&runtime)
                .await
                .expect_err(sql);
            // 42501 insufficient_privilege; "must be owner" is 42501 too.
            assert_eq!(
                sqlstate(&e).as_deref(),
                Some("42501"),
                "{service}: {sql}: {e}"
            );
        }
        // The superuser connection the tests use for set-up is exactly what
        // production refuses to serve as.
        let superuser = db.pool().await;
        let refused = roles::check_runtime_role(&superuser, Profile::Production)
            .await
            .expect_err("a superuser runtime role is refused in production");
        assert!(
            matches!(refused, DbError::UnsafeRole(ref m) if m.contains("superuser")),
            "{refused}"
        );
        roles::check_runtime_role(&superuser, Profile::Development)
            .await
            .expect("development only warns");
    }
}
