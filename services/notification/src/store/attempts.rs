//! Every attempt of a delivery. A row is written (outcome NULL) when the
//! attempt starts, before anything is sent, and completed after; both in
//! array statements, one per sender round however many deliveries it holds.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// An attempt as stored.
#[derive(Debug, sqlx::FromRow)]
pub struct AttemptRow {
    pub delivery_id: Uuid,
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: Option<i16>,
    pub status_code: i32,
    pub error_class: i16,
    pub next_retry_at: Option<DateTime<Utc>>,
}

/// The attempts of `ids`, by delivery then attempt.
pub async fn of(conn: &mut PgConnection, ids: &[Uuid]) -> Result<Vec<AttemptRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT delivery_id, attempt, started_at, finished_at, outcome, status_code, error_class, next_retry_at
           FROM delivery_attempts WHERE delivery_id = ANY($1) ORDER BY delivery_id, attempt",
    )
    .bind(ids)
    .fetch_all(conn)
    .await
}

/// Starts attempt `attempts[i]` of delivery `ids[i]`, all in one statement:
/// the attempt rows, the deliveries' attempt counts and, with `sending`,
/// their claims (`sending_since`, what the reconciler's lease runs on).
pub async fn start(
    conn: &mut PgConnection,
    ids: &[Uuid],
    attempts: &[i32],
    sending: bool,
) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "WITH c AS (SELECT * FROM UNNEST($1::uuid[], $2::int4[]) AS c(id, attempt)),
              marked AS (UPDATE deliveries d
                            SET sending_since = CASE WHEN $3 THEN now() ELSE d.sending_since END,
                                attempt_count = c.attempt, updated_at = now()
                           FROM c WHERE d.delivery_id = c.id)
         INSERT INTO delivery_attempts (delivery_id, tenant_id, attempt, started_at)
         SELECT c.id, d.tenant_id, c.attempt, now() FROM c JOIN deliveries d ON d.delivery_id = c.id",
    )
    .bind(ids)
    .bind(attempts)
    .bind(sending)
    .execute(conn)
    .await?;
    Ok(())
}

/// How one attempt ended and where its delivery goes next.
#[derive(Debug, Clone)]
pub struct Finish {
    pub delivery_id: Uuid,
    pub attempt: i32,
    /// AttemptOutcome.
    pub outcome: i16,
    pub status_code: i32,
    /// ErrorClass.
    pub error_class: i16,
    /// When the next attempt is due (a retry), else None.
    pub next_at: Option<DateTime<Utc>>,
    /// The delivery's new DeliveryState.
    pub state: i16,
    /// The delivery's DeliveryStatus (0 while not finished).
    pub delivery_outcome: i16,
    /// The delivery is finished.
    pub finished: bool,
}

/// Completes the attempts of `rows` and moves their deliveries on, in one
/// statement. With `claimed`, only deliveries still claimed by that very
/// attempt change (one the reconciler took over meanwhile keeps its
/// record). Returns the deliveries that changed.
pub async fn finish(
    conn: &mut PgConnection,
    rows: &[Finish],
    now: DateTime<Utc>,
    claimed: bool,
) -> Result<Vec<Uuid>, sqlx::Error> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| r.delivery_id).collect();
    let attempts: Vec<i32> = rows.iter().map(|r| r.attempt).collect();
    let outcomes: Vec<i16> = rows.iter().map(|r| r.outcome).collect();
    let codes: Vec<i32> = rows.iter().map(|r| r.status_code).collect();
    let classes: Vec<i16> = rows.iter().map(|r| r.error_class).collect();
    let next: Vec<Option<DateTime<Utc>>> = rows.iter().map(|r| r.next_at).collect();
    let states: Vec<i16> = rows.iter().map(|r| r.state).collect();
    let results: Vec<i16> = rows.iter().map(|r| r.delivery_outcome).collect();
    let finished: Vec<bool> = rows.iter().map(|r| r.finished).collect();
    sqlx::query_scalar(
        "WITH v AS (SELECT * FROM UNNEST($1::uuid[], $2::int4[], $3::int2[], $4::int4[], $5::int2[],
                        $6::timestamptz[], $7::int2[], $8::int2[], $9::bool[])
                      AS v(id, attempt, outcome, status_code, error_class, next_at, state, result, finished)),
              d AS (UPDATE deliveries d
                       SET sending_since = NULL, state = v.state, outcome = v.result, next_attempt_at = v.next_at,
                           finished_at = CASE WHEN v.finished THEN $10 ELSE NULL END, updated_at = $10
                      FROM v
                     WHERE d.delivery_id = v.id AND d.attempt_count = v.attempt
                       AND (NOT $11 OR d.sending_since IS NOT NULL)
                 RETURNING d.delivery_id),
              a AS (UPDATE delivery_attempts t
                       SET finished_at = $10, outcome = v.outcome, status_code = v.status_code,
                           error_class = v.error_class, next_retry_at = v.next_at
                      FROM v JOIN d ON d.delivery_id = v.id
                     WHERE t.delivery_id = v.id AND t.attempt = v.attempt)
         SELECT delivery_id FROM d",
    )
    .bind(&ids)
    .bind(&attempts)
    .bind(&outcomes)
    .bind(&codes)
    .bind(&classes)
    .bind(&next)
    .bind(&states)
    .bind(&results)
    .bind(&finished)
    .bind(now)
    .bind(claimed)
    .fetch_all(conn)
    .await
}
