//! PostgreSQL pool and migrations.
//!
//! Services connect with retries, because in a `docker compose up` or after
//! a hospital's database fail-over PostgreSQL may come up after the service.
//! Migrations run at start-up under sqlx's advisory lock, so replicas
//! starting together apply them once.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use secrecy::ExposeSecret;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};

use crate::config::DbConfig;

/// The kit's own tables (outbox, inbox, dead letters, idempotency keys).
pub static KIT_MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The history table of [`KIT_MIGRATOR`] (the service's is sqlx's default,
/// `_sqlx_migrations`).
pub const KIT_MIGRATIONS_TABLE: &str = "_wardline_kit_migrations";

/// Errors opening or migrating the database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database did not accept connections in time.
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(#[source] sqlx::Error),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A database URL that names no usable role.
    #[error("database URL: {0}")]
    Config(String),
    /// A start-up query (grants, checks) failed.
    #[error("database start-up query failed: {0}")]
    Query(#[source] sqlx::Error),
    /// Started without a migrate URL on a schema that is not current.
    #[error("the database schema is not current: {0}")]
    NotMigrated(String),
    /// The runtime role would bypass or could undo row-level security
    /// (refused in the production profile).
    #[error("the runtime database role is unsafe for row-level security: {0}")]
    UnsafeRole(String),
}

/// Opens a pool, retrying for up to about a minute.
pub async fn connect(cfg: &DbConfig) -> Result<PgPool, DbError> {
    connect_url(cfg.url.expose_secret(), cfg.max_connections).await
}

/// Opens a pool of at most `max` connections on `url`, retrying like
/// [`connect`].
pub async fn connect_url(url: &str, max: u32) -> Result<PgPool, DbError> {
    let opts: PgConnectOptions = url
        .parse()
        .map_err(|e: sqlx::Error| DbError::Config(e.to_string()))?;
    connect_options(opts, max).await
}

/// Opens a pool of at most `max` connections with `opts`, retrying like
/// [`connect`].
pub async fn connect_options(opts: PgConnectOptions, max: u32) -> Result<PgPool, DbError> {
    (|| {
        let opts = opts.clone();
        async move {
            PgPoolOptions::new()
                .max_connections(max)
                .min_connections(1)
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(opts)
                .await
        }
    })
    .retry(
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(5))
            .with_max_times(15)
            .with_jitter(),
    )
    .notify(|e, d| tracing::warn!(error = %e, retry_in = ?d, "PostgreSQL not reachable yet"))
    .await
    .map_err(DbError::Connect)
}

/// Whether a database error means "PostgreSQL is unreachable, restarting
/// or out of resources" (wait and retry the same work) rather than "this
/// work is wrong". The one definition the consumer loop (pause, spend no
/// delivery budget) and the gRPC edge (UNAVAILABLE) share: lost or refused
/// connections, pool exhaustion, protocol breaks, and the SQLSTATE classes
/// 08 (connection exception), 57P (operator intervention: admin or crash
/// shutdown, cannot connect now) and 53 (insufficient resources).
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db
            .code()
            .as_deref()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P") || c.starts_with("53")),
        _ => false,
    }
}

/// Applies the kit's migrations, then the service's. Each set keeps its own
/// history table, so their version numbers never collide.
pub async fn migrate(pool: &PgPool, service: &Migrator) -> Result<(), DbError> {
    let mut kit = Migrator::with_migrations(KIT_MIGRATOR.iter().cloned().collect());
    kit.dangerous_set_table_name(KIT_MIGRATIONS_TABLE);
    kit.run(pool).await?;
    service.run(pool).await?;
    Ok(())
}

/// The setting row-level security reads (`current_setting('wardline.tenant',
/// true)` in every tenant-scoped table's policy; docs/access-model.md). Set
/// per transaction only (`SET LOCAL`), so a pooled connection never carries
/// one request's tenant into the next.
pub const TENANT_SETTING: &str = "wardline.tenant";

/// The value of [`TENANT_SETTING`] that lets a transaction see every
/// tenant's rows. Never a slug, so no tenant can be named so.
pub const ALL_TENANTS: &str = "*";

/// Whose rows a transaction may see under row-level security.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// One tenant's rows: every request of a tenant-pinned caller and every
    /// event handler (the kit takes the tenant from the event's subject).
    Tenant(&'a str),
    /// Every tenant's rows: a `"*"` vendor caller's cross-tenant reads and
    /// the service's own machinery (outbox relay, timers, housekeeping).
    /// Each use says why in a comment.
    AllTenants,
}

impl<'a> Scope<'a> {
    /// The scope of a request acting for `tenant`: a slug is one tenant;
    /// [`ALL_TENANTS`] (a vendor's `"*"`) is every tenant.
    pub fn of(tenant: &'a str) -> Self {
        if tenant == ALL_TENANTS {
            Scope::AllTenants
        } else {
            Scope::Tenant(tenant)
        }
    }

    /// The setting's value, or an error for a tenant that is not a slug
    /// (callers validate tenants long before this; refusing here keeps the
    /// value safe to write into the `BEGIN` statement).
    fn value(self) -> Result<&'a str, sqlx::Error> {
        match self {
            Scope::AllTenants => Ok(ALL_TENANTS),
            Scope::Tenant(t) if crate::validate::is_slug(t, 1, 64) => Ok(t),
            Scope::Tenant(_) => Err(sqlx::Error::InvalidArgument(
                "tenant scope must be a slug".into(),
            )),
        }
    }
}

/// Begins a transaction that sees the rows of `scope` only: `BEGIN` and
/// `SET LOCAL wardline.tenant` in one round trip. Every transaction of a
/// service against tenant-scoped tables starts here (a plain `pool.begin()`
/// or a query on the pool itself sees no tenant-scoped row at all).
pub async fn begin(
    pool: &PgPool,
    scope: Scope<'_>,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let value = scope.value()?;
    pool.begin_with(sqlx::AssertSqlSafe(format!(
        "BEGIN; SET LOCAL {TENANT_SETTING} = '{value}'"
    )))
    .await
}

/// Sets the scope inside a transaction that is already open (for a
/// transaction begun elsewhere, e.g. by `sqlx::Acquire::begin` on a
/// connection). Later calls replace earlier ones.
pub async fn set_scope(conn: &mut sqlx::PgConnection, scope: Scope<'_>) -> Result<(), sqlx::Error> {
    let value = scope.value()?;
    sqlx::query("SELECT set_config($1, $2, true)")
        .bind(TENANT_SETTING)
        .bind(value)
        .execute(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vendor_star_is_every_tenant_and_only_slugs_are_tenants() {
        assert_eq!(Scope::of("*"), Scope::AllTenants);
        assert_eq!(Scope::of("st-olaf"), Scope::Tenant("st-olaf"));
        assert_eq!(Scope::AllTenants.value().unwrap(), "*");
        assert_eq!(Scope::Tenant("st-olaf").value().unwrap(), "st-olaf");
        for bad in ["", "x'; RESET ROLE; --", "Acme", "a b", "-a"] {
            assert!(Scope::Tenant(bad).value().is_err(), "{bad:?}");
        }
    }
}
