//! One trace per ticket: intake, the relay, routing, billing, notification
//! (down to the email it sends) and intake again, applying the assignment,
//! all continue the trace the caller started, with correct parent links, and no span carries an attribute
//! outside the allow-list or any of the ticket's free text. The services
//! run as processes exporting over OTLP to a real local receiver.

mod common;

use std::collections::{HashMap, HashSet};

use common::*;
use wardline_billing::contract::example;
use wardline_proto::billing::CreateContractVersionRequest;
use wardline_proto::billing::contract_service_client::ContractServiceClient;
use wardline_proto::common::{CallerRole, Category, TicketStatus};
use wardline_proto::routing::SkillModule;
use wardline_testkit::{Auth, TestDb, TestNats, TestOtlp};

/// Keys tracing-opentelemetry adds about the code location and timing.
const INSTRUMENTATION: &[&str] = &[
    "code.filepath",
    "code.file.path",
    "code.namespace",
    "code.lineno",
    "code.line.number",
    "code.module.name",
    "thread.id",
    "thread.name",
    "level",
    "target",
    "busy_ns",
    "idle_ns",
    "span.kind",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_journey_is_one_trace_across_the_services_with_allowed_attributes_only() {
    let otlp = TestOtlp::start().await;
    let nats = TestNats::start();
    let (intake_db, routing_db, billing_db) = (
        TestDb::create("intake").await,
        TestDb::create("routing").await,
        TestDb::create("billing").await,
    );
    let notification_db = TestDb::create("notification").await;
    let smtp = wardline_testkit::TestSmtp::start().await;
    let (sms, pager) = (
        wardline_testkit::HttpSink::start().await,
        wardline_testkit::HttpSink::start().await,
    );
    let logs = tempfile::tempdir().unwrap();
    let otel = |service: &str| {
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.endpoint()),
            ("OTEL_SERVICE_NAME", service.to_owned()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ]
    };
    let (ig, ia) = addresses();
    let (rg, ra) = addresses();
    let (bg, ba) = addresses();
    let mut intake = spawn_process(
        "wardline-intake",
        intake_env(&intake_db, &nats),
        &otel("intake"),
        ia,
        ig,
        &logs.path().join("intake.log"),
    );
    let mut routing = spawn_process(
        "wardline-routing",
        routing_env(&routing_db, &nats),
        &otel("routing"),
        ra,
        rg,
        &logs.path().join("routing.log"),
    );
    let mut billing = spawn_process(
        "wardline-billing",
        billing_env(&billing_db, &nats),
        &otel("billing"),
        ba,
        bg,
        &logs.path().join("billing.log"),
    );
    let (ng, na) = addresses();
    let mut notification = spawn_process(
        "wardline-notification",
        notification_env(&notification_db, &nats, &smtp, &sms, &pager),
        &otel("notification"),
        na,
        ng,
        &logs.path().join("notification.log"),
    );

    let intake_running = Running::at(ig, ia);
    let s = Stack {
        nats,
        intake_db,
        routing_db,
        intake: intake_running,
        routing: None,
        routing_grpc: rg,
    };
    s.create_tenant("stmarys", "STM").await;
    s.upsert(rn(
        "rn.rita",
        "stmarys",
        SkillModule::MedicationAdministration,
        3,
    ))
    .await;
    wardline_testkit::eventually(20, "billing knows the tenant", || async {
        ContractServiceClient::with_interceptor(
            wardline_testkit::channel(bg),
            Auth::new(&vendor_token(), Some("stmarys")),
        )
        .create_contract_version(CreateContractVersionRequest {
            request_id: "c".into(),
            contract: Some(example("USD", "2026-01-01")),
            expected_latest_version: 0,
        })
        .await
        .ok()
    })
    .await;

    // The caller starts the trace.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let canary = "CANARY-PHI-Jane-Doe-MRN-0042";
    let mut req = ticket_request(
        "traced",
        CallerRole::Nurse,
        Category::MedicationAdministration,
        true,
    );
    req.description = format!("{canary}: the eMAR scanner rejects her wristband");
    let mut req = tonic::Request::new(req);
    req.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{client_span}-01").parse().unwrap(),
    );
    let t = s
        .tickets(&nurse_token("stmarys"))
        .create_ticket(req)
        .await
        .unwrap()
        .into_inner();
    s.ticket_until("stmarys", &t.ticket_id, "assignment shown in intake", |t| {
        t.status() == TicketStatus::Assigned
    })
    .await;

    // Wait until every service has exported its part of the trace,
    // including notification's sending of the caller's "received" email.
    let spans = wardline_testkit::eventually(30, "spans of all four services", || async {
        let spans: Vec<_> = otlp
            .spans()
            .into_iter()
            .filter(|s| s.trace_id == trace_id)
            .collect();
        let handled: HashSet<&str> = spans
            .iter()
            .filter(|s| s.name == format!("{} handle", s.service))
            .map(|s| s.service.as_str())
            .collect();
        let sent = spans
            .iter()
            .any(|s| s.service == "notification" && s.name.starts_with("notification send"));
        (sent
            && ["intake", "routing", "billing", "notification"]
                .iter()
                .all(|s| handled.contains(s)))
        .then_some(spans)
    })
    .await;

    let by_id: HashMap<&str, &wardline_testkit::ReceivedSpan> =
        spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let parent_of =
        |s: &wardline_testkit::ReceivedSpan| by_id.get(s.parent_span_id.as_str()).copied();
    // The RPC continues the caller's span.
    let rpc = spans
        .iter()
        .find(|s| {
            s.service == "intake"
                && s.name == "wardline.intake.v1.TicketService/CreateTicket"
                && s.parent_span_id == client_span
        })
        .expect("CreateTicket's span is a child of the caller's");
    // Intake's relay publishes as a child of the RPC that wrote the row.
    let publish = spans
        .iter()
        .find(|s| {
            s.service == "intake" && s.name == "outbox.publish" && s.parent_span_id == rpc.span_id
        })
        .expect("the publish span is a child of the RPC");
    // Routing and billing handle the event as children of that publish.
    for svc in ["routing", "billing", "notification"] {
        assert!(
            spans.iter().any(|s| s.service == svc
                && s.name == format!("{svc} handle")
                && s.parent_span_id == publish.span_id),
            "{svc} continues intake's publish span"
        );
    }
    // The email is sent in the same trace, below notification's handling.
    let send = spans
        .iter()
        .find(|s| s.name.starts_with("notification send"))
        .unwrap();
    assert_eq!(
        parent_of(send).map(|p| p.service.as_str()),
        Some("notification")
    );
    // Routing's assignment flows back to intake in the same trace.
    let routing_publish = spans
        .iter()
        .find(|s| s.service == "routing" && s.name == "outbox.publish")
        .expect("routing published");
    assert_eq!(
        parent_of(routing_publish).map(|p| p.service.as_str()),
        Some("routing")
    );
    let intake_handle = spans
        .iter()
        .find(|s| s.service == "intake" && s.name == "intake handle")
        .expect("intake applied routing's event");
    assert_eq!(intake_handle.parent_span_id, routing_publish.span_id);
    // Every parent link resolves inside the trace (or to the caller's span).
    for s in &spans {
        assert!(
            s.parent_span_id == client_span || by_id.contains_key(s.parent_span_id.as_str()),
            "dangling parent: {s:?}"
        );
    }
    // Attributes: allow-list only, and never the free text.
    for s in &spans {
        for (k, v) in &s.attributes {
            assert!(
                wardline_kit::telemetry::ALLOWED_FIELDS.contains(&k.as_str())
                    || INSTRUMENTATION.contains(&k.as_str()),
                "attribute {k:?} on {} span {:?} is not in the allow-list",
                s.service,
                s.name
            );
            assert!(
                !v.contains("CANARY"),
                "free text leaked into {k} of {}",
                s.name
            );
        }
    }
    // And no log line of any service carries it either.
    for svc in ["intake", "routing", "billing", "notification"] {
        let log =
            std::fs::read_to_string(logs.path().join(format!("{svc}.log"))).unwrap_or_default();
        assert!(!log.contains("CANARY"), "free text in {svc}'s log");
    }
    assert!(
        smtp.messages().iter().all(|m| !m.data.contains("CANARY")),
        "free text in an email"
    );
    for p in [&mut intake, &mut routing, &mut billing, &mut notification] {
        assert_eq!(p.terminate(20), Some(0));
    }
}
