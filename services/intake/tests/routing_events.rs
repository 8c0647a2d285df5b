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
    breached(t, seq, SlaTarget::Response as i32)
}

fn breached(t: &Ticket, seq: u64, target: i32) -> EventEnvelope {
    routing_event(
        t,
        seq,
        Payload::SlaBreached(SlaBreached {
            ticket_id: t.ticket_id.clone(),
            number: t.number.clone(),
            priority: Priority::P1 as i32,
            target,
            deadline: None,
            breached_at: None,
            internal: false,
        }),
    )
}

fn escalated(t: &Ticket, seq: u64, level: i32) -> EventEnvelope {
    routing_event(
        t,
        seq,
        Payload::TicketEscalated(TicketEscalated {
            ticket_id: t.ticket_id.clone(),
            number: t.number.clone(),
            priority: Priority::P1 as i32,
            level,
            reason_code: "ack_timeout".into(),
            to_analyst_id: String::new(),
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
    // An internal-target alert is not a breach of the ticket's SLA (a
    // resolution alert, so that counting it would show).
    let mut internal = breached(&t, 3, SlaTarget::Resolution as i32);
    if let Some(Payload::SlaBreached(b)) = internal.payload.as_mut() {
        b.internal = true;
    }
    publish(&app, &internal, &internal.event_id).await;
    // A breach after them is applied, proving the others were processed first.
    let breach = response_breached(&t, 4);
    publish(&app, &breach, &breach.event_id).await;
    let last = eventually(10, "breach", || async {
        let t = get(&app, &t.ticket_id).await;
        (!t.breached_targets.is_empty()).then_some(t)
    })
    .await;
    assert_eq!(
        last.breached_targets,
        [SlaTarget::Response as i32],
        "the internal alert added no breach"
    );
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
        inbox, 5,
        "queued, assigned, stale, internal alert, breach; the duplicate is not a new entry"
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
        escalated(
            &t,
            2,
            wardline_proto::events::EscalationLevel::Reroute as i32,
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

/// Routing's events as one batch of the consumer loop (one transaction),
/// the handler driven as the loop drives it.
async fn apply_batch(
    pool: &sqlx::PgPool,
    events: &[EventEnvelope],
) -> Result<(), wardline_kit::consumer::HandleError> {
    let incoming: Vec<_> = events
        .iter()
        .map(|e| wardline_kit::consumer::Incoming::new(e.clone(), 1))
        .collect();
    let mut tx = pool.begin().await.unwrap();
    let outcome = wardline_kit::consumer::apply_with(
        &wardline_intake::events::RoutingEvents,
        &mut tx,
        &incoming,
    )
    .await;
    if outcome.is_ok() {
        tx.commit().await.unwrap();
    } else {
        tx.rollback().await.unwrap();
    }
    outcome
}

/// What routing's events change on a ticket, as stored.
type View = (i16, String, bool, i16, Vec<i16>, i64, i64);

async fn view(pool: &sqlx::PgPool, t: &Ticket) -> View {
    sqlx::query_as(
        "SELECT status, assignee_analyst_id, queued, escalation_level, breached_targets, routing_seq, version
           FROM tickets WHERE ticket_id = $1::uuid",
    )
    .bind(&t.ticket_id)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// A small deterministic generator: the same script every run.
struct Script(u64);

impl Script {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// One scripted routing event for `t`: the same kind, sequence and values
/// whichever copy of a ticket it is played on.
fn scripted(t: &Ticket, kind: u64, seq: u64, value: u64) -> EventEnvelope {
    match kind {
        0 => assigned(t, seq, ["rn.a", "rn.b", "rn.c"][value as usize % 3]),
        1 => queued(t, seq),
        2 => escalated(t, seq, (value % 3 + 1) as i32),
        _ => breached(t, seq, (value % 2 + 1) as i32),
    }
}

/// Intake applies a batch of routing's events with a few statements for
/// all its tickets; the tickets must end exactly where applying the same
/// events one transaction at a time ends them: stale and repeated
/// assignments skipped, the newest of a ticket's assignments and queueings
/// winning within the batch, an acknowledged ticket kept by its analyst,
/// escalations at their maximum, breaches a set, versions bumped once per
/// change. Each round plays one script on two copies of five tickets.
#[tokio::test]
async fn a_batch_of_mixed_routing_events_ends_as_applying_them_one_by_one() {
    let app = spawn_app().await;
    app.create_tenant("stmarys", "STM").await;
    let pool = app.db().pool().await;
    let mut script = Script(0x9E37_79B9_7F4A_7C15);
    for round in 0..4 {
        let mut pairs = Vec::new();
        for i in 0..5 {
            let batched = app.nurse_creates("stmarys", &format!("b{round}-{i}")).await;
            let single = app.nurse_creates("stmarys", &format!("s{round}-{i}")).await;
            pairs.push((batched, single));
        }
        // Every third ticket is already with an analyst who acknowledged.
        for (i, (batched, single)) in pairs.iter().enumerate() {
            if i % 3 != 0 {
                continue;
            }
            for t in [batched, single] {
                apply_batch(&pool, &[assigned(t, 1, "rn.first")])
                    .await
                    .unwrap();
                app.tickets(&analyst_token("stmarys", "rn.first"))
                    .acknowledge_ticket(AcknowledgeTicketRequest {
                        request_id: format!("ack-{}", t.ticket_id),
                        ticket_id: t.ticket_id.clone(),
                        expected_version: 0,
                    })
                    .await
                    .unwrap();
            }
        }
        let mut batch = Vec::new();
        let mut one_by_one = Vec::new();
        for _ in 0..30 {
            let (i, kind, seq, value) = (
                script.next(5) as usize,
                script.next(4),
                script.next(8),
                script.next(6),
            );
            batch.push(scripted(&pairs[i].0, kind, seq, value));
            one_by_one.push(scripted(&pairs[i].1, kind, seq, value));
        }
        apply_batch(&pool, &batch).await.unwrap();
        for e in &one_by_one {
            apply_batch(&pool, std::slice::from_ref(e)).await.unwrap();
        }
        for (batched, single) in &pairs {
            assert_eq!(
                view(&pool, batched).await,
                view(&pool, single).await,
                "round {round}: {} (batched) and {} (one by one) differ",
                batched.number,
                single.number
            );
        }
    }
}

/// A batch naming a ticket intake has not committed is retried as a
/// whole (the loop then applies its events one at a time, so the known
/// tickets do not wait), and changes nothing meanwhile.
#[tokio::test]
async fn a_batch_with_a_ticket_not_committed_yet_is_retried_whole() {
    let app = spawn_app().await;
    app.create_tenant("stmarys", "STM").await;
    let pool = app.db().pool().await;
    let known = app.nurse_creates("stmarys", "a").await;
    let before = view(&pool, &known).await;
    let unknown = Ticket {
        ticket_id: uuid::Uuid::now_v7().to_string(),
        ..known.clone()
    };
    let outcome = apply_batch(
        &pool,
        &[assigned(&known, 1, "rn.a"), assigned(&unknown, 1, "rn.a")],
    )
    .await;
    assert!(
        matches!(outcome, Err(wardline_kit::consumer::HandleError::Retry(_))),
        "{outcome:?}"
    );
    assert_eq!(view(&pool, &known).await, before);
    apply_batch(&pool, &[assigned(&known, 1, "rn.a")])
        .await
        .unwrap();
    assert_eq!(view(&pool, &known).await.1, "rn.a");
}
