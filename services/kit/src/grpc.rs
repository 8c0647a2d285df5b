//! gRPC bootstrap pieces: the per-RPC span, health and reflection, and the
//! mapping of shared errors to statuses.

use std::time::Duration;

use tonic::Status;
use tracing::field::Empty;

use crate::config::{ConfigError, Env};
use crate::telemetry;

/// Limits of a service's gRPC server, so one client cannot hold unbounded
/// work: `<PREFIX>_GRPC_MAX_MESSAGE_BYTES` (4 MiB: the largest request
/// message decoded), `<PREFIX>_GRPC_MAX_CONCURRENT_STREAMS` (HTTP/2 streams
/// one connection may open, 256), `<PREFIX>_GRPC_CONCURRENCY_PER_CONNECTION`
/// (requests one connection may have in progress, 256; more wait) and
/// `<PREFIX>_GRPC_REQUEST_TIMEOUT_MS` (30000: a call still running then is
/// answered CANCELLED/DEADLINE_EXCEEDED).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request message decoded, in bytes.
    pub max_message_bytes: usize,
    /// HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// Requests in progress per connection.
    pub concurrency_per_connection: usize,
    /// Longest a request may run.
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 4 * 1024 * 1024,
            max_concurrent_streams: 256,
            concurrency_per_connection: 256,
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl Limits {
    /// Reads the limits of the service with `prefix`.
    pub fn from_env(env: &Env, prefix: &str) -> Result<Self, ConfigError> {
        let d = Self::default();
        let var = |n: &str| format!("{prefix}_GRPC_{n}");
        let limits = Self {
            max_message_bytes: env.parse(&var("MAX_MESSAGE_BYTES"), d.max_message_bytes)?,
            max_concurrent_streams: env
                .parse(&var("MAX_CONCURRENT_STREAMS"), d.max_concurrent_streams)?,
            concurrency_per_connection: env.parse(
                &var("CONCURRENCY_PER_CONNECTION"),
                d.concurrency_per_connection,
            )?,
            request_timeout: env.millis(&var("REQUEST_TIMEOUT_MS"), 30_000)?,
        };
        for (name, zero) in [
            ("MAX_MESSAGE_BYTES", limits.max_message_bytes == 0),
            ("MAX_CONCURRENT_STREAMS", limits.max_concurrent_streams == 0),
            (
                "CONCURRENCY_PER_CONNECTION",
                limits.concurrency_per_connection == 0,
            ),
            ("REQUEST_TIMEOUT_MS", limits.request_timeout.is_zero()),
        ] {
            if zero {
                return Err(ConfigError::Invalid {
                    var: var(name),
                    reason: "must be at least 1".into(),
                });
            }
        }
        Ok(limits)
    }
}

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
    router_with_tls(health, None, Limits::default())
        .expect("a server without TLS has nothing to refuse")
}

/// [`router`] serving TLS when `tls` is given, within `limits` (see
/// [`crate::service::Base::grpc_router`]).
pub fn router_with_tls(
    health: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
    tls: Option<tonic::transport::ServerTlsConfig>,
    limits: Limits,
) -> Result<tonic::transport::server::Router, tonic::transport::Error> {
    let mut builder = tonic::transport::Server::builder()
        .max_concurrent_streams(limits.max_concurrent_streams)
        .concurrency_limit_per_connection(limits.concurrency_per_connection)
        .timeout(limits.request_timeout);
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
