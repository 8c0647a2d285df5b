//! Building and running routing: the same path for `main` and the tests.

use std::net::SocketAddr;
use std::sync::Arc;

use sqlx::migrate::Migrator;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use wardline_kit::auth::Role;
use wardline_kit::service::{Base, Listeners};
use wardline_proto::routing::analyst_service_server::AnalystServiceServer;
use wardline_proto::routing::queue_service_server::QueueServiceServer;
use wardline_proto::routing::routing_rule_service_server::RoutingRuleServiceServer;
use wardline_proto::routing::sla_target_service_server::SlaTargetServiceServer;

use crate::cache::PolicyCache;
use crate::config::Config;
use crate::engine::{self, CONSUMED, TicketEvents};
use crate::grpc::Api;

/// Routing's own migrations.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Who may read the events this service could not apply.
const DEAD_LETTER_READERS: &[Role] = &[Role::VendorAdmin, Role::TenantAdmin];

/// Service name.
pub const SERVICE: &str = "routing";

/// A built routing service, ports bound.
pub struct Application {
    base: Base,
    listeners: Listeners,
    wake: Arc<Notify>,
}

impl Application {
    /// Connects, migrates, provisions, binds, and starts the consumer, the
    /// relay, the queue drainer, the timer scanner and the queue gauges.
    pub async fn build(config: Config, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let (base, listeners) = Base::start(SERVICE, &config.service, &MIGRATOR, shutdown).await?;
        let wake = Arc::new(Notify::new());
        let cache = Arc::new(PolicyCache::new());
        base.spawn_consumer(
            base.consumer_spec(&config.service, CONSUMED),
            Arc::new(TicketEvents {
                wake: wake.clone(),
                cache: cache.clone(),
            }),
        );
        let (pool, c, w, every) = (
            base.pool.clone(),
            cache.clone(),
            wake.clone(),
            config.drain_interval,
        );
        base.spawn(move |stop| engine::run_drainer(pool, c, w, every, stop));
        let (pool, every) = (base.pool.clone(), config.scan_interval);
        base.spawn(move |stop| engine::run_scanner(pool, cache, every, stop));
        let pool = base.pool.clone();
        base.spawn(move |stop| engine::run_queue_gauges(pool, stop));
        Ok(Self {
            base,
            listeners,
            wake,
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

    /// Serves until shutdown, then stops in order.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let api = Api::new(self.base.pool.clone(), self.wake.clone());
        let max = self.base.max_message_bytes();
        let routes = self
            .base
            .routes(DEAD_LETTER_READERS)?
            .serve(AnalystServiceServer::new(api.clone()).max_decoding_message_size(max))
            .serve(RoutingRuleServiceServer::new(api.clone()).max_decoding_message_size(max))
            .serve(QueueServiceServer::new(api.clone()).max_decoding_message_size(max))
            .serve(SlaTargetServiceServer::new(api.clone()).max_decoding_message_size(max));
        self.base.serve_on(self.listeners, routes).await
    }
}
