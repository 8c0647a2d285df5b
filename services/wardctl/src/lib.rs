//! wardctl: the admin client of Wardline, over the services' gRPC APIs, and
//! the demo that plays a scenario file against them. `main.rs` only parses
//! the command line and reports errors; the rest lives here so it can be
//! tested (and the load generator, `wardline-load`, reuses its sessions).
//!
//! - [`cli`]: the command line (clap derive); enum values are the protobuf
//!   enums' own labels ([`cli::proto_enum`]), never a mirror.
//! - [`grpc`]: connecting with a timeout, and the interceptor that adds the
//!   bearer token, `x-tenant-id` and the W3C trace context to every call.
//! - [`commands`]: `token`, `tenant`, `ticket` (intake); `analyst`, `queue`,
//!   `assignments`, `explain`, `rules`, `sla` (routing); `contract`,
//!   `usage`, `charges`, `unbilled`, `invoice` (billing); `recipient`,
//!   `webhook`, `delivery` (notification); `audit` (any service's audit
//!   trail); and their shared context (who wardctl acts as, idempotency
//!   keys, output mode).
//! - [`demo`]: `wardctl demo`, a scenario file played and followed through
//!   the services; [`events`] watches NATS for it.
//! - [`render`] and [`table`]: labels, times, amounts, tables. JSON output
//!   is the messages' own serde (the proto3 JSON mapping).
//! - [`telemetry`]: quiet stderr logs and spans whose context every call carries.

pub mod cli;
pub mod commands;
pub mod demo;
pub mod events;
pub mod grpc;
pub mod render;
pub mod table;
pub mod telemetry;

/// An error as one line: each cause after the other, gRPC statuses as
/// `CODE: message` (e.g. `INVALID_ARGUMENT: caller.role: required`).
pub fn error_text(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = match cause.downcast_ref::<tonic::Status>() {
            Some(s) => grpc::describe_status(s),
            None => cause.to_string(),
        };
        if parts.last().is_none_or(|last| !last.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// A hint for errors whose cause is usually the setup, not the request;
/// `service` at `url` is what the command talks to.
pub fn error_hint(err: &anyhow::Error, service: cli::Service, url: &str) -> Option<String> {
    let status = err.chain().find_map(|c| c.downcast_ref::<tonic::Status>());
    let running = || {
        format!(
            "is {} running at {url}? (set {})",
            service.name(),
            service.setting()
        )
    };
    match status.map(|s| s.code()) {
        Some(tonic::Code::Unauthenticated) => Some(format!(
            "{} verifies tokens with its identity provider's keys (WARDLINE_JWKS_URL or WARDLINE_JWKS_FILE), \
             issuer and audience: check the token given with --token / WARDLINE_TOKEN (or --client-id's scope); \
             in development, mint with the same issuer key (WARDLINE_DEV_ISSUER_KEY) or secret",
            service.name()
        )),
        Some(tonic::Code::Unavailable) => Some(running()),
        // Billing knows a tenant only once it applied intake's tenant event.
        Some(tonic::Code::NotFound)
            if service == cli::Service::Billing
                && status.is_some_and(|s| {
                    s.message().starts_with("tenant ") && s.message().ends_with(" not found")
                }) =>
        {
            Some(
                "billing learns tenants from intake's tenant events on NATS: does the tenant exist in intake \
                 (wardctl tenant list), and do intake and billing share one NATS?"
                    .to_owned(),
            )
        }
        Some(tonic::Code::Unimplemented) => Some(format!(
            "the server at {url} does not serve this API: is that {}'s gRPC port? (set {})",
            service.name(),
            service.setting()
        )),
        Some(_) => None,
        None if err
            .chain()
            .any(|c| c.downcast_ref::<tonic::transport::Error>().is_some()) =>
        {
            Some(running())
        }
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    #[test]
    fn statuses_print_as_code_and_message() {
        let e = anyhow::Error::new(tonic::Status::invalid_argument("caller.role: required"));
        assert_eq!(error_text(&e), "INVALID_ARGUMENT: caller.role: required");
        let e = Err::<(), _>(tonic::Status::not_found("ticket STM-000009"))
            .context("looking up STM-000009")
            .unwrap_err();
        assert_eq!(
            error_text(&e),
            "looking up STM-000009: NOT_FOUND: ticket STM-000009"
        );
        assert_eq!(error_hint(&e, cli::Service::Intake, "http://x"), None);
    }

    #[test]
    fn setup_problems_get_a_hint() {
        let e = anyhow::Error::new(tonic::Status::unauthenticated("invalid bearer token"));
        assert!(
            error_hint(&e, cli::Service::Intake, "http://x")
                .unwrap()
                .contains("WARDLINE_JWKS_URL")
        );
        let e = anyhow::Error::new(tonic::Status::unavailable("tcp connect error"));
        assert!(
            error_hint(&e, cli::Service::Intake, "http://intake:50051")
                .unwrap()
                .contains("http://intake:50051")
        );
        let unknown = anyhow::Error::new(tonic::Status::not_found("tenant stmarys not found"));
        assert!(
            error_hint(&unknown, cli::Service::Billing, "http://billing:50053")
                .unwrap()
                .contains("tenant events")
        );
        assert_eq!(
            error_hint(&unknown, cli::Service::Intake, "http://x"),
            None,
            "only billing learns tenants from events"
        );
        let hint = error_hint(&e, cli::Service::Billing, "http://billing:50053").unwrap();
        assert!(hint.contains("WARDCTL_BILLING_URL"), "{hint}");
        let hint = error_hint(&e, cli::Service::Routing, "http://routing:50052").unwrap();
        assert!(
            hint.contains("routing running at http://routing:50052")
                && hint.contains("WARDCTL_ROUTING_URL"),
            "{hint}"
        );
    }
}
