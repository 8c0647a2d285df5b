//! Who may see and change what (docs/access-model.md): a requester reaches
//! only their own tickets, an analyst changes only their own assignments,
//! a token's role is tied to its scope and a tenant is named only by its
//! slug. Each test here was a hole before (issue 15, security audit H2/M1).

mod common;

use common::*;
use tonic::Code;
use wardline_kit::auth::Role;
use wardline_proto::common::TicketStatus;
use wardline_proto::events::ResolutionCode;
use wardline_proto::intake::*;
use wardline_testkit::Auth;

fn smith_token(tenant: &str) -> String {
    wardline_testkit::token("rn.smith", tenant, &[Role::Requester])
}

fn get(id: &str) -> GetTicketRequest {
    GetTicketRequest {
        ticket_id: id.to_owned(),
        ..Default::default()
    }
}

fn note(request_id: &str, id: &str) -> AddNoteRequest {
    AddNoteRequest {
        request_id: request_id.into(),
        ticket_id: id.to_owned(),
        body: "Still failing at bed 12".into(),
        public: true,
    }
}

fn notes(id: &str) -> ListNotesRequest {
    ListNotesRequest {
        ticket_id: id.to_owned(),
        ..Default::default()
    }
}

fn reopen(request_id: &str, id: &str) -> ReopenTicketRequest {
    ReopenTicketRequest {
        request_id: request_id.into(),
        ticket_id: id.to_owned(),
        expected_version: 0,
    }
}

/// An analyst takes the ticket (acknowledges it) and resolves it; `round`
/// tells one time from the next.
async fn analyst_resolves(app: &TestApp, analyst: &str, id: &str, round: u32) {
    let mut an = app.tickets(&analyst_token("stmarys", analyst));
    an.acknowledge_ticket(AcknowledgeTicketRequest {
        request_id: format!("ack-{round}"),
        ticket_id: id.to_owned(),
        expected_version: 0,
    })
    .await
    .expect("acknowledged");
    an.resolve_ticket(ResolveTicketRequest {
        request_id: format!("resolve-{round}"),
        ticket_id: id.to_owned(),
        expected_version: 0,
        resolution_code: ResolutionCode::Education as i32,
        first_contact_resolution: false,
    })
    .await
    .expect("resolved");
}

#[tokio::test]
async fn a_requester_sees_and_acts_only_on_tickets_they_filed_or_are_named_on() {
    let app = spawn_app().await;
    app.create_tenant("stmarys", "STM").await;
    // Nurse Jones files a ticket; nurse Smith works in the same hospital.
    let jones_ticket = app.nurse_creates("stmarys", "jones-1").await;
    let id = jones_ticket.ticket_id.clone();
    let mut jones = app.tickets(&nurse_token("stmarys"));
    let mut smith = app.tickets(&smith_token("stmarys"));

    // To Smith, Jones's ticket does not exist: by id, by number, in the list.
    assert_eq!(
        smith.get_ticket(get(&id)).await.unwrap_err().code(),
        Code::NotFound
    );
    let by_number = GetTicketRequest {
        number: jones_ticket.number.clone(),
        ..Default::default()
    };
    let e = smith.get_ticket(by_number.clone()).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let listed = smith
        .list_tickets(ListTicketsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        listed.tickets.is_empty(),
        "Smith listed {}",
        listed.tickets.len()
    );
    let e = smith.list_notes(notes(&id)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = smith.add_note(note("smith-note", &id)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // Jones reads and annotates her own.
    assert_eq!(
        jones
            .get_ticket(by_number)
            .await
            .unwrap()
            .into_inner()
            .ticket_id,
        id
    );
    let mine = jones
        .list_tickets(ListTicketsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.tickets.len(), 1);
    jones.add_note(note("jones-note", &id)).await.unwrap();
    assert_eq!(
        jones
            .list_notes(notes(&id))
            .await
            .unwrap()
            .into_inner()
            .notes
            .len(),
        1
    );

    // Resolved, the ticket can be reopened by Jones, not by Smith; nor can
    // Smith replay Jones's reopen request to read its answer.
    analyst_resolves(&app, "an.lee", &id, 1).await;
    let e = smith
        .reopen_ticket(reopen("reopen", &id))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let reopened = jones
        .reopen_ticket(reopen("reopen", &id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reopened.status(), TicketStatus::New);
    let e = smith
        .reopen_ticket(reopen("reopen", &id))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "a replay reveals nothing either");
    let e = smith.add_note(note("jones-note", &id)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "nor does a replayed note");

    // An analyst takes a call for Smith: Smith, named as the caller, sees
    // that ticket (and only that one); the desk sees both.
    let mut analyst = app.tickets(&analyst_token("stmarys", "an.lee"));
    let mut for_smith = nurse_ticket("for-smith");
    for_smith.caller.as_mut().unwrap().caller_id = "rn.smith".into();
    let smiths = analyst.create_ticket(for_smith).await.unwrap().into_inner();
    let listed = smith
        .list_tickets(ListTicketsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = listed
        .tickets
        .iter()
        .map(|t| t.ticket_id.as_str())
        .collect();
    assert_eq!(ids, [smiths.ticket_id.as_str()]);
    smith.get_ticket(get(&smiths.ticket_id)).await.unwrap();
    let desk = analyst
        .list_tickets(ListTicketsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(desk.tickets.len(), 2);

    // The creator is recorded from the token, whoever the caller is.
    let pool = app.db().pool().await;
    let created_by: Vec<(String, String)> =
        sqlx::query_as("SELECT caller_id, created_by FROM tickets ORDER BY ticket_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        created_by,
        [
            ("rn.jones".to_owned(), "rn.jones".to_owned()),
            ("rn.smith".to_owned(), "an.lee".to_owned())
        ]
    );
}

#[tokio::test]
async fn an_analyst_closes_and_reopens_only_their_own_assignments() {
    let app = spawn_app().await;
    app.create_tenant("stmarys", "STM").await;
    let id = app.nurse_creates("stmarys", "c").await.ticket_id;
    analyst_resolves(&app, "an.lee", &id, 1).await;
    let close = |request_id: &str| CloseTicketRequest {
        request_id: request_id.into(),
        ticket_id: id.clone(),
        expected_version: 0,
    };

    let mut other = app.tickets(&analyst_token("stmarys", "an.other"));
    let e = other.close_ticket(close("other-close")).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let e = other
        .reopen_ticket(reopen("other-reopen", &id))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);

    // The assigned analyst may; so may the desk's supervisor (tenant admin).
    let mut lee = app.tickets(&analyst_token("stmarys", "an.lee"));
    let t = lee
        .reopen_ticket(reopen("lee-reopen", &id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.status(), TicketStatus::New);
    analyst_resolves(&app, "an.lee", &id, 2).await;
    let t = app
        .tickets(&admin_token("stmarys"))
        .close_ticket(close("admin-close"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.status(), TicketStatus::Closed);
}

#[tokio::test]
async fn a_pinned_vendor_admin_administers_its_tenant_and_no_other() {
    let app = spawn_app().await;
    app.create_tenant("stmarys", "STM").await;
    app.create_tenant("lakeside", "LKS").await;
    let pinned = wardline_testkit::token("ops", "stmarys", &[Role::VendorAdmin]);
    let mut tenants = app.tenants(Auth::new(&pinned, None));

    let e = tenants
        .create_tenant(CreateTenantRequest {
            request_id: "new".into(),
            tenant_id: "mercy".into(),
            name: "Mercy".into(),
            time_zone: "UTC".into(),
            ticket_prefix: "MRC".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = tenants
        .list_tenants(ListTenantsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    // Its own tenant it reads and administers; another is NOT_FOUND.
    let own = tenants
        .get_tenant(GetTenantRequest::default())
        .await
        .unwrap();
    assert_eq!(own.into_inner().tenant_id, "stmarys");
    let e = tenants
        .get_tenant(GetTenantRequest {
            tenant_id: "lakeside".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    tenants
        .add_facility(AddFacilityRequest {
            request_id: "fac".into(),
            facility: Some(Facility {
                facility_id: "north".into(),
                name: "North".into(),
            }),
        })
        .await
        .unwrap();

    // The all-tenants vendor admin still lists every hospital.
    let all = app
        .vendor()
        .list_tenants(ListTenantsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.tenants.len(), 2);

    // Billing reads contracts and invoices, not the hospital's set-up (proto).
    let finance = wardline_testkit::token("fin", "stmarys", &[Role::Billing]);
    let e = app
        .tenants(Auth::new(&finance, None))
        .get_tenant(GetTenantRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn a_tenant_is_named_only_by_the_vendor_and_only_by_the_slug_of_an_existing_one() {
    let app = spawn_app().await;
    app.create_tenant("stmarys", "STM").await;

    // A desk role on an all-tenants token is refused as a whole.
    let roaming = wardline_testkit::token("an.lee", "*", &[Role::Analyst]);
    let e = app
        .tickets_as(Auth::new(&roaming, Some("stmarys")))
        .list_tickets(ListTicketsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    // So is a token without a tenant.
    let nowhere = wardline_testkit::token("rn.jones", "", &[Role::Requester]);
    let e = app
        .tickets(&nowhere)
        .list_tickets(ListTicketsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);

    // x-tenant-id is a slug, or the call is refused naming it.
    let mut odd = app.tickets_as(Auth::new(&vendor_token(), Some("st.marys.>")));
    let e = odd.create_ticket(nurse_ticket("odd")).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("x-tenant-id:"), "{}", e.message());

    // A tenant that does not exist is NOT_FOUND and leaves nothing behind.
    let mut ghost = app.tickets_as(Auth::new(&vendor_token(), Some("ghost")));
    let e = ghost.create_ticket(nurse_ticket("g1")).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = ghost
        .add_note(note("g2", &uuid::Uuid::now_v7().to_string()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = app
        .tenants(Auth::new(&vendor_token(), Some("ghost")))
        .add_facility(AddFacilityRequest {
            request_id: "g3".into(),
            facility: Some(Facility {
                facility_id: "north".into(),
                name: "North".into(),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let pool = app.db().pool().await;
    let left: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM tickets WHERE tenant_id = 'ghost')
              + (SELECT count(*) FROM notes WHERE tenant_id = 'ghost')
              + (SELECT count(*) FROM facilities WHERE tenant_id = 'ghost')
              + (SELECT count(*) FROM idempotency_keys WHERE tenant_id = 'ghost')
              + (SELECT count(*) FROM outbox WHERE subject LIKE '%.ghost.%')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        left, 0,
        "rows were written for a tenant that does not exist"
    );
}

#[tokio::test]
async fn tickets_filed_before_creators_were_recorded_belong_to_their_caller() {
    let db = wardline_testkit::TestDb::create("intake").await;
    let pool = db.pool().await;
    // The schema as it was, with one ticket in it (the kit's tables and
    // its row-security function first, as every start-up applies them).
    wardline_kit::db::migrate(&pool, &sqlx::migrate::Migrator::with_migrations(vec![]))
        .await
        .unwrap();
    wardline_intake::MIGRATOR.run_to(1, &pool).await.unwrap();
    sqlx::raw_sql(
        "INSERT INTO tenants (tenant_id, name, time_zone, ticket_prefix, reopen_window_hours)
           VALUES ('stmarys', 'St Mary', 'UTC', 'STM', 72);
         INSERT INTO facilities (tenant_id, facility_id, name) VALUES ('stmarys', 'main', 'Main');
         INSERT INTO tickets (ticket_id, tenant_id, seq, number, facility_id, caller_id, caller_name,
             caller_role, channel, application, category, category_classified, urgency, impact,
             patient_care_blocked, priority, status, description, version, created_at, updated_at)
           VALUES (gen_random_uuid(), 'stmarys', 1, 'STM-000001', 'main', 'rn.jones', 'Riley Jones',
             2, 1, 'ehr', 1, false, 1, 1, false, 3, 1, 'printer jam', 1, now(), now());",
    )
    .execute(&pool)
    .await
    .unwrap();
    wardline_intake::MIGRATOR.run(&pool).await.unwrap();
    let created_by: String = sqlx::query_scalar("SELECT created_by FROM tickets")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(created_by, "rn.jones");
}
