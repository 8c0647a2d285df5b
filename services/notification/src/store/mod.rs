//! Every SQL statement of notification, one module per area. `grpc/`,
//! `events/` and `jobs/` call these functions and hold no SQL.
//!
//! - [`recipients`]: who may be notified (API edits, callers and analysts
//!   from events, the audience of an event).
//! - [`analysts`]: the copy of routing's analyst directory.
//! - [`tickets`]: what notification knows of a ticket (codes, the caller).
//! - [`webhooks`]: tenant endpoints and their sealed signing secrets.
//! - [`templates`]: tenant template overrides.
//! - [`deliveries`]: one row per (event, recipient, channel), claimed by the
//!   sender, listed and retried over the API.
//! - [`attempts`]: every attempt of a delivery, started and finished in
//!   array statements (one per round, not one per delivery).
//!
//! Functions take the caller's connection or transaction: which tenant a
//! transaction sees (row-level security) is chosen where it begins, by
//! the caller (`wardline_kit::db::begin`).

pub mod analysts;
pub mod attempts;
pub mod deliveries;
pub mod recipients;
pub mod templates;
pub mod tickets;
pub mod webhooks;

/// Recipient tenant of analysts who cover every tenant.
pub const VENDOR_TENANT: &str = "_vendor";
