//! `spawn_app()` for intake: a real intake on port 0 against a fresh
//! database and a private NATS server, with typed, authenticated clients.

#![allow(dead_code)]

use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use wardline_intake::{Application, Config};
use wardline_kit::auth::Role;
use wardline_kit::config::Env;
use wardline_proto::common::{CallerRole, Channel as CallChannel, Impact, Urgency};
use wardline_proto::intake::Ticket;
use wardline_proto::intake::tenant_service_client::TenantServiceClient;
use wardline_proto::intake::ticket_service_client::TicketServiceClient;
use wardline_proto::intake::{Caller, CreateTenantRequest, CreateTicketRequest, Facility};
use wardline_testkit::{Auth, TestDb, TestNats};

pub type Tickets = TicketServiceClient<InterceptedService<Channel, Auth>>;
pub type Tenants = TenantServiceClient<InterceptedService<Channel, Auth>>;

pub struct TestApp {
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
    nats: Option<TestNats>,
    db: Option<TestDb>,
    shutdown: CancellationToken,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub fn config(db: &TestDb, nats: &TestNats) -> Config {
    config_with(db, nats, &[])
}

pub fn config_with(db: &TestDb, nats: &TestNats, extra: &[(&str, &str)]) -> Config {
    let mut pairs: Vec<(String, String)> = vec![
        ("INTAKE_GRPC_ADDR", "127.0.0.1:0".to_owned()),
        ("INTAKE_ADMIN_ADDR", "127.0.0.1:0".to_owned()),
        ("INTAKE_DATABASE_URL", db.url()),
        ("INTAKE_MIGRATE_DATABASE_URL", db.owner_url()),
        ("INTAKE_DB_MAX_CONNECTIONS", "8".to_owned()),
        ("INTAKE_RELAY_POLL_MS", "200".to_owned()),
        ("WARDLINE_SHUTDOWN_TIMEOUT_MS", "5000".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    pairs.extend(wardline_testkit::auth_env());
    pairs.extend(nats.service_env("intake", extra));
    pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Config::from_env(&Env::from_pairs(pairs)).expect("test configuration is valid")
}

pub async fn spawn_app() -> TestApp {
    let nats = TestNats::start();
    let db = TestDb::create("intake").await;
    start(nats, db).await
}

pub async fn start(nats: TestNats, db: TestDb) -> TestApp {
    start_with(nats, db, &[]).await
}

pub async fn start_with(nats: TestNats, db: TestDb, extra: &[(&str, &str)]) -> TestApp {
    // Propagation needs the tracing layer, exactly as in the binary.
    std::mem::forget(wardline_kit::telemetry::init(
        "intake",
        wardline_kit::telemetry::LogFormat::Pretty,
    ));
    let shutdown = CancellationToken::new();
    let app = Application::build(config_with(&db, &nats, extra), shutdown.clone())
        .await
        .expect("intake builds");
    let (grpc, admin) = (app.grpc_addr(), app.admin_addr());
    let handle = tokio::spawn(app.run_until_stopped());
    TestApp {
        grpc,
        admin,
        nats: Some(nats),
        db: Some(db),
        shutdown,
        handle: Some(handle),
    }
}

impl TestApp {
    /// Stops intake gracefully and hands back its NATS and database.
    pub async fn stop(mut self) -> (TestNats, TestDb) {
        self.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            h.await
                .expect("intake task")
                .expect("intake stopped cleanly");
        }
        (self.nats.take().expect("nats"), self.db.take().expect("db"))
    }

    pub fn nats(&self) -> &TestNats {
        self.nats.as_ref().expect("nats")
    }

    pub fn db(&self) -> &TestDb {
        self.db.as_ref().expect("db")
    }

    pub fn tickets(&self, token: &str) -> Tickets {
        TicketServiceClient::with_interceptor(
            wardline_testkit::channel(self.grpc),
            Auth::new(token, None),
        )
    }

    pub fn tickets_as(&self, auth: Auth) -> Tickets {
        TicketServiceClient::with_interceptor(wardline_testkit::channel(self.grpc), auth)
    }

    pub fn tenants(&self, auth: Auth) -> Tenants {
        TenantServiceClient::with_interceptor(wardline_testkit::channel(self.grpc), auth)
    }

    /// A vendor admin's tenant client.
    pub fn vendor(&self) -> Tenants {
        self.tenants(Auth::new(&vendor_token(), None))
    }

    /// Creates tenant `id` (prefix from its first letters) with facility `main`.
    pub async fn create_tenant(&self, id: &str, prefix: &str) {
        self.vendor()
            .create_tenant(CreateTenantRequest {
                request_id: format!("create-{id}"),
                tenant_id: id.to_owned(),
                name: format!("{id} hospital"),
                time_zone: "America/Chicago".into(),
                ticket_prefix: prefix.into(),
                facilities: vec![Facility {
                    facility_id: "main".into(),
                    name: "Main campus".into(),
                }],
                reopen_window_hours: 0,
            })
            .await
            .expect("tenant created");
    }

    /// A nurse of `tenant` creates [`nurse_ticket`]`(request_id)`.
    pub async fn nurse_creates(&self, tenant: &str, request_id: &str) -> Ticket {
        self.tickets(&nurse_token(tenant))
            .create_ticket(nurse_ticket(request_id))
            .await
            .expect("ticket created")
            .into_inner()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn vendor_token() -> String {
    wardline_testkit::token("ops", "*", &[Role::VendorAdmin])
}

/// Riley's token: the provider states the email and phone [`nurse_ticket`] names.
pub fn nurse_token(tenant: &str) -> String {
    wardline_testkit::requester_token(
        "rn.jones",
        tenant,
        Some("riley.jones@example.org"),
        Some("+13125550100"),
    )
}

pub fn analyst_token(tenant: &str, analyst: &str) -> String {
    wardline_testkit::token(analyst, tenant, &[Role::Analyst])
}

pub fn admin_token(tenant: &str) -> String {
    wardline_testkit::token("admin", tenant, &[Role::TenantAdmin])
}

/// A valid request: a nurse whose eMAR scanner fails at the bedside.
pub fn nurse_ticket(request_id: &str) -> CreateTicketRequest {
    CreateTicketRequest {
        request_id: request_id.into(),
        facility_id: "main".into(),
        caller: Some(Caller {
            caller_id: "rn.jones".into(),
            name: "Riley Jones, RN".into(),
            role: CallerRole::Nurse as i32,
            email: "riley.jones@example.org".into(),
            phone: "+13125550100".into(),
        }),
        channel: CallChannel::Phone as i32,
        application: "ehr".into(),
        category: 0,
        urgency: Urgency::High as i32,
        impact: Impact::SingleUser as i32,
        patient_care_blocked: true,
        description: "eMAR barcode scanner will not scan the medication for the patient in bed 12"
            .into(),
    }
}

/// A plain HTTP GET of intake's admin endpoint.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        s.read_to_string(&mut out),
    )
    .await
    .unwrap()
    .unwrap();
    out
}
