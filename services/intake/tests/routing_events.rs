//! Intake keeps routing's view on the ticket: assignments, queueing,
//! escalations and breaches arrive as events and are applied exactly once,
//! in any order; poison is dead-lettered, never dropped.

mod common;

use common::*;
use prost::Message;
use wardline_proto::common::{Priority, TicketStatus};
use wardline_proto::events::event_envelope::Payload;
use wardline_proto::events::{
    EventEnvelope, SlaBreached, SlaTarget, TicketAssigned, TicketEscalated, TicketQueued,
};
use wardline_proto::intake::{AcknowledgeTicketRequest, GetTicketRequest, Ticket};
use wardline_testkit::eventually;

/// Publishes as routing would (through JetStream, with a message id).
async fn publish(app: &TestApp, env: &EventEnvelope, msg_id: &str) {
    let js = app.nats().jetstream().await;
    let subject = wardline_kit::events::subject(env).unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", msg_id);
    js.publish_with_headers(subject, headers, env.encode_to_vec().into())
        .await
        .unwrap()
        .await
        .unwrap();
}

fn routing_event(ticket: &Ticket, seq: u64, payload: Payload) -> EventEnvelope {
    wardline_kit::events::envelope(
        "routing",
        &ticket.tenant_id,
        &ticket.ticket_id,
        seq,
        payload,
    )
}

fn assigned(t: &Ticket, seq: u64, analyst: &str) -> EventEnvelope {
    routing_event(
        t,
        seq,
        Payload::TicketAssigned(TicketAssigned {
            ticket_id: t.ticket_id.clone(),
            number: t.number.clone(),
            assignment_id: uuid::Uuid::now_v7().to_string(),
            analyst_id: analyst.into(),
            priority: Priority::P1 as i32,
            ack_deadline: None,
            attempt: 1,
            ticket_version: 1,
        }),
    )
}

fn queued(t: &Ticket, seq: u64) -> EventEnvelope {
    routing_event(
        t,
        seq,
        Payload::TicketQueued(TicketQueued {
            ticket_id: t.ticket_id.clone(),
            number: t.number.clone(),
            priority: Priority::P1 as i32,
            reason_code: "no_eligible_analyst".into(),
            ticket_version: 1,
        }),
    )
}

fn response_breached(t: &Ticket, seq: u64) -> EventEnvelope {
    routing_event(
        t,
        seq,
        Payload::SlaBreached(SlaBreached {
            ticket_id: t.ticket_id.clone(),
            number: t.number.clone(),
            priority: Priority::P1 as i32,
            target: SlaTarget::Response as i32,
            deadline: None,
            breached_at: None,
        }),
    )
}

async fn get(app: &TestApp, id: &str) -> Ticket {
    get_in(app, "stmarys", id).await
}

async fn get_in(app: &TestApp, tenant: &str, id: &str) -> Ticket {
    app.tickets(&admin_token(tenant))
        .get_ticket(GetTicketRequest {
            ticket_id: id.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn an_assignment_from_routing_shows_on_the_ticket_once() {
    let app = spawn_app().await;
    app.create_tenant("stmarys", "STM").await;
    let t = app.nurse_creates("stmarys", "a").await;

    let queued = queued(&t, 1);
    publish(&app, &queued, &queued.event_id).await;
    eventually(10, "queued flag", || async {
        get(&app, &t.ticket_id).await.queued.then_some(())
    })
    .await;

    let assigned = assigned(&t, 2, "rn.analyst");
    publish(&app, &assigned, &assigned.event_id).await;
    let after = eventually(10, "assignment", || async {
        let t = get(&app, &t.ticket_id).await;
        (t.status() == TicketStatus::Assigned).then_some(t)
    })
    .await;
    assert_eq!(after.assignee_analyst_id, "rn.analyst");
    assert!(!after.queued);

    // The same event again under another message id (so the stream keeps
    // it): the inbox makes it a no-op.
    publish(&app, &assigned, "a-different-msg-id").await;
    // A stale event (an older routing sequence) changes nothing either.
    let stale = routing_event(
        &t,
        1,
        Payload::TicketAssigned(TicketAssigned {
            ticket_id: t.ticket_id.clone(),
            analyst_id: "someone.else".into(),
            ..Default::default()
        }),
    );
    publish(&app, &stale, &stale.event_id).await;
    // A breach after them is applied, proving the others were processed first.
    let breach = response_breached(&t, 3);
    publish(&app, &breach, &breach.event_id).await;
    let last = eventually(10, "breach", || async {
        let t = get(&app, &t.ticket_id).await;
        (!t.breached_targets.is_empty()).then_some(t)
    })
    .await;
    assert_eq!(
        last.assignee_analyst_id, "rn.analyst",
        "the stale event was skipped"
    );
    assert_eq!(
        last.version,
        after.version + 1,
        "the duplicate and the stale event did not bump the version"
    );
    let inbox: i64 = sqlx::query_scalar("SELECT count(*) FROM inbox")
        .fetch_one(&app.db().pool().await)
        .await
        .unwrap();
    assert_eq!(
        inbox, 4,
        "queued, assigned, stale, breach; the duplicate is not a new entry"
    );
}

/// Routing re-routes an assignment nobody acknowledged; when nobody else can
/// take the ticket it queues it. The ticket must then read as waiting, not
/// as still held by the analyst who never answered.
#[tokio::test]
async fn a_ticket_queued_after_an_unacknowledged_assignment_waits_again() {
    let app = spawn_app().await;
    app.create_tenant("stmarys", "STM").await;
    let t = app.nurse_creates("stmarys", "a").await;

    for e in [
        assigned(&t, 1, "rn.silent"),
        routing_event(
            &t,
            2,
            Payload::TicketEscalated(TicketEscalated {
                ticket_id: t.ticket_id.clone(),
                number: t.number.clone(),
                priority: Priority::P1 as i32,
                level: wardline_proto::events::EscalationLevel::Reroute as i32,
                reason_code: "ack_timeout".into(),
                to_analyst_id: String::new(),
            }),
        ),
        queued(&t, 3),
    ] {
        publish(&app, &e, &e.event_id).await;
    }
    let waiting = eventually(10, "back in the queue", || async {
        let t = get(&app, &t.ticket_id).await;
        t.queued.then_some(t)
    })
    .await;
    assert_eq!(waiting.status(), TicketStatus::New);
    assert_eq!(
        waiting.assignee_analyst_id, "",
        "the silent analyst is off it"
    );

    // Someone frees up: routing assigns from the queue.
    let next = assigned(&t, 4, "rn.next");
    publish(&app, &next, &next.event_id).await;
    let taken = eventually(10, "assigned from the queue", || async {
        let t = get(&app, &t.ticket_id).await;
        (t.status() == TicketStatus::Assigned).then_some(t)
    })
    .await;
    assert_eq!(taken.assignee_analyst_id, "rn.next");
    assert!(!taken.queued);

    // The analyst acknowledges; a late queueing (routing's timer raced the
    // acknowledgement) does not take the ticket away from them.
    app.tickets(&analyst_token("stmarys", "rn.next"))
        .acknowledge_ticket(AcknowledgeTicketRequest {
            request_id: "ack-1".into(),
            ticket_id: t.ticket_id.clone(),
            expected_version: 0,
        })
        .await
        .unwrap();
    let late = queued(&t, 5);
    publish(&app, &late, &late.event_id).await;
    let breach = response_breached(&t, 6);
    publish(&app, &breach, &breach.event_id).await;
    let last = eventually(10, "events after the acknowledgement applied", || async {
        let t = get(&app, &t.ticket_id).await;
        (!t.breached_targets.is_empty()).then_some(t)
    })
    .await;
    assert_eq!(last.status(), TicketStatus::Acknowledged);
    assert_eq!(last.assignee_analyst_id, "rn.next");
    assert!(!last.queued);
}

#[tokio::test]
async fn a_poison_event_is_dead_lettered_with_its_reason() {
    let app = spawn_app().await;
    app.create_tenant("stmarys", "STM").await;
    let js = app.nats().jetstream().await;
    js.publish(
        "wardline.events.stmarys.ticket.assigned",
        "not a protobuf envelope \u{1}\u{2}".into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let pool = app.db().pool().await;
    let reason: String = eventually(10, "dead letter row", || async {
        sqlx::query_scalar::<_, String>("SELECT reason FROM dead_letters")
            .fetch_optional(&pool)
            .await
            .unwrap()
    })
    .await;
    assert!(reason.contains("envelope"), "{reason}");

    let stream = js
        .get_stream(wardline_kit::nats::DEADLETTER_STREAM)
        .await
        .unwrap();
    let msg = stream
        .get_last_raw_message_by_subject("wardline.deadletter.intake.stmarys")
        .await
        .unwrap();
    let reason_header = msg
        .headers
        .get("Wardline-Reason")
        .map(|v| v.as_str().to_owned());
    assert!(reason_header.is_some_and(|r| r.contains("envelope")));
}

/// The shared pool beside a replica dedicated to a large tenant leaves that
/// tenant's events alone (`WARDLINE_EXCLUDE_TENANTS`): it acknowledges them
/// unhandled, and the dedicated replica (`WARDLINE_TENANTS`, its own
/// durable consumer) applies them.
#[tokio::test]
async fn the_shared_pool_leaves_a_dedicated_tenants_events_to_its_own_replica() {
    let nats = wardline_testkit::TestNats::start();
    let db = wardline_testkit::TestDb::create("intake").await;
    let shared = start_with(nats, db, &[("WARDLINE_EXCLUDE_TENANTS", "stmarys")]).await;
    shared.create_tenant("stmarys", "STM").await;
    shared.create_tenant("lakeside", "LKS").await;
    let big = shared.nurse_creates("stmarys", "a").await;
    let other = shared.nurse_creates("lakeside", "b").await;
    for e in [assigned(&big, 1, "rn.big"), assigned(&other, 1, "rn.other")] {
        publish(&shared, &e, &e.event_id).await;
    }
    eventually(10, "lakeside's assignment", || async {
        (get_in(&shared, "lakeside", &other.ticket_id).await.status() == TicketStatus::Assigned)
            .then_some(())
    })
    .await;
    eventually(10, "stmarys's event acknowledged unhandled", || async {
        let metrics = http_get(shared.admin, "/metrics").await;
        metrics
            .lines()
            .any(|l| l.contains("outcome=\"other_pool\"") && l.ends_with(" 1"))
            .then_some(())
    })
    .await;
    let untouched = get(&shared, &big.ticket_id).await;
    assert_eq!(
        untouched.status(),
        TicketStatus::New,
        "the shared pool handled it"
    );
    let (nats, db) = shared.stop().await;

    let dedicated = start_with(nats, db, &[("WARDLINE_TENANTS", "stmarys")]).await;
    let taken = eventually(10, "the dedicated replica applies it", || async {
        let t = get(&dedicated, &big.ticket_id).await;
        (t.status() == TicketStatus::Assigned).then_some(t)
    })
    .await;
    assert_eq!(taken.assignee_analyst_id, "rn.big");
}
