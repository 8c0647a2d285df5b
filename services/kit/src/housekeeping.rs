//! Retention for the tables that only grow.
//!
//! Every service keeps an inbox, an outbox, idempotency keys, failure
//! counts and dead letters (the kit's tables), and some keep their own
//! history (notification's deliveries and attempts). Left alone they grow
//! for ever and slow every query that touches them. Housekeeping deletes
//! what is past its retention every few minutes, in small batches, so a
//! purge never holds long locks or a long transaction.
//!
//! What must hold:
//! - The inbox outlives the event stream's duplicate window by a margin
//!   ([`min_inbox_retention`]): a republish inside the window is dropped by
//!   JetStream, a redelivery after it by the inbox. (Replaying the stream
//!   from before the inbox's horizon is an operator's act; billing stays
//!   exactly once regardless, because a call is keyed by its ticket.)
//! - Only finished rows are purged: sent outbox rows, idempotency keys
//!   whose retention ran out, failure counts of events nobody retries.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// Rows deleted per statement.
const BATCH: i64 = 5_000;

/// One table's retention rule.
#[derive(Debug, Clone)]
pub struct Purge {
    /// Label for logs and metrics (the table).
    pub table: &'static str,
    /// A `DELETE` of at most `$2` rows older than `$1` seconds, e.g.
    /// `DELETE FROM inbox WHERE ctid = ANY(ARRAY(SELECT ctid FROM inbox
    /// WHERE processed_at < now() - make_interval(secs => $1) LIMIT $2))`.
    pub delete: &'static str,
    /// How long rows are kept.
    pub retention: Duration,
}

/// The kit's own tables, with the given retentions.
#[derive(Debug, Clone)]
pub struct Retention {
    /// Applied event ids.
    pub inbox: Duration,
    /// Published outbox rows.
    pub sent_outbox: Duration,
    /// Idempotency keys and their responses.
    pub idempotency: Duration,
    /// Dead letters (kept on the dead-letter stream too).
    pub dead_letters: Duration,
    /// Audit records (never less than a year: the table's trigger refuses).
    pub audit: Duration,
}

/// How long audit records are kept unless configured: six years, the
/// HIPAA documentation norm.
pub const AUDIT_RETENTION: Duration = Duration::from_secs(6 * 365 * 24 * 3600);
/// The least retention the audit table accepts.
pub const MIN_AUDIT_RETENTION: Duration = Duration::from_secs(366 * 24 * 3600);

impl Default for Retention {
    fn default() -> Self {
        Self {
            inbox: Duration::from_secs(7 * 24 * 3600),
            sent_outbox: Duration::from_secs(3600),
            idempotency: crate::idempotency::RETENTION,
            dead_letters: Duration::from_secs(90 * 24 * 3600),
            audit: AUDIT_RETENTION,
        }
    }
}

/// The shortest inbox retention that keeps redeliveries harmless: the
/// stream's duplicate window plus an hour.
pub fn min_inbox_retention() -> Duration {
    crate::nats::DUPLICATE_WINDOW + Duration::from_secs(3600)
}

impl Retention {
    /// The purges of the kit's tables.
    pub fn purges(&self) -> Vec<Purge> {
        vec![
            Purge {
                table: "inbox",
                delete: "DELETE FROM inbox WHERE ctid = ANY(ARRAY(
                           SELECT ctid FROM inbox
                            WHERE processed_at < now() - make_interval(secs => $1) LIMIT $2))",
                retention: self.inbox.max(min_inbox_retention()),
            },
            Purge {
                table: "outbox",
                delete: "DELETE FROM outbox WHERE ctid = ANY(ARRAY(
                           SELECT ctid FROM outbox
                            WHERE sent_at < now() - make_interval(secs => $1) LIMIT $2))",
                retention: self.sent_outbox,
            },
            Purge {
                table: "idempotency_keys",
                delete: "DELETE FROM idempotency_keys WHERE ctid = ANY(ARRAY(
                           SELECT ctid FROM idempotency_keys
                            WHERE created_at < now() - make_interval(secs => $1) LIMIT $2))",
                retention: self.idempotency,
            },
            Purge {
                table: "dead_letters",
                delete: "DELETE FROM dead_letters WHERE ctid = ANY(ARRAY(
                           SELECT ctid FROM dead_letters
                            WHERE first_seen_at < now() - make_interval(secs => $1) LIMIT $2))",
                retention: self.dead_letters,
            },
            Purge {
                table: "audit_log",
                delete: "DELETE FROM audit_log WHERE ctid = ANY(ARRAY(
                           SELECT ctid FROM audit_log
                            WHERE at < now() - make_interval(secs => $1) LIMIT $2))",
                retention: self.audit.max(MIN_AUDIT_RETENTION),
            },
            // A failure count nobody updated for a day belongs to an event
            // that was applied or dead-lettered by another path (both remove
            // it) or whose stream copy is gone.
            Purge {
                table: "consumer_failures",
                delete: "DELETE FROM consumer_failures WHERE ctid = ANY(ARRAY(
                           SELECT ctid FROM consumer_failures
                            WHERE updated_at < now() - make_interval(secs => $1) LIMIT $2))",
                retention: Duration::from_secs(24 * 3600),
            },
        ]
    }
}

/// Runs one purge until fewer than a batch is left; returns rows deleted.
///
/// Each batch runs in every tenant's scope: retention is the same for all
/// tenants and the statement selects rows by age only.
pub async fn purge(pool: &PgPool, p: &Purge) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    loop {
        let mut tx = crate::db::begin(pool, crate::db::Scope::AllTenants).await?;
        let n = sqlx::query(sqlx::AssertSqlSafe(p.delete))
            .bind(p.retention.as_secs_f64())
            .bind(BATCH)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        total += n;
        if n < BATCH as u64 {
            return Ok(total);
        }
        // Let other work in between batches.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Purges every `interval` until `stop`.
pub async fn run(pool: PgPool, purges: Vec<Purge>, interval: Duration, stop: CancellationToken) {
    loop {
        for p in &purges {
            match purge(&pool, p).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(table = p.table, rows = n, "purged rows past retention");
                    metrics::counter!("wardline_housekeeping_purged_total", "table" => p.table)
                        .increment(n);
                }
                Err(e) => {
                    tracing::warn!(table = p.table, error = %e, "purge failed; next round retries")
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
