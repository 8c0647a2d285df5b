//! The life of a service process, written once for all four.
//!
//! [`Base::start`] opens PostgreSQL (with retries), applies migrations as
//! the owner role (or checks that they were applied), checks the runtime
//! role it serves as ([`crate::roles`]), connects to NATS as the service's identity, waits until the streams exist
//! (`wardline-provision` creates them), binds both ports and starts the
//! outbox relay. The service spawns its consumer and background tasks on the
//! base ([`Base::spawn_consumer`], [`Base::spawn`]), lists its gRPC services
//! in [`Routes`] (each behind the auth interceptor; health, reflection and
//! the dead-letter service come with it, over TLS when configured) and hands
//! them to [`Base::serve_on`], which runs until the shutdown token is
//! cancelled and then stops in an order that loses nothing:
//!
//! 1. health turns NOT_SERVING and `/readyz` 503, so balancers stop sending;
//! 2. the gRPC server stops accepting and finishes in-flight RPCs;
//! 3. background tasks (relay, consumers, scanners) are cancelled and finish
//!    their current unit of work; unacknowledged messages are redelivered
//!    to another replica, unpublished outbox rows wait for the next relay;
//! 4. NATS is drained, the pool closed, spans flushed.
//!
//! All of it under `WARDLINE_SHUTDOWN_TIMEOUT_MS`; past it the process exits
//! anyway, which is safe because every step above is also crash-safe.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{AuthService, Authenticator, Role};
use crate::config::{CommonConfig, DbConfig};
use crate::consumer::{self, ConsumerSpec, EventHandler};
use crate::outbox::{Relay, RelayConfig};

/// Errors starting a service.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Database connection or migration.
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    /// NATS connection or provisioning.
    #[error(transparent)]
    Nats(#[from] crate::nats::NatsError),
    /// A certificate file named by a variable.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The token verification keys (JWKS file or URL).
    #[error(transparent)]
    Keys(#[from] crate::auth::keys::KeyError),
    /// The gRPC server refused the TLS configuration.
    #[error("gRPC TLS: {0}")]
    GrpcTls(String),
    /// A port could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
}

/// The bound gRPC and admin listeners of a service.
pub struct Listeners {
    /// gRPC.
    pub grpc: TcpListener,
    /// Admin HTTP.
    pub admin: TcpListener,
}

impl Listeners {
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
}

/// A service's gRPC services, each behind the auth interceptor, with the
/// health service reporting each one SERVING once the server runs.
pub struct Routes {
    router: tonic::transport::server::Router,
    auth: Authenticator,
    health: tonic_health::server::HealthReporter,
    names: Vec<&'static str>,
}

impl Routes {
    /// Adds `service` (a generated `...Server`) behind authentication.
    pub fn serve<S>(mut self, service: S) -> Self
    where
        S: tonic::server::NamedService
            + tower::Service<
                http::Request<tonic::body::Body>,
                Response = http::Response<tonic::body::Body>,
                Error = std::convert::Infallible,
            > + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        AuthService<S>: Sync,
    {
        self.names.push(S::NAME);
        self.router = self.router.add_service(self.auth.layer(service));
        self
    }
}

/// Connections and lifecycle shared by a service's parts.
#[derive(Clone)]
pub struct Base {
    /// Service name.
    pub service: &'static str,
    /// Database pool.
    pub pool: PgPool,
    /// NATS client.
    pub nats: async_nats::Client,
    /// JetStream context.
    pub js: jetstream::Context,
    /// Cancelled when shutdown begins (signal or test).
    pub shutdown: CancellationToken,
    /// Cancelled once RPCs have stopped: background tasks watch this one.
    background: CancellationToken,
    tasks: TaskTracker,
    common: CommonConfig,
    purges: Arc<std::sync::Mutex<Vec<crate::housekeeping::Purge>>>,
    grpc_tls: Option<tonic::transport::ServerTlsConfig>,
    grpc_limits: crate::grpc::Limits,
    auth: Option<Authenticator>,
}

impl Base {
    /// Opens the database (migrating it as the owner role when configured,
    /// see [`crate::roles`]), connects to NATS and waits for the streams.
    pub async fn connect(
        service: &'static str,
        common: &CommonConfig,
        db: &DbConfig,
        migrator: &Migrator,
        shutdown: CancellationToken,
    ) -> Result<Self, StartError> {
        let pool = crate::roles::prepare(db, migrator).await?;
        let nats = crate::nats::connect(&common.nats, service).await?;
        let js = jetstream::new(nats.clone());
        crate::nats::wait_for_streams(&js, &shutdown).await;
        Ok(Self {
            service,
            pool,
            nats,
            js,
            shutdown,
            background: CancellationToken::new(),
            tasks: TaskTracker::new(),
            common: common.clone(),
            purges: Arc::default(),
            grpc_tls: None,
            grpc_limits: crate::grpc::Limits::default(),
            auth: None,
        })
    }

    /// Everything a service starts with: connects (and migrates), binds both
    /// ports (port 0 picks free ones, for tests) and starts the outbox relay.
    pub async fn start(
        service: &'static str,
        config: &crate::config::ServiceConfig,
        migrator: &Migrator,
        shutdown: CancellationToken,
    ) -> Result<(Self, Listeners), StartError> {
        // Read the certificate files first: a wrong path stops start-up at
        // once, naming the variable, before anything connects.
        let grpc_tls = config
            .tls
            .as_ref()
            .map(crate::tls::ServerTls::tonic_config)
            .transpose()?;
        // The keys next: an unreadable JWKS file stops start-up naming its
        // variable (a JWKS URL that does not answer yet is retried).
        let auth = Authenticator::new(config.auth.clone()).await?;
        crate::admin::set_tenant_labels(config.common.metrics_tenant_labels);
        let mut base =
            Self::connect(service, &config.common, &config.db, migrator, shutdown).await?;
        base.grpc_tls = grpc_tls;
        base.grpc_limits = config.grpc_limits;
        base.auth = Some(auth);
        let listeners = Listeners {
            grpc: Self::bind(config.grpc_addr).await?,
            admin: Self::bind(config.admin_addr).await?,
        };
        base.spawn_relay(config.relay.clone());
        Ok((base, listeners))
    }

    /// The service's durable consumer of `kinds` (e.g. `"ticket.created"`):
    /// named after the service, or after the service and its tenants for a
    /// replica dedicated to some tenants (`WARDLINE_TENANTS`).
    pub fn consumer_spec(
        &self,
        config: &crate::config::ServiceConfig,
        kinds: &[&str],
    ) -> ConsumerSpec {
        let tenants = &config.common.tenants;
        let durable = if tenants.is_empty() {
            self.service.to_owned()
        } else {
            format!("{}-{}", self.service, tenants.join("-"))
        };
        let mut spec = ConsumerSpec::new(
            self.service,
            durable,
            crate::nats::filter_subjects(tenants, kinds),
        );
        spec.workers = config.consumer_workers;
        spec.batch = config.consumer_batch.max(1);
        spec.ack_wait = config.common.consumer_ack_wait;
        spec.exclude_tenants = config.common.exclude_tenants.clone();
        spec
    }

    /// The service's gRPC server ([`crate::grpc::router`]) with its TLS, when
    /// `<PREFIX>_TLS_CERT_FILE` is set: then plaintext connections are
    /// refused, and with `<PREFIX>_TLS_CLIENT_CA_FILE` so are clients
    /// without a certificate from that CA.
    pub fn grpc_router(
        &self,
        health: tonic_health::pb::health_server::HealthServer<
            impl tonic_health::pb::health_server::Health,
        >,
    ) -> Result<tonic::transport::server::Router, StartError> {
        crate::grpc::router_with_tls(health, self.grpc_tls.clone(), self.grpc_limits)
            .map_err(|e| StartError::GrpcTls(e.to_string()))
    }

    /// Spawns a background task that stops when RPCs have stopped.
    pub fn spawn<F, Fut>(&self, f: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(f(self.background.clone()));
    }

    /// Adds a retention rule for one of the service's own tables; the kit's
    /// housekeeping runs it with the kit's tables once serving starts.
    pub fn purge(&self, purge: crate::housekeeping::Purge) {
        self.purges.lock().expect("purges lock").push(purge);
    }

    /// Spawns the outbox relay.
    pub fn spawn_relay(&self, cfg: RelayConfig) {
        let relay = Relay::new(self.pool.clone(), self.js.clone(), cfg, self.service);
        self.spawn(move |stop| relay.run(stop));
    }

    /// Spawns a durable consumer with `handler`.
    pub fn spawn_consumer<H: EventHandler>(&self, spec: ConsumerSpec, handler: Arc<H>) {
        let (js, pool) = (self.js.clone(), self.pool.clone());
        self.spawn(move |stop| async move {
            let durable = spec.durable.clone();
            if let Err(e) = consumer::run(js, pool, spec, handler, stop).await {
                tracing::error!(%durable, error = %e, "consumer stopped");
            }
        });
    }

    /// Binds a TCP listener (port 0 picks a free port, for tests).
    pub async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
        TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })
    }

    /// The largest request message a service's gRPC servers decode
    /// (`<PREFIX>_GRPC_MAX_MESSAGE_BYTES`): give it to each generated server
    /// (`XServer::new(api).max_decoding_message_size(..)`).
    pub fn max_message_bytes(&self) -> usize {
        self.grpc_limits.max_message_bytes
    }

    /// The gRPC surface of this service: token verification (the
    /// [`Authenticator`] of the service's [`crate::auth::AuthConfig`]) in
    /// front of every service added, plus health, reflection and the dead-letter service (readable
    /// by `dead_letter_readers`), over TLS when `<PREFIX>_TLS_CERT_FILE` is
    /// set ([`Base::grpc_router`]).
    pub fn routes(&self, dead_letter_readers: &'static [Role]) -> Result<Routes, StartError> {
        let auth = self
            .auth
            .clone()
            .expect("Base::start builds the authenticator before routes are made");
        let (health, health_service) = tonic_health::server::health_reporter();
        let routes = Routes {
            router: self.grpc_router(health_service)?,
            auth,
            health,
            names: Vec::new(),
        };
        Ok(routes
            .serve(
                crate::dead_letters::Service::new(self.pool.clone(), dead_letter_readers)
                    .server()
                    .max_decoding_message_size(self.grpc_limits.max_message_bytes),
            )
            .serve(
                crate::audit::Service::new(self.pool.clone())
                    .server()
                    .max_decoding_message_size(self.grpc_limits.max_message_bytes),
            ))
    }

    /// Serves `routes` and the admin port on the listeners of
    /// [`Base::start`] until shutdown, then stops in order. Also runs
    /// housekeeping (expired idempotency keys).
    pub async fn serve_on(self, listeners: Listeners, routes: Routes) -> anyhow::Result<()> {
        let Listeners { grpc, admin } = listeners;
        let Routes {
            router,
            health,
            names,
            ..
        } = routes;
        for name in names {
            health
                .set_service_status(name, tonic_health::ServingStatus::Serving)
                .await;
        }
        let admin_stop = CancellationToken::new();
        let readiness = crate::admin::Readiness {
            pool: self.pool.clone(),
            nats: self.nats.clone(),
            shutdown: self.shutdown.clone(),
            interval: self.common.readyz_interval,
        };
        let admin_task = tokio::spawn(crate::admin::serve(admin, readiness, admin_stop.clone()));
        let pool = self.pool.clone();
        let mut purges = self.common.retention.purges();
        purges.extend(self.purges.lock().expect("purges lock").drain(..));
        self.spawn(move |stop| {
            crate::housekeeping::run(pool, purges, Duration::from_secs(300), stop)
        });

        let shutdown = self.shutdown.clone();
        let health_on_stop = health.clone();
        let grpc_stopping = async move {
            shutdown.cancelled().await;
            health_on_stop
                .set_service_status("", tonic_health::ServingStatus::NotServing)
                .await;
        };
        tracing::info!(service = self.service, "serving");
        let served = router
            .serve_with_incoming_shutdown(
                // Without TCP_NODELAY a small response waits for the
                // client's delayed ACK: ~40 ms added to every unary call.
                tonic::transport::server::TcpIncoming::from(grpc).with_nodelay(Some(true)),
                grpc_stopping,
            )
            .await;
        if let Err(e) = &served {
            tracing::error!(error = %e, "gRPC server failed");
            self.shutdown.cancel();
        }

        let deadline = self.common.shutdown_timeout;
        let orderly = async {
            self.background.cancel();
            self.tasks.close();
            self.tasks.wait().await;
            if let Err(e) = self.nats.drain().await {
                tracing::warn!(error = %e, "NATS drain failed");
            }
            self.pool.close().await;
        };
        if tokio::time::timeout(deadline, orderly).await.is_err() {
            tracing::warn!(timeout = ?deadline, "shutdown timed out; exiting anyway");
        }
        admin_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(1), admin_task).await;
        tracing::info!(service = self.service, "stopped");
        served.map_err(Into::into)
    }
}

/// The whole `main` of a service binary: read the configuration (a bad
/// variable exits with status 2 and a message naming it), install
/// telemetry, cancel on SIGTERM/SIGINT, run `app` until it returns, flush
/// spans. Every service's `main.rs` is one call to this.
pub async fn run_main<C, R, F, Fut>(
    service: &'static str,
    read: R,
    log_format: fn(&C) -> crate::telemetry::LogFormat,
    app: F,
) -> anyhow::Result<()>
where
    R: FnOnce(&crate::config::Env) -> Result<C, crate::config::ConfigError>,
    F: FnOnce(C, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let config = match read(&crate::config::Env::process()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wardline-{service}: configuration error: {e}");
            std::process::exit(2);
        }
    };
    let telemetry = crate::telemetry::init(service, log_format(&config));
    let shutdown = CancellationToken::new();
    crate::shutdown::cancel_on_signal(shutdown.clone());
    let result = app(config, shutdown).await;
    if let Err(e) = &result {
        tracing::error!(service, error = %e, "service failed");
    }
    telemetry.shutdown();
    result
}
