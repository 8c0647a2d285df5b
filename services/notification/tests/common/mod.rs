//! `spawn()`: notification in process on port 0 with a fresh database, a
//! private nats-server, and real local receivers started by the test: an
//! SMTP server, an SMS gateway and a pager provider (HTTP). Events are
//! published to JetStream exactly as intake and routing publish them.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use async_nats::jetstream;
use prost::Message;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use wardline_kit::auth::Role;
use wardline_kit::config::Env;
use wardline_kit::events::envelope;
use wardline_notification::{Application, Config};
use wardline_proto::common::{CallerRole, Category, Priority, TicketStatus};
use wardline_proto::events::event_envelope::Payload;
use wardline_proto::events::{
    AnalystInfo, AnalystUpserted, CallerContact, EscalationLevel, EventEnvelope, SlaBreached,
    SlaTarget, TicketAssigned, TicketCreated, TicketEscalated, TicketResolved, TicketSnapshot,
};
use wardline_proto::notification::delivery_service_client::DeliveryServiceClient;
use wardline_proto::notification::recipient_service_client::RecipientServiceClient;
use wardline_proto::notification::template_service_client::TemplateServiceClient;
use wardline_proto::notification::webhook_service_client::WebhookServiceClient;
use wardline_proto::notification::{Delivery, DeliveryState, ListDeliveriesRequest};
use wardline_testkit::{Auth, HttpSink, TestDb, TestNats, TestSmtp};

pub type Deliveries = DeliveryServiceClient<InterceptedService<Channel, Auth>>;
pub type Recipients = RecipientServiceClient<InterceptedService<Channel, Auth>>;
pub type Webhooks = WebhookServiceClient<InterceptedService<Channel, Auth>>;
pub type Templates = TemplateServiceClient<InterceptedService<Channel, Auth>>;

pub const TENANT: &str = "stmarys";

/// Notification and everything around it.
pub struct Harness {
    pub nats: TestNats,
    pub db: TestDb,
    pub smtp: TestSmtp,
    pub sms: HttpSink,
    pub pager: HttpSink,
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
    js: jetstream::Context,
    shutdown: CancellationToken,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn env(
    db: &TestDb,
    nats: &TestNats,
    smtp: &TestSmtp,
    sms: &HttpSink,
    pager: &HttpSink,
) -> Vec<(String, String)> {
    [
        ("NOTIFICATION_GRPC_ADDR", "127.0.0.1:0".to_owned()),
        ("NOTIFICATION_ADMIN_ADDR", "127.0.0.1:0".to_owned()),
        ("NOTIFICATION_DATABASE_URL", db.url()),
        ("NOTIFICATION_MIGRATE_DATABASE_URL", db.owner_url()),
        ("NOTIFICATION_DB_MAX_CONNECTIONS", "8".to_owned()),
        ("NOTIFICATION_RELAY_POLL_MS", "200".to_owned()),
        ("NOTIFICATION_SMTP_HOST", "127.0.0.1".to_owned()),
        ("NOTIFICATION_SMTP_PORT", smtp.addr().port().to_string()),
        ("NOTIFICATION_SMTP_TLS", "none".to_owned()),
        ("NOTIFICATION_SMS_URL", sms.url("/sms")),
        ("NOTIFICATION_PAGER_URL", pager.url("/v2/enqueue")),
        ("NOTIFICATION_PAGER_TOKEN", "pager-test-token".to_owned()),
        ("NOTIFICATION_WEBHOOK_ALLOW_HTTP", "true".to_owned()),
        // The test's own receivers, and nothing else inside.
        ("NOTIFICATION_EGRESS_ALLOW_HOSTS", "127.0.0.1".to_owned()),
        (
            "NOTIFICATION_SECRET_KEYS",
            wardline_testkit::SEALING_KEYS.to_owned(),
        ),
        (
            "NOTIFICATION_LINK_BASE_URL",
            "https://desk.example.org".to_owned(),
        ),
        ("NOTIFICATION_SCAN_INTERVAL_MS", "50".to_owned()),
        ("NOTIFICATION_SEND_TIMEOUT_MS", "2000".to_owned()),
        ("NOTIFICATION_SENDING_LEASE_MS", "3000".to_owned()),
        ("NOTIFICATION_RETRY_BASE_MS", "50".to_owned()),
        ("NOTIFICATION_RETRY_MAX_MS", "200".to_owned()),
        ("NOTIFICATION_MAX_ATTEMPTS", "4".to_owned()),
        ("WARDLINE_SHUTDOWN_TIMEOUT_MS", "5000".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .chain(wardline_testkit::auth_env())
    .chain(nats.service_env("notification", &[]))
    .collect()
}

/// Starts everything; `tweak` adjusts the environment.
pub async fn spawn_with(tweak: impl FnOnce(&mut Vec<(String, String)>)) -> Harness {
    std::mem::forget(wardline_kit::telemetry::init(
        "notification-test",
        wardline_kit::telemetry::LogFormat::Pretty,
    ));
    let nats = TestNats::start();
    let db = TestDb::create("notification").await;
    let smtp = TestSmtp::start().await;
    let sms = HttpSink::start().await;
    let pager = HttpSink::start().await;
    let mut vars = env(&db, &nats, &smtp, &sms, &pager);
    tweak(&mut vars);
    let config = Config::from_env(&Env::from_pairs(vars)).expect("notification config");
    let shutdown = CancellationToken::new();
    let app = Application::build(config, shutdown.clone())
        .await
        .expect("notification builds");
    let (grpc, admin) = (app.grpc_addr(), app.admin_addr());
    let handle = Some(tokio::spawn(app.run_until_stopped()));
    let js = nats.jetstream().await;
    Harness {
        nats,
        db,
        smtp,
        sms,
        pager,
        grpc,
        admin,
        js,
        shutdown,
        handle,
    }
}

pub async fn spawn() -> Harness {
    spawn_with(|_| {}).await
}

pub fn set(vars: &mut [(String, String)], key: &str, value: &str) {
    for (k, v) in vars.iter_mut() {
        if k == key {
            *v = value.to_owned();
            return;
        }
    }
    panic!("{key} is not in the test environment");
}

pub fn admin_auth() -> Auth {
    Auth::new(
        &wardline_testkit::token("admin", TENANT, &[Role::TenantAdmin]),
        None,
    )
}

impl Harness {
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            h.await.expect("task").expect("stopped cleanly");
        }
    }

    pub fn deliveries(&self) -> Deliveries {
        DeliveryServiceClient::with_interceptor(wardline_testkit::channel(self.grpc), admin_auth())
    }

    pub fn recipients(&self) -> Recipients {
        RecipientServiceClient::with_interceptor(wardline_testkit::channel(self.grpc), admin_auth())
    }

    pub fn recipients_as(&self, auth: Auth) -> Recipients {
        RecipientServiceClient::with_interceptor(wardline_testkit::channel(self.grpc), auth)
    }

    pub fn webhooks(&self) -> Webhooks {
        WebhookServiceClient::with_interceptor(wardline_testkit::channel(self.grpc), admin_auth())
    }

    pub fn templates(&self) -> Templates {
        TemplateServiceClient::with_interceptor(wardline_testkit::channel(self.grpc), admin_auth())
    }

    /// Publishes `env` as its producer's relay does (Nats-Msg-Id = event id).
    pub async fn publish(&self, env: &EventEnvelope) {
        self.publish_as(env, &env.event_id).await;
    }

    /// Publishes under another message id: past the stream's duplicate
    /// window, as a replay or a re-publish after a long outage would.
    pub async fn publish_as(&self, env: &EventEnvelope, msg_id: &str) {
        let subject = wardline_kit::events::subject(env).expect("payload");
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", msg_id);
        self.js
            .publish_with_headers(subject, headers, env.encode_to_vec().into())
            .await
            .expect("publish")
            .await
            .expect("PubAck");
    }

    /// Waits until `n` deliveries are finished and returns every delivery.
    pub async fn finished(&self, n: usize, secs: u64) -> Vec<Delivery> {
        let mut client = self.deliveries();
        wardline_testkit::eventually(secs, &format!("{n} finished deliveries"), || {
            let mut c = client.clone();
            async move {
                let all = c
                    .list_deliveries(ListDeliveriesRequest {
                        page_size: 500,
                        ..Default::default()
                    })
                    .await
                    .ok()?
                    .into_inner()
                    .deliveries;
                let done = all
                    .iter()
                    .filter(|d| d.state == DeliveryState::Finished as i32)
                    .count();
                (done >= n).then_some(all)
            }
        })
        .await;
        client
            .list_deliveries(ListDeliveriesRequest {
                page_size: 500,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .deliveries
    }
}

pub fn snapshot(
    ticket_id: &str,
    number: &str,
    priority: Priority,
    status: TicketStatus,
) -> TicketSnapshot {
    TicketSnapshot {
        ticket_id: ticket_id.into(),
        number: number.into(),
        facility_id: "main".into(),
        category: Category::Printing as i32,
        priority: priority as i32,
        status: status as i32,
        caller_role: CallerRole::Nurse as i32,
        caller_id: "caller-7".into(),
        ..Default::default()
    }
}

pub fn ticket_created(ticket_id: &str, number: &str, priority: Priority) -> EventEnvelope {
    envelope(
        "intake",
        TENANT,
        ticket_id,
        1,
        Payload::TicketCreated(TicketCreated {
            ticket: Some(snapshot(ticket_id, number, priority, TicketStatus::New)),
            caller: Some(CallerContact {
                caller_id: "caller-7".into(),
                name: "Riley Jones".into(),
                email: "riley@stmarys.example.org".into(),
                phone: "+13125550100".into(),
            }),
            category_classified: false,
        }),
    )
}

pub fn ticket_resolved(ticket_id: &str, number: &str, version: u64) -> EventEnvelope {
    envelope(
        "intake",
        TENANT,
        ticket_id,
        version,
        Payload::TicketResolved(TicketResolved {
            ticket: Some(snapshot(
                ticket_id,
                number,
                Priority::P3,
                TicketStatus::Resolved,
            )),
            analyst_id: "an.ruiz".into(),
            ..Default::default()
        }),
    )
}

pub fn ticket_assigned(ticket_id: &str, number: &str, analyst: &str, seq: u64) -> EventEnvelope {
    envelope(
        "routing",
        TENANT,
        ticket_id,
        seq,
        Payload::TicketAssigned(TicketAssigned {
            ticket_id: ticket_id.into(),
            number: number.into(),
            assignment_id: uuid::Uuid::now_v7().to_string(),
            analyst_id: analyst.into(),
            priority: Priority::P3 as i32,
            attempt: 1,
            ..Default::default()
        }),
    )
}

pub fn escalated(ticket_id: &str, number: &str, priority: Priority, seq: u64) -> EventEnvelope {
    envelope(
        "routing",
        TENANT,
        ticket_id,
        seq,
        Payload::TicketEscalated(TicketEscalated {
            ticket_id: ticket_id.into(),
            number: number.into(),
            priority: priority as i32,
            level: EscalationLevel::Supervisor as i32,
            reason_code: "response_target_missed".into(),
            to_analyst_id: "sup.sam".into(),
        }),
    )
}

pub fn breached(ticket_id: &str, number: &str, priority: Priority, seq: u64) -> EventEnvelope {
    envelope(
        "routing",
        TENANT,
        ticket_id,
        seq,
        Payload::SlaBreached(SlaBreached {
            ticket_id: ticket_id.into(),
            number: number.into(),
            priority: priority as i32,
            target: SlaTarget::Response as i32,
            ..Default::default()
        }),
    )
}

/// routing's directory event for an analyst of [`TENANT`].
pub fn analyst(id: &str, version: u64, supervisor: bool, on_call: bool) -> EventEnvelope {
    envelope(
        "routing",
        TENANT,
        id,
        version,
        Payload::AnalystUpserted(AnalystUpserted {
            analyst: Some(AnalystInfo {
                analyst_id: id.into(),
                name: format!("Analyst {id}"),
                email: format!("{id}@desk.example.org"),
                phone: "+13125550199".into(),
                pager: format!("pager-{id}"),
                tenants: vec![TENANT.into()],
                supervisor,
                on_call,
            }),
        }),
    )
}

pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}
