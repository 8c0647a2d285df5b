//! Intake: the front door of the help desk. It owns tenants, facilities,
//! tickets and notes, and the ticket lifecycle.
//!
//! - [`domain`]: priority matrix, keyword classification, the lifecycle state
//!   machine, what routing's events do to a ticket, ticket numbers. Plain
//!   Rust, exhaustively tested.
//! - [`storage`]: the repository; every query scoped by tenant.
//! - [`grpc`]: TenantService and TicketService: validation, authorisation,
//!   idempotency, and the outbox write in the same transaction as the change.
//! - [`events`]: the consumer of routing's events (assignee, queue, escalation),
//!   a batch at a time in two statements.
//! - [`app`]: wiring, shared by `main`, tests and benchmarks.
//! - [`config`]: environment variables.
//! - [`limits`]: every size limit of the API (`docs/limits.md` lists them).
//!
//! A ticket's description and notes may contain PHI: they stay in this
//! service. Events carry [`grpc::snapshot`]s, built from codes and ids only.

pub mod app;
pub mod config;
pub mod create;
pub mod domain;
pub mod events;
pub mod grpc;
pub mod limits;
pub mod storage;

pub use app::{Application, MIGRATOR, SERVICE};
pub use config::Config;
