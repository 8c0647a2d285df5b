//! Wardline's cross-service checks. The tests in this folder look at the
//! system as an operator deploys it: every variable `docker-compose.yml`
//! sets must be one the service reads (a typo there would otherwise be
//! silently ignored at 3 a.m.). Service-level end-to-end tests against real
//! NATS and PostgreSQL live next to each service (`services/*/tests`); the
//! journeys across several services join this crate as those services land.
