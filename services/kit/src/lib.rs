//! What every Wardline service needs, written once.
//!
//! - [`config`]: typed environment configuration with errors naming the variable.
//! - [`telemetry`]: JSON/pretty logs with trace ids, OTLP export, W3C propagation.
//! - [`auth`]: bearer JWTs carrying tenant and roles, verified by a tonic interceptor.
//! - [`db`]: PostgreSQL pool with retries; the kit's and the service's migrations.
//! - [`roles`]: migrate as the owner role, serve as the runtime role, and the start-up check of it.
//! - [`dead_letters`]: listing the dead letters every service keeps, for its API.
//! - [`nats`]: NATS identities and TLS, stream provisioning, the permission layout, subject naming.
//! - [`events`]: event envelopes and the payload-to-subject mapping.
//! - [`outbox`]: the transactional outbox writer and its relay to JetStream.
//! - [`consumer`]: the durable consumer loop with inbox de-duplication, backoff and dead letters.
//! - [`idempotency`]: request ids of mutating RPCs.
//! - [`quota`]: per-tenant rate limits (`RESOURCE_EXHAUSTED` over quota).
//! - [`api`]: the one error type of gRPC handlers and the idempotent-request guard.
//! - [`grpc`]: the per-RPC span, reflection, database-error statuses.
//! - [`admin`]: `/metrics`, `/healthz`, `/readyz`.
//! - [`housekeeping`]: retention of the tables that only grow.
//! - [`shutdown`] and [`service`]: a service's start-up and ordered, bounded shutdown.
//! - [`validate`]: small input checks shared by request validation.
//! - [`sql`]: protobuf enums stored by name (`TEXT` with a `CHECK`).
//! - [`tls`]: transport security settings and the production profile (`WARDLINE_ENV`).

pub mod admin;
pub mod api;
pub mod audit;
pub mod auth;
pub mod config;
pub mod consumer;
pub mod db;
pub mod dead_letters;
pub mod events;
pub mod grpc;
pub mod housekeeping;
pub mod idempotency;
pub mod nats;
pub mod outbox;
pub mod quota;
pub mod roles;
pub mod service;
pub mod shutdown;
pub mod sql;
pub mod telemetry;
pub mod tls;
pub mod validate;
pub mod wakeup;
