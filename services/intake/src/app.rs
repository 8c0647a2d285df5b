//! Building and running intake: the same code path for `main`, the tests
//! (port 0, a fresh database, a private NATS) and the benchmarks.

use std::net::SocketAddr;
use std::sync::Arc;

use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use wardline_kit::auth::Authenticator;
use wardline_kit::consumer::ConsumerSpec;
use wardline_kit::service::Base;
use wardline_proto::intake::tenant_service_server::TenantServiceServer;
use wardline_proto::intake::ticket_service_server::TicketServiceServer;

use crate::config::Config;
use crate::events::{CONSUMED, RoutingEvents};
use crate::grpc::Api;

/// Intake's own migrations.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Service name in logs, metrics, traces and the consumer's durable name.
pub const SERVICE: &str = "intake";

/// A built intake, ports bound, not yet serving.
pub struct Application {
    base: Base,
    config: Config,
    grpc: TcpListener,
    admin: TcpListener,
}

impl Application {
    /// Connects, migrates, provisions, binds the ports and starts the
    /// relay and the consumer. `shutdown` stops it.
    pub async fn build(config: Config, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let base = Base::connect(SERVICE, &config.common, &config.db, &MIGRATOR, shutdown).await?;
        let grpc = Base::bind(config.grpc_addr).await?;
        let admin = Base::bind(config.admin_addr).await?;
        base.spawn_relay(config.relay.clone());
        let durable = if config.common.tenants.is_empty() {
            SERVICE.to_owned()
        } else {
            format!("{SERVICE}-{}", config.common.tenants.join("-"))
        };
        let mut spec = ConsumerSpec::new(
            SERVICE,
            durable,
            wardline_kit::nats::filter_subjects(&config.common.tenants, CONSUMED),
        );
        spec.workers = config.consumer_workers;
        base.spawn_consumer(spec, Arc::new(RoutingEvents));
        Ok(Self {
            base,
            config,
            grpc,
            admin,
        })
    }

    /// The bound gRPC address (useful with port 0).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
            .local_addr()
            .expect("bound listener has an address")
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Serves until the shutdown token is cancelled, then stops in order.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let auth = Authenticator::hs256(&self.config.jwt_secret);
        let api = Api::new(self.base.pool.clone());
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<TicketServiceServer<Api>>().await;
        health.set_serving::<TenantServiceServer<Api>>().await;
        let router = tonic::transport::Server::builder()
            .trace_fn(wardline_kit::grpc::rpc_span)
            .add_service(health_service)
            .add_service(wardline_kit::grpc::reflection())
            .add_service(tonic::service::interceptor::InterceptedService::new(
                TenantServiceServer::new(api.clone()),
                auth.interceptor(),
            ))
            .add_service(tonic::service::interceptor::InterceptedService::new(
                TicketServiceServer::new(api),
                auth.interceptor(),
            ));
        self.base.serve(self.grpc, router, health, self.admin).await
    }
}
