//! Building and running notification: the same path for `main` and the tests.

use std::net::SocketAddr;
use std::sync::Arc;

use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;
use wardline_kit::auth::Role;
use wardline_kit::service::{Base, Listeners};
use wardline_proto::notification::delivery_service_server::DeliveryServiceServer;
use wardline_proto::notification::recipient_service_server::RecipientServiceServer;
use wardline_proto::notification::template_service_server::TemplateServiceServer;
use wardline_proto::notification::webhook_service_server::WebhookServiceServer;

use crate::channels::Channels;
use crate::config::Config;
use crate::events::{CONSUMED, Enabled, Events};
use crate::grpc::Api;
use crate::jobs::sender::{Sender, SenderConfig};

/// Notification's own migrations.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Who may read the events this service could not apply.
const DEAD_LETTER_READERS: &[Role] = &[Role::VendorAdmin, Role::TenantAdmin];

/// Service name.
pub const SERVICE: &str = "notification";

/// A built notification service, ports bound.
pub struct Application {
    base: Base,
    config: Config,
    listeners: Listeners,
    secret_keys: Arc<crate::domain::sealing::Keyring>,
}

/// The consumer's filter: the kinds notification tells people about, for
/// this replica's tenants. Analysts covering every tenant are announced
/// under `_all`, which a tenant-bound replica must hear too.
pub fn filter_subjects(tenants: &[String]) -> Vec<String> {
    let mut subjects = wardline_kit::nats::filter_subjects(tenants, CONSUMED);
    if !tenants.is_empty() {
        subjects.push(wardline_kit::nats::event_subject(
            crate::events::ALL_TENANTS_EVENT,
            "analyst",
            "upserted",
        ));
    }
    subjects
}

impl Application {
    /// Connects, migrates, provisions, binds, and starts the relay, the
    /// consumer (which records deliveries) and the sender (which sends them).
    pub async fn build(config: Config, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let channels = Channels::from_config(&config)?;
        let (base, listeners) = Base::start(SERVICE, &config.service, &MIGRATOR, shutdown).await?;
        let secret_keys = config.secret_keys.load()?;
        crate::grpc::webhooks::seal_at_rest(&base.pool, &secret_keys).await?;
        let mut spec = base.consumer_spec(&config.service, CONSUMED);
        spec.filter_subjects = filter_subjects(&config.service.common.tenants);
        // Events that came early (an assignment before the directory entry
        // of its analyst) are retried with the kit's short NAK delays; a few
        // more deliveries than the default leave room for a slow directory.
        spec.max_failures = 20;
        let events = Events {
            enabled: Enabled {
                email: channels.email.is_some(),
                sms: channels.sms.is_some(),
                webhook: channels.webhook.is_some(),
                pager: channels.pager.is_some(),
            },
            link_base_url: config.link_base_url.clone(),
            max_event_age: config.max_event_age,
        };
        base.spawn_consumer(spec, Arc::new(events));
        let sender = Arc::new(Sender::new(
            base.pool.clone(),
            channels,
            wardline_kit::quota::TenantQuota::new(
                config.tenant_rate,
                config.tenant_burst,
                "notifications",
            ),
            SenderConfig {
                timeout: config.send_timeout,
                lease: config.sending_lease,
                concurrency: config.send_concurrency,
                policy: config.retry,
                scan_interval: config.scan_interval,
            },
            secret_keys.clone(),
        ));
        base.spawn(move |stop| sender.run(stop));
        Ok(Self {
            base,
            config,
            listeners,
            secret_keys,
        })
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.listeners.grpc_addr()
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.listeners.admin_addr()
    }

    /// Serves until shutdown, then stops in order (the sender finishes the
    /// attempts in flight and records them).
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let api = Api::new(
            self.base.pool.clone(),
            self.config.webhook_allow_http,
            self.config.retry,
            self.config.egress.clone(),
            self.secret_keys.clone(),
        );
        let max = self.base.max_message_bytes();
        let routes = self
            .base
            .routes(DEAD_LETTER_READERS)?
            .serve(RecipientServiceServer::new(api.clone()).max_decoding_message_size(max))
            .serve(WebhookServiceServer::new(api.clone()).max_decoding_message_size(max))
            .serve(TemplateServiceServer::new(api.clone()).max_decoding_message_size(max))
            .serve(DeliveryServiceServer::new(api.clone()).max_decoding_message_size(max));
        self.base.serve_on(self.listeners, routes).await
    }
}
