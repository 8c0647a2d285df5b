//! Routing's gRPC edge. Statuses as everywhere in Wardline: bad input
//! INVALID_ARGUMENT naming the field, unknown or foreign ids NOT_FOUND,
//! wrong state FAILED_PRECONDITION, stale version ABORTED.

mod analysts;
mod queue;
mod rules;

use std::sync::Arc;

use prost::Message;
use sqlx::PgPool;
use tokio::sync::Notify;
use tonic::{Response, Status};
use wardline_kit::db::{self, Scope};
use wardline_kit::outbox::OutboxError;

/// Implements routing's gRPC services.
#[derive(Clone)]
pub struct Api {
    pub(crate) pool: PgPool,
    /// Wakes the queue drainer after a change that may free capacity.
    pub(crate) wake: Arc<Notify>,
}

impl Api {
    /// The API over `pool`, waking `wake` when capacity may have freed.
    pub fn new(pool: PgPool, wake: Arc<Notify>) -> Self {
        Self { pool, wake }
    }

    /// A transaction that sees the rows of `scope` only (row-level
    /// security): every statement of a handler runs in one.
    pub(crate) async fn begin(
        &self,
        scope: Scope<'_>,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, Status> {
        db::begin(&self.pool, scope)
            .await
            .map_err(|e| wardline_kit::grpc::db_status(&e))
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

pub(crate) fn decode_replay<M: Message + Default>(bytes: &[u8]) -> Result<Response<M>, Status> {
    M::decode(bytes)
        .map(Response::new)
        .map_err(|_| Status::internal("stored response is unreadable"))
}
