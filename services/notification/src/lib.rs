//! Notification: the right people hear about a ticket, on their channel,
//! without patient data.
//!
//! - [`domain`]: who hears what ([`domain::audience`]: defaults per
//!   recipient kind, subscriptions, quiet hours), retry classification and
//!   backoff ([`domain::retry`]), webhook signatures ([`domain::signature`]),
//!   PHI-free templates ([`domain::template`]). Plain Rust, unit-tested.
//! - [`store`]: every SQL statement of the service, one module per area
//!   (recipients, analysts, tickets, webhooks, templates, deliveries,
//!   attempts).
//! - [`events`]: intake's, routing's and billing's events in; keeps the
//!   callers' contacts and the analyst directory, and RECORDS deliveries in
//!   the consumer's transaction (one multi-row insert per batch). It never
//!   sends.
//! - [`jobs`]: the sender, which claims due deliveries a round at a time,
//!   sends, records every attempt in array statements, retries with
//!   backoff, dead-letters, reconciles attempts whose sender died, and
//!   publishes `DeliveryOutcome` through the outbox.
//! - [`channels`]: email (SMTP), SMS (HTTP gateway), webhooks (signed),
//!   pager, behind one trait.
//! - [`grpc`]: RecipientService, WebhookService, TemplateService,
//!   DeliveryService (event dead letters: the kit's service).
//! - [`limits`]: every size limit of the API (`docs/limits.md` lists them).
//! - [`app`] and [`config`]: wiring and environment variables.

pub mod app;
pub mod channels;
pub mod config;
pub mod domain;
pub mod events;
pub mod grpc;
pub mod jobs;
pub mod limits;
pub mod store;

pub use app::{Application, MIGRATOR, SERVICE};
pub use config::Config;
