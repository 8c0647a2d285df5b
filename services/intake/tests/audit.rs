//! Every look at a ticket's text and every change is on record
//! (45 CFR 164.312(b), issue 15 part 4): who, for which tenant, which RPC,
//! which ticket, from where; never the text; and the record cannot be
//! rewritten.

mod common;

use common::*;
use wardline_proto::common::ListAuditRecordsRequest;
use wardline_proto::common::audit_service_client::AuditServiceClient;
use wardline_proto::events::ResolutionCode;
use wardline_proto::intake::*;
use wardline_testkit::Auth;

async fn records(app: &TestApp, token: &str, ticket: &str) -> Vec<(String, String)> {
    AuditServiceClient::with_interceptor(
        wardline_testkit::channel(app.grpc),
        Auth::new(token, None),
    )
    .list_audit_records(ListAuditRecordsRequest {
        resource_id: ticket.to_owned(),
        ..Default::default()
    })
    .await
    .expect("audit records")
    .into_inner()
    .records
    .into_iter()
    .map(|r| {
        assert!(r.peer.starts_with("127.0.0.1:"), "peer {:?}", r.peer);
        assert_eq!(r.tenant_id, "stmarys");
        (r.method, r.subject)
    })
    .collect()
}

#[tokio::test]
async fn who_read_and_changed_a_ticket_is_on_record_and_stays_there() {
    let app = spawn_app().await;
    app.create_tenant("stmarys", "STM").await;
    app.create_tenant("lakeside", "LKS").await;
    let ticket = app.nurse_creates("stmarys", "audit-1").await;
    let id = ticket.ticket_id.clone();

    // An analyst reads the ticket and its notes, takes and resolves it;
    // the tenant admin closes it.
    let mut an = app.tickets(&analyst_token("stmarys", "an.pat"));
    an.get_ticket(GetTicketRequest {
        ticket_id: id.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    an.list_notes(ListNotesRequest {
        ticket_id: id.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    an.acknowledge_ticket(AcknowledgeTicketRequest {
        request_id: "ack".into(),
        ticket_id: id.clone(),
        expected_version: 0,
    })
    .await
    .unwrap();
    an.resolve_ticket(ResolveTicketRequest {
        request_id: "resolve".into(),
        ticket_id: id.clone(),
        expected_version: 0,
        resolution_code: ResolutionCode::Education as i32,
        first_contact_resolution: true,
    })
    .await
    .unwrap();
    app.tickets(&admin_token("stmarys"))
        .close_ticket(CloseTicketRequest {
            request_id: "close".into(),
            ticket_id: id.clone(),
            expected_version: 0,
        })
        .await
        .unwrap();

    // The tenant admin asks who touched the ticket: newest first.
    let seen = records(&app, &admin_token("stmarys"), &id).await;
    let expected = [
        ("TicketService/CloseTicket", "admin"),
        ("TicketService/ResolveTicket", "an.pat"),
        ("TicketService/AcknowledgeTicket", "an.pat"),
        ("TicketService/ListNotes", "an.pat"),
        ("TicketService/GetTicket", "an.pat"),
        ("TicketService/CreateTicket", "rn.jones"),
    ];
    let seen_ref: Vec<(&str, &str)> = seen.iter().map(|(m, s)| (m.as_str(), s.as_str())).collect();
    assert_eq!(seen_ref, expected);
    // Another hospital's admin sees none of it.
    assert!(
        records(&app, &admin_token("lakeside"), &id)
            .await
            .is_empty()
    );
    // Looking at the trail is on the trail: the admin's first look is now
    // the newest record about the ticket.
    let again = records(&app, &admin_token("stmarys"), &id).await;
    assert_eq!(
        again[0],
        (
            "AuditService/ListAuditRecords".to_owned(),
            "admin".to_owned()
        )
    );

    // Ids only: the description and the caller's name are in no record.
    let pool = app.db().pool().await;
    let leaked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log a WHERE a::text LIKE '%bed 12%' OR a::text LIKE '%Riley%'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(leaked, 0);

    // Append-only, whoever asks.
    for attempt in [
        "UPDATE audit_log SET subject = 'someone-else'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ] {
        let e = sqlx::query(attempt).execute(&pool).await.unwrap_err();
        assert!(e.to_string().contains("audit_log"), "{attempt}: {e}");
    }
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(kept >= 6, "{kept}");
}

/// A record's method, subject, roles, resource ids and request id.
type Seen = (String, String, Vec<String>, Vec<String>, String);

/// A tenant admin's view of their tenant's trail, newest first.
async fn trail(app: &TestApp, tenant: &str) -> Vec<Seen> {
    AuditServiceClient::with_interceptor(
        wardline_testkit::channel(app.grpc),
        Auth::new(&admin_token(tenant), None),
    )
    .list_audit_records(ListAuditRecordsRequest::default())
    .await
    .expect("audit records")
    .into_inner()
    .records
    .into_iter()
    .map(|r| {
        assert_eq!(r.tenant_id, tenant);
        (r.method, r.subject, r.roles, r.resource_ids, r.request_id)
    })
    .collect()
}

#[tokio::test]
async fn who_created_a_tenant_and_added_a_facility_is_on_record() {
    let app = spawn_app().await;
    app.create_tenant("stmarys", "STM").await;
    app.create_tenant("lakeside", "LKS").await;
    // St Mary's admin opens a wing; the vendor adds one at Lakeside.
    let wing = |id: &str, name: &str| AddFacilityRequest {
        request_id: format!("add-{id}"),
        facility: Some(Facility {
            facility_id: id.into(),
            name: name.into(),
        }),
    };
    let mut admin = app.tenants(Auth::new(&admin_token("stmarys"), None));
    admin
        .add_facility(wing("east", "East Wing Oncology"))
        .await
        .unwrap();
    // A replay of the same request adds no second record.
    admin
        .add_facility(wing("east", "East Wing Oncology"))
        .await
        .unwrap();
    app.tenants(Auth::new(&vendor_token(), Some("lakeside")))
        .add_facility(wing("north", "North Tower"))
        .await
        .unwrap();

    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        trail(&app, "stmarys").await,
        [
            (
                "TenantService/AddFacility".to_owned(),
                "admin".to_owned(),
                s(&["tenant_admin"]),
                s(&["stmarys", "east"]),
                "add-east".to_owned(),
            ),
            (
                "TenantService/CreateTenant".to_owned(),
                "ops".to_owned(),
                s(&["vendor_admin"]),
                s(&["stmarys"]),
                "create-stmarys".to_owned(),
            ),
        ]
    );
    assert_eq!(
        trail(&app, "lakeside").await,
        [
            (
                "TenantService/AddFacility".to_owned(),
                "ops".to_owned(),
                s(&["vendor_admin"]),
                s(&["lakeside", "north"]),
                "add-north".to_owned(),
            ),
            (
                "TenantService/CreateTenant".to_owned(),
                "ops".to_owned(),
                s(&["vendor_admin"]),
                s(&["lakeside"]),
                "create-lakeside".to_owned(),
            ),
        ]
    );

    // Ids only: no hospital or facility name on record.
    let pool = app.db().pool().await;
    for text in ["hospital", "Main campus", "East Wing", "North Tower"] {
        let leaked: i64 =
            sqlx::query_scalar("SELECT count(*) FROM audit_log a WHERE strpos(a::text, $1) > 0")
                .bind(text)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(leaked, 0, "{text:?} is on record");
    }
}
