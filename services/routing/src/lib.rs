//! Routing: gets each ticket to a qualified, available analyst fast, and
//! escalates when an SLA clock runs out.
//!
//! - [`domain`]: eligibility and ranking ([`domain::decision`]), shifts,
//!   category rules, SLA targets. Plain Rust, exhaustively tested.
//! - [`directory`]: the analyst directory's storage, and the candidates of a decision.
//! - [`policy`]: category rules and SLA targets per tenant (defaults + overrides).
//! - [`cache`]: those rules, targets and the tenant's analysts cached per
//!   process, invalidated by a generation number every decision reads.
//! - [`events`]: the consumer of intake's ticket events (batches from the
//!   kit's loop, one transaction each).
//! - [`assignment`]: routing one ticket: the decision, capacity taken
//!   atomically (replicas never over-assign), the assignment or the queue.
//! - [`queue`]: the hand-over of freed capacity to the head of the
//!   analyst's queue, and the periodic drain.
//! - [`jobs`]: the drainer, the SLA/acknowledgement timer scanner, gauges.
//! - [`store`]: the engine's SQL (tickets and the queue, assignments, timers).
//! - [`grpc`]: AnalystService, RoutingRuleService, SlaTargetService,
//!   QueueService (queue, assignments, explanations); event dead letters
//!   are the kit's service.
//! - [`limits`]: every size limit of the API (`docs/limits.md` lists them).
//! - [`app`] and [`config`]: wiring and environment variables.

pub mod app;
pub mod assignment;
pub mod cache;
pub mod config;
pub mod directory;
pub mod domain;
pub mod events;
pub mod grpc;
pub mod jobs;
pub mod limits;
pub mod policy;
pub mod queue;
pub mod store;

pub use app::{Application, MIGRATOR, SERVICE};
pub use config::Config;
