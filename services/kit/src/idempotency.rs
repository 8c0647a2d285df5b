//! Idempotency keys for mutating RPCs.
//!
//! Every mutating request carries `request_id`. Inside the RPC's transaction
//! [`begin`] claims the key: the first request gets [`Claim::Fresh`] and
//! stores its response with [`finish`] before committing; a retry gets
//! [`Claim::Replay`] with those bytes. Two concurrent requests with one key
//! serialize on the key's primary key: the second waits for the first to
//! commit and then replays its answer. The same key with another request
//! (a different hash) is refused, which the edge maps to FAILED_PRECONDITION.

use prost::Message;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;

/// The outcome of claiming a key.
#[derive(Debug)]
pub enum Claim {
    /// First use: do the work, then call [`finish`].
    Fresh,
    /// Seen before with the same request: return these response bytes.
    Replay(Vec<u8>),
}

/// Errors claiming a key.
#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    /// The key was used for a different request.
    #[error("request_id was already used for a different request")]
    Mismatch,
    /// Database failure.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Hash identifying a request: the operation name and the encoded message
/// (with the request id itself included, which is harmless).
pub fn request_hash<M: Message>(operation: &str, request: &M) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(operation.as_bytes());
    h.update([0]);
    h.update(request.encode_to_vec());
    h.finalize().to_vec()
}

/// Claims `request_id` for `operation` within `tenant`.
pub async fn begin(
    conn: &mut PgConnection,
    tenant: &str,
    request_id: &str,
    operation: &str,
    hash: &[u8],
) -> Result<Claim, IdempotencyError> {
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (tenant_id, request_id, operation, request_hash)
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(tenant)
    .bind(request_id)
    .bind(operation)
    .bind(hash)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if inserted {
        return Ok(Claim::Fresh);
    }
    let (op, stored_hash, response): (String, Vec<u8>, Option<Vec<u8>>) = sqlx::query_as(
        "SELECT operation, request_hash, response FROM idempotency_keys
          WHERE tenant_id = $1 AND request_id = $2",
    )
    .bind(tenant)
    .bind(request_id)
    .fetch_one(&mut *conn)
    .await?;
    if op != operation || stored_hash != hash {
        return Err(IdempotencyError::Mismatch);
    }
    match response {
        Some(bytes) => Ok(Claim::Replay(bytes)),
        // Committed without a response cannot happen (finish runs in the
        // same transaction); treat it as a conflicting use.
        None => Err(IdempotencyError::Mismatch),
    }
}

/// How long keys (and their responses) are kept: far longer than any
/// client's retry loop, short enough that the table stays small.
pub const RETENTION: std::time::Duration = std::time::Duration::from_secs(48 * 3600);

/// Deletes keys older than [`RETENTION`], every ten minutes, until `stop`.
pub async fn purge_expired(pool: sqlx::PgPool, stop: tokio_util::sync::CancellationToken) {
    loop {
        let purged = sqlx::query(
            "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)",
        )
        .bind(RETENTION.as_secs_f64())
        .execute(&pool)
        .await;
        if let Err(e) = purged {
            tracing::warn!(error = %e, "purging expired idempotency keys failed");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(600)) => {}
        }
    }
}

/// Stores the response of a fresh request (same transaction as the work).
pub async fn finish(
    conn: &mut PgConnection,
    tenant: &str,
    request_id: &str,
    response: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE idempotency_keys SET response = $3 WHERE tenant_id = $1 AND request_id = $2",
    )
    .bind(tenant)
    .bind(request_id)
    .bind(response)
    .execute(conn)
    .await?;
    Ok(())
}
