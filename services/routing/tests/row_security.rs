//! Row-level security under routing's own store functions, as the service's
//! runtime role: St Mary's rows (a ticket, its assignment and timers, a
//! category rule, SLA targets, an analyst's coverage) are invisible to a
//! transaction scoped to Lakeside and to one that set no tenant at all,
//! and Lakeside cannot write a row of St Mary's. The vendor's analysts who
//! cover every tenant (`'*'`) are part of each tenant's view, read only.
//! The one machinery that widens a batch's scope, the hand-over of a freed
//! slot, still serves the analyst's queue across the tenants they cover.
//! The workspace-level check that every tenant table is protected is
//! `tests/row_security.rs` at the top.

mod common;

use chrono::Utc;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;
use wardline_kit::auth::{Caller, Role};
use wardline_kit::consumer::Incoming;
use wardline_kit::db::{self, Scope};
use wardline_proto::common::{CallerRole, Category, Priority};
use wardline_proto::events::event_envelope::Payload;
use wardline_proto::events::{Availability, TicketResolved};
use wardline_proto::routing as pb;
use wardline_proto::routing::analyst_service_server::AnalystService;
use wardline_proto::routing::routing_rule_service_server::RoutingRuleService;
use wardline_routing::directory;
use wardline_routing::policy;
use wardline_routing::store::{assignments, tickets};
use wardline_testkit::build;
use wardline_testkit::rls::{begin, changes_nothing, refused};

use common::{TENANT, analyst, apply, req, routing};

const OTHER: &str = "lakeside";

/// Routing's tenant tables.
const TABLES: &[&str] = &[
    "tickets",
    "assignments",
    "timers",
    "category_rules",
    "sla_targets",
    "analyst_coverage",
];

/// What `conn`'s transaction sees of St Mary's, through routing's store.
struct Seen {
    ticket: bool,
    pending_assignment: bool,
    rows: Vec<(&'static str, i64)>,
    rule_changed: bool,
    targets_changed: bool,
    candidates: Vec<String>,
}

async fn seen(conn: &mut PgConnection, ticket: Uuid) -> Seen {
    let mut rows = Vec::new();
    for table in TABLES {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {table} WHERE tenant_id = '{TENANT}'"
        )))
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        rows.push((*table, n));
    }
    let rules = policy::effective_rules_changed(&mut *conn, TENANT)
        .await
        .unwrap();
    Seen {
        ticket: tickets::lock(&mut *conn, ticket, false)
            .await
            .unwrap()
            .is_some(),
        pending_assignment: assignments::pending(&mut *conn, ticket)
            .await
            .unwrap()
            .is_some(),
        rows,
        rule_changed: rules.iter().any(|(_, changed)| changed.is_some()),
        targets_changed: policy::targets_changed(&mut *conn, TENANT)
            .await
            .unwrap()
            .1
            .is_some(),
        candidates: directory::candidates(&mut *conn, TENANT)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.analyst_id)
            .collect(),
    }
}

/// St Mary's routed ticket, with a rule and SLA targets of its own, an
/// analyst of its own and the vendor's analyst covering every tenant.
async fn st_marys(prefix: &str) -> (wardline_testkit::TestDb, PgPool, Uuid) {
    let (db, pool, api, handler) = routing(prefix).await;
    analyst(&api, "an.stm", pb::SkillModule::Printing, 3, 2).await;
    api.set_category_rule(req(pb::SetCategoryRuleRequest {
        request_id: Uuid::now_v7().to_string(),
        rule: Some(pb::CategoryRule {
            category: Category::Printing as i32,
            required_skills: vec![pb::SkillRequirement {
                module: pb::SkillModule::Printing as i32,
                min_level: 2,
            }],
            credential_policy: pb::CredentialPolicy::None as i32,
            ..Default::default()
        }),
        expected_version: 0,
    }))
    .await
    .expect("rule set");
    // The vendor's set-up, as a `"*"` vendor admin's transaction makes it.
    let mut tx = db::begin(&pool, Scope::AllTenants).await.unwrap();
    sqlx::raw_sql(
        "INSERT INTO analysts (analyst_id, name, time_zone, max_concurrent, availability)
              VALUES ('v.all', 'Vendor', 'UTC', 5, 4);
         INSERT INTO analyst_coverage (analyst_id, tenant_id) VALUES ('v.all', '*');
         INSERT INTO sla_targets (tenant_id, response_minutes, resolution_minutes, ack_timeout_seconds)
              VALUES ('stmarys', '{15,30,240,480}', '{240,480,1440,4320}', 120);",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let id = Uuid::now_v7();
    let mut snap = build::snapshot(&id.to_string(), "STM-000001", Priority::P2, Utc::now());
    snap.category = Category::Printing as i32;
    snap.clinical_category = false;
    snap.caller_role = CallerRole::NonClinical as i32;
    apply(
        &pool,
        &handler,
        &[Incoming::new(build::ticket_created(TENANT, snap), 1)],
    )
    .await;
    (db, pool, id)
}

/// A transaction as `scope`, or one that set no tenant at all (`None`).
#[tokio::test]
async fn another_tenant_and_no_tenant_see_none_of_st_marys_rows() {
    let (_db, pool, ticket) = st_marys("rt_rls_read").await;

    let mut own = begin(&pool, Some(Scope::Tenant(TENANT))).await;
    let s = seen(&mut own, ticket).await;
    assert!(s.ticket && s.pending_assignment && s.rule_changed && s.targets_changed);
    assert!(s.rows.iter().all(|(_, n)| *n > 0), "{:?}", s.rows);
    assert_eq!(s.candidates, ["an.stm", "v.all"]);

    let mut other = begin(&pool, Some(Scope::Tenant(OTHER))).await;
    let s = seen(&mut other, ticket).await;
    assert!(!s.ticket && !s.pending_assignment && !s.rule_changed && !s.targets_changed);
    assert!(s.rows.iter().all(|(_, n)| *n == 0), "{:?}", s.rows);
    // Coverage of every tenant is Lakeside's too; St Mary's own analyst is not.
    assert_eq!(s.candidates, ["v.all"]);

    let mut unscoped = begin(&pool, None).await;
    let s = seen(&mut unscoped, ticket).await;
    assert!(!s.ticket && !s.pending_assignment && !s.rule_changed && !s.targets_changed);
    assert!(s.rows.iter().all(|(_, n)| *n == 0), "{:?}", s.rows);
    assert!(s.candidates.is_empty(), "{:?}", s.candidates);
}

#[tokio::test]
async fn another_tenant_writes_no_row_of_st_marys() {
    let (_db, pool, ticket) = st_marys("rt_rls_write").await;
    for scope in [Some(Scope::Tenant(OTHER)), None] {
        for sql in [
            "INSERT INTO category_rules (tenant_id, category, required_modules, min_levels, credential_policy)
                  VALUES ('stmarys', 1, '{}', '{}', 1)",
            "INSERT INTO analyst_coverage (analyst_id, tenant_id) VALUES ('v.all', 'stmarys')",
            "INSERT INTO analyst_coverage (analyst_id, tenant_id) VALUES ('an.stm', '*')",
        ] {
            let code = refused(&pool, scope, sql).await;
            assert_eq!(code.as_deref(), Some("42501"), "{scope:?}: {sql}");
        }
        // Updates and deletes find nothing to change.
        changes_nothing(
            &pool,
            scope,
            &[
                "UPDATE tickets SET assignee = 'someone' WHERE tenant_id = 'stmarys'",
                "DELETE FROM timers WHERE tenant_id = 'stmarys'",
                "DELETE FROM assignments WHERE tenant_id = 'stmarys'",
            ],
        )
        .await;
    }
    let mut own = begin(&pool, Some(Scope::Tenant(TENANT))).await;
    let s = seen(&mut own, ticket).await;
    assert!(s.ticket && s.pending_assignment);
    assert!(s.rows.iter().all(|(_, n)| *n > 0), "{:?}", s.rows);
}

/// A ticket as intake describes it, in `tenant`, `minutes_ago` old.
fn call(tenant: &str, id: Uuid, priority: Priority, minutes_ago: i64, version: u64) -> Incoming {
    let at = Utc::now() - chrono::Duration::minutes(minutes_ago);
    let mut snap = build::snapshot(&id.to_string(), "N-1", priority, at);
    snap.category = Category::Printing as i32;
    snap.clinical_category = false;
    snap.caller_role = CallerRole::NonClinical as i32;
    let mut env = build::ticket_created(tenant, snap.clone());
    if version > 1 {
        snap.status = wardline_proto::common::TicketStatus::Resolved as i32;
        env = wardline_kit::events::envelope(
            "intake",
            tenant,
            &id.to_string(),
            version,
            Payload::TicketResolved(TicketResolved {
                ticket: Some(snap),
                analyst_id: "v.both".into(),
                ..Default::default()
            }),
        );
    }
    Incoming::new(env, 1)
}

/// The hand-over inside a batch sees every tenant (an analyst's queue spans
/// the tenants they cover): a slot freed by a St Mary's resolution goes to
/// Lakeside's waiting P1 in the freeing transaction, and the batch goes on
/// as St Mary's.
#[tokio::test]
async fn a_slot_freed_in_one_tenants_batch_goes_to_another_tenants_queue_head() {
    let (_db, pool, api, handler) = routing("rt_rls_hand_over").await;
    let vendor = Caller {
        subject: "ops".into(),
        tenant: None,
        all_tenants: true,
        roles: vec![Role::VendorAdmin],
        email: None,
        phone: None,
    };
    let mut r = tonic::Request::new(pb::UpsertAnalystRequest {
        request_id: Uuid::now_v7().to_string(),
        analyst: Some(pb::Analyst {
            analyst_id: "v.both".into(),
            name: "Both".into(),
            time_zone: "UTC".into(),
            coverage: [TENANT, OTHER]
                .map(|t| pb::TenantCoverage {
                    tenant_id: t.into(),
                    facility_ids: vec![],
                })
                .into(),
            skills: vec![pb::Skill {
                module: pb::SkillModule::Printing as i32,
                level: 3,
            }],
            max_concurrent_tickets: 1,
            availability: Availability::Available as i32,
            ..Default::default()
        }),
        expected_version: 0,
    });
    r.extensions_mut().insert(vendor);
    api.upsert_analyst(r).await.expect("vendor's analyst");
    let (mine, theirs) = (Uuid::now_v7(), Uuid::now_v7());
    apply(&pool, &handler, &[call(TENANT, mine, Priority::P3, 30, 1)]).await;
    apply(&pool, &handler, &[call(OTHER, theirs, Priority::P1, 20, 1)]).await;
    let holder = |id: Uuid| {
        let pool = pool.clone();
        async move {
            let (state, assignee): (String, String) =
                sqlx::query_as("SELECT state, assignee FROM tickets WHERE ticket_id = $1")
                    .bind(id)
                    .fetch_one(&mut *common::all_tenants(&pool).await)
                    .await
                    .unwrap();
            (state, assignee)
        }
    };
    assert_eq!(holder(mine).await, ("assigned".into(), "v.both".into()));
    assert_eq!(holder(theirs).await.0, "waiting");

    // St Mary's resolution, then a new St Mary's call in the same batch.
    let next = Uuid::now_v7();
    apply(
        &pool,
        &handler,
        &[
            call(TENANT, mine, Priority::P3, 30, 2),
            call(TENANT, next, Priority::P3, 1, 1),
        ],
    )
    .await;
    assert_eq!(holder(theirs).await, ("assigned".into(), "v.both".into()));
    // Stored as St Mary's (the batch went back to its tenant), and waiting:
    // the slot went to the older P1.
    let mut own = begin(&pool, Some(Scope::Tenant(TENANT))).await;
    let t = tickets::lock(&mut own, next, false).await.unwrap().unwrap();
    assert_eq!((t.tenant_id.as_str(), t.assignee.as_str()), (TENANT, ""));
}
