//! EventDeadLetterService, the one implementation every service serves,
//! against a real PostgreSQL: newest first, paged, scoped by tenant.

use sqlx::postgres::PgPoolOptions;
use tonic::Request;
use uuid::Uuid;
use wardline_kit::auth::{Caller, Role};
use wardline_kit::dead_letters::Service;
use wardline_proto::common::ListEventDeadLettersRequest;
use wardline_proto::common::event_dead_letter_service_server::EventDeadLetterService;
use wardline_testkit::TestDb;

fn who(subject: &str, tenant: Option<&str>, all_tenants: bool, roles: &[Role]) -> Caller {
    Caller {
        subject: subject.into(),
        tenant: tenant.map(str::to_owned),
        all_tenants,
        roles: roles.to_vec(),
        email: None,
        phone: None,
    }
}

fn req(r: ListEventDeadLettersRequest, caller: &Caller) -> Request<ListEventDeadLettersRequest> {
    let mut req = Request::new(r);
    req.extensions_mut().insert(caller.clone());
    req
}

#[tokio::test]
async fn newest_first_per_tenant_with_pages() {
    let db = TestDb::create("kit_dead_letters").await;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&db.superuser_url())
        .await
        .unwrap();
    wardline_kit::db::migrate(&pool, &sqlx::migrate::Migrator::with_migrations(vec![]))
        .await
        .unwrap();
    for (i, tenant) in ["stmarys", "lakeside", "stmarys", "stmarys"]
        .iter()
        .enumerate()
    {
        sqlx::query(
            "INSERT INTO dead_letters (event_id, subject, tenant_id, reason, deliveries, payload, first_seen_at)
             VALUES ($1, $2, $3, 'undecodable envelope', 5, '\\x00', now() - make_interval(mins => $4))",
        )
        .bind(Uuid::now_v7())
        .bind(format!("wardline.events.{tenant}.ticket.created"))
        .bind(tenant)
        .bind(10 - i as i32)
        .execute(&pool)
        .await
        .unwrap();
    }
    let api = Service::new(pool, &[Role::VendorAdmin, Role::TenantAdmin]);
    let list = |r, caller: &Caller| api.list_event_dead_letters(req(r, caller));

    let vendor = who("ops", None, true, &[Role::VendorAdmin]);
    let all = list(Default::default(), &vendor)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.dead_letters.len(), 4);
    assert!(all.next_page_token.is_empty());
    let seen: Vec<_> = all
        .dead_letters
        .iter()
        .map(|d| d.first_seen_at.unwrap().seconds)
        .collect();
    assert!(seen.windows(2).all(|w| w[0] >= w[1]), "newest first");
    assert_eq!(all.dead_letters[0].attempts, 5);

    let admin = who("boss", Some("stmarys"), false, &[Role::TenantAdmin]);
    let page = |token: String| ListEventDeadLettersRequest {
        page_size: 2,
        page_token: token,
        ..Default::default()
    };
    let first = list(page(String::new()), &admin)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.dead_letters.len(), 2);
    assert!(!first.next_page_token.is_empty());
    let second = list(page(first.next_page_token), &admin)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.dead_letters.len(), 1);
    assert!(second.next_page_token.is_empty());
    let mine: Vec<_> = first
        .dead_letters
        .iter()
        .chain(&second.dead_letters)
        .collect();
    assert!(mine.iter().all(|d| d.tenant_id == "stmarys"));
    assert_eq!(mine[0].event_id, all.dead_letters[0].event_id);

    // A vendor naming a tenant sees only that one.
    let named = who("ops", Some("lakeside"), true, &[Role::VendorAdmin]);
    let lake = list(Default::default(), &named).await.unwrap().into_inner();
    assert_eq!(lake.dead_letters.len(), 1);
    assert_eq!(lake.dead_letters[0].tenant_id, "lakeside");

    // Others may not read.
    let analyst = who("a", Some("stmarys"), false, &[Role::Analyst]);
    let denied = list(Default::default(), &analyst).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
}
