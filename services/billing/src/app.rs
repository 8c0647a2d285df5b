//! Building and running billing: the same path for `main` and the tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;
use wardline_kit::auth::Role;
use wardline_kit::db::{self, Scope};
use wardline_kit::service::{Base, Listeners};
use wardline_proto::billing::contract_service_server::ContractServiceServer;
use wardline_proto::billing::invoice_service_server::InvoiceServiceServer;
use wardline_proto::billing::usage_service_server::UsageServiceServer;

use crate::config::Config;
use crate::events::{BillingEvents, CONSUMED};
use crate::grpc::Api;

/// Billing's own migrations.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Who may read the events this service could not apply.
const DEAD_LETTER_READERS: &[Role] = &[Role::VendorAdmin, Role::TenantAdmin, Role::Billing];

/// Service name.
pub const SERVICE: &str = "billing";

/// A built billing service, ports bound.
pub struct Application {
    base: Base,
    listeners: Listeners,
}

/// Unbilled calls of every tenant: one number over all of them, so the
/// transaction sees every tenant's rows.
async fn unbilled_calls(pool: &sqlx::PgPool) -> Result<i64, sqlx::Error> {
    let mut tx = db::begin(pool, Scope::AllTenants).await?;
    let n = sqlx::query_scalar(
        "SELECT count(*) FROM calls c WHERE NOT EXISTS
           (SELECT 1 FROM contract_versions v WHERE v.tenant_id = c.tenant_id AND v.effective_from <= c.local_date)",
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(n)
}

/// Publishes the number of unbilled calls (tenants without a contract in
/// force) every 30 s, so a forgotten contract shows on the dashboard.
async fn unbilled_gauge(pool: sqlx::PgPool, stop: CancellationToken) {
    loop {
        if let Ok(n) = unbilled_calls(&pool).await {
            metrics::gauge!("wardline_billing_unbilled_calls").set(n as f64);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
    }
}

impl Application {
    /// Connects, migrates, provisions, binds, starts the relay and the consumer.
    pub async fn build(config: Config, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let (base, listeners) = Base::start(SERVICE, &config.service, &MIGRATOR, shutdown).await?;
        base.spawn_consumer(
            base.consumer_spec(&config.service, CONSUMED),
            Arc::new(BillingEvents),
        );
        let pool = base.pool.clone();
        base.spawn(move |stop| unbilled_gauge(pool, stop));
        Ok(Self { base, listeners })
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
        let api = Api::new(self.base.pool.clone());
        let max = self.base.max_message_bytes();
        let routes = self
            .base
            .routes(DEAD_LETTER_READERS)?
            .serve(ContractServiceServer::new(api.clone()).max_decoding_message_size(max))
            .serve(UsageServiceServer::new(api.clone()).max_decoding_message_size(max))
            .serve(InvoiceServiceServer::new(api.clone()).max_decoding_message_size(max));
        self.base.serve_on(self.listeners, routes).await
    }
}
