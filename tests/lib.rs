//! Wardline's end-to-end tests: the real services (in process, or as
//! processes for crash tests) against a real PostgreSQL (a fresh database
//! per service per test) and a private nats-server per test.
//!
//! - `deployment_config.rs`: every variable compose sets is one the service reads.
//! - `routing_journeys.rs`: intake + routing: the right analyst, queueing,
//!   re-routing, escalation, explanations, two replicas within capacity.
//! - `routing_crash.rs`: routing SIGKILLed mid-flow loses no timer and
//!   assigns nothing twice.
//! - `traces.rs`: the four services as processes exporting OTLP to a real
//!   receiver: one trace per ticket, correct parents, allow-listed attributes.
//! - `billing.rs`: hand-computed invoices; 10,000 tickets billed exactly once
//!   while billing is SIGKILLed.
//! - `notification_journeys.rs`, `notification_crash.rs`,
//!   `notification_canary.rs`: deliveries to a real SMTP server and HTTP
//!   receivers, a SIGKILL mid-flight, and no PHI in any message, log or span.
//! - `faults.rs`: the fault-injection suite under load (every service
//!   SIGKILLed, NATS restarted, PostgreSQL restarted with `pg_ctl restart -m
//!   immediate`, billing SIGSTOPped past its ack wait, poison messages,
//!   duplicate publishes); `WARDLINE_SOAK=1` for the long variant.
//! - `load.rs`: `wardline-load` against the real four services.
//! - `demo.rs`: `wardctl demo` plays the shipped scenario against the real
//!   four services: every call created, placed, metered once and notified.
//!
//! The helpers (`common/`) start the stack and give typed, authenticated clients.
