//! The gRPC edge: request validation, authorisation and translation to and
//! from the domain and storage. Statuses follow ARCHITECTURE.md: bad input
//! INVALID_ARGUMENT naming the field, unknown or foreign ids NOT_FOUND,
//! wrong state FAILED_PRECONDITION, stale version ABORTED, database down
//! UNAVAILABLE.

pub(crate) mod convert;
mod tenants;
mod tickets;

pub use convert::snapshot;

use sqlx::PgPool;
use tonic::Status;
use wardline_kit::db::Scope;
use wardline_kit::outbox::OutboxError;

/// Implements intake's gRPC services.
#[derive(Clone)]
pub struct Api {
    pub(crate) pool: PgPool,
    /// Tickets per tenant per second (noisy-tenant protection).
    pub(crate) quota: std::sync::Arc<wardline_kit::quota::TenantQuota>,
    /// The group-commit writer of new tickets.
    pub(crate) creates: crate::create::CreateWriter,
    /// AddNote's limits.
    pub(crate) notes: std::sync::Arc<NoteLimits>,
}

/// AddNote's limits: a rate per tenant and a most per ticket.
pub struct NoteLimits {
    /// `INTAKE_NOTE_RATE`/`INTAKE_NOTE_BURST`: notes per second per tenant.
    pub quota: wardline_kit::quota::TenantQuota,
    /// `INTAKE_MAX_NOTES_PER_TICKET`.
    pub max_per_ticket: i64,
}

impl Default for NoteLimits {
    fn default() -> Self {
        Self {
            quota: wardline_kit::quota::TenantQuota::new(50, 100, "notes"),
            max_per_ticket: 500,
        }
    }
}

impl Api {
    /// The API over `pool`, limiting each tenant's ticket creation by
    /// `quota` and writing new tickets in groups as `writer` says. Starts
    /// the writer, so it must run inside the runtime.
    pub fn new(
        pool: PgPool,
        quota: wardline_kit::quota::TenantQuota,
        writer: crate::create::WriterConfig,
    ) -> Self {
        Self {
            creates: crate::create::CreateWriter::start(pool.clone(), writer),
            pool,
            quota: std::sync::Arc::new(quota),
            notes: std::sync::Arc::new(NoteLimits::default()),
        }
    }

    /// A transaction that sees `scope`'s rows only (row-level security):
    /// every read and write of a handler goes through one, a tenant's
    /// caller in its tenant's scope.
    pub(crate) async fn begin(
        &self,
        scope: Scope<'_>,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, Status> {
        wardline_kit::db::begin(&self.pool, scope)
            .await
            .map_err(|e| wardline_kit::grpc::db_status(&e))
    }

    /// The API with AddNote limited by `notes` instead of the defaults.
    pub fn with_note_limits(mut self, notes: NoteLimits) -> Self {
        self.notes = std::sync::Arc::new(notes);
        self
    }
}

pub(crate) fn require_request_id(id: &str) -> Result<(), Status> {
    if wardline_kit::validate::is_request_id(id) {
        Ok(())
    } else {
        Err(Status::invalid_argument(
            "request_id: required, 1-128 printable ASCII characters",
        ))
    }
}

pub(crate) fn outbox_status(e: OutboxError) -> Status {
    match e {
        OutboxError::Db(e) => wardline_kit::grpc::db_status(&e),
        other => {
            tracing::error!(error = %other, "cannot write event");
            Status::internal("internal error")
        }
    }
}
