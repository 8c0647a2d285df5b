//! `spawn_stack()`: intake and routing in process on port 0, each with a
//! fresh database, sharing one private nats-server, with typed clients.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;

use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use wardline_kit::auth::Role;
use wardline_kit::config::Env;
use wardline_proto::common::{CallerRole, Category, Channel as CallChannel, Impact, Urgency};
use wardline_proto::events::Availability;
use wardline_proto::intake::tenant_service_client::TenantServiceClient;
use wardline_proto::intake::ticket_service_client::TicketServiceClient;
use wardline_proto::intake::{
    Caller, CreateTenantRequest, CreateTicketRequest, Facility, GetTicketRequest, Ticket,
};
use wardline_proto::routing::analyst_service_client::AnalystServiceClient;
use wardline_proto::routing::queue_service_client::QueueServiceClient;
use wardline_proto::routing::sla_target_service_client::SlaTargetServiceClient;
use wardline_proto::routing::{
    Analyst, ClinicalCredential, Skill, SkillModule, TenantCoverage, UpsertAnalystRequest,
};
use wardline_testkit::{Auth, TestDb, TestNats};

pub type Tickets = TicketServiceClient<InterceptedService<Channel, Auth>>;
pub type Analysts = AnalystServiceClient<InterceptedService<Channel, Auth>>;
pub type Queues = QueueServiceClient<InterceptedService<Channel, Auth>>;
pub type Slas = SlaTargetServiceClient<InterceptedService<Channel, Auth>>;

/// One running service in this process.
pub struct Running {
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
    shutdown: CancellationToken,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    /// A service running elsewhere (a process), known by its addresses.
    pub fn at(grpc: SocketAddr, admin: SocketAddr) -> Self {
        Self {
            grpc,
            admin,
            shutdown: CancellationToken::new(),
            handle: None,
        }
    }

    /// Graceful stop; panics if the service failed.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            h.await
                .expect("service task")
                .expect("service stopped cleanly");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The test environment every service shares, under its prefix: port 0,
/// the test database, a small pool, a fast relay, the test NATS and secret;
/// `extra` adds the service's own variables.
pub fn service_env(
    prefix: &str,
    db: &TestDb,
    nats: &TestNats,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        (format!("{prefix}_GRPC_ADDR"), "127.0.0.1:0".into()),
        (format!("{prefix}_ADMIN_ADDR"), "127.0.0.1:0".into()),
        (format!("{prefix}_DATABASE_URL"), db.url()),
        (format!("{prefix}_MIGRATE_DATABASE_URL"), db.owner_url()),
        (format!("{prefix}_DB_MAX_CONNECTIONS"), "8".into()),
        (format!("{prefix}_RELAY_POLL_MS"), "200".into()),
        ("WARDLINE_SHUTDOWN_TIMEOUT_MS".into(), "5000".into()),
        // A killed service's unacknowledged events come back after 5 s,
        // not the production 30 s: crash tests converge sooner.
        ("WARDLINE_CONSUMER_ACK_WAIT_MS".into(), "5000".into()),
    ];
    env.extend(wardline_testkit::auth_env());
    env.extend(nats.service_env(&prefix.to_lowercase(), extra));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

pub fn intake_env(db: &TestDb, nats: &TestNats) -> Vec<(String, String)> {
    service_env("INTAKE", db, nats, &[])
}

pub fn routing_env(db: &TestDb, nats: &TestNats) -> Vec<(String, String)> {
    service_env(
        "ROUTING",
        db,
        nats,
        &[
            ("ROUTING_SCAN_INTERVAL_MS", "100"),
            ("ROUTING_DRAIN_INTERVAL_MS", "500"),
        ],
    )
}

/// Starts service crate `$krate` in this process from the environment
/// `$env`, on the ports it binds (port 0 in tests).
macro_rules! start_in_process {
    ($krate:ident, $env:expr) => {{
        telemetry();
        let config = $krate::Config::from_env(&Env::from_pairs($env)).expect(concat!(
            stringify!($krate),
            " accepts the test configuration"
        ));
        let shutdown = CancellationToken::new();
        let app = $krate::Application::build(config, shutdown.clone())
            .await
            .expect(concat!(stringify!($krate), " builds"));
        let (grpc, admin) = (app.grpc_addr(), app.admin_addr());
        Running {
            grpc,
            admin,
            shutdown,
            handle: Some(tokio::spawn(app.run_until_stopped())),
        }
    }};
}

fn telemetry() {
    std::mem::forget(wardline_kit::telemetry::init(
        "e2e",
        wardline_kit::telemetry::LogFormat::Pretty,
    ));
}

pub fn billing_env(db: &TestDb, nats: &TestNats) -> Vec<(String, String)> {
    service_env("BILLING", db, nats, &[])
}

pub async fn start_billing(db: &TestDb, nats: &TestNats) -> Running {
    start_in_process!(wardline_billing, billing_env(db, nats))
}

/// Publishes an event to JetStream as its producer's relay would (message id = event id).
pub async fn publish_event(
    js: &async_nats::jetstream::Context,
    env: &wardline_proto::events::EventEnvelope,
) {
    publish_event_as(js, env, &env.event_id).await;
}

/// Publishes under a chosen message id (a different one slips past the
/// stream's duplicate window, exercising the consumer's inbox instead).
pub async fn publish_event_as(
    js: &async_nats::jetstream::Context,
    env: &wardline_proto::events::EventEnvelope,
    msg_id: &str,
) {
    use prost::Message;
    let subject = wardline_kit::events::subject(env).expect("payload");
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", msg_id);
    js.publish_with_headers(subject, headers, env.encode_to_vec().into())
        .await
        .expect("publish")
        .await
        .expect("puback");
}

/// Intake in process from a whole environment (a test's own variables).
pub async fn start_intake_with(env: Vec<(String, String)>) -> Running {
    start_in_process!(wardline_intake, env)
}

pub async fn start_intake(db: &TestDb, nats: &TestNats) -> Running {
    start_in_process!(wardline_intake, intake_env(db, nats))
}

pub async fn start_routing(db: &TestDb, nats: &TestNats) -> Running {
    start_in_process!(wardline_routing, routing_env(db, nats))
}

/// Intake and routing sharing one NATS.
pub struct Stack {
    pub nats: TestNats,
    pub intake_db: TestDb,
    pub routing_db: TestDb,
    pub intake: Running,
    /// Routing in process (None when the test runs it as a process).
    pub routing: Option<Running>,
    /// Where routing's gRPC listens.
    pub routing_grpc: SocketAddr,
}

pub async fn spawn_stack() -> Stack {
    spawn_stack_with(&[]).await
}

/// [`spawn_stack`] with routing's variables `routing_vars` replaced.
pub async fn spawn_stack_with(routing_vars: &[(&str, &str)]) -> Stack {
    let nats = TestNats::start();
    let intake_db = TestDb::create("intake").await;
    let routing_db = TestDb::create("routing").await;
    let intake = start_intake(&intake_db, &nats).await;
    let mut env = routing_env(&routing_db, &nats);
    env.retain(|(k, _)| !routing_vars.iter().any(|(r, _)| r == k));
    env.extend(
        routing_vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let routing = start_in_process!(wardline_routing, env);
    let routing_grpc = routing.grpc;
    Stack {
        nats,
        intake_db,
        routing_db,
        intake,
        routing: Some(routing),
        routing_grpc,
    }
}

pub fn vendor_token() -> String {
    wardline_testkit::token("ops", "*", &[Role::VendorAdmin])
}

pub fn admin_token(tenant: &str) -> String {
    wardline_testkit::token("admin", tenant, &[Role::TenantAdmin])
}

pub fn analyst_token(tenant: &str, analyst: &str) -> String {
    wardline_testkit::token(analyst, tenant, &[Role::Analyst])
}

/// The caller of [`ticket_request`]: the provider states their email.
pub fn nurse_token(tenant: &str) -> String {
    wardline_testkit::requester_token("caller-1", tenant, Some("riley@example.org"), None)
}

impl Stack {
    pub fn tickets(&self, token: &str) -> Tickets {
        TicketServiceClient::with_interceptor(
            wardline_testkit::channel(self.intake.grpc),
            Auth::new(token, None),
        )
    }

    pub fn analysts(&self) -> Analysts {
        AnalystServiceClient::with_interceptor(
            wardline_testkit::channel(self.routing_grpc),
            Auth::new(&vendor_token(), None),
        )
    }

    pub fn analysts_as(&self, token: &str) -> Analysts {
        AnalystServiceClient::with_interceptor(
            wardline_testkit::channel(self.routing_grpc),
            Auth::new(token, None),
        )
    }

    pub fn queues(&self, tenant: &str) -> Queues {
        QueueServiceClient::with_interceptor(
            wardline_testkit::channel(self.routing_grpc),
            Auth::new(&admin_token(tenant), None),
        )
    }

    /// SLA targets are contractual: the vendor sets them for a tenant.
    pub fn slas(&self, tenant: &str) -> Slas {
        SlaTargetServiceClient::with_interceptor(
            wardline_testkit::channel(self.routing_grpc),
            Auth::new(&vendor_token(), Some(tenant)),
        )
    }

    pub async fn create_tenant(&self, id: &str, prefix: &str) {
        TenantServiceClient::with_interceptor(
            wardline_testkit::channel(self.intake.grpc),
            Auth::new(&vendor_token(), None),
        )
        .create_tenant(CreateTenantRequest {
            request_id: format!("create-{id}"),
            tenant_id: id.into(),
            name: format!("{id} hospital"),
            time_zone: "America/Chicago".into(),
            ticket_prefix: prefix.into(),
            facilities: vec![
                Facility {
                    facility_id: "main".into(),
                    name: "Main campus".into(),
                },
                Facility {
                    facility_id: "north".into(),
                    name: "North clinic".into(),
                },
            ],
            reopen_window_hours: 0,
        })
        .await
        .expect("tenant created");
    }

    pub async fn upsert(&self, analyst: Analyst) -> Analyst {
        let id = analyst.analyst_id.clone();
        self.analysts()
            .upsert_analyst(UpsertAnalystRequest {
                request_id: format!("upsert-{id}-{}", uuid::Uuid::new_v4()),
                analyst: Some(analyst),
                expected_version: 0,
            })
            .await
            .unwrap_or_else(|e| panic!("upsert {id}: {e:?}"))
            .into_inner()
    }

    pub async fn ticket(&self, tenant: &str, id: &str) -> Ticket {
        self.tickets(&admin_token(tenant))
            .get_ticket(GetTicketRequest {
                ticket_id: id.into(),
                ..Default::default()
            })
            .await
            .expect("get ticket")
            .into_inner()
    }

    /// Waits until intake shows `pred` on the ticket.
    pub async fn ticket_until(
        &self,
        tenant: &str,
        id: &str,
        what: &str,
        pred: impl Fn(&Ticket) -> bool,
    ) -> Ticket {
        wardline_testkit::eventually(15, what, || async {
            let t = self.ticket(tenant, id).await;
            pred(&t).then_some(t)
        })
        .await
    }

    /// Moves a routing timer's deadline to now (the clock "runs out").
    pub async fn expire_timer(&self, ticket_id: &str, kind: &str) {
        let pool = self.routing_db.pool().await;
        let n = sqlx::query("UPDATE timers SET due_at = now() - interval '1 second' WHERE ticket_id = $1::uuid AND kind = $2")
            .bind(ticket_id)
            .bind(kind)
            .execute(&pool)
            .await
            .unwrap()
            .rows_affected();
        assert_eq!(n, 1, "timer {kind} of {ticket_id} exists");
    }
}

/// An analyst covering `tenant` with one skill, available, no roster (always on shift).
pub fn analyst(id: &str, tenant: &str, module: SkillModule, level: u32) -> Analyst {
    Analyst {
        analyst_id: id.into(),
        name: format!("Analyst {id}"),
        email: format!("{id}@desk.example.org"),
        time_zone: "America/Chicago".into(),
        coverage: vec![TenantCoverage {
            tenant_id: tenant.into(),
            facility_ids: vec![],
        }],
        skills: vec![Skill {
            module: module as i32,
            level,
        }],
        languages: vec!["en".into()],
        max_concurrent_tickets: 3,
        availability: Availability::Available as i32,
        ..Default::default()
    }
}

pub fn rn(id: &str, tenant: &str, module: SkillModule, level: u32) -> Analyst {
    Analyst {
        credentials: vec![ClinicalCredential::Rn as i32],
        ..analyst(id, tenant, module, level)
    }
}

/// A ticket request: who calls, about what.
pub fn ticket_request(
    request_id: &str,
    role: CallerRole,
    category: Category,
    blocked: bool,
) -> CreateTicketRequest {
    CreateTicketRequest {
        request_id: request_id.into(),
        facility_id: "main".into(),
        caller: Some(Caller {
            caller_id: "caller-1".into(),
            name: "Riley Jones".into(),
            role: role as i32,
            email: "riley@example.org".into(),
            phone: String::new(),
        }),
        channel: CallChannel::Phone as i32,
        application: "ehr".into(),
        category: category as i32,
        urgency: Urgency::High as i32,
        impact: Impact::SingleUser as i32,
        patient_care_blocked: blocked,
        description: "The eMAR scanner rejects the wristband of the patient in bed 12".into(),
    }
}

/// Starts service binary `bin` as a process with `envs` (its `*_GRPC_ADDR`
/// and `*_ADMIN_ADDR` replaced by fixed loopback addresses, `extra` added)
/// and waits until it is ready. Returns the process and its gRPC address.
pub fn spawn_process(
    bin: &str,
    mut envs: Vec<(String, String)>,
    extra: &[(&str, String)],
    admin: SocketAddr,
    grpc: SocketAddr,
    log: &std::path::Path,
) -> wardline_testkit::ServiceProcess {
    for (k, v) in envs.iter_mut() {
        if k.ends_with("_GRPC_ADDR") {
            *v = grpc.to_string();
        } else if k.ends_with("_ADMIN_ADDR") {
            *v = admin.to_string();
        }
    }
    envs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let mut p = wardline_testkit::ServiceProcess::spawn(&binary(bin), &envs, log);
    p.wait_ready(admin, 60);
    p
}

/// Two free loopback addresses (gRPC, admin).
pub fn addresses() -> (SocketAddr, SocketAddr) {
    let a = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    (
        a(wardline_testkit::free_port()),
        a(wardline_testkit::free_port()),
    )
}

/// Path of a service binary built next to the test (scripts/test.sh builds
/// them first with `cargo build --bins`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not built; run `cargo build --workspace --bins` (scripts/test.sh does)",
        path.display()
    );
    path
}

/// Notification's test environment: email to `smtp`, SMS and pager to HTTP
/// receivers the test started, webhooks over http allowed, retries in
/// milliseconds.
pub fn notification_env(
    db: &TestDb,
    nats: &TestNats,
    smtp: &wardline_testkit::TestSmtp,
    sms: &wardline_testkit::HttpSink,
    pager: &wardline_testkit::HttpSink,
) -> Vec<(String, String)> {
    let smtp_port = smtp.addr().port().to_string();
    let (sms_url, pager_url) = (sms.url("/sms"), pager.url("/v2/enqueue"));
    service_env(
        "NOTIFICATION",
        db,
        nats,
        &[
            ("NOTIFICATION_SMTP_HOST", "127.0.0.1"),
            ("NOTIFICATION_SMTP_PORT", &smtp_port),
            ("NOTIFICATION_SMTP_TLS", "none"),
            ("NOTIFICATION_SMS_URL", &sms_url),
            ("NOTIFICATION_PAGER_URL", &pager_url),
            ("NOTIFICATION_WEBHOOK_ALLOW_HTTP", "true"),
            ("NOTIFICATION_EGRESS_ALLOW_HOSTS", "127.0.0.1"),
            ("NOTIFICATION_SECRET_KEYS", wardline_testkit::SEALING_KEYS),
            ("NOTIFICATION_SCAN_INTERVAL_MS", "50"),
            ("NOTIFICATION_SEND_TIMEOUT_MS", "2000"),
            ("NOTIFICATION_SENDING_LEASE_MS", "3000"),
            ("NOTIFICATION_RETRY_BASE_MS", "50"),
            ("NOTIFICATION_RETRY_MAX_MS", "200"),
            ("NOTIFICATION_MAX_ATTEMPTS", "5"),
        ],
    )
}

/// Notification in process, with its receivers.
pub async fn start_notification(
    db: &TestDb,
    nats: &TestNats,
    smtp: &wardline_testkit::TestSmtp,
    sms: &wardline_testkit::HttpSink,
    pager: &wardline_testkit::HttpSink,
) -> Running {
    start_in_process!(
        wardline_notification,
        notification_env(db, nats, smtp, sms, pager)
    )
}

/// A typed, authenticated client of notification's deliveries.
pub fn notification_deliveries(
    grpc: SocketAddr,
    tenant: &str,
) -> wardline_proto::notification::delivery_service_client::DeliveryServiceClient<
    InterceptedService<Channel, Auth>,
> {
    wardline_proto::notification::delivery_service_client::DeliveryServiceClient::with_interceptor(
        wardline_testkit::channel(grpc),
        Auth::new(&admin_token(tenant), None),
    )
}

/// The tables of `db` (public schema) with a row whose text, or whose
/// bytes (protobuf in BYTEA columns), contain `needle`.
pub async fn tables_containing(db: &TestDb, needle: &str) -> Vec<String> {
    let pool = db.pool().await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
          WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let hex: String = needle.bytes().map(|b| format!("{b:02x}")).collect();
    let mut found = Vec::new();
    for t in tables {
        let sql = format!(
            "SELECT count(*) FROM \"{t}\" r WHERE r::text LIKE '%' || $1 || '%' OR r::text LIKE '%' || $2 || '%'"
        );
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(needle)
            .bind(&hex)
            .fetch_one(&pool)
            .await
            .unwrap();
        if n > 0 {
            found.push(t);
        }
    }
    found
}

/// The text of a service's `/metrics` (plain HTTP on the admin port).
pub async fn metrics_text(admin: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(admin).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    body
}
