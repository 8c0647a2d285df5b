//! Migrate as the owner, serve as the runtime role, and the start-up check
//! of that role, against a real PostgreSQL.

use secrecy::SecretString;
use wardline_kit::config::DbConfig;
use wardline_kit::db::DbError;
use wardline_kit::roles;
use wardline_kit::tls::Profile;
use wardline_testkit::{RUNTIME_ROLE, TestDb};

fn config(url: String, migrate_url: Option<String>, profile: Profile) -> DbConfig {
    DbConfig {
        url: SecretString::from(url),
        migrate_url: migrate_url.map(SecretString::from),
        migrate_password: None,
        max_connections: 2,
        profile,
        prefix: "KITTEST".to_owned(),
    }
}

fn no_migrations() -> sqlx::migrate::Migrator {
    sqlx::migrate::Migrator::with_migrations(vec![])
}

#[tokio::test]
async fn the_owner_migrates_and_the_runtime_role_gets_dml_and_nothing_else() {
    let db = TestDb::create("kit_roles").await;
    let cfg = config(db.url(), Some(db.owner_url()), Profile::Production);
    let pool = roles::prepare(&cfg, &no_migrations())
        .await
        .expect("a proper runtime role starts in production");
    let user: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(user, RUNTIME_ROLE);
    assert!(
        roles::runtime_role_problems(&pool)
            .await
            .unwrap()
            .is_empty()
    );

    // DML on the kit's tables works...
    sqlx::query(
        "INSERT INTO audit_log (tenant_id, subject, roles, method) VALUES ('stmarys', 'a', '{}', 'm')",
    )
    .execute(&pool)
    .await
    .expect("the runtime role appends to the audit log");
    // ... but the audit log is append-only and DDL is the owner's.
    for sql in [
        "UPDATE audit_log SET subject = 'b'",
        "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only",
        "CREATE TABLE mine (x int)",
        "DROP TABLE outbox",
        "TRUNCATE inbox",
        "DELETE FROM _wardline_kit_migrations",
    ] {
        let e = sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&pool)
            .await
            .expect_err(sql);
        let code = e
            .as_database_error()
            .and_then(|d| d.code())
            .map(|c| c.to_string());
        assert_eq!(code.as_deref(), Some("42501"), "{sql}: {e}");
    }

    // A second start (another replica, a restart) migrates nothing and
    // grants again without error; without a migrate URL it checks the
    // schema is current and starts.
    roles::prepare(&cfg, &no_migrations()).await.unwrap();
    roles::prepare(
        &config(db.url(), None, Profile::Production),
        &no_migrations(),
    )
    .await
    .expect("a migrated schema serves without a migrate URL");
}

#[tokio::test]
async fn without_a_migrate_url_an_unmigrated_schema_is_refused_naming_the_variable() {
    let db = TestDb::create("kit_roles_unmigrated").await;
    let e = roles::prepare(
        &config(db.url(), None, Profile::Production),
        &no_migrations(),
    )
    .await
    .expect_err("nothing is migrated");
    assert!(matches!(e, DbError::NotMigrated(_)), "{e}");
    assert!(
        e.to_string().contains("KITTEST_MIGRATE_DATABASE_URL"),
        "{e}"
    );
}

#[tokio::test]
async fn a_superuser_or_owner_runtime_role_is_refused_in_production_and_warned_in_development() {
    let db = TestDb::create("kit_roles_unsafe").await;
    for (runtime, what) in [(db.superuser_url(), "superuser"), (db.owner_url(), "owns")] {
        let e = roles::prepare(
            &config(runtime.clone(), Some(db.owner_url()), Profile::Production),
            &no_migrations(),
        )
        .await
        .expect_err("production refuses");
        assert!(matches!(e, DbError::UnsafeRole(_)), "{e}");
        assert!(e.to_string().contains(what), "{e}");
        roles::prepare(
            &config(runtime, Some(db.owner_url()), Profile::Development),
            &no_migrations(),
        )
        .await
        .expect("development warns and starts");
    }
}
