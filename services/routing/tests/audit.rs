//! Every change to the analyst directory and a tenant's routing policy is
//! on record (45 CFR 164.312(b), issue 15 part 4): who, with which roles,
//! which RPC, which analyst or category, under each tenant it touches (the
//! vendor's own trail, `_vendor`, for what touches no one tenant); ids
//! only, never a name or a contact.

mod common;

use wardline_kit::auth::Role;
use wardline_proto::common::audit_service_client::AuditServiceClient;
use wardline_proto::common::{AuditRecord, Category, ListAuditRecordsRequest};
use wardline_proto::events::Availability;
use wardline_proto::routing as pb;
use wardline_proto::routing::analyst_service_client::AnalystServiceClient;
use wardline_proto::routing::routing_rule_service_client::RoutingRuleServiceClient;
use wardline_testkit::{Auth, TestDb, TestNats};

fn analyst(id: &str, name: &str, email: &str, tenants: &[&str]) -> pb::UpsertAnalystRequest {
    pb::UpsertAnalystRequest {
        request_id: format!("upsert-{id}"),
        analyst: Some(pb::Analyst {
            analyst_id: id.into(),
            name: name.into(),
            email: email.into(),
            time_zone: "UTC".into(),
            coverage: tenants
                .iter()
                .map(|t| pb::TenantCoverage {
                    tenant_id: (*t).into(),
                    facility_ids: vec![],
                })
                .collect(),
            skills: vec![pb::Skill {
                module: pb::SkillModule::Printing as i32,
                level: 3,
            }],
            max_concurrent_tickets: 2,
            availability: Availability::Available as i32,
            ..Default::default()
        }),
        expected_version: 0,
    }
}

/// A record's tenant, method, subject, roles and resource ids.
type Seen = (String, String, String, Vec<String>, Vec<String>);

/// Every record `auth` may read, newest first.
async fn records(grpc: std::net::SocketAddr, auth: Auth) -> Vec<Seen> {
    AuditServiceClient::with_interceptor(wardline_testkit::channel(grpc), auth)
        .list_audit_records(ListAuditRecordsRequest::default())
        .await
        .expect("audit records")
        .into_inner()
        .records
        .into_iter()
        .map(|r: AuditRecord| {
            assert!(r.peer.starts_with("127.0.0.1:"), "peer {:?}", r.peer);
            (r.tenant_id, r.method, r.subject, r.roles, r.resource_ids)
        })
        .collect()
}

fn row(tenant: &str, method: &str, subject: &str, roles: &[&str], ids: &[&str]) -> Seen {
    let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
    (
        tenant.into(),
        method.into(),
        subject.into(),
        owned(roles),
        owned(ids),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_changed_analysts_and_rules_is_on_record_per_tenant() {
    let nats = TestNats::start();
    let db = TestDb::create("routing_audit").await;
    let (grpc, _stop) = common::start(&nats, &db).await;
    let channel = wardline_testkit::channel(grpc);

    // The vendor (naming no tenant) hires an analyst for two hospitals and
    // a floater for all of them; a replay adds nothing.
    let vendor_token = wardline_testkit::token("ops", "*", &[Role::VendorAdmin]);
    let mut vendor =
        AnalystServiceClient::with_interceptor(channel.clone(), Auth::new(&vendor_token, None));
    let pat = analyst(
        "an.pat",
        "Pat Quillfeather",
        "pat@example.org",
        &["stmarys", "lakeside"],
    );
    vendor.upsert_analyst(pat.clone()).await.expect("an.pat");
    vendor.upsert_analyst(pat).await.expect("replay");
    vendor
        .upsert_analyst(analyst("an.float", "Flo Ater", "", &["*"]))
        .await
        .expect("an.float");
    // The analyst steps away; St Mary's admin resets a rule.
    AnalystServiceClient::with_interceptor(
        channel.clone(),
        Auth::new(
            &wardline_testkit::token("an.pat", "stmarys", &[Role::Analyst]),
            None,
        ),
    )
    .set_availability(pb::SetAvailabilityRequest {
        request_id: "away".into(),
        analyst_id: String::new(),
        availability: Availability::Away as i32,
        expected_version: 0,
    })
    .await
    .expect("away");
    let admin = |tenant: &str| {
        Auth::new(
            &wardline_testkit::token("admin", tenant, &[Role::TenantAdmin]),
            None,
        )
    };
    RoutingRuleServiceClient::with_interceptor(channel.clone(), admin("stmarys"))
        .reset_category_rule(pb::ResetCategoryRuleRequest {
            request_id: "reset".into(),
            category: Category::Printing as i32,
        })
        .await
        .expect("reset");

    let upsert = "AnalystService/UpsertAnalyst";
    let vendor_admin: &[&str] = &["vendor_admin"];
    assert_eq!(
        records(grpc, admin("stmarys")).await,
        [
            row(
                "stmarys",
                "RoutingRuleService/ResetCategoryRule",
                "admin",
                &["tenant_admin"],
                &["CATEGORY_PRINTING"],
            ),
            row(
                "stmarys",
                "AnalystService/SetAvailability",
                "an.pat",
                &["analyst"],
                &["an.pat"],
            ),
            row("stmarys", upsert, "ops", vendor_admin, &["an.pat"]),
        ]
    );
    // Lakeside sees the hire that concerns it, and nothing of St Mary's.
    assert_eq!(
        records(grpc, admin("lakeside")).await,
        [row("lakeside", upsert, "ops", vendor_admin, &["an.pat"])]
    );
    // The floater serves no one hospital: it is on the vendor's own trail.
    let all = records(grpc, Auth::new(&vendor_token, None)).await;
    assert!(
        all.contains(&row("_vendor", upsert, "ops", vendor_admin, &["an.float"])),
        "{all:?}"
    );
    // Five changes; the two looks at the trail above are on it too.
    let looks = all
        .iter()
        .filter(|r| r.1 == "AuditService/ListAuditRecords")
        .count();
    assert_eq!((all.len() - looks, looks), (5, 2), "{all:?}");

    // Ids only: no name or contact on record.
    let pool = db.pool().await;
    for text in ["Quillfeather", "pat@example.org", "Flo Ater"] {
        let leaked: i64 =
            sqlx::query_scalar("SELECT count(*) FROM audit_log a WHERE strpos(a::text, $1) > 0")
                .bind(text)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(leaked, 0, "{text:?} is on record");
    }
}
