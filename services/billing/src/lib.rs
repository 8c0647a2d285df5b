//! Billing: meters every call per hospital under its contract, exactly
//! once, and invoices it to the cent.
//!
//! - [`domain`]: integer money with explicit rounding, the tenant's calendar
//!   (periods, business hours, daylight saving), and the rating of a month.
//!   Plain Rust, table- and property-tested.
//! - [`contract`]: contract versions: validation and conversion between the
//!   API message and the domain's terms.
//! - [`store`]: recording calls and breaches (once per ticket, through the
//!   inbox), periods, contracts.
//! - [`invoice`]: computing a period from its rated events, issuing
//!   (frozen for ever), exporting as CSV or JSON, and the rebuild check.
//! - [`events`]: the consumer of tenant, ticket-created and SLA-breach events.
//! - [`grpc`]: ContractService, UsageService, InvoiceService (the dead-letter
//!   service is the kit's, added in `app.rs`).
//! - [`limits`]: every size limit of the API (`docs/limits.md` lists them).
//! - [`app`] and [`config`]: wiring and environment variables.

pub mod app;
pub mod config;
pub mod contract;
pub mod domain;
pub mod events;
pub mod grpc;
pub mod invoice;
pub mod limits;
pub mod store;

pub use app::{Application, MIGRATOR, SERVICE};
pub use config::Config;
