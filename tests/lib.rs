//! Wardline's end-to-end tests: the real services (in process, or as
//! processes for crash tests) against a real PostgreSQL (a fresh database
//! per service per test) and a private nats-server per test.
//!
//! - `deployment_config.rs`: every variable compose sets is one the service reads.
//! - `routing_journeys.rs`: intake + routing: the right analyst, queueing,
//!   re-routing, escalation, explanations, two replicas within capacity.
//! - `routing_crash.rs`: routing SIGKILLed mid-flow loses no timer and
//!   assigns nothing twice.
//!
//! The helpers (`common/`) start the stack and give typed, authenticated clients.
