//! The one error type of every gRPC handler, and the one way to run an
//! idempotent mutating RPC.
//!
//! Why: handlers used to turn each database, outbox and idempotency error
//! into a status by hand, a few hundred times across the services, and a
//! failure in a background writer was logged without the request's trace.
//! Now handlers return [`ApiError`]; `?` converts the shared errors, and
//! `Status::from(ApiError)` is the only place a failure becomes a status.
//!
//! What must hold:
//! - The caller never sees internal detail: a database or outbox failure
//!   is UNAVAILABLE ("retry with the same request_id") when PostgreSQL is
//!   unreachable ([`crate::db::is_unavailable`]), ABORTED for a
//!   serialization failure or deadlock, otherwise INTERNAL with the text
//!   "internal error"; the detail goes to the log, in the request's span,
//!   so the line carries its trace id.
//! - The conversion runs in the request's task and marks the request's
//!   span: `rpc.grpc.status_code` always, `otel.status_code = ERROR` for
//!   the codes that are the server's fault (INTERNAL, UNAVAILABLE,
//!   UNKNOWN, DATA_LOSS, DEADLINE_EXCEEDED, UNIMPLEMENTED).
//! - Messages name the field or the state, never echo free text.

use prost::Message;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use tonic::{Code, Status};

use crate::db::Scope;
use crate::idempotency::{self, Claim, IdempotencyError};
use crate::outbox::OutboxError;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed; the message starts with the field's path.
    #[error("{0}")]
    InvalidArgument(String),
    /// Unknown id, or another tenant's (the same answer for both).
    #[error("{0}")]
    NotFound(String),
    /// The resource is in the wrong state for this call.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A concurrent change won (stale `expected_version`).
    #[error("{0}")]
    Aborted(String),
    /// The caller may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// Over a quota; retry later.
    #[error("{0}")]
    ResourceExhausted(String),
    /// A dependency other than PostgreSQL is down; retry later.
    #[error("{0}")]
    Unavailable(String),
    /// PostgreSQL failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// The outbox refused an event.
    #[error("outbox: {0}")]
    Outbox(#[from] OutboxError),
    /// A bug or a broken invariant; the text is logged, never returned.
    #[error("internal: {0}")]
    Internal(String),
    /// A status made elsewhere (authentication, quota), passed through.
    #[error("{}", .0.message())]
    Status(#[from] Status),
}

impl ApiError {
    /// INVALID_ARGUMENT `"<field>: <rule>"`.
    pub fn invalid(field: &str, rule: impl std::fmt::Display) -> Self {
        Self::InvalidArgument(format!("{field}: {rule}"))
    }

    /// NOT_FOUND `"<what> not found"`.
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::NotFound(format!("{what} not found"))
    }

    /// FAILED_PRECONDITION with `message`.
    pub fn precondition(message: impl Into<String>) -> Self {
        Self::FailedPrecondition(message.into())
    }

    /// The gRPC code this error becomes.
    pub fn code(&self) -> Code {
        match self {
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::NotFound(_) => Code::NotFound,
            Self::FailedPrecondition(_) => Code::FailedPrecondition,
            Self::Aborted(_) => Code::Aborted,
            Self::PermissionDenied(_) => Code::PermissionDenied,
            Self::ResourceExhausted(_) => Code::ResourceExhausted,
            Self::Unavailable(_) => Code::Unavailable,
            Self::Db(e) | Self::Outbox(OutboxError::Db(e)) => db_code(e),
            Self::Outbox(_) | Self::Internal(_) => Code::Internal,
            Self::Status(s) => s.code(),
        }
    }
}

impl From<IdempotencyError> for ApiError {
    fn from(e: IdempotencyError) -> Self {
        match e {
            IdempotencyError::Mismatch => Self::FailedPrecondition(
                "request_id: already used for a different request; use a new request_id".into(),
            ),
            IdempotencyError::Db(e) => Self::Db(e),
        }
    }
}

fn db_code(e: &sqlx::Error) -> Code {
    match e {
        e if crate::db::is_unavailable(e) => Code::Unavailable,
        sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40001" | "40P01")) => {
            Code::Aborted
        }
        _ => Code::Internal,
    }
}

/// Codes that are the server's fault, not the caller's (OpenTelemetry's
/// rule for gRPC server spans).
fn server_fault(code: Code) -> bool {
    matches!(
        code,
        Code::Internal
            | Code::Unavailable
            | Code::Unknown
            | Code::DataLoss
            | Code::DeadlineExceeded
            | Code::Unimplemented
    )
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        let code = e.code();
        let status = match e {
            ApiError::Status(s) => s,
            ApiError::Db(_) | ApiError::Outbox(_) | ApiError::Internal(_) => {
                let message = match code {
                    Code::Unavailable => {
                        tracing::warn!(error = %e, "database unavailable");
                        "the database is unavailable; retry with the same request_id"
                    }
                    Code::Aborted => "concurrent update; retry with the same request_id",
                    _ => {
                        tracing::error!(error = %e, "request failed");
                        "internal error"
                    }
                };
                Status::new(code, message)
            }
            other => Status::new(code, other.to_string()),
        };
        mark_span(&tracing::Span::current(), status.code());
        status
    }
}

/// Records a request's outcome on its span (see the module documentation).
pub fn mark_span(span: &tracing::Span, code: Code) {
    span.record("rpc.grpc.status_code", code as i32);
    if server_fault(code) {
        span.record("otel.status_code", "ERROR");
    }
}

/// INVALID_ARGUMENT unless `id` is a usable request id.
pub fn require_request_id(id: &str) -> Result<(), ApiError> {
    if crate::validate::is_request_id(id) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "request_id",
            "required, 1-128 printable ASCII characters",
        ))
    }
}

/// The page size a list request asks for: `0` means `default`, above
/// `max` is INVALID_ARGUMENT naming `page_size`.
pub fn page_size(requested: u32, default: u32, max: u32) -> Result<i64, ApiError> {
    match requested {
        0 => Ok(i64::from(default)),
        n if n <= max => Ok(i64::from(n)),
        _ => Err(ApiError::invalid("page_size", format!("1-{max}"))),
    }
}

/// A repeated field of at most `max` entries; more is INVALID_ARGUMENT
/// naming `field`.
pub fn at_most(field: &str, n: usize, max: usize) -> Result<(), ApiError> {
    if n > max {
        return Err(ApiError::invalid(field, format!("at most {max} values")));
    }
    Ok(())
}

/// One page from rows fetched with `LIMIT size + 1`: the first `size`
/// rows, and the token of the next page (`token` of the last row shown),
/// empty when there is none.
pub fn page<T>(mut rows: Vec<T>, size: i64, token: impl Fn(&T) -> String) -> (Vec<T>, String) {
    let more = rows.len() as i64 > size;
    rows.truncate(usize::try_from(size).unwrap_or(0));
    let next = match rows.last() {
        Some(last) if more => token(last),
        _ => String::new(),
    };
    (rows, next)
}

/// What claiming an idempotency key gave.
pub enum Begun<R> {
    /// The same request was answered before: answer it the same way.
    Replay(R),
    /// A first request: do the work in [`Idempotent::conn`], then
    /// [`Idempotent::commit`].
    Fresh(Idempotent),
}

/// A mutating request in its transaction, its idempotency key claimed.
///
/// Dropping it without [`Idempotent::commit`] rolls everything back,
/// including the claim, so a corrected retry with the same key is fresh.
pub struct Idempotent {
    tx: Transaction<'static, Postgres>,
    tenant: String,
    request_id: String,
}

impl Idempotent {
    /// Opens the request's transaction and claims `request_id` for
    /// `operation` in `tenant`. Two concurrent requests with one key
    /// serialize on the key: the second replays the first's answer.
    pub async fn begin<Req: Message, Resp: Message + Default>(
        pool: &PgPool,
        tenant: &str,
        request_id: &str,
        operation: &str,
        request: &Req,
    ) -> Result<Begun<Resp>, ApiError> {
        require_request_id(request_id)?;
        let hash = idempotency::request_hash(operation, request);
        let mut tx = crate::db::begin(pool, Scope::of(tenant)).await?;
        match idempotency::begin(&mut tx, tenant, request_id, operation, &hash).await? {
            Claim::Replay(bytes) => Ok(Begun::Replay(decode_replay(&bytes)?)),
            Claim::Fresh => Ok(Begun::Fresh(Self {
                tx,
                tenant: tenant.to_owned(),
                request_id: request_id.to_owned(),
            })),
        }
    }

    /// The request's transaction.
    pub fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    /// Stores `response` for retries and commits the work with it.
    pub async fn commit<Resp: Message>(mut self, response: &Resp) -> Result<(), ApiError> {
        idempotency::finish(
            &mut self.tx,
            &self.tenant,
            &self.request_id,
            &response.encode_to_vec(),
        )
        .await?;
        self.tx.commit().await?;
        Ok(())
    }
}

/// Decodes a stored response (INTERNAL if it cannot be read back).
pub fn decode_replay<Resp: Message + Default>(bytes: &[u8]) -> Result<Resp, ApiError> {
    Resp::decode(bytes).map_err(|e| ApiError::Internal(format!("stored response unreadable: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_becomes_its_status_without_internal_detail() {
        let s = Status::from(ApiError::invalid("caller.name", "1-200 characters"));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(s.message(), "caller.name: 1-200 characters");
        let s = Status::from(ApiError::not_found("ticket STM-000001"));
        assert_eq!(
            (s.code(), s.message()),
            (Code::NotFound, "ticket STM-000001 not found")
        );
        let s = Status::from(ApiError::Internal("row 42 had secret text".into()));
        assert_eq!((s.code(), s.message()), (Code::Internal, "internal error"));
        let s = Status::from(ApiError::Db(sqlx::Error::PoolTimedOut));
        assert_eq!(s.code(), Code::Unavailable);
        assert!(s.message().contains("retry with the same request_id"));
        let s = Status::from(ApiError::from(IdempotencyError::Mismatch));
        assert_eq!(s.code(), Code::FailedPrecondition);
        let s = Status::from(ApiError::Status(Status::permission_denied("no")));
        assert_eq!((s.code(), s.message()), (Code::PermissionDenied, "no"));
        assert_eq!(
            require_request_id("").unwrap_err().code(),
            Code::InvalidArgument
        );
        assert_eq!(page_size(0, 50, 500).unwrap(), 50);
        assert_eq!(page_size(500, 50, 500).unwrap(), 500);
        let e = Status::from(page_size(501, 50, 500).unwrap_err());
        assert_eq!(e.message(), "page_size: 1-500");
        assert_eq!(
            page(vec![1, 2, 3], 2, |n| n.to_string()),
            (vec![1, 2], "2".into())
        );
        assert_eq!(
            page(vec![1, 2], 2, |n| n.to_string()),
            (vec![1, 2], String::new())
        );
    }
}
