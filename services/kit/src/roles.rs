//! The two database roles of a service, and what start-up checks of them.
//!
//! Row-level security only holds against a role that is not the tables'
//! owner (or FORCE is undone with one `ALTER TABLE`), not a superuser and
//! not `BYPASSRLS`. So every deployment has two roles per service:
//!
//! - the **owner** (`<PREFIX>_MIGRATE_DATABASE_URL`) owns the database and
//!   its tables and is the only role that runs DDL: [`prepare`] migrates
//!   with a short-lived owner pool (under sqlx's advisory lock, so replicas
//!   starting together migrate once) and then grants the runtime role its
//!   privileges ([`grant_runtime`]);
//! - the **runtime** role (`<PREFIX>_DATABASE_URL`) is what the service
//!   serves as: DML on the tables, the sequences, nothing else. The
//!   migration history tables are read-only to it, and `audit_log` gets no
//!   UPDATE (its trigger also refuses deleting a record under a year old).
//!
//! Without a migrate URL the service does not migrate: it checks that every
//! migration it was built with has been applied and refuses to start
//! otherwise, so production can migrate in a separate job before a rollout.
//!
//! [`check_runtime_role`] then looks at the role the pool serves as: a
//! superuser, a `BYPASSRLS` role, an owner of any table or a role that may
//! create objects in the schema would make the policies advisory, so the
//! production profile refuses to start with one; development warns.

use std::collections::HashSet;

use secrecy::ExposeSecret;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgConnectOptions;

use crate::config::DbConfig;
use crate::db::{DbError, KIT_MIGRATIONS_TABLE, KIT_MIGRATOR};

/// Opens the runtime pool of a service, migrating first as the owner when
/// `cfg.migrate_url` is set and checking the schema version otherwise, then
/// checks the runtime role ([`check_runtime_role`]).
pub async fn prepare(cfg: &DbConfig, service: &Migrator) -> Result<PgPool, DbError> {
    let runtime_user = user_of(cfg.url.expose_secret())?;
    if let Some(owner_url) = &cfg.migrate_url {
        let mut opts: PgConnectOptions = owner_url
            .expose_secret()
            .parse()
            .map_err(|e: sqlx::Error| DbError::Config(e.to_string()))?;
        if let Some(password) = &cfg.migrate_password
            && !has_password(owner_url.expose_secret())
        {
            opts = opts.password(password.expose_secret());
        }
        let owner = crate::db::connect_options(opts, 2).await?;
        let migrated = async {
            crate::db::migrate(&owner, service).await?;
            let owner_user: String = sqlx::query_scalar("SELECT current_user::text")
                .fetch_one(&owner)
                .await
                .map_err(DbError::Query)?;
            if owner_user == runtime_user {
                tracing::warn!(
                    role = %runtime_user,
                    "the migrate and runtime URLs name the same role: nothing to grant"
                );
                return Ok(());
            }
            grant_runtime(&owner, &runtime_user).await
        }
        .await;
        owner.close().await;
        migrated?;
    }
    let pool = crate::db::connect(cfg).await?;
    if cfg.migrate_url.is_none() {
        check_current(&pool, service).await.map_err(|e| match e {
            DbError::NotMigrated(m) => DbError::NotMigrated(format!(
                "{m}; set {}_MIGRATE_DATABASE_URL (the owner role) or run the migrations first",
                cfg.prefix
            )),
            e => e,
        })?;
    }
    check_runtime_role(&pool, cfg.profile).await?;
    Ok(pool)
}

/// The user name in a PostgreSQL URL (the runtime role).
fn user_of(url: &str) -> Result<String, DbError> {
    let opts: PgConnectOptions = url
        .parse()
        .map_err(|e: sqlx::Error| DbError::Config(e.to_string()))?;
    Ok(opts.get_username().to_owned())
}

/// Whether a PostgreSQL URL carries a password (`user:password@host`).
fn has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// `name` as a quoted SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Grants `runtime` what a service needs and nothing more: DML on every
/// table of schema `public`, the sequences (nextval/setval), read-only
/// migration history (for the version check of a service started without
/// a migrate URL), and no UPDATE on `audit_log`. Run as the owner after
/// migrating; idempotent, so every start-up re-applies it (a table added by
/// a migration gets its grant on the next start).
pub async fn grant_runtime(owner: &PgPool, runtime: &str) -> Result<(), DbError> {
    let r = ident(runtime);
    let sql = format!(
        "GRANT USAGE ON SCHEMA public TO {r};
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {r};
         GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {r};
         REVOKE INSERT, UPDATE, DELETE ON _sqlx_migrations, {KIT_MIGRATIONS_TABLE} FROM {r};
         REVOKE UPDATE ON audit_log FROM {r};"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(owner)
        .await
        .map_err(DbError::Query)?;
    Ok(())
}

/// Refuses to serve on a schema that lacks a migration this build knows
/// (kit's or the service's): the service was started without a migrate URL
/// before the migration job ran.
pub async fn check_current(pool: &PgPool, service: &Migrator) -> Result<(), DbError> {
    for (table, migrator) in [
        (KIT_MIGRATIONS_TABLE, &KIT_MIGRATOR),
        ("_sqlx_migrations", service),
    ] {
        let applied: HashSet<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT version FROM {table} WHERE success"
        )))
        .fetch_all(pool)
        .await
        .map_or_else(|_| HashSet::new(), |v| v.into_iter().collect());
        if let Some(missing) = migrator.iter().find(|m| !applied.contains(&m.version)) {
            return Err(DbError::NotMigrated(format!(
                "migration {} ({}) is not applied",
                missing.version, missing.description
            )));
        }
    }
    Ok(())
}

/// What is wrong with the role a pool serves as, for row-level security.
/// Empty when it is a proper runtime role.
pub async fn runtime_role_problems(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    let (user, superuser, bypass, owns, create): (String, bool, bool, i64, bool) = sqlx::query_as(
        "SELECT r.rolname::text, r.rolsuper, r.rolbypassrls,
                (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.relowner = r.oid AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                    AND n.nspname NOT LIKE 'pg_toast%'),
                has_schema_privilege('public', 'CREATE')
           FROM pg_roles r WHERE r.rolname = current_user",
    )
    .fetch_one(pool)
    .await?;
    let mut problems = Vec::new();
    if superuser {
        problems.push(format!("role {user} is a superuser"));
    }
    if bypass {
        problems.push(format!("role {user} has BYPASSRLS"));
    }
    if owns > 0 {
        problems.push(format!("role {user} owns {owns} tables or other relations"));
    }
    if create {
        problems.push(format!("role {user} may create objects in schema public"));
    }
    Ok(problems)
}

/// Checks the runtime role (see the module doc): the production profile
/// refuses a role that would bypass or could undo row-level security,
/// development warns.
pub async fn check_runtime_role(
    pool: &PgPool,
    profile: crate::tls::Profile,
) -> Result<(), DbError> {
    let problems = runtime_role_problems(pool).await.map_err(DbError::Query)?;
    if problems.is_empty() {
        return Ok(());
    }
    let text = problems.join("; ");
    if profile.is_production() {
        return Err(DbError::UnsafeRole(text));
    }
    tracing::warn!(
        problems = %text,
        "the database role bypasses row-level security (allowed with WARDLINE_ENV=development)"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(ident("intake"), "\"intake\"");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn passwords_in_urls_are_seen() {
        assert!(has_password("postgres://a:b@h/db"));
        assert!(!has_password("postgres://a@h/db"));
        assert!(!has_password("postgres://h/db?user=a"));
    }

    #[test]
    fn the_runtime_user_comes_from_the_url() {
        assert_eq!(
            user_of("postgres://intake_app:pw@db:5432/intake").unwrap(),
            "intake_app"
        );
    }
}
