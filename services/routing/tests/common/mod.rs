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

/// A fresh database migrated as routing's start-up does (as the owner
/// role, granting the runtime role), the runtime role's pool (row-level
/// security applies: look at rows through [`all_tenants`]), routing's API
/// over it and a handler with a cache of its own.
pub async fn routing(prefix: &str) -> (TestDb, PgPool, Api, Arc<TicketEvents>) {
    let db = TestDb::create(prefix).await;
    let pool = db.runtime_pool(&wardline_routing::MIGRATOR).await;
    let api = Api::new(pool.clone(), Arc::new(Notify::new()));
    let handler = Arc::new(TicketEvents {
        cache: Arc::new(PolicyCache::new()),
    });
    (db, pool, api, handler)
}

/// A transaction on `pool` that sees every tenant's rows, for a test's
/// look at what the service stored.
pub async fn all_tenants(pool: &PgPool) -> sqlx::Transaction<'static, sqlx::Postgres> {
    wardline_kit::db::begin(pool, wardline_kit::db::Scope::AllTenants)
        .await
        .expect("begin")
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

/// Applies `events` as one batch of the consumer loop: one transaction
/// that sees the batch's tenant's rows.
pub async fn apply(pool: &PgPool, handler: &TicketEvents, events: &[Incoming]) {
    let scope = wardline_kit::db::Scope::Tenant(&events[0].envelope.tenant_id);
    let mut tx = wardline_kit::db::begin(pool, scope).await.unwrap();
    wardline_kit::consumer::apply_with(handler, &mut tx, events)
        .await
        .expect("handled");
    tx.commit().await.unwrap();
}

/// A whole routing (gRPC, consumer, timers) on `db` and `nats`, as its
/// runtime role; it stops when the returned guard drops.
pub async fn start(
    nats: &wardline_testkit::TestNats,
    db: &TestDb,
) -> (std::net::SocketAddr, tokio_util::sync::DropGuard) {
    let config = wardline_routing::Config::from_env(&wardline_kit::config::Env::from_pairs(
        vec![
            ("ROUTING_GRPC_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
            ("ROUTING_ADMIN_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
            ("WARDLINE_SHUTDOWN_TIMEOUT_MS".to_owned(), "5000".to_owned()),
        ]
        .into_iter()
        .chain(db.env("ROUTING"))
        .chain(wardline_testkit::auth_env())
        .chain(nats.service_env("routing", &[]))
        .collect::<Vec<_>>(),
    ))
    .expect("routing accepts the test configuration");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let app = wardline_routing::Application::build(config, shutdown.clone())
        .await
        .expect("routing builds");
    let grpc = app.grpc_addr();
    tokio::spawn(app.run_until_stopped());
    (grpc, shutdown.drop_guard())
}
