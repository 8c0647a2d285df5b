//! gRPC plumbing shared by every command: connecting with a timeout, and an
//! interceptor that puts the bearer token, the tenant and the W3C trace
//! context on every call.
//!
//! Transport security lives here too, for both of wardctl's transports:
//! `https://` gRPC URLs are verified against `WARDCTL_CA_FILE` (the system
//! roots when unset) and present `WARDCTL_CLIENT_CERT_FILE` and
//! `WARDCTL_CLIENT_KEY_FILE` for mutual TLS when both are set; NATS takes
//! the same variables as the services (`NATS_NKEY_SEED_FILE`,
//! `NATS_CA_FILE`, `NATS_CLIENT_CERT_FILE`, `NATS_CLIENT_KEY_FILE`; the
//! operator's identity is the provisioning one).
//!
//! A [`Session`] is one channel plus one identity. Each service's clients
//! are one method each here (intake's on a session connected to intake,
//! routing's on one connected to routing, billing's on one connected to
//! billing, notification's on one connected to notification).

use std::time::Duration;

use anyhow::{Context as _, Result};
use secrecy::{ExposeSecret, SecretString};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};
use wardline_kit::auth::TENANT_HEADER;
use wardline_proto::billing::contract_service_client::ContractServiceClient;
use wardline_proto::billing::invoice_service_client::InvoiceServiceClient;
use wardline_proto::billing::usage_service_client::UsageServiceClient;
use wardline_proto::common::audit_service_client::AuditServiceClient;
use wardline_proto::intake::tenant_service_client::TenantServiceClient;
use wardline_proto::intake::ticket_service_client::TicketServiceClient;
use wardline_proto::notification::delivery_service_client::DeliveryServiceClient;
use wardline_proto::notification::recipient_service_client::RecipientServiceClient;
use wardline_proto::notification::webhook_service_client::WebhookServiceClient;
use wardline_proto::routing::analyst_service_client::AnalystServiceClient;
use wardline_proto::routing::queue_service_client::QueueServiceClient;
use wardline_proto::routing::routing_rule_service_client::RoutingRuleServiceClient;
use wardline_proto::routing::sla_target_service_client::SlaTargetServiceClient;

/// A channel whose calls carry a [`AuthInterceptor`]'s metadata.
pub type AuthedChannel = InterceptedService<Channel, AuthInterceptor>;

/// Connects to `url` (e.g. `http://127.0.0.1:50051`), giving up after
/// `timeout`; each call on the channel is also bounded by `timeout`.
pub async fn connect(url: &str, timeout: Duration) -> Result<Channel> {
    endpoint(url, timeout)?
        .connect()
        .await
        .with_context(|| format!("cannot connect to {url}"))
}

fn endpoint(url: &str, timeout: Duration) -> Result<Endpoint> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    endpoint_with(
        url,
        timeout,
        var("WARDCTL_CA_FILE").map(Into::into),
        var("WARDCTL_CLIENT_CERT_FILE")
            .zip(var("WARDCTL_CLIENT_KEY_FILE"))
            .map(|(c, k)| (c.into(), k.into())),
    )
}

/// The endpoint of `url`: TLS for `https://` (trusting `ca`, else the
/// system roots; presenting `identity` for mutual TLS), plaintext HTTP/2
/// for `http://`.
pub fn endpoint_with(
    url: &str,
    timeout: Duration,
    ca: Option<std::path::PathBuf>,
    identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
) -> Result<Endpoint> {
    let mut endpoint = Endpoint::from_shared(url.to_owned())
        .with_context(|| {
            format!("invalid gRPC URL {url:?} (expected e.g. https://127.0.0.1:50051)")
        })?
        .connect_timeout(timeout)
        .timeout(timeout)
        .tcp_nodelay(true);
    if url.starts_with("https://") {
        let tls = wardline_kit::tls::client_tls(
            ca.as_deref(),
            identity.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
            (
                "WARDCTL_CA_FILE",
                "WARDCTL_CLIENT_CERT_FILE",
                "WARDCTL_CLIENT_KEY_FILE",
            ),
        )?;
        endpoint = endpoint
            .tls_config(tls)
            .with_context(|| format!("TLS settings for {url}"))?;
    }
    Ok(endpoint)
}

/// NATS connection options named `name`, with the identity and TLS of the
/// `NATS_*` variables (see the module documentation).
pub fn nats_options(nats_url: &str, name: &str) -> Result<async_nats::ConnectOptions> {
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    let cfg = wardline_kit::nats::NatsConfig {
        url: nats_url.to_owned(),
        nkey_seed_file: var("NATS_NKEY_SEED_FILE").map(Into::into),
        ca_file: var("NATS_CA_FILE").map(Into::into),
        client_cert: var("NATS_CLIENT_CERT_FILE")
            .zip(var("NATS_CLIENT_KEY_FILE"))
            .map(|(c, k)| (c.into(), k.into())),
    };
    Ok(cfg.options(name)?)
}

/// Adds `authorization: Bearer <token>`, `x-tenant-id` (when a tenant is
/// set) and `traceparent`/`tracestate` of the current span to each request.
#[derive(Clone)]
pub struct AuthInterceptor {
    authorization: MetadataValue<Ascii>,
    tenant: Option<MetadataValue<Ascii>>,
}

impl std::fmt::Debug for AuthInterceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthInterceptor")
            .field("authorization", &"Bearer [REDACTED]")
            .field("tenant", &self.tenant)
            .finish()
    }
}

impl AuthInterceptor {
    /// Metadata for `token`, acting on `tenant`.
    pub fn new(token: &SecretString, tenant: Option<&str>) -> Result<Self> {
        let mut authorization: MetadataValue<Ascii> =
            format!("Bearer {}", token.expose_secret().trim())
                .parse()
                .map_err(|_| {
                    anyhow::anyhow!("the bearer token contains characters not allowed in metadata")
                })?;
        authorization.set_sensitive(true);
        let tenant = match tenant.filter(|t| !t.is_empty()) {
            None => None,
            Some(t) => Some(
                t.parse()
                    .map_err(|_| anyhow::anyhow!("tenant {t:?} is not valid in metadata"))?,
            ),
        };
        Ok(Self {
            authorization,
            tenant,
        })
    }

    /// The same identity acting on another tenant.
    pub fn with_tenant(&self, tenant: Option<&str>) -> Result<Self> {
        let mut this = self.clone();
        this.tenant = match tenant.filter(|t| !t.is_empty()) {
            None => None,
            Some(t) => Some(
                t.parse()
                    .map_err(|_| anyhow::anyhow!("tenant {t:?} is not valid in metadata"))?,
            ),
        };
        Ok(this)
    }
}

impl Interceptor for AuthInterceptor {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let md = req.metadata_mut();
        md.insert("authorization", self.authorization.clone());
        if let Some(t) = &self.tenant {
            md.insert(TENANT_HEADER, t.clone());
        }
        wardline_kit::telemetry::inject_grpc_metadata(md);
        Ok(req)
    }
}

/// A channel and the identity calls on it carry.
#[derive(Clone, Debug)]
pub struct Session {
    channel: Channel,
    interceptor: AuthInterceptor,
}

impl Session {
    /// Calls on `channel` as `token`, acting on `tenant`.
    pub fn new(channel: Channel, token: &SecretString, tenant: Option<&str>) -> Result<Self> {
        Ok(Self {
            channel,
            interceptor: AuthInterceptor::new(token, tenant)?,
        })
    }

    /// The same identity and channel, acting on `tenant`.
    pub fn for_tenant(&self, tenant: Option<&str>) -> Result<Self> {
        Ok(Self {
            channel: self.channel.clone(),
            interceptor: self.interceptor.with_tenant(tenant)?,
        })
    }

    /// The underlying channel (cheap to clone).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// The interceptor adding this session's metadata.
    pub fn interceptor(&self) -> AuthInterceptor {
        self.interceptor.clone()
    }
}

/// One method per service client on [`Session`], each a client of the
/// session's channel whose calls carry its metadata.
macro_rules! clients {
    ($($(#[$doc:meta])* $name:ident => $client:ident,)+) => {
        impl Session {
            $(
                $(#[$doc])*
                pub fn $name(&self) -> $client<AuthedChannel> {
                    $client::with_interceptor(self.channel(), self.interceptor())
                }
            )+
        }
    };
}

clients! {
    /// Intake's tenant API.
    tenants => TenantServiceClient,
    /// Intake's ticket API.
    tickets => TicketServiceClient,
    /// Routing's analyst directory (on a session connected to routing).
    analysts => AnalystServiceClient,
    /// Routing's queues, assignments and explanations.
    queues => QueueServiceClient,
    /// Routing's category rules.
    rules => RoutingRuleServiceClient,
    /// Routing's SLA targets.
    sla => SlaTargetServiceClient,
    /// Billing's contracts (on a session connected to billing).
    contracts => ContractServiceClient,
    /// Billing's usage, charges and unbilled calls.
    usage => UsageServiceClient,
    /// Billing's invoices.
    invoices => InvoiceServiceClient,
    /// Notification's recipients (on a session connected to notification).
    recipients => RecipientServiceClient,
    /// Notification's webhook endpoints.
    webhooks => WebhookServiceClient,
    /// Notification's deliveries.
    deliveries => DeliveryServiceClient,
    /// The audit trail of whichever service the session is connected to.
    audit => AuditServiceClient,
}

/// The canonical name of a status code, as in the gRPC spec
/// (`INVALID_ARGUMENT`): tonic's variant name in upper snake case.
pub fn code_name(code: tonic::Code) -> String {
    use heck::ToShoutySnakeCase as _;
    format!("{code:?}").to_shouty_snake_case()
}

/// `CODE: message`, the way wardctl reports a failed call.
pub fn describe_status(s: &Status) -> String {
    if s.message().is_empty() {
        code_name(s.code())
    } else {
        format!("{}: {}", code_name(s.code()), s.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt;

    fn token() -> SecretString {
        SecretString::from("header.payload.signature")
    }

    #[test]
    fn the_interceptor_adds_token_tenant_and_trace_context() {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("wardctl.test");
            let _entered = span.enter();
            let mut i = AuthInterceptor::new(&token(), Some("stmarys")).unwrap();
            let req = i.call(Request::new(())).unwrap();
            let md = req.metadata();
            assert_eq!(
                md.get("authorization").unwrap(),
                "Bearer header.payload.signature"
            );
            assert!(md.get("authorization").unwrap().is_sensitive());
            assert_eq!(md.get(TENANT_HEADER).unwrap(), "stmarys");
            let tp = md
                .get("traceparent")
                .expect("traceparent")
                .to_str()
                .unwrap();
            assert!(tp.starts_with("00-") && tp.len() == 55, "{tp}");
        });
    }

    #[test]
    fn the_tenant_header_is_optional_and_replaceable() {
        let mut i = AuthInterceptor::new(&token(), None).unwrap();
        let req = i.call(Request::new(())).unwrap();
        assert!(req.metadata().get(TENANT_HEADER).is_none());
        let mut j = i.with_tenant(Some("lakeside")).unwrap();
        assert_eq!(
            j.call(Request::new(()))
                .unwrap()
                .metadata()
                .get(TENANT_HEADER)
                .unwrap(),
            "lakeside"
        );
        let mut k = j.with_tenant(Some("")).unwrap();
        assert!(
            k.call(Request::new(()))
                .unwrap()
                .metadata()
                .get(TENANT_HEADER)
                .is_none()
        );
        assert!(AuthInterceptor::new(&token(), Some("bad\ntenant")).is_err());
        assert!(!format!("{i:?}").contains("signature"));
    }

    #[test]
    fn statuses_read_like_the_spec() {
        let s = Status::invalid_argument("caller.role: required");
        assert_eq!(
            describe_status(&s),
            "INVALID_ARGUMENT: caller.role: required"
        );
        assert_eq!(describe_status(&Status::not_found("")), "NOT_FOUND");
        assert_eq!(
            code_name(tonic::Code::FailedPrecondition),
            "FAILED_PRECONDITION"
        );
    }

    #[test]
    fn bad_urls_are_refused_before_connecting() {
        assert!(endpoint("not a url", Duration::from_secs(1)).is_err());
        assert!(endpoint("https://intake:50051", Duration::from_secs(1)).is_ok());
        let e = endpoint_with(
            "https://intake:50051",
            Duration::from_secs(1),
            Some("/nonexistent/ca.pem".into()),
            None,
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("WARDCTL_CA_FILE"), "{e:#}");
        assert!(endpoint("http://127.0.0.1:50051", Duration::from_secs(1)).is_ok());
    }
}
