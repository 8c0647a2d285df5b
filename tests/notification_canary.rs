//! A canary string in a ticket's description reaches no email, SMS,
//! webhook, page, log line or span of notification, no table but the
//! ticket's, no dead letter and no metric: the process runs with debug
//! logs (JSON, with the current span's fields on every line) and exports
//! its spans to a real OTLP receiver the test starts.

mod common;

use std::time::Duration;

use common::*;
use wardline_proto::common::{CallerRole, Category, TicketStatus};
use wardline_proto::notification::recipient_service_client::RecipientServiceClient;
use wardline_proto::notification::webhook_service_client::WebhookServiceClient;
use wardline_proto::notification::{
    ChannelAddress, CreateWebhookEndpointRequest, EventKind, NotificationChannel, Preferences,
    Recipient, RecipientKind, Subscription, UpsertRecipientRequest,
};
use wardline_proto::routing::SkillModule;
use wardline_testkit::{Auth, HttpSink, TestDb, TestOtlp, TestSmtp};

const CANARY: &str = "CANARY-PHI-Jane-Doe-MRN-0042";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_description_reaches_no_message_log_line_or_span_of_notification() {
    let otlp = TestOtlp::start().await;
    let s = spawn_stack().await;
    let db = TestDb::create("notification").await;
    // Billing too: the canary must reach none of the four databases.
    let billing_db = TestDb::create("billing").await;
    let billing = start_billing(&billing_db, &s.nats).await;
    let smtp = TestSmtp::start().await;
    let (sms, pager, hooks) = (
        HttpSink::start().await,
        HttpSink::start().await,
        HttpSink::start().await,
    );
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("notification.log");
    let (grpc, admin) = addresses();
    let mut notification = spawn_process(
        "wardline-notification",
        notification_env(&db, &s.nats, &smtp, &sms, &pager),
        &[
            (
                "RUST_LOG",
                "debug,h2=info,tower=info,hyper=info,hyper_util=info,rustls=info".to_owned(),
            ),
            ("WARDLINE_LOG_FORMAT", "json".to_owned()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.endpoint()),
            ("OTEL_SERVICE_NAME", "notification".to_owned()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ],
        admin,
        grpc,
        &log,
    );
    s.create_tenant("stmarys", "STM").await;
    let mut oncall = analyst("an.pat", "stmarys", SkillModule::Printing, 3);
    oncall.on_call = true;
    oncall.pager = "pat-pager".into();
    oncall.phone = "+13125550111".into();
    s.upsert(oncall).await;
    let auth = || Auth::new(&admin_token("stmarys"), None);
    WebhookServiceClient::with_interceptor(wardline_testkit::channel(grpc), auth())
        .create_webhook_endpoint(CreateWebhookEndpointRequest {
            request_id: "hook".into(),
            url: hooks.url("/wardline"),
            event_kinds: vec![
                EventKind::TicketReceived as i32,
                EventKind::TicketAssigned as i32,
            ],
        })
        .await
        .unwrap();
    // A unit manager hears of every new ticket by SMS and pager too, so that
    // every channel carries a message about the canary's ticket.
    RecipientServiceClient::with_interceptor(wardline_testkit::channel(grpc), auth())
        .upsert_recipient(UpsertRecipientRequest {
            request_id: "manager".into(),
            recipient: Some(Recipient {
                kind: RecipientKind::Custom as i32,
                name: "Unit manager".into(),
                addresses: vec![
                    ChannelAddress {
                        channel: NotificationChannel::Sms as i32,
                        address: "+13125550177".into(),
                    },
                    ChannelAddress {
                        channel: NotificationChannel::Pager as i32,
                        address: "manager-pager".into(),
                    },
                ],
                preferences: Some(Preferences {
                    subscriptions: vec![Subscription {
                        event_kind: EventKind::TicketReceived as i32,
                        channels: vec![
                            NotificationChannel::Sms as i32,
                            NotificationChannel::Pager as i32,
                        ],
                    }],
                    quiet_hours: None,
                }),
                ..Default::default()
            }),
            expected_version: 0,
        })
        .await
        .unwrap();

    let mut req = ticket_request("canary", CallerRole::Nurse, Category::Printing, false);
    req.description = format!("Wristband printer down; patient {CANARY} in bed 4");
    // A caller's name is free text too (here a clinician typed a patient's
    // name into it): it stays in intake's ticket like the description.
    if let Some(c) = req.caller.as_mut() {
        c.name = format!("Riley for {CANARY}");
    }
    let t = s
        .tickets(&nurse_token("stmarys"))
        .create_ticket(req)
        .await
        .unwrap()
        .into_inner();
    s.ticket_until("stmarys", &t.ticket_id, "assigned", |t| {
        t.status() == TicketStatus::Assigned
    })
    .await;
    // A note carries the canary too: it stays in intake's notes.
    s.tickets(&admin_token("stmarys"))
        .add_note(wardline_proto::intake::AddNoteRequest {
            request_id: "canary-note".into(),
            ticket_id: t.ticket_id.clone(),
            body: format!("Called back about {CANARY}"),
            public: false,
        })
        .await
        .unwrap();
    // Caller: received + assigned; analyst: assigned; webhook x2; SMS; page.
    wardline_testkit::eventually(30, "every channel", || async {
        (smtp.messages().len() >= 3
            && hooks.received().len() >= 2
            && !sms.received().is_empty()
            && !pager.received().is_empty())
        .then_some(())
    })
    .await;

    // A forged copy of the canary ticket's created event on another
    // tenant's subject (the subject says lakeside, the envelope stmarys):
    // every consumer must refuse it, so routing and notification each
    // dead-letter it. What a reader of the dead-letter stream then gets is
    // the event's own bytes (no free text by contract) with ids and a
    // reason, never the description.
    let created = wardline_testkit::events::wait_for(
        &s.nats,
        "wardline.events.stmarys.ticket.created",
        1,
        10,
    )
    .await;
    let mut forged = created[0].envelope.clone();
    forged.event_id = uuid::Uuid::now_v7().to_string();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", forged.event_id.as_str());
    async_nats::jetstream::new(s.nats.client().await)
        .publish_with_headers(
            "wardline.events.lakeside.ticket.created",
            headers,
            prost::Message::encode_to_vec(&forged).into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let letters =
        wardline_testkit::eventually(30, "routing's and notification's dead letters", || async {
            let letters =
                wardline_testkit::events::dead_letters(&s.nats, Duration::from_millis(300)).await;
            let from = |service: &str| {
                letters
                    .iter()
                    .any(|d| d.subject == format!("wardline.deadletter.{service}.lakeside"))
            };
            (from("routing") && from("notification")).then_some(letters)
        })
        .await;
    for letter in &letters {
        let bytes = letter.bytes();
        assert!(
            !bytes.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()),
            "dead letter on {} carries the canary",
            letter.subject
        );
        let reason = letter.header("Wardline-Reason").expect("a reason");
        assert!(reason.starts_with("tenant mismatch"), "{reason}");
        assert_eq!(
            letter.header("Wardline-Original-Subject"),
            Some("wardline.events.lakeside.ticket.created")
        );
        assert!(
            letter
                .header("Nats-Msg-Id")
                .unwrap()
                .ends_with(&forged.event_id),
            "the dead letter is keyed by the event id"
        );
    }

    assert_eq!(
        notification.terminate(20),
        Some(0),
        "graceful stop flushes spans"
    );

    for m in smtp.messages() {
        assert!(!m.data.contains("CANARY"), "email: {}", m.data);
        assert!(m.data.contains(&t.number));
    }
    for r in hooks
        .received()
        .iter()
        .chain(&sms.received())
        .chain(&pager.received())
    {
        assert!(!r.text().contains("CANARY"), "HTTP body: {}", r.text());
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.lines().count() > 20, "debug logs were written");
    assert!(
        !text.contains("CANARY"),
        "a log line carries the description"
    );
    // Addresses are staff contact data: they stay out of the logs too.
    for address in [
        "riley@example.org",
        "an.pat@desk.example.org",
        "+13125550177",
        "pat-pager",
    ] {
        assert!(!text.contains(address), "a log line carries {address}");
    }
    let spans = wardline_testkit::eventually(10, "notification's spans", || async {
        let spans: Vec<_> = otlp
            .spans()
            .into_iter()
            .filter(|s| s.service == "notification")
            .collect();
        spans
            .iter()
            .any(|s| s.name.starts_with("notification send"))
            .then_some(spans)
    })
    .await;
    for span in &spans {
        for (k, v) in &span.attributes {
            assert!(!v.contains("CANARY"), "span {} attribute {k}", span.name);
            assert!(
                !v.contains('@'),
                "span {} attribute {k} carries an address",
                span.name
            );
        }
    }
    let send = spans
        .iter()
        .find(|s| s.name.starts_with("notification send"))
        .unwrap();
    let keys: Vec<&str> = send.attributes.iter().map(|(k, _)| k.as_str()).collect();
    for k in [
        "delivery_id",
        "tenant",
        "ticket_number",
        "event_kind",
        "outcome",
    ] {
        assert!(keys.contains(&k), "send span has {k}: {keys:?}");
    }
    // Databases: the description and the caller's name live in intake's
    // tickets row and nowhere else, not in an idempotency record, an outbox
    // row, an audit record or another service.
    assert_eq!(
        tables_containing(&s.intake_db, CANARY).await,
        ["notes", "tickets"],
        "intake keeps the text only in the ticket and its notes"
    );
    // No event on the stream carries it either.
    for e in
        wardline_testkit::events::read_all(&s.nats, "wardline.events.>", Duration::from_millis(300))
            .await
    {
        assert!(
            !e.raw.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()),
            "event on {} carries the canary",
            e.subject
        );
    }
    billing.stop().await;
    for (name, db) in [
        ("routing", &s.routing_db),
        ("billing", &billing_db),
        ("notification", &db),
    ] {
        assert!(
            tables_containing(db, CANARY).await.is_empty(),
            "{name} stores the description"
        );
    }
    // (notification's process has stopped; its metrics were labels only.)
    assert!(
        !metrics_text(s.intake.admin).await.contains("CANARY"),
        "intake's metrics"
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
}
