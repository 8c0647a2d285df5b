use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// A database created for one test and dropped afterwards.
pub struct TestDb {
    name: String,
    admin_url: String,
}

fn admin_url() -> String {
    std::env::var("WARDLINE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

impl TestDb {
    /// Creates `wl_<prefix>_<random>`.
    pub async fn create(prefix: &str) -> Self {
        Self::create_on(&admin_url(), prefix).await
    }

    /// Creates `wl_<prefix>_<random>` on the server of `admin_url` (a
    /// role that may create databases), e.g. a [`crate::TestPgCluster`].
    pub async fn create_on(admin_url: &str, prefix: &str) -> Self {
        let admin_url = admin_url.to_owned();
        let name = format!("wl_{prefix}_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {admin_url} ({e})"));
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let _ = conn.close().await;
        Self { name, admin_url }
    }

    /// URL of the test database.
    pub fn url(&self) -> String {
        match self.admin_url.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{}", self.name),
            None => panic!("WARDLINE_TEST_DATABASE_URL must end with /<database>"),
        }
    }

    /// A new pool on the test database (for assertions on stored rows).
    pub async fn pool(&self) -> sqlx::PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&self.url())
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
