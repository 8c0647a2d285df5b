//! Notification killed with SIGKILL while messages are in flight, and
//! restarted: nothing is lost, no (event, recipient, channel) gets a second
//! delivery, and receivers see each delivery once; the only possible copy
//! is the documented one (an attempt the crash interrupted after the
//! receiver took it), which carries the same idempotency key and is
//! recorded as interrupted.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::*;
use wardline_proto::common::{CallerRole, Category};
use wardline_proto::notification::webhook_service_client::WebhookServiceClient;
use wardline_proto::notification::{CreateWebhookEndpointRequest, EventKind};
use wardline_testkit::{Auth, HttpSink, TestDb, TestNats, TestSmtp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_flight_loses_nothing_and_sends_nothing_twice() {
    let nats = TestNats::start();
    let intake_db = TestDb::create("intake").await;
    let db = TestDb::create("notification").await;
    let intake = start_intake(&intake_db, &nats).await;
    let smtp = TestSmtp::start().await;
    let (sms, pager, hooks) = (
        HttpSink::start().await,
        HttpSink::start().await,
        HttpSink::start().await,
    );
    // Slow receivers, so that the kill finds attempts in flight.
    smtp.set_delay(Duration::from_millis(120));
    hooks.set_delay(Duration::from_millis(80));
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("notification.log");
    let (grpc, admin) = addresses();
    let env = notification_env(&db, &nats, &smtp, &sms, &pager);
    let start = || spawn_process("wardline-notification", env.clone(), &[], admin, grpc, &log);
    let mut notification = start();

    let s = Stack {
        nats,
        intake_db,
        routing_db: TestDb::create("routing").await,
        intake,
        routing: None,
        routing_grpc: grpc,
    };
    s.create_tenant("stmarys", "STM").await;
    WebhookServiceClient::with_interceptor(
        wardline_testkit::channel(grpc),
        Auth::new(&admin_token("stmarys"), None),
    )
    .create_webhook_endpoint(CreateWebhookEndpointRequest {
        request_id: "hook".into(),
        url: hooks.url("/wardline"),
        event_kinds: vec![EventKind::TicketReceived as i32],
    })
    .await
    .unwrap();

    let mut tickets = s.tickets(&nurse_token("stmarys"));
    let mut numbers = Vec::new();
    for i in 0..10 {
        let t = tickets
            .create_ticket(ticket_request(
                &format!("t-{i}"),
                CallerRole::NonClinical,
                Category::Printing,
                false,
            ))
            .await
            .unwrap()
            .into_inner();
        numbers.push(t.number);
    }
    // Some messages have gone out, others are in flight or waiting: kill.
    wardline_testkit::eventually(20, "the first messages", || async {
        (smtp.messages().len() >= 2).then_some(())
    })
    .await;
    notification.kill9();
    let seen_at_kill = smtp.messages().len() + hooks.received().len();
    // Tickets keep coming while it is down.
    for i in 10..14 {
        let t = tickets
            .create_ticket(ticket_request(
                &format!("t-{i}"),
                CallerRole::NonClinical,
                Category::Printing,
                false,
            ))
            .await
            .unwrap()
            .into_inner();
        numbers.push(t.number);
    }
    let mut notification = start();

    // Every ticket: one email to the caller and one webhook, delivered.
    let pool = db.pool().await;
    let expected = (numbers.len() * 2) as i64;
    wardline_testkit::eventually(60, "every delivery delivered", || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE outcome = 1")
            .fetch_one(&pool)
            .await
            .ok()?;
        (n == expected).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        rows, expected,
        "one delivery per (event, recipient, channel)"
    );
    let interrupted: Vec<(String, i64)> = sqlx::query_as(
        "SELECT CASE d.channel WHEN 1 THEN 'email' ELSE 'webhook' END, count(*) FROM delivery_attempts a
           JOIN deliveries d USING (delivery_id)
          WHERE a.outcome = 2 AND a.error_class = 1 AND a.status_code = 0 GROUP BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let interrupted: HashMap<String, i64> = interrupted.into_iter().collect();

    // Each message reached its receiver, keyed by delivery id.
    let mails = smtp.messages();
    let mail_ids: HashSet<String> = mails
        .iter()
        .filter_map(|m| m.header("Message-ID"))
        .collect();
    assert_eq!(
        mail_ids.len(),
        numbers.len(),
        "every caller got their email"
    );
    for n in &numbers {
        assert!(
            mails
                .iter()
                .any(|m| m.header("Subject").unwrap_or_default().contains(n.as_str())),
            "email for {n}"
        );
    }
    let hook_ok: Vec<String> = hooks
        .received()
        .iter()
        .filter(|r| r.status == 200)
        .filter_map(|r| r.header("wardline-delivery-id").map(str::to_owned))
        .collect();
    let hook_ids: HashSet<&String> = hook_ok.iter().collect();
    assert_eq!(hook_ids.len(), numbers.len(), "every webhook arrived");

    // Nothing twice, except what a crash interrupted after the receiver
    // took it (recorded as interrupted, same idempotency key).
    let mail_copies = (mails.len() - mail_ids.len()) as i64;
    let hook_copies = (hook_ok.len() - hook_ids.len()) as i64;
    assert!(
        mail_copies <= interrupted.get("email").copied().unwrap_or(0),
        "{mail_copies} repeated emails, {interrupted:?}; log:\n{}",
        notification.log_tail()
    );
    assert!(
        hook_copies <= interrupted.get("webhook").copied().unwrap_or(0),
        "{hook_copies} repeated webhooks, {interrupted:?}"
    );
    println!(
        "killed with {seen_at_kill} messages out; interrupted attempts {interrupted:?}; repeated: {mail_copies} emails, {hook_copies} webhooks"
    );
    assert_eq!(
        notification.terminate(20),
        Some(0),
        "graceful stop; log:\n{}",
        notification.log_tail()
    );
}
