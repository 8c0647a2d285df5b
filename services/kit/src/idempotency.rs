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

/// A stored key: tenant, request id, operation, hash, response.
type StoredKey = (String, String, String, Vec<u8>, Option<Vec<u8>>);

/// One key of a batch: tenant, request id, request hash.
pub type Key<'a> = (&'a str, &'a str, &'a [u8]);

/// Claims many keys for `operation` in two round trips at most (the second
/// only when some key was seen before): the group-commit form of [`begin`],
/// with the same outcome per key, in the order given. Keys are inserted in
/// sorted order so two batches waiting on each other's keys cannot
/// deadlock. The caller removes duplicates within one batch first.
pub async fn claim_many(
    conn: &mut PgConnection,
    operation: &str,
    keys: &[Key<'_>],
) -> Result<Vec<Result<Claim, IdempotencyError>>, sqlx::Error> {
    let tenants: Vec<&str> = keys.iter().map(|k| k.0).collect();
    let requests: Vec<&str> = keys.iter().map(|k| k.1).collect();
    let hashes: Vec<&[u8]> = keys.iter().map(|k| k.2).collect();
    let fresh: Vec<(String, String)> = sqlx::query_as(
        "INSERT INTO idempotency_keys (tenant_id, request_id, operation, request_hash)
         SELECT t, r, $4, h FROM UNNEST($1::text[], $2::text[], $3::bytea[]) AS k(t, r, h)
          ORDER BY t, r
         ON CONFLICT DO NOTHING
         RETURNING tenant_id, request_id",
    )
    .bind(&tenants)
    .bind(&requests)
    .bind(&hashes)
    .bind(operation)
    .fetch_all(&mut *conn)
    .await?;
    let fresh: std::collections::HashSet<(String, String)> = fresh.into_iter().collect();
    let is_fresh = |k: &Key<'_>| fresh.contains(&(k.0.to_owned(), k.1.to_owned()));
    let seen: Vec<&Key<'_>> = keys.iter().filter(|k| !is_fresh(k)).collect();
    let mut stored = std::collections::HashMap::new();
    if !seen.is_empty() {
        let tenants: Vec<&str> = seen.iter().map(|k| k.0).collect();
        let requests: Vec<&str> = seen.iter().map(|k| k.1).collect();
        let rows: Vec<StoredKey> = sqlx::query_as(
            "SELECT i.tenant_id, i.request_id, i.operation, i.request_hash, i.response
               FROM idempotency_keys i
               JOIN UNNEST($1::text[], $2::text[]) AS k(t, r)
                 ON i.tenant_id = k.t AND i.request_id = k.r",
        )
        .bind(&tenants)
        .bind(&requests)
        .fetch_all(&mut *conn)
        .await?;
        for (t, r, op, hash, response) in rows {
            stored.insert((t, r), (op, hash, response));
        }
    }
    Ok(keys
        .iter()
        .map(|k| {
            if is_fresh(k) {
                return Ok(Claim::Fresh);
            }
            match stored.get(&(k.0.to_owned(), k.1.to_owned())) {
                Some((op, hash, Some(response))) if op == operation && hash == k.2 => {
                    Ok(Claim::Replay(response.clone()))
                }
                _ => Err(IdempotencyError::Mismatch),
            }
        })
        .collect())
}

/// Stores the responses of many fresh requests in one statement (same
/// transaction as the work): the group-commit form of [`finish`].
pub async fn finish_many(
    conn: &mut PgConnection,
    responses: &[(&str, &str, Vec<u8>)],
) -> Result<(), sqlx::Error> {
    let tenants: Vec<&str> = responses.iter().map(|r| r.0).collect();
    let requests: Vec<&str> = responses.iter().map(|r| r.1).collect();
    let bodies: Vec<&[u8]> = responses.iter().map(|r| r.2.as_slice()).collect();
    sqlx::query(
        "UPDATE idempotency_keys i SET response = k.b
           FROM UNNEST($1::text[], $2::text[], $3::bytea[]) AS k(t, r, b)
          WHERE i.tenant_id = k.t AND i.request_id = k.r",
    )
    .bind(&tenants)
    .bind(&requests)
    .bind(&bodies)
    .execute(conn)
    .await?;
    Ok(())
}

/// Removes claims whose requests were refused after claiming (inside the
/// same transaction), so a corrected retry with the same key is fresh.
pub async fn release_many(
    conn: &mut PgConnection,
    keys: &[(&str, &str)],
) -> Result<(), sqlx::Error> {
    if keys.is_empty() {
        return Ok(());
    }
    let tenants: Vec<&str> = keys.iter().map(|k| k.0).collect();
    let requests: Vec<&str> = keys.iter().map(|k| k.1).collect();
    sqlx::query(
        "DELETE FROM idempotency_keys i USING UNNEST($1::text[], $2::text[]) AS k(t, r)
          WHERE i.tenant_id = k.t AND i.request_id = k.r",
    )
    .bind(&tenants)
    .bind(&requests)
    .execute(conn)
    .await?;
    Ok(())
}

/// How long keys (and their responses) are kept by default: far longer
/// than any client's retry loop, short enough that the table stays small
/// (`WARDLINE_IDEMPOTENCY_RETENTION_HOURS`; purged by
/// [`crate::housekeeping`]).
pub const RETENTION: std::time::Duration = std::time::Duration::from_secs(48 * 3600);

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
