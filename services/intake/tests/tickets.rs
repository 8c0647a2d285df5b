//! Intake's API against a real PostgreSQL and a real NATS server.

mod common;

use common::*;
use tonic::Code;
use wardline_proto::common::{Category, Priority, TicketStatus};
use wardline_proto::events::event_envelope::Payload;
use wardline_proto::events::{HoldReason, ResolutionCode, TransferReason};
use wardline_proto::intake::*;
use wardline_testkit::{Auth, events};

#[tokio::test]
async fn a_nurse_with_patient_care_blocked_gets_a_p1_ticket_and_one_created_event() {
    let app = spawn_app().await;
    app.create_tenant("stmarys", "STM").await;
    let mut tickets = app.tickets(&nurse_token("stmarys"));

    // The caller's trace continues through the outbox into the event.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut req = tonic::Request::new(nurse_ticket("call-1"));
    req.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-00f067aa0ba902b7-01")
            .parse()
            .unwrap(),
    );
    let t = tickets.create_ticket(req).await.unwrap().into_inner();
    assert_eq!(t.number, "STM-000001");
    assert_eq!(
        t.priority(),
        Priority::P1,
        "patient care blocked is the fast lane"
    );
    assert_eq!(t.status(), TicketStatus::New);
    assert_eq!(
        t.category(),
        Category::MedicationAdministration,
        "classified from the description"
    );
    assert!(t.category_classified);
    assert_eq!(t.version, 1);

    let by_number = tickets
        .get_ticket(GetTicketRequest {
            number: "STM-000001".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_number.ticket_id, t.ticket_id);

    let seen = events::wait_for(app.nats(), "wardline.events.stmarys.ticket.created", 1, 10).await;
    assert_eq!(seen.len(), 1, "exactly one created event");
    let ev = &seen[0];
    assert_eq!(
        ev.msg_id.as_deref(),
        Some(ev.envelope.event_id.as_str()),
        "Nats-Msg-Id is the event id"
    );
    let tp = ev.traceparent.as_deref().expect("traceparent header");
    assert!(
        tp.starts_with(&format!("00-{trace_id}-")) && tp.len() == 55,
        "same trace: {tp}"
    );
    assert_eq!(ev.envelope.tenant_id, "stmarys");
    assert_eq!(ev.envelope.aggregate_version, 1);
    let Some(Payload::TicketCreated(created)) = &ev.envelope.payload else {
        panic!("not a TicketCreated")
    };
    let snap = created.ticket.as_ref().unwrap();
    assert_eq!(snap.ticket_id, t.ticket_id);
    assert_eq!(snap.number, "STM-000001");
    assert!(snap.clinical_category);
    assert_eq!(
        created.caller.as_ref().unwrap().email,
        "riley.jones@example.org"
    );
    // The description never leaves intake.
    let raw = String::from_utf8_lossy(&ev.raw);
    assert!(
        !raw.contains("barcode scanner"),
        "the event must not carry free text"
    );
}

#[tokio::test]
async fn numbers_are_per_tenant_and_sequential() {
    let app = spawn_app().await;
    app.create_tenant("stmarys", "STM").await;
    app.create_tenant("lakeside", "LKS").await;
    let mut stm = app.tickets(&nurse_token("stmarys"));
    let mut lks = app.tickets(&nurse_token("lakeside"));
    for i in 1..=3 {
        let t = stm
            .create_ticket(nurse_ticket(&format!("s{i}")))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(t.number, format!("STM-{i:06}"));
    }
    let t = lks
        .create_ticket(nurse_ticket("l1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.number, "LKS-000001");
}

#[tokio::test]
async fn a_retry_returns_the_first_ticket_and_another_payload_is_refused() {
    let app = spawn_app().await;
    app.create_tenant("stmarys", "STM").await;
    let mut tickets = app.tickets(&nurse_token("stmarys"));
    let first = tickets
        .create_ticket(nurse_ticket("same-key"))
        .await
        .unwrap()
        .into_inner();
    let retry = tickets
        .create_ticket(nurse_ticket("same-key"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, retry, "the retry gets the first result");

    let mut other = nurse_ticket("same-key");
    other.description = "A different problem".into();
    let err = tickets.create_ticket(other).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("request_id"), "{}", err.message());

    let all = tickets
        .list_tickets(ListTicketsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.tickets.len(), 1, "no second ticket");
    let seen = events::wait_for(app.nats(), "wardline.events.stmarys.ticket.created", 1, 10).await;
    assert_eq!(seen.len(), 1, "no second event");
}

#[tokio::test]
async fn concurrent_retries_with_one_key_create_one_ticket() {
    let app = spawn_app().await;
    app.create_tenant("stmarys", "STM").await;
    let tickets = app.tickets(&nurse_token("stmarys"));
    let mut calls = Vec::new();
    for _ in 0..8 {
        let mut c = tickets.clone();
        calls.push(tokio::spawn(async move {
            c.create_ticket(nurse_ticket("racing"))
                .await
                .map(|r| r.into_inner().ticket_id)
        }));
    }
    let mut ids = Vec::new();
    for c in calls {
        ids.push(c.await.unwrap().expect("every retry succeeds"));
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
}

#[tokio::test]
async fn bad_input_is_invalid_argument_naming_the_field() {
    let app = spawn_app().await;
    app.create_tenant("stmarys", "STM").await;
    let mut tickets = app.tickets(&nurse_token("stmarys"));
    type Mutate = fn(&mut CreateTicketRequest);
    let cases: Vec<(&str, Mutate)> = vec![
        ("request_id", |r| r.request_id.clear()),
        ("facility_id", |r| r.facility_id.clear()),
        ("caller", |r| r.caller = None),
        ("caller.role", |r| r.caller.as_mut().unwrap().role = 0),
        ("caller.role", |r| r.caller.as_mut().unwrap().role = 99),
        ("caller.name", |r| {
            r.caller.as_mut().unwrap().name = "  ".into()
        }),
        ("caller.email", |r| {
            r.caller.as_mut().unwrap().email = "not-an-email".into()
        }),
        ("caller.phone", |r| {
            r.caller.as_mut().unwrap().phone = "555-0100".into()
        }),
        ("channel", |r| r.channel = 0),
        ("urgency", |r| r.urgency = 0),
        ("impact", |r| r.impact = 0),
        ("application", |r| r.application = "Epic Hyperspace!".into()),
        ("description", |r| r.description.clear()),
        ("description", |r| r.description = "x".repeat(10_001)),
        ("category", |r| r.category = 1234),
    ];
    for (i, (field, mutate)) in cases.into_iter().enumerate() {
        let mut req = nurse_ticket(&format!("bad-{i}"));
        mutate(&mut req);
        let err = tickets.create_ticket(req).await.unwrap_err();
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "case {i} ({field}): {err:?}"
        );
        assert!(
            err.message().starts_with(&format!("{field}:")),
            "case {i}: {}",
            err.message()
        );
    }
    // An unknown facility is a missing thing, not malformed input.
    let mut req = nurse_ticket("bad-facility");
    req.facility_id = "nowhere".into();
    let err = tickets.create_ticket(req).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("facility_id"));
    // Nothing was stored by any of them.
    let all = tickets
        .list_tickets(ListTicketsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(all.tickets.is_empty());
}

#[tokio::test]
async fn another_tenants_ticket_is_not_found_like_a_missing_one() {
    let app = spawn_app().await;
    app.create_tenant("stmarys", "STM").await;
    app.create_tenant("lakeside", "LKS").await;
    let t = app.nurse_creates("stmarys", "a").await;
    let mut lakeside = app.tickets(&admin_token("lakeside"));
    let foreign = lakeside
        .get_ticket(GetTicketRequest {
            ticket_id: t.ticket_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let missing = lakeside
        .get_ticket(GetTicketRequest {
            ticket_id: uuid::Uuid::now_v7().to_string(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(foreign.code(), Code::NotFound);
    assert_eq!(missing.code(), Code::NotFound);
    let err = lakeside
        .acknowledge_ticket(AcknowledgeTicketRequest {
            request_id: "x".into(),
            ticket_id: t.ticket_id.clone(),
            expected_version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let listed = lakeside
        .list_tickets(ListTicketsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.tickets.is_empty());
    // A token for one tenant cannot name another in x-tenant-id.
    let mut sneaky = app.tickets_as(Auth::new(&admin_token("lakeside"), Some("stmarys")));
    let err = sneaky
        .list_tickets(ListTicketsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // A vendor token reaches the tenant it names.
    let mut vendor = app.tickets_as(Auth::new(&vendor_token(), Some("stmarys")));
    let got = vendor
        .get_ticket(GetTicketRequest {
            ticket_id: t.ticket_id,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(got.into_inner().number, "STM-000001");
}

#[tokio::test]
async fn callers_without_a_valid_token_or_role_are_refused() {
    let app = spawn_app().await;
    app.create_tenant("stmarys", "STM").await;
    let err = app
        .tickets_as(Auth::anonymous())
        .list_tickets(ListTicketsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = app
        .tickets("not-a-jwt")
        .list_tickets(ListTicketsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let billing = wardline_testkit::token("fin", "stmarys", &[wardline_kit::auth::Role::Billing]);
    let err = app
        .tickets(&billing)
        .create_ticket(nurse_ticket("b"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // A requester cannot create tenants.
    let err = app
        .tenants(Auth::new(&nurse_token("stmarys"), None))
        .list_tenants(ListTenantsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn the_lifecycle_follows_the_state_machine_and_publishes_each_step() {
    let app = spawn_app().await;
    app.create_tenant("stmarys", "STM").await;
    let t = app.nurse_creates("stmarys", "c").await;
    let mut analyst = app.tickets(&analyst_token("stmarys", "an.lee"));
    let id = t.ticket_id.clone();

    // Closing a new ticket is not allowed.
    let err = analyst
        .close_ticket(CloseTicketRequest {
            request_id: "close-early".into(),
            ticket_id: id.clone(),
            expected_version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(err.message(), "cannot close a ticket that is new");

    // The analyst who answered takes it.
    let t = analyst
        .acknowledge_ticket(AcknowledgeTicketRequest {
            request_id: "ack".into(),
            ticket_id: id.clone(),
            expected_version: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.status(), TicketStatus::Acknowledged);
    assert_eq!(t.assignee_analyst_id, "an.lee");
    assert!(t.acknowledged_at.is_some());

    // A stale version is refused.
    let err = analyst
        .start_ticket(StartTicketRequest {
            request_id: "start-stale".into(),
            ticket_id: id.clone(),
            expected_version: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted);

    // Another analyst cannot work it.
    let err = app
        .tickets(&analyst_token("stmarys", "an.other"))
        .start_ticket(StartTicketRequest {
            request_id: "start-other".into(),
            ticket_id: id.clone(),
            expected_version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    let t = analyst
        .start_ticket(StartTicketRequest {
            request_id: "start".into(),
            ticket_id: id.clone(),
            expected_version: 2,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.status(), TicketStatus::InProgress);
    let err = analyst
        .hold_ticket(HoldTicketRequest {
            request_id: "hold-bad".into(),
            ticket_id: id.clone(),
            expected_version: 0,
            reason: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("reason:"));
    let t = analyst
        .hold_ticket(HoldTicketRequest {
            request_id: "hold".into(),
            ticket_id: id.clone(),
            expected_version: 0,
            reason: HoldReason::AwaitingCaller as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.status(), TicketStatus::OnHold);
    let t = analyst
        .start_ticket(StartTicketRequest {
            request_id: "resume".into(),
            ticket_id: id.clone(),
            expected_version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.status(), TicketStatus::InProgress);
    let t = analyst
        .resolve_ticket(ResolveTicketRequest {
            request_id: "resolve".into(),
            ticket_id: id.clone(),
            expected_version: 0,
            resolution_code: ResolutionCode::Configuration as i32,
            first_contact_resolution: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.status(), TicketStatus::Resolved);
    assert!(t.first_contact_resolution);

    // The nurse says it is not fixed: reopen goes back to routing.
    let t = app
        .tickets(&nurse_token("stmarys"))
        .reopen_ticket(ReopenTicketRequest {
            request_id: "reopen".into(),
            ticket_id: id.clone(),
            expected_version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.status(), TicketStatus::New);
    assert_eq!(t.reopen_count, 1);
    assert!(t.assignee_analyst_id.is_empty());

    let t = analyst
        .acknowledge_ticket(AcknowledgeTicketRequest {
            request_id: "ack2".into(),
            ticket_id: id.clone(),
            expected_version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let t2 = analyst
        .transfer_ticket(TransferTicketRequest {
            request_id: "transfer".into(),
            ticket_id: id.clone(),
            expected_version: t.version,
            reason: TransferReason::NeedsTier2 as i32,
            category: Category::Orders as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t2.status(), TicketStatus::New);
    assert_eq!(t2.category(), Category::Orders);

    let admin = &mut app.tickets(&admin_token("stmarys"));
    admin
        .acknowledge_ticket(AcknowledgeTicketRequest {
            request_id: "ack3".into(),
            ticket_id: id.clone(),
            expected_version: 0,
        })
        .await
        .unwrap();
    admin
        .resolve_ticket(ResolveTicketRequest {
            request_id: "res2".into(),
            ticket_id: id.clone(),
            expected_version: 0,
            resolution_code: ResolutionCode::Education as i32,
            first_contact_resolution: false,
        })
        .await
        .unwrap();
    let t = admin
        .close_ticket(CloseTicketRequest {
            request_id: "close".into(),
            ticket_id: id.clone(),
            expected_version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.status(), TicketStatus::Closed);
    let err = admin
        .reopen_ticket(ReopenTicketRequest {
            request_id: "reopen-closed".into(),
            ticket_id: id.clone(),
            expected_version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    // Every change published one event, in version order.
    let seen = events::wait_for(app.nats(), "wardline.events.stmarys.ticket.>", 12, 10).await;
    let kinds: Vec<(String, u64)> = seen
        .iter()
        .map(|s| {
            (
                s.subject.rsplit('.').next().unwrap().to_owned(),
                s.envelope.aggregate_version,
            )
        })
        .collect();
    let expected = [
        "created",
        "acknowledged",
        "started",
        "held",
        "started",
        "resolved",
        "reopened",
        "acknowledged",
        "transferred",
        "acknowledged",
        "resolved",
        "closed",
    ];
    assert_eq!(kinds.len(), expected.len(), "{kinds:?}");
    for (i, (kind, version)) in kinds.iter().enumerate() {
        assert_eq!(kind, expected[i]);
        assert_eq!(*version, i as u64 + 1);
    }
}

#[tokio::test]
async fn listing_filters_and_pages_with_a_stable_cursor() {
    let app = spawn_app().await;
    app.create_tenant("stmarys", "STM").await;
    let mut tickets = app.tickets(&admin_token("stmarys"));
    for i in 0..7 {
        let mut r = nurse_ticket(&format!("l{i}"));
        r.patient_care_blocked = i % 2 == 0;
        tickets.create_ticket(r).await.unwrap();
    }
    let mut numbers = Vec::new();
    let mut token = String::new();
    loop {
        let page = tickets
            .list_tickets(ListTicketsRequest {
                page_size: 3,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        numbers.extend(page.tickets.iter().map(|t| t.number.clone()));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let expected: Vec<String> = (1..=7).rev().map(|i| format!("STM-{i:06}")).collect();
    assert_eq!(numbers, expected, "newest first, each once");

    let p1 = tickets
        .list_tickets(ListTicketsRequest {
            priorities: vec![Priority::P1 as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p1.tickets.len(), 4);
    let err = tickets
        .list_tickets(ListTicketsRequest {
            page_token: "garbage".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("page_token:"));
}

#[tokio::test]
async fn notes_stay_in_intake_and_private_notes_are_hidden_from_requesters() {
    let app = spawn_app().await;
    app.create_tenant("stmarys", "STM").await;
    let mut nurse = app.tickets(&nurse_token("stmarys"));
    let t = nurse
        .create_ticket(nurse_ticket("n"))
        .await
        .unwrap()
        .into_inner();
    let mut analyst = app.tickets(&analyst_token("stmarys", "an.lee"));
    analyst
        .add_note(AddNoteRequest {
            request_id: "n1".into(),
            ticket_id: t.ticket_id.clone(),
            body: "CANARY-PHI patient Doe".into(),
            public: false,
        })
        .await
        .unwrap();
    analyst
        .add_note(AddNoteRequest {
            request_id: "n2".into(),
            ticket_id: t.ticket_id.clone(),
            body: "Please restart the scanner".into(),
            public: true,
        })
        .await
        .unwrap();
    let seen_by_analyst = analyst
        .list_notes(ListNotesRequest {
            ticket_id: t.ticket_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seen_by_analyst.notes.len(), 2);
    let seen_by_nurse = nurse
        .list_notes(ListNotesRequest {
            ticket_id: t.ticket_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seen_by_nurse.notes.len(), 1);
    assert!(seen_by_nurse.notes[0].public);

    let seen = events::wait_for(
        app.nats(),
        "wardline.events.stmarys.ticket.note_added",
        2,
        10,
    )
    .await;
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert!(!String::from_utf8_lossy(&s.raw).contains("CANARY-PHI"));
    }
}

#[tokio::test]
async fn hostile_text_is_refused_by_field_and_notes_are_paged_and_capped() {
    let nats = wardline_testkit::TestNats::start();
    let db = wardline_testkit::TestDb::create("intake").await;
    let app = start_with(nats, db, &[("INTAKE_MAX_NOTES_PER_TICKET", "3")]).await;
    app.create_tenant("stmarys", "STM").await;
    let mut nurse = app.tickets(&nurse_token("stmarys"));
    // A NUL byte (PostgreSQL refuses it) or a control character: the
    // field named, nothing written, the group-commit batch untouched.
    for (i, bad) in ["nul \u{0} in text", "bell \u{7}"].into_iter().enumerate() {
        let mut req = nurse_ticket(&format!("bad-{i}"));
        req.description = bad.into();
        let e = nurse.create_ticket(req).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().starts_with("description: "), "{}", e.message());
    }
    let mut req = nurse_ticket("line-breaks");
    req.description = "Scanner in 4 West:\n\tno barcode read\r\n".into();
    let t = nurse.create_ticket(req).await.unwrap().into_inner();
    let listed = nurse
        .list_tickets(ListTicketsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.tickets.len(), 1, "only the good ticket exists");

    let mut analyst = app.tickets(&analyst_token("stmarys", "an.lee"));
    let note = |i: usize, body: &str| AddNoteRequest {
        request_id: format!("note-{i}"),
        ticket_id: t.ticket_id.clone(),
        body: body.into(),
        public: true,
    };
    let e = analyst.add_note(note(0, "a \u{0} b")).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("body: "), "{}", e.message());
    for i in 1..=3 {
        analyst
            .add_note(note(i, &format!("step {i}")))
            .await
            .unwrap();
    }
    let e = analyst.add_note(note(4, "one too many")).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{}", e.message());

    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = analyst
            .list_notes(ListNotesRequest {
                ticket_id: t.ticket_id.clone(),
                page_size: 2,
                page_token,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.notes.len() <= 2);
        seen.extend(page.notes.into_iter().map(|n| n.body));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(seen, ["step 1", "step 2", "step 3"]);
    let e = analyst
        .list_notes(ListNotesRequest {
            ticket_id: t.ticket_id.clone(),
            page_size: 501,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(e.message().starts_with("page_size:"), "{}", e.message());
}

#[tokio::test]
async fn a_tenant_over_its_write_quota_is_told_to_wait_and_can_still_read() {
    let nats = wardline_testkit::TestNats::start();
    let db = wardline_testkit::TestDb::create("intake").await;
    let app = start_with(
        nats,
        db,
        &[
            ("WARDLINE_TENANT_WRITE_RATE", "1"),
            ("WARDLINE_TENANT_WRITE_BURST", "2"),
        ],
    )
    .await;
    // The vendor's CreateTenant counts against "*", not the hospital.
    app.create_tenant("stmarys", "STM").await;
    let mut nurse = app.tickets(&nurse_token("stmarys"));
    let t = nurse
        .create_ticket(nurse_ticket("w1"))
        .await
        .unwrap()
        .into_inner();
    nurse.create_ticket(nurse_ticket("w2")).await.unwrap();
    let e = nurse.create_ticket(nurse_ticket("w3")).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{}", e.message());
    // Reads are not changes.
    for _ in 0..5 {
        nurse
            .get_ticket(GetTicketRequest {
                ticket_id: t.ticket_id.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_requester_calls_as_themselves_and_an_analyst_for_anyone() {
    let app = spawn_app().await;
    app.create_tenant("stmarys", "STM").await;
    // The provider states Riley's email and phone.
    let riley = nurse_token("stmarys");
    let mut nurse = app.tickets(&riley);
    let mut as_other = nurse_ticket("other");
    as_other.caller.as_mut().unwrap().caller_id = "dr.house".into();
    let e = nurse.create_ticket(as_other).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(
        e.message().starts_with("caller.caller_id:"),
        "{}",
        e.message()
    );
    let mut elsewhere = nurse_ticket("elsewhere");
    elsewhere.caller.as_mut().unwrap().email = "someone.else@example.org".into();
    let e = nurse.create_ticket(elsewhere).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().starts_with("caller.email:"), "{}", e.message());
    // Empty: the provider's email is used.
    let mut own = nurse_ticket("own");
    own.caller.as_mut().unwrap().email.clear();
    let t = nurse.create_ticket(own).await.unwrap().into_inner();
    assert_eq!(t.caller.unwrap().email, "riley.jones@example.org");
    // An analyst takes the call for anyone, at any address.
    let mut analyst = app.tickets(&analyst_token("stmarys", "an.lee"));
    let mut for_other = nurse_ticket("for-other");
    for_other.caller.as_mut().unwrap().caller_id = "dr.house".into();
    for_other.caller.as_mut().unwrap().email = "g.house@example.org".into();
    let t = analyst.create_ticket(for_other).await.unwrap().into_inner();
    assert_eq!(t.caller.unwrap().caller_id, "dr.house");
}

#[tokio::test]
async fn a_requester_whose_token_states_no_contact_may_name_none() {
    let app = spawn_app().await;
    app.create_tenant("stmarys", "STM").await;
    // The provider states neither Riley's email nor phone: nothing the
    // request names can be trusted, so notification must not reach it.
    let bare = wardline_testkit::requester_token("rn.jones", "stmarys", None, None);
    let mut nurse = app.tickets(&bare);
    let mut any_email = nurse_ticket("any-email");
    any_email.caller.as_mut().unwrap().phone.clear();
    let e = nurse.create_ticket(any_email).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().starts_with("caller.email:"), "{}", e.message());
    let mut any_phone = nurse_ticket("any-phone");
    any_phone.caller.as_mut().unwrap().email.clear();
    let e = nurse.create_ticket(any_phone).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().starts_with("caller.phone:"), "{}", e.message());
    // Leaving both empty is a call nobody is told about, and it is taken.
    let mut none = nurse_ticket("none");
    let c = none.caller.as_mut().unwrap();
    c.email.clear();
    c.phone.clear();
    let t = nurse.create_ticket(none).await.unwrap().into_inner();
    let c = t.caller.unwrap();
    assert!(c.email.is_empty() && c.phone.is_empty(), "{c:?}");

    // A provider that states the phone: empty takes it, another is refused.
    let stated =
        wardline_testkit::requester_token("rn.jones", "stmarys", None, Some("+13125550100"));
    let mut nurse = app.tickets(&stated);
    let mut other_phone = nurse_ticket("other-phone");
    let c = other_phone.caller.as_mut().unwrap();
    c.email.clear();
    c.phone = "+13125550199".into();
    let e = nurse.create_ticket(other_phone).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().starts_with("caller.phone:"), "{}", e.message());
    let mut own = nurse_ticket("own-phone");
    let c = own.caller.as_mut().unwrap();
    c.email.clear();
    c.phone.clear();
    let t = nurse.create_ticket(own).await.unwrap().into_inner();
    assert_eq!(t.caller.unwrap().phone, "+13125550100");
    // Nothing refused was stored: two tickets, both Riley's.
    let all = nurse
        .list_tickets(ListTicketsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.tickets.len(), 2);
}

#[tokio::test]
async fn tenants_are_validated_unique_and_listed_for_vendors() {
    let app = spawn_app().await;
    app.create_tenant("stmarys", "STM").await;
    let mut vendor = app.vendor();
    let dup = vendor
        .create_tenant(CreateTenantRequest {
            request_id: "dup".into(),
            tenant_id: "stmarys".into(),
            name: "Again".into(),
            time_zone: "UTC".into(),
            ticket_prefix: "AGN".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists);
    let bad_zone = vendor
        .create_tenant(CreateTenantRequest {
            request_id: "zone".into(),
            tenant_id: "mercy".into(),
            name: "Mercy".into(),
            time_zone: "Mars/Olympus".into(),
            ticket_prefix: "MRC".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_zone.code(), Code::InvalidArgument);
    assert!(bad_zone.message().starts_with("time_zone:"));

    let mut admin = app.tenants(Auth::new(&admin_token("stmarys"), None));
    let t = admin
        .add_facility(AddFacilityRequest {
            request_id: "fac".into(),
            facility: Some(Facility {
                facility_id: "north-clinic".into(),
                name: "North Clinic".into(),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.facilities.len(), 2);
    let got = admin
        .get_tenant(GetTenantRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.reopen_window_hours, 72);
    let err = admin
        .get_tenant(GetTenantRequest {
            tenant_id: "other".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let listed = vendor
        .list_tenants(ListTenantsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.tenants.len(), 1);
    let seen = events::wait_for(app.nats(), "wardline.events.stmarys.tenant.>", 2, 10).await;
    assert_eq!(seen.len(), 2, "created and updated");
}

#[tokio::test]
async fn health_readiness_metrics_and_reflection_are_served() {
    let app = spawn_app().await;
    let ready = http_get(app.admin, "/readyz").await;
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    let metrics = http_get(app.admin, "/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");

    let mut health =
        tonic_health::pb::health_client::HealthClient::new(wardline_testkit::channel(app.grpc));
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "wardline.intake.v1.TicketService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );

    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(wardline_testkit::channel(app.grpc));
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut resp = reflection
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let msg = resp.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
        panic!("no service list")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"wardline.intake.v1.TicketService".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"wardline.intake.v1.TenantService".to_owned()),
        "{names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_noisy_tenant_over_its_quota_is_resource_exhausted_while_others_carry_on() {
    let nats = wardline_testkit::TestNats::start();
    let db = wardline_testkit::TestDb::create("intake").await;
    let app = start_with(
        nats,
        db,
        &[("INTAKE_TENANT_RATE", "5"), ("INTAKE_TENANT_BURST", "5")],
    )
    .await;
    app.create_tenant("noisy", "NSY").await;
    app.create_tenant("quiet", "QUI").await;
    let noisy = app.tickets(&nurse_token("noisy"));
    let mut calls = Vec::new();
    for i in 0..30 {
        let mut c = noisy.clone();
        calls.push(tokio::spawn(async move {
            c.create_ticket(nurse_ticket(&format!("n{i}")))
                .await
                .map(|_| ())
        }));
    }
    let mut exhausted = 0;
    let mut ok = 0;
    for c in calls {
        match c.await.unwrap() {
            Ok(()) => ok += 1,
            Err(e) => {
                assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
                assert!(e.message().contains("retry in"), "{}", e.message());
                exhausted += 1;
            }
        }
    }
    assert!(ok >= 5, "the burst is served ({ok})");
    assert!(exhausted > 0, "the excess is refused");
    // The other hospital is not affected.
    let t = app.nurse_creates("quiet", "q1").await;
    assert_eq!(t.number, "QUI-000001");
    // Nothing refused was stored: one ticket per admitted call.
    let listed = app
        .tickets(&admin_token("noisy"))
        .list_tickets(ListTicketsRequest {
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.tickets.len(), ok);
}
