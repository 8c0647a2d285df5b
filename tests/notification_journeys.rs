//! Notification with the real intake and routing, NATS and PostgreSQL, and
//! a real local SMTP server and HTTP receivers the test starts.

mod common;

use common::*;
use wardline_proto::common::{CallerRole, Category, Priority, TicketStatus};
use wardline_proto::events::DeliveryStatus;
use wardline_proto::intake::{AcknowledgeTicketRequest, ResolveTicketRequest};
use wardline_proto::notification::webhook_service_client::WebhookServiceClient;
use wardline_proto::notification::{
    CreateWebhookEndpointRequest, EventKind, ListDeliveriesRequest,
};
use wardline_proto::routing::SkillModule;
use wardline_testkit::{Auth, HttpSink, TestDb, TestSmtp, events};

/// A string no message, event or row of notification may ever contain.
const CANARY: &str = "CANARY-PHI-7f3a9c Mrs Eleanor Rigby MRN 00423311";

struct World {
    s: Stack,
    smtp: TestSmtp,
    pager: HttpSink,
    sms: HttpSink,
    hooks: HttpSink,
    notification: Running,
    notification_db: TestDb,
}

async fn world() -> World {
    let s = spawn_stack().await;
    let notification_db = TestDb::create("notification").await;
    let smtp = TestSmtp::start().await;
    let sms = HttpSink::start().await;
    let pager = HttpSink::start().await;
    let hooks = HttpSink::start().await;
    let notification = start_notification(&notification_db, &s.nats, &smtp, &sms, &pager).await;
    World {
        s,
        smtp,
        pager,
        sms,
        hooks,
        notification,
        notification_db,
    }
}

impl World {
    async fn delivered(&self, n: usize) -> Vec<wardline_proto::notification::Delivery> {
        let client = notification_deliveries(self.notification.grpc, "stmarys");
        wardline_testkit::eventually(30, &format!("{n} delivered messages"), || {
            let mut c = client.clone();
            async move {
                let all = c
                    .list_deliveries(ListDeliveriesRequest {
                        outcomes: vec![DeliveryStatus::Delivered as i32],
                        page_size: 500,
                        ..Default::default()
                    })
                    .await
                    .ok()?
                    .into_inner()
                    .deliveries;
                (all.len() >= n).then_some(all)
            }
        })
        .await
    }

    fn subjects_to(&self, to: &str) -> Vec<String> {
        self.smtp
            .messages()
            .iter()
            .filter(|m| m.to == vec![to.to_owned()])
            .map(|m| m.header("Subject").unwrap_or_default())
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_hears_received_assigned_and_resolved_and_the_canary_never_leaves_intake() {
    let w = world().await;
    w.s.create_tenant("stmarys", "STM").await;
    w.s.upsert(analyst("an.pat", "stmarys", SkillModule::Printing, 3))
        .await;
    WebhookServiceClient::with_interceptor(
        wardline_testkit::channel(w.notification.grpc),
        Auth::new(&admin_token("stmarys"), None),
    )
    .create_webhook_endpoint(CreateWebhookEndpointRequest {
        request_id: "hook".into(),
        url: w.hooks.url("/wardline"),
        event_kinds: vec![
            EventKind::TicketReceived as i32,
            EventKind::TicketAssigned as i32,
            EventKind::TicketResolved as i32,
        ],
    })
    .await
    .unwrap();

    let mut req = ticket_request("t-1", CallerRole::Nurse, Category::Printing, false);
    req.description = format!("Label printer jams; patient {CANARY} waiting for wristband");
    let t =
        w.s.tickets(&nurse_token("stmarys"))
            .create_ticket(req)
            .await
            .unwrap()
            .into_inner();
    w.s.ticket_until("stmarys", &t.ticket_id, "assigned", |t| {
        t.status() == TicketStatus::Assigned
    })
    .await;
    let mut an = w.s.tickets(&analyst_token("stmarys", "an.pat"));
    an.acknowledge_ticket(AcknowledgeTicketRequest {
        request_id: "ack".into(),
        ticket_id: t.ticket_id.clone(),
        expected_version: 0,
    })
    .await
    .unwrap();
    an.resolve_ticket(ResolveTicketRequest {
        request_id: "res".into(),
        ticket_id: t.ticket_id.clone(),
        expected_version: 0,
        resolution_code: wardline_proto::events::ResolutionCode::Hardware as i32,
        first_contact_resolution: false,
    })
    .await
    .unwrap();

    // Caller: received, assigned, resolved; analyst: assigned; webhook: 3.
    w.delivered(7).await;
    let caller = w.subjects_to("riley@example.org");
    assert_eq!(caller.len(), 3, "{caller:?}");
    for want in ["We received your request", "was assigned", "was resolved"] {
        assert!(
            caller
                .iter()
                .any(|s| s.contains(want) && s.contains(&t.number)),
            "{want}: {caller:?}"
        );
    }
    assert_eq!(w.subjects_to("an.pat@desk.example.org").len(), 1);
    wardline_testkit::eventually(10, "three webhooks", || async {
        (w.hooks.received().len() >= 3).then_some(())
    })
    .await;

    // The canary reaches no email, webhook, SMS, page, event or row of notification.
    for m in w.smtp.messages() {
        assert!(
            !m.data.contains("CANARY"),
            "email carries the description: {}",
            m.data
        );
    }
    for r in w
        .hooks
        .received()
        .iter()
        .chain(&w.sms.received())
        .chain(&w.pager.received())
    {
        assert!(
            !r.text().contains("CANARY"),
            "HTTP body carries the description"
        );
        assert!(r.headers.iter().all(|(_, v)| !v.contains("CANARY")));
    }
    let all = events::read_all(
        &w.s.nats,
        "wardline.events.>",
        std::time::Duration::from_millis(300),
    )
    .await;
    assert!(
        all.iter()
            .all(|e| !String::from_utf8_lossy(&e.raw).contains("CANARY"))
    );
    let pool = w.notification_db.pool().await;
    let dump: Vec<String> = sqlx::query_scalar(
        "SELECT row_to_json(t)::text FROM (SELECT * FROM deliveries) t
         UNION ALL SELECT row_to_json(t)::text FROM (SELECT * FROM recipients) t
         UNION ALL SELECT row_to_json(t)::text FROM (SELECT * FROM tickets) t",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(!dump.is_empty());
    assert!(dump.iter().all(|row| !row.contains("CANARY")));
    w.notification.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_p1_that_misses_its_response_target_pages_on_call_and_tells_the_supervisor() {
    let w = world().await;
    w.s.create_tenant("stmarys", "STM").await;
    let mut worker = analyst(
        "an.pat",
        "stmarys",
        SkillModule::MedicationAdministration,
        3,
    );
    worker.credentials = vec![wardline_proto::routing::ClinicalCredential::Rn as i32];
    w.s.upsert(worker).await;
    let mut oncall = analyst("oc.olga", "stmarys", SkillModule::Printing, 1);
    oncall.on_call = true;
    oncall.pager = "olga-pager-key".into();
    w.s.upsert(oncall).await;
    let mut sup = analyst("sup.sam", "stmarys", SkillModule::Printing, 1);
    sup.supervisor = true;
    w.s.upsert(sup).await;

    let t =
        w.s.tickets(&nurse_token("stmarys"))
            .create_ticket(ticket_request(
                "p1",
                CallerRole::Nurse,
                Category::MedicationAdministration,
                true,
            ))
            .await
            .unwrap()
            .into_inner();
    assert_eq!(t.priority, Priority::P1 as i32);
    w.s.ticket_until("stmarys", &t.ticket_id, "assigned", |t| {
        t.status() == TicketStatus::Assigned
    })
    .await;
    // Nobody acknowledges; the response target runs out.
    w.s.expire_timer(&t.ticket_id, "response").await;
    let pages = wardline_testkit::eventually(30, "pages", || async {
        let p = w.pager.received();
        (p.len() >= 2).then_some(p)
    })
    .await;
    // One page for the breach and one for the escalation, both to on-call.
    let bodies: Vec<serde_json::Value> = pages
        .iter()
        .map(|p| serde_json::from_slice(&p.body).unwrap())
        .collect();
    assert!(bodies.iter().all(|b| b["routing_key"] == "olga-pager-key"));
    let summaries: Vec<&str> = bodies
        .iter()
        .map(|b| b["payload"]["summary"].as_str().unwrap())
        .collect();
    assert!(
        summaries
            .iter()
            .any(|s| s.contains("SLA breached") && s.contains(&t.number)),
        "{summaries:?}"
    );
    assert!(
        summaries
            .iter()
            .any(|s| s.contains("Escalation") && s.contains(&t.number)),
        "{summaries:?}"
    );
    wardline_testkit::eventually(20, "the supervisor's emails", || async {
        (w.subjects_to("sup.sam@desk.example.org").len() >= 2).then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(w.pager.received().len(), 2, "paged once per event");
    assert!(w.sms.received().is_empty());
    w.notification.stop().await;
}
