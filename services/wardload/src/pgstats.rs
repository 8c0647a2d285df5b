//! What the run cost PostgreSQL, per database: commits from
//! `pg_stat_database.xact_commit` and statements from `pg_stat_statements`
//! (summed `calls`), both as the difference between a sample before the
//! measured part and one after the drain, divided by the tickets created.
//!
//! `pg_stat_statements` needs the server started with it in
//! `shared_preload_libraries`; when it is, the extension is created in the
//! database of `--pg-url` (it sees every database's statements from
//! there). When it is not, statements are reported as not measured, with
//! how to enable them: the server is never reconfigured from here.
//! PostgreSQL publishes a backend's counts at most once a second, so the
//! second sample waits a little over that.

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::Connection as _;
use sqlx::PgConnection;

/// How to enable statement counts, for the report.
pub const HOW_TO_ENABLE: &str = "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'; then restart PostgreSQL (wardline-load creates the extension itself)";

/// Counters of every database at one instant.
#[derive(Debug, Clone)]
pub struct Sample {
    /// `xact_commit` per database.
    pub commits: BTreeMap<String, i64>,
    /// Statements executed per database; `Err(why)` when not countable.
    pub statements: Result<BTreeMap<String, i64>, String>,
}

/// One database's share of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct DbCost {
    /// Database name.
    pub name: String,
    /// Commits during the run.
    pub commits: i64,
    /// Statements during the run, when countable.
    pub statements: Option<i64>,
}

/// The run's cost per database (those that committed anything).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Cost {
    /// Databases in name order.
    pub databases: Vec<DbCost>,
    /// Why statements are not counted, when they are not.
    pub statements_off: Option<String>,
}

impl Cost {
    /// Commits and (when counted) statements of every database together.
    pub fn totals(&self) -> (i64, Option<i64>) {
        let commits = self.databases.iter().map(|d| d.commits).sum();
        let statements = self.databases.iter().map(|d| d.statements).sum();
        (commits, statements)
    }
}

/// Reads the counters at `url`; `Err` when PostgreSQL cannot be read.
pub async fn sample(url: &str) -> Result<Sample, String> {
    let read = async {
        let mut conn = PgConnection::connect(url).await?;
        let commits: Vec<(String, i64)> = sqlx::query_as(
            "SELECT datname::text, xact_commit FROM pg_stat_database WHERE datname IS NOT NULL",
        )
        .fetch_all(&mut conn)
        .await?;
        let statements = statements(&mut conn).await;
        let _ = conn.close().await;
        Ok::<_, sqlx::Error>(Sample {
            commits: commits.into_iter().collect(),
            statements,
        })
    };
    match tokio::time::timeout(Duration::from_secs(10), read).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(format!("cannot read PostgreSQL's statistics: {e}")),
        Err(_) => Err("PostgreSQL's statistics did not answer within 10 s".to_owned()),
    }
}

/// Statements per database from `pg_stat_statements`, creating the
/// extension when the library is loaded.
async fn statements(conn: &mut PgConnection) -> Result<BTreeMap<String, i64>, String> {
    let preload: String = sqlx::query_scalar("SHOW shared_preload_libraries")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| e.to_string())?;
    if !preload.split(',').any(|l| l.trim() == "pg_stat_statements") {
        return Err(format!(
            "pg_stat_statements is not loaded (shared_preload_libraries = '{preload}'); to count statements: {HOW_TO_ENABLE}"
        ));
    }
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .execute(&mut *conn)
        .await
        .map_err(|e| format!("cannot create the pg_stat_statements extension: {e}"))?;
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT d.datname::text, sum(s.calls)::bigint FROM pg_stat_statements s \
         JOIN pg_database d ON d.oid = s.dbid GROUP BY d.datname",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| format!("cannot read pg_stat_statements: {e}"))?;
    Ok(rows.into_iter().collect())
}

/// What changed since `before` (taken before the measured part).
pub async fn since(url: &str, before: Result<Sample, String>) -> Result<Cost, String> {
    // Backends publish their counts at most once a second.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let after = sample(url).await?;
    Ok(difference(&before?, &after))
}

/// The per-database differences of two samples (databases without commits left out).
pub fn difference(before: &Sample, after: &Sample) -> Cost {
    let delta = |b: &BTreeMap<String, i64>, a: &BTreeMap<String, i64>, db: &str| {
        a.get(db).copied().unwrap_or(0) - b.get(db).copied().unwrap_or(0)
    };
    let databases = after
        .commits
        .keys()
        .map(|db| DbCost {
            name: db.clone(),
            commits: delta(&before.commits, &after.commits, db),
            statements: match (&before.statements, &after.statements) {
                (Ok(b), Ok(a)) => Some(delta(b, a, db)),
                _ => None,
            },
        })
        .filter(|d| d.commits > 0)
        .collect();
    let statements_off = match (&before.statements, &after.statements) {
        (Err(why), _) | (_, Err(why)) => Some(why.clone()),
        _ => None,
    };
    Cost {
        databases,
        statements_off,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(commits: &[(&str, i64)], statements: Option<&[(&str, i64)]>) -> Sample {
        let map = |v: &[(&str, i64)]| v.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect();
        Sample {
            commits: map(commits),
            statements: statements.map(map).ok_or_else(|| "off".to_owned()),
        }
    }

    #[test]
    fn costs_are_differences_of_the_databases_that_committed() {
        let before = sample(&[("intake", 10), ("idle", 5)], Some(&[("intake", 100)]));
        let after = sample(
            &[("intake", 30), ("idle", 5), ("routing", 7)],
            Some(&[("intake", 180), ("routing", 40)]),
        );
        let c = difference(&before, &after);
        assert_eq!(
            c.databases,
            vec![
                DbCost {
                    name: "intake".into(),
                    commits: 20,
                    statements: Some(80)
                },
                DbCost {
                    name: "routing".into(),
                    commits: 7,
                    statements: Some(40)
                },
            ]
        );
        assert_eq!(c.statements_off, None);
        let c = difference(
            &sample(&[("intake", 1)], None),
            &sample(&[("intake", 2)], None),
        );
        assert_eq!(c.databases[0].statements, None);
        assert_eq!(c.statements_off.as_deref(), Some("off"));
    }
}
