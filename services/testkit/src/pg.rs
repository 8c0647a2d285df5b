use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// The owner role of every test database: it owns the database (so the
/// `public` schema) and runs the migrations, like a deployment's owner.
pub const OWNER_ROLE: &str = "wardline_test_owner";
/// The runtime role services run as in tests: LOGIN, no superuser, no
/// BYPASSRLS, no CREATEDB/CREATEROLE, owns nothing; the services' start-up
/// grants it DML on the tables they migrate.
pub const RUNTIME_ROLE: &str = "wardline_test_runtime";
/// Both roles' password (the test server may use trust or password auth).
const ROLE_PASSWORD: &str = "wardline-test-role";

/// A database created for one test and dropped afterwards, owned by
/// [`OWNER_ROLE`].
///
/// Three URLs lead to it: [`TestDb::url`] (the runtime role, what services
/// serve as: row-level security applies), [`TestDb::owner_url`] (what
/// services migrate as) and [`TestDb::superuser_url`] (the role of
/// `WARDLINE_TEST_DATABASE_URL`, for a test's own set-up and assertions:
/// it bypasses row-level security). [`TestDb::env`] gives a service both
/// of its variables.
pub struct TestDb {
    name: String,
    admin_url: String,
}

fn admin_url() -> String {
    std::env::var("WARDLINE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Creates both test roles unless they exist. Roles are cluster-wide and
/// test processes run in parallel, so two may race: the loser's
/// duplicate_object (42710) or unique_violation (23505, pg_authid's index)
/// means the role is there.
async fn ensure_roles(conn: &mut PgConnection) {
    for (role, attrs) in [
        (
            OWNER_ROLE,
            "LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB",
        ),
        (
            RUNTIME_ROLE,
            "LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB",
        ),
    ] {
        let sql = format!(
            "DO $$ BEGIN
               IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
                 CREATE ROLE {role} {attrs} PASSWORD '{ROLE_PASSWORD}';
               END IF;
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
             END $$"
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("create test role {role}: {e}"));
    }
}

/// `url` with its user (and password) replaced by `role`'s.
fn as_role(url: &str, role: &str) -> String {
    let (scheme, rest) = url
        .split_once("://")
        .expect("WARDLINE_TEST_DATABASE_URL is a postgres:// URL");
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{role}:{ROLE_PASSWORD}@{host}")
}

impl TestDb {
    /// Creates `wl_<prefix>_<random>`.
    pub async fn create(prefix: &str) -> Self {
        Self::create_on(&admin_url(), prefix).await
    }

    /// Creates `wl_<prefix>_<random>` on the server of `admin_url` (a
    /// role that may create databases and roles), e.g. a
    /// [`crate::TestPgCluster`].
    pub async fn create_on(admin_url: &str, prefix: &str) -> Self {
        let admin_url = admin_url.to_owned();
        let name = format!("wl_{prefix}_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {admin_url} ({e})"));
        ensure_roles(&mut conn).await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {name} OWNER {OWNER_ROLE}"
        )))
        .execute(&mut conn)
        .await
        .expect("create test database");
        let _ = conn.close().await;
        Self { name, admin_url }
    }

    /// Name of the test database.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// URL of the test database as the superuser of
    /// `WARDLINE_TEST_DATABASE_URL` (bypasses row-level security).
    pub fn superuser_url(&self) -> String {
        match self.admin_url.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{}", self.name),
            None => panic!("WARDLINE_TEST_DATABASE_URL must end with /<database>"),
        }
    }

    /// URL of the test database as [`RUNTIME_ROLE`]: what services serve as.
    pub fn url(&self) -> String {
        as_role(&self.superuser_url(), RUNTIME_ROLE)
    }

    /// URL of the test database as [`OWNER_ROLE`]: what services migrate as.
    pub fn owner_url(&self) -> String {
        as_role(&self.superuser_url(), OWNER_ROLE)
    }

    /// A service's database variables: `<prefix>_DATABASE_URL` (runtime
    /// role) and `<prefix>_MIGRATE_DATABASE_URL` (owner role).
    pub fn env(&self, prefix: &str) -> Vec<(String, String)> {
        vec![
            (format!("{prefix}_DATABASE_URL"), self.url()),
            (format!("{prefix}_MIGRATE_DATABASE_URL"), self.owner_url()),
        ]
    }

    /// A new pool on the test database as the superuser, for a test's
    /// set-up and assertions on stored rows. It bypasses row-level
    /// security (sees every tenant); services never use it.
    pub async fn pool(&self) -> sqlx::PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&self.superuser_url())
            .await
            .expect("connect to test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (name, url) = (self.name.clone(), self.admin_url.clone());
        // Drop runs outside any runtime guarantee; use a private one.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let mut conn = PgConnection::connect(&url)
                    .await
                    .map_err(std::io::Error::other)?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await
                .map_err(std::io::Error::other)?;
                Ok::<_, std::io::Error>(())
            })
        })
        .join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_urls_replace_the_user() {
        assert_eq!(
            as_role("postgres://postgres@127.0.0.1:5432/wl_x", RUNTIME_ROLE),
            format!("postgres://{RUNTIME_ROLE}:{ROLE_PASSWORD}@127.0.0.1:5432/wl_x")
        );
        assert_eq!(
            as_role("postgres://a:b@h/db?sslmode=disable", OWNER_ROLE),
            format!("postgres://{OWNER_ROLE}:{ROLE_PASSWORD}@h/db?sslmode=disable")
        );
    }
}
