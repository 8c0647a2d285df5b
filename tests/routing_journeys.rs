//! Journeys through intake and routing, against real NATS and PostgreSQL.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use wardline_proto::common::{CallerRole, Category, Impact, TicketStatus};
use wardline_proto::events::event_envelope::Payload;
use wardline_proto::events::{Availability, EscalationLevel, SlaTarget};
use wardline_proto::routing::{
    AssignmentState, ExplainAssignmentRequest, GetQueueRequest, IneligibilityReason,
    ListAssignmentsRequest, SetAvailabilityRequest, SkillModule,
};
use wardline_testkit::events;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_p1_from_a_nurse_about_emar_reaches_the_rn_on_shift_even_if_a_tech_is_less_loaded() {
    let s = spawn_stack().await;
    s.create_tenant("stmarys", "STM").await;
    // A non-clinical analyst with the eMAR skill and nothing to do...
    s.upsert(analyst(
        "tech.tom",
        "stmarys",
        SkillModule::MedicationAdministration,
        5,
    ))
    .await;
    // ...an RN analyst who already holds two tickets...
    let mut nurse = rn(
        "rn.rita",
        "stmarys",
        SkillModule::MedicationAdministration,
        2,
    );
    nurse.max_concurrent_tickets = 5;
    s.upsert(nurse).await;
    // ...and an RN who covers another hospital only.
    s.upsert(rn(
        "rn.other",
        "lakeside",
        SkillModule::MedicationAdministration,
        5,
    ))
    .await;
    // The RN already holds two tickets (the tech holds none).
    let pool = s.routing_db.pool().await;
    sqlx::query("UPDATE analysts SET current_load = 2 WHERE analyst_id = 'rn.rita'")
        .execute(&pool)
        .await
        .unwrap();
    let mut tickets = s.tickets(&nurse_token("stmarys"));

    let t = tickets
        .create_ticket(ticket_request(
            "p1",
            CallerRole::Nurse,
            Category::MedicationAdministration,
            true,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.priority, wardline_proto::common::Priority::P1 as i32);
    let shown = s
        .ticket_until("stmarys", &t.ticket_id, "assignment in intake", |t| {
            t.status() == TicketStatus::Assigned
        })
        .await;
    assert_eq!(shown.assignee_analyst_id, "rn.rita");

    // Routing can say why.
    let mut queues = s.queues("stmarys");
    let list = queues
        .list_assignments(ListAssignmentsRequest {
            ticket_id: t.ticket_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.assignments.len(), 1);
    let a = &list.assignments[0];
    assert_eq!(a.state(), AssignmentState::PendingAck);
    let why = queues
        .explain_assignment(ExplainAssignmentRequest {
            assignment_id: a.assignment_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(why.chosen_analyst_id, "rn.rita");
    assert!(why.credential_required);
    let tom = why
        .candidates
        .iter()
        .find(|c| c.analyst_id == "tech.tom")
        .expect("tom was considered");
    assert!(!tom.eligible);
    assert_eq!(
        tom.reasons,
        vec![IneligibilityReason::MissingCredential as i32]
    );
    assert!(
        why.candidates.iter().all(|c| c.analyst_id != "rn.other"),
        "other hospital's analyst is not a candidate"
    );

    // The events went out once each, with trace context.
    let seen = events::wait_for(&s.nats, "wardline.events.stmarys.ticket.assigned", 1, 10).await;
    assert_eq!(seen.len(), 1);
    assert!(seen[0].traceparent.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nobody_eligible_the_ticket_waits_and_is_assigned_when_an_analyst_becomes_available() {
    let s = spawn_stack().await;
    s.create_tenant("stmarys", "STM").await;
    let mut away = analyst("an.away", "stmarys", SkillModule::Printing, 3);
    away.availability = Availability::Away as i32;
    s.upsert(away).await;
    let mut tickets = s.tickets(&nurse_token("stmarys"));
    let t = tickets
        .create_ticket(ticket_request(
            "q1",
            CallerRole::NonClinical,
            Category::Printing,
            false,
        ))
        .await
        .unwrap()
        .into_inner();
    s.ticket_until("stmarys", &t.ticket_id, "queued flag", |t| t.queued)
        .await;
    let queue = s
        .queues("stmarys")
        .get_queue(GetQueueRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(queue.depth, 1);
    assert_eq!(queue.tickets[0].number, t.number);
    assert_eq!(queue.tickets[0].reason_code, "no_analyst_available");

    // The analyst comes back: the queue drains at once.
    s.analysts_as(&analyst_token("stmarys", "an.away"))
        .set_availability(SetAvailabilityRequest {
            request_id: "back".into(),
            analyst_id: "an.away".into(),
            availability: Availability::Available as i32,
            expected_version: 0,
        })
        .await
        .unwrap();
    let shown = s
        .ticket_until(
            "stmarys",
            &t.ticket_id,
            "assignment after availability",
            |t| t.status() == TicketStatus::Assigned,
        )
        .await;
    assert_eq!(shown.assignee_analyst_id, "an.away");
    assert!(!shown.queued);
    let queue = s
        .queues("stmarys")
        .get_queue(GetQueueRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(queue.depth, 0);
}

/// As a hospital tries it: one analyst of capacity 1, busy; a P1, a P2 and
/// a younger P1 wait. Each resolution hands the slot to the head of
/// GetQueue at once: the periodic drain is set to a minute, so nothing here
/// waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_frees_on_resolution_and_the_queue_is_served_by_priority() {
    let s = spawn_stack_with(&[("ROUTING_DRAIN_INTERVAL_MS", "60000")]).await;
    s.create_tenant("stmarys", "STM").await;
    let mut solo = analyst("an.solo", "stmarys", SkillModule::Printing, 3);
    solo.max_concurrent_tickets = 1;
    s.upsert(solo).await;
    let mut tickets = s.tickets(&nurse_token("stmarys"));
    let call = |id: &'static str, blocked: bool, impact: Impact| {
        let mut r = ticket_request(id, CallerRole::NonClinical, Category::Printing, blocked);
        r.impact = impact as i32;
        r
    };
    let first = tickets
        .create_ticket(call("c0", false, Impact::SingleUser))
        .await
        .unwrap()
        .into_inner();
    s.ticket_until("stmarys", &first.ticket_id, "first assigned", |t| {
        t.status() == TicketStatus::Assigned
    })
    .await;
    let mut waiting = Vec::new();
    for (id, blocked, impact) in [
        ("c1", true, Impact::SingleUser),  // P1
        ("c2", false, Impact::Department), // P2
        ("c3", true, Impact::SingleUser),  // P1, younger
    ] {
        let t = tickets
            .create_ticket(call(id, blocked, impact))
            .await
            .unwrap()
            .into_inner();
        s.ticket_until("stmarys", &t.ticket_id, "queued", |t| t.queued)
            .await;
        waiting.push(t);
    }
    let [p1, p2, younger_p1] = [0, 1, 2].map(|i| waiting[i].ticket_id.clone());
    let queue = |s: &Stack| {
        let mut q = s.queues("stmarys");
        async move {
            q.get_queue(GetQueueRequest::default())
                .await
                .unwrap()
                .into_inner()
                .tickets
                .into_iter()
                .map(|t| t.ticket_id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        queue(&s).await,
        [p1.clone(), younger_p1.clone(), p2.clone()]
    );

    let an = s.tickets(&analyst_token("stmarys", "an.solo"));
    use wardline_proto::intake::{AcknowledgeTicketRequest, ResolveTicketRequest};
    let work = |ticket: String| {
        let mut an = an.clone();
        async move {
            an.acknowledge_ticket(AcknowledgeTicketRequest {
                request_id: format!("ack-{ticket}"),
                ticket_id: ticket.clone(),
                expected_version: 0,
            })
            .await
            .unwrap();
            an.resolve_ticket(ResolveTicketRequest {
                request_id: format!("res-{ticket}"),
                ticket_id: ticket,
                expected_version: 0,
                resolution_code: wardline_proto::events::ResolutionCode::Hardware as i32,
                first_contact_resolution: false,
            })
            .await
            .unwrap();
        }
    };
    // Each resolution: the head of GetQueue is assigned, within seconds
    // (not the drain's minute), and the P2 waits while a P1 is ahead.
    let mut previous = first.ticket_id.clone();
    for (next, rest) in [
        (p1.clone(), vec![younger_p1.clone(), p2.clone()]),
        (younger_p1.clone(), vec![p2.clone()]),
        (p2.clone(), vec![]),
    ] {
        let resolved_at = std::time::Instant::now();
        work(previous).await;
        s.ticket_until("stmarys", &next, "the queue head assigned", |t| {
            t.status() == TicketStatus::Assigned
        })
        .await;
        assert!(
            resolved_at.elapsed() < Duration::from_secs(10),
            "handed over at once, not by the periodic drain"
        );
        for r in &rest {
            assert!(s.ticket("stmarys", r).await.queued, "{r} still waits");
        }
        assert_eq!(queue(&s).await, rest);
        previous = next;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacknowledged_assignment_is_rerouted_to_the_next_analyst() {
    let s = spawn_stack().await;
    s.create_tenant("stmarys", "STM").await;
    s.upsert(analyst("an.first", "stmarys", SkillModule::Printing, 5))
        .await;
    s.upsert(analyst("an.second", "stmarys", SkillModule::Printing, 2))
        .await;
    let t = s
        .tickets(&nurse_token("stmarys"))
        .create_ticket(ticket_request(
            "r1",
            CallerRole::NonClinical,
            Category::Printing,
            false,
        ))
        .await
        .unwrap()
        .into_inner();
    let first = s
        .ticket_until("stmarys", &t.ticket_id, "first assignment", |t| {
            t.status() == TicketStatus::Assigned
        })
        .await;
    assert_eq!(
        first.assignee_analyst_id, "an.first",
        "higher skill level first"
    );

    s.expire_timer(&t.ticket_id, "ack").await; // the acknowledgement deadline passes
    s.ticket_until("stmarys", &t.ticket_id, "re-route", |t| {
        t.assignee_analyst_id == "an.second"
    })
    .await;
    let list = s
        .queues("stmarys")
        .list_assignments(ListAssignmentsRequest {
            ticket_id: t.ticket_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let states: Vec<(String, AssignmentState)> = list
        .assignments
        .iter()
        .map(|a| (a.analyst_id.clone(), a.state()))
        .collect();
    assert_eq!(
        states,
        vec![
            ("an.second".to_owned(), AssignmentState::PendingAck),
            ("an.first".to_owned(), AssignmentState::TimedOut)
        ]
    );
    let first_analyst = s
        .analysts()
        .get_analyst(wardline_proto::routing::GetAnalystRequest {
            analyst_id: "an.first".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        first_analyst.current_load, 0,
        "the timed-out assignment freed capacity"
    );
    let escalations =
        events::wait_for(&s.nats, "wardline.events.stmarys.ticket.escalated", 1, 10).await;
    let Some(Payload::TicketEscalated(e)) = &escalations[0].envelope.payload else {
        panic!()
    };
    assert_eq!(e.level(), EscalationLevel::Reroute);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_response_target_escalates_to_the_supervisor_and_is_a_breach() {
    let s = spawn_stack().await;
    s.create_tenant("stmarys", "STM").await;
    let mut boss = analyst("sup.sam", "stmarys", SkillModule::Orders, 1);
    boss.supervisor = true;
    boss.availability = Availability::Busy as i32;
    s.upsert(boss).await;
    let t = s
        .tickets(&nurse_token("stmarys"))
        .create_ticket(ticket_request(
            "b1",
            CallerRole::Physician,
            Category::Orders,
            true,
        ))
        .await
        .unwrap()
        .into_inner();
    s.ticket_until("stmarys", &t.ticket_id, "queued", |t| t.queued)
        .await;
    s.expire_timer(&t.ticket_id, "response").await; // the response target passes
    let shown = s
        .ticket_until("stmarys", &t.ticket_id, "breach on the ticket", |t| {
            !t.breached_targets.is_empty()
        })
        .await;
    assert_eq!(shown.breached_targets, vec![SlaTarget::Response as i32]);
    let shown = s
        .ticket_until("stmarys", &t.ticket_id, "escalation on the ticket", |t| {
            t.escalation_level != 0
        })
        .await;
    assert_eq!(shown.escalation_level(), EscalationLevel::Supervisor);
    let breaches = events::wait_for(
        &s.nats,
        "wardline.events.stmarys.ticket.sla_breached",
        1,
        10,
    )
    .await;
    assert_eq!(breaches.len(), 1);
    let escalated =
        events::wait_for(&s.nats, "wardline.events.stmarys.ticket.escalated", 1, 10).await;
    let Some(Payload::TicketEscalated(e)) = &escalated[0].envelope.payload else {
        panic!()
    };
    assert_eq!(e.to_analyst_id, "sup.sam");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_routing_replicas_under_concurrent_load_keep_every_analyst_within_capacity() {
    let s = spawn_stack().await;
    let second = start_routing(&s.routing_db, &s.nats).await; // a second replica, same database
    s.create_tenant("stmarys", "STM").await;
    for i in 0..4 {
        let mut a = analyst(
            &format!("an.{i}"),
            "stmarys",
            SkillModule::Printing,
            1 + i % 3,
        );
        a.max_concurrent_tickets = 2;
        s.upsert(a).await;
    }
    let tickets = s.tickets(&nurse_token("stmarys"));
    let mut calls = Vec::new();
    for i in 0..20 {
        let mut c = tickets.clone();
        calls.push(tokio::spawn(async move {
            c.create_ticket(ticket_request(
                &format!("load-{i}"),
                CallerRole::NonClinical,
                Category::Printing,
                i % 5 == 0,
            ))
            .await
            .unwrap()
            .into_inner()
        }));
    }
    let mut created = Vec::new();
    for c in calls {
        created.push(c.await.unwrap());
    }
    // 4 analysts x 2 = 8 assigned, 12 queued; wait until routing has seen all.
    let pool = s.routing_db.pool().await;
    wardline_testkit::eventually(20, "all tickets routed", || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM tickets WHERE state IN ('waiting', 'assigned')",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        (n == 20).then_some(())
    })
    .await;
    let loads: Vec<(String, i32, i32)> = sqlx::query_as(
        "SELECT analyst_id, current_load, max_concurrent FROM analysts ORDER BY analyst_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for (id, load, max) in &loads {
        assert!(load <= max, "{id} holds {load} > {max}");
        assert_eq!(*load, 2, "{id} is filled to capacity");
    }
    let live: Vec<(String, i64)> =
        sqlx::query_as("SELECT analyst_id, count(*) FROM assignments WHERE state IN ('pending-ack', 'acknowledged') GROUP BY analyst_id ORDER BY 1")
            .fetch_all(&pool)
            .await
            .unwrap();
    let live: HashMap<String, i64> = live.into_iter().collect();
    assert_eq!(
        live.values().sum::<i64>(),
        8,
        "one live assignment per assigned ticket"
    );
    assert!(live.values().all(|n| *n == 2));
    let twice: i64 = sqlx::query_scalar("SELECT count(*) FROM (SELECT ticket_id FROM assignments GROUP BY ticket_id HAVING count(*) > 1) x")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(twice, 0, "no ticket assigned twice");
    let queue = s
        .queues("stmarys")
        .get_queue(GetQueueRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(queue.depth, 12);
    // P1s first in the queue.
    let first_p3 = queue
        .tickets
        .iter()
        .position(|q| q.priority != 1)
        .unwrap_or(queue.tickets.len());
    assert!(queue.tickets[first_p3..].iter().all(|q| q.priority != 1));
    second.stop().await;
}
