//! Routing: gets each ticket to a qualified, available analyst fast, and
//! escalates when an SLA clock runs out.
//!
//! - [`domain`]: eligibility and ranking ([`domain::decision`]), shifts,
//!   category rules, SLA targets. Plain Rust, exhaustively tested.
//! - [`directory`]: the analyst directory's storage, and the candidates of a decision.
//! - [`policy`]: category rules and SLA targets per tenant (defaults + overrides).
//! - [`cache`]: those rules, targets and the tenant's analysts cached per
//!   process, invalidated by a generation number every decision reads.
//! - [`engine`]: the consumer of intake's ticket events, the assignment of a
//!   ticket (capacity checked atomically, so replicas never over-assign), the
//!   queue drain, and the SLA/acknowledgement timer scanner.
//! - [`grpc`]: AnalystService, RoutingRuleService, SlaTargetService,
//!   QueueService (queue, assignments, explanations); event dead letters
//!   are the kit's service.
//! - [`app`] and [`config`]: wiring and environment variables.

pub mod app;
pub mod cache;
pub mod config;
pub mod directory;
pub mod domain;
pub mod engine;
pub mod grpc;
pub mod policy;

pub use app::{Application, MIGRATOR, SERVICE};
pub use config::Config;
