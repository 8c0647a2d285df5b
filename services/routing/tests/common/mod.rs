//! What routing's integration tests share: a migrated database of their
//! own, the API as a tenant admin calls it, and the handler driven the way
//! the consumer loop drives it (one transaction per call).

#![allow(dead_code)] // each test binary uses its part

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::Notify;
use tonic::Request;
use uuid::Uuid;
use wardline_kit::auth::{Caller, Role};
use wardline_kit::consumer::Incoming;
use wardline_proto::events::Availability;
use wardline_proto::routing as pb;
use wardline_proto::routing::analyst_service_server::AnalystService;
use wardline_routing::cache::PolicyCache;
use wardline_routing::events::TicketEvents;
use wardline_routing::grpc::Api;
use wardline_testkit::TestDb;

/// The one tenant of these tests.
pub const TENANT: &str = "stmarys";

/// `msg` as the tenant's admin sends it.
pub fn req<T>(msg: T) -> Request<T> {
    req_as("boss", Role::TenantAdmin, msg)
}

/// `msg` as `subject` with `role` in [`TENANT`] sends it.
pub fn req_as<T>(subject: &str, role: Role, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.extensions_mut().insert(Caller {
        subject: subject.into(),
        tenant: Some(TENANT.into()),
        all_tenants: false,
        roles: vec![role],
        email: None,
        phone: None,
    });
    r
}

/// A fresh, migrated database, routing's API over it and a handler with a
/// cache of its own.
pub async fn routing(prefix: &str) -> (TestDb, PgPool, Api, Arc<TicketEvents>) {
    let db = TestDb::create(prefix).await;
    let pool = db.pool().await;
    wardline_kit::db::migrate(&pool, &wardline_routing::MIGRATOR)
        .await
        .expect("migrate");
    let api = Api::new(pool.clone(), Arc::new(Notify::new()));
    let handler = Arc::new(TicketEvents {
        cache: Arc::new(PolicyCache::new()),
    });
    (db, pool, api, handler)
}

/// An available analyst covering [`TENANT`] with one skill.
pub async fn analyst(api: &Api, id: &str, module: pb::SkillModule, level: u32, capacity: u32) {
    api.upsert_analyst(req(pb::UpsertAnalystRequest {
        request_id: Uuid::now_v7().to_string(),
        analyst: Some(pb::Analyst {
            analyst_id: id.into(),
            name: id.into(),
            time_zone: "UTC".into(),
            coverage: vec![pb::TenantCoverage {
                tenant_id: TENANT.into(),
                facility_ids: vec![],
            }],
            skills: vec![pb::Skill {
                module: module as i32,
                level,
            }],
            max_concurrent_tickets: capacity,
            availability: Availability::Available as i32,
            ..Default::default()
        }),
        expected_version: 0,
    }))
    .await
    .expect("analyst upserted");
}

/// Applies `events` as one batch of the consumer loop: one transaction.
pub async fn apply(pool: &PgPool, handler: &TicketEvents, events: &[Incoming]) {
    let mut tx = pool.begin().await.unwrap();
    wardline_kit::consumer::apply_with(handler, &mut tx, events)
        .await
        .expect("handled");
    tx.commit().await.unwrap();
}
