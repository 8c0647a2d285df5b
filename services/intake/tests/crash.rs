//! Intake killed with SIGKILL between commit and publish loses nothing, and
//! a re-publish after a crash between PubAck and "mark sent" is dropped by
//! the stream: every ticket's event appears exactly once.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::*;
use wardline_proto::intake::tenant_service_client::TenantServiceClient;
use wardline_proto::intake::ticket_service_client::TicketServiceClient;
use wardline_proto::intake::{CreateTenantRequest, Facility};
use wardline_testkit::{Auth, ServiceProcess, TestDb, TestNats, events, free_port};

fn start_intake(
    db: &TestDb,
    nats: &TestNats,
    grpc: SocketAddr,
    admin: SocketAddr,
    log: &Path,
) -> ServiceProcess {
    let envs = vec![
        ("INTAKE_GRPC_ADDR".to_owned(), grpc.to_string()),
        ("INTAKE_ADMIN_ADDR".to_owned(), admin.to_string()),
        ("INTAKE_DATABASE_URL".to_owned(), db.url()),
        ("INTAKE_MIGRATE_DATABASE_URL".to_owned(), db.owner_url()),
        ("INTAKE_RELAY_POLL_MS".to_owned(), "200".to_owned()),
        ("RUST_LOG".to_owned(), "info".to_owned()),
    ];
    let envs: Vec<(String, String)> = envs
        .into_iter()
        .chain(wardline_testkit::auth_env())
        .chain(nats.service_env("intake", &[]))
        .collect();
    ServiceProcess::spawn(Path::new(env!("CARGO_BIN_EXE_wardline-intake")), &envs, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_between_commit_and_publish_loses_no_event_and_duplicates_none() {
    let mut nats = TestNats::start();
    let db = TestDb::create("intake_crash").await;
    let logdir = tempfile::tempdir().unwrap();
    let log = logdir.path().join("intake.log");
    let grpc: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();

    let mut intake = start_intake(&db, &nats, grpc, admin, &log);
    intake.wait_ready(admin, 60);
    TenantServiceClient::with_interceptor(
        wardline_testkit::channel(grpc),
        Auth::new(&vendor_token(), None),
    )
    .create_tenant(CreateTenantRequest {
        request_id: "t".into(),
        tenant_id: "stmarys".into(),
        name: "St Mary's".into(),
        time_zone: "America/Chicago".into(),
        ticket_prefix: "STM".into(),
        facilities: vec![Facility {
            facility_id: "main".into(),
            name: "Main".into(),
        }],
        reopen_window_hours: 0,
    })
    .await
    .unwrap();

    // NATS goes away: tickets still commit (the outbox holds their events)...
    nats.kill();
    let mut tickets = TicketServiceClient::with_interceptor(
        wardline_testkit::channel(grpc),
        Auth::new(&nurse_token("stmarys"), None),
    );
    let mut created = Vec::new();
    for i in 0..5 {
        let t = tickets
            .create_ticket(nurse_ticket(&format!("during-outage-{i}")))
            .await
            .expect("create without NATS");
        created.push(t.into_inner().ticket_id);
    }
    // ...and intake dies before it could publish any of them.
    intake.kill9();
    let pool = db.pool().await;
    let unsent: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE sent_at IS NULL AND subject LIKE '%ticket.created'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(unsent, 5, "the events wait in the outbox");

    // Both come back; the relay publishes what was committed.
    nats.restart();
    let mut intake = start_intake(&db, &nats, grpc, admin, &log);
    intake.wait_ready(admin, 60);
    let seen = events::wait_for(&nats, "wardline.events.stmarys.ticket.created", 5, 20).await;
    assert_eq!(
        seen.len(),
        5,
        "every ticket's event, once; log:\n{}",
        intake.log_tail()
    );
    for s in &seen {
        assert_eq!(s.msg_id.as_deref(), Some(s.envelope.event_id.as_str()));
        assert!(
            s.traceparent.is_some(),
            "trace context travels with the row"
        );
    }
    let mut ids: Vec<String> = seen
        .iter()
        .map(|s| match &s.envelope.payload {
            Some(wardline_proto::events::event_envelope::Payload::TicketCreated(c)) => {
                c.ticket.as_ref().unwrap().ticket_id.clone()
            }
            _ => panic!("not a created event"),
        })
        .collect();
    ids.sort();
    created.sort();
    assert_eq!(ids, created);

    // A crash after the PubAck but before "mark sent" committed: the rows
    // look unsent again and are re-published; the stream drops the copies.
    intake.kill9();
    sqlx::query("UPDATE outbox SET sent_at = NULL")
        .execute(&pool)
        .await
        .unwrap();
    let mut intake = start_intake(&db, &nats, grpc, admin, &log);
    intake.wait_ready(admin, 60);
    wardline_testkit::eventually(20, "re-publish", || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
        (n == 0).then_some(())
    })
    .await;
    let again = events::read_all(
        &nats,
        "wardline.events.stmarys.ticket.created",
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(again.len(), 5, "duplicates dropped by Nats-Msg-Id");

    // A graceful stop exits 0.
    assert_eq!(intake.terminate(20), Some(0), "log:\n{}", intake.log_tail());
}
