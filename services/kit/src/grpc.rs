//! gRPC bootstrap pieces: the per-RPC span, health and reflection, and the
//! mapping of shared errors to statuses.

use tonic::Status;
use tracing::field::Empty;

use crate::telemetry;

/// Span of one RPC, child of the caller's `traceparent` when there is one.
/// Handlers record allow-listed fields (tenant, ticket id ...) on it.
pub fn rpc_span(req: &http::Request<()>) -> tracing::Span {
    let path = req.uri().path();
    let span = tracing::info_span!(
        "grpc.request",
        otel.name = %path.trim_start_matches('/'),
        otel.kind = "server",
        rpc.method = %path,
        tenant = Empty,
        ticket_id = Empty,
        ticket_number = Empty,
        priority = Empty,
        category = Empty,
        analyst_id = Empty,
        trace_id = Empty,
    );
    telemetry::set_remote_parent(&span, &telemetry::HttpHeaderExtractor(req.headers()));
    span
}

/// A gRPC server with Wardline's per-RPC span, the health service and
/// reflection; the service adds its own (authenticated) services to it.
pub fn router(
    health: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
) -> tonic::transport::server::Router {
    router_with_tls(health, None).expect("a server without TLS has nothing to refuse")
}

/// [`router`] serving TLS when `tls` is given (see
/// [`crate::service::Base::grpc_router`]).
pub fn router_with_tls(
    health: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
    tls: Option<tonic::transport::ServerTlsConfig>,
) -> Result<tonic::transport::server::Router, tonic::transport::Error> {
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    Ok(builder
        .trace_fn(rpc_span)
        .add_service(health)
        .add_service(reflection()))
}

/// The reflection service for every Wardline proto.
pub fn reflection() -> tonic_reflection::server::v1::ServerReflectionServer<
    impl tonic_reflection::server::v1::ServerReflection,
> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(wardline_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the compiled descriptor set is valid")
}

/// Maps an idempotency failure to a status.
impl From<crate::idempotency::IdempotencyError> for Status {
    fn from(e: crate::idempotency::IdempotencyError) -> Self {
        match e {
            crate::idempotency::IdempotencyError::Mismatch => Status::failed_precondition(
                "request_id: already used for a different request; use a new request_id",
            ),
            crate::idempotency::IdempotencyError::Db(e) => db_status(&e),
        }
    }
}

/// Whether a database error means "retry later" rather than "this request
/// is wrong" (see [`crate::db::is_unavailable`]).
pub fn db_unavailable(e: &sqlx::Error) -> bool {
    crate::db::is_unavailable(e)
}

/// Maps a database error to UNAVAILABLE (retryable) or INTERNAL, logging
/// the detail and never returning it (it could contain row data).
pub fn db_status(e: &sqlx::Error) -> Status {
    match e {
        e if db_unavailable(e) => {
            tracing::warn!(error = %e, "database unavailable");
            Status::unavailable("the database is unavailable; retry with the same request_id")
        }
        sqlx::Error::Database(db)
            if db.code().as_deref() == Some("40001") || db.code().as_deref() == Some("40P01") =>
        {
            Status::aborted("concurrent update; retry with the same request_id")
        }
        other => {
            tracing::error!(error = %other, "database error");
            Status::internal("internal error")
        }
    }
}
