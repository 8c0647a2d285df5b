//! Building and running intake: the same code path for `main`, the tests
//! (port 0, a fresh database, a private NATS) and the benchmarks.

use std::net::SocketAddr;
use std::sync::Arc;

use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;
use wardline_kit::auth::Role;
use wardline_kit::service::{Base, Listeners};
use wardline_proto::intake::tenant_service_server::TenantServiceServer;
use wardline_proto::intake::ticket_service_server::TicketServiceServer;

use crate::config::Config;
use crate::events::{CONSUMED, RoutingEvents};
use crate::grpc::Api;

/// Intake's own migrations.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Who may read the events this service could not apply.
const DEAD_LETTER_READERS: &[Role] = &[Role::VendorAdmin, Role::TenantAdmin];

/// Service name in logs, metrics, traces and the consumer's durable name.
pub const SERVICE: &str = "intake";

/// A built intake, ports bound, not yet serving.
pub struct Application {
    base: Base,
    config: Config,
    listeners: Listeners,
}

impl Application {
    /// Connects, migrates, provisions, binds the ports and starts the
    /// relay and the consumer. `shutdown` stops it.
    pub async fn build(config: Config, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let (base, listeners) = Base::start(SERVICE, &config.service, &MIGRATOR, shutdown).await?;
        base.spawn_consumer(
            base.consumer_spec(&config.service, CONSUMED),
            Arc::new(RoutingEvents),
        );
        Ok(Self {
            base,
            config,
            listeners,
        })
    }

    /// The bound gRPC address (useful with port 0).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.listeners.grpc_addr()
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.listeners.admin_addr()
    }

    /// Serves until the shutdown token is cancelled, then stops in order.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let quota = wardline_kit::quota::TenantQuota::new(
            self.config.tenant_rate,
            self.config.tenant_burst,
            "tickets",
        );
        let api = Api::new(self.base.pool.clone(), quota, self.config.writer).with_note_limits(
            crate::grpc::NoteLimits {
                quota: wardline_kit::quota::TenantQuota::new(
                    self.config.note_rate.0,
                    self.config.note_rate.1,
                    "notes",
                ),
                max_per_ticket: self.config.max_notes_per_ticket,
            },
        );
        let max = self.base.max_message_bytes();
        let routes = self
            .base
            .routes(DEAD_LETTER_READERS)?
            .serve(TenantServiceServer::new(api.clone()).max_decoding_message_size(max))
            .serve(TicketServiceServer::new(api.clone()).max_decoding_message_size(max));
        self.base.serve_on(self.listeners, routes).await
    }
}
