//! Background work that `app.rs` spawns.
//!
//! - [`sender`]: claims due deliveries, sends, records every attempt,
//!   retries with backoff, dead-letters, reconciles attempts whose sender
//!   died, publishes `DeliveryOutcome` through the outbox.

pub mod sender;
