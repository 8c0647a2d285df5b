//! A batch of new tickets is decided together (one live read, one capacity
//! update, one insert) with the same outcome as one event after another.
//! Real PostgreSQL; the handler is driven as the consumer loop drives it.

use std::sync::Arc;

use chrono::{Duration, Utc};
use sqlx::PgPool;
use tokio::sync::Notify;
use tonic::Request;
use uuid::Uuid;
use wardline_kit::auth::{Caller, Role};
use wardline_kit::consumer::Incoming;
use wardline_kit::events::{envelope, timestamp};
use wardline_proto::common::{CallerRole, Category, Priority, TicketStatus};
use wardline_proto::events::event_envelope::Payload;
use wardline_proto::events::{Availability, TicketAcknowledged, TicketCreated, TicketSnapshot};
use wardline_proto::routing as pb;
use wardline_proto::routing::analyst_service_server::AnalystService;
use wardline_routing::cache::PolicyCache;
use wardline_routing::events::TicketEvents;
use wardline_routing::grpc::Api;
use wardline_testkit::TestDb;

const TENANT: &str = "stmarys";

fn req<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.extensions_mut().insert(Caller {
        subject: "boss".into(),
        tenant: Some(TENANT.into()),
        all_tenants: false,
        roles: vec![Role::TenantAdmin],
    });
    r
}

async fn setup(prefix: &str) -> (TestDb, PgPool, TicketEvents) {
    let db = TestDb::create(prefix).await;
    let pool = db.pool().await;
    wardline_kit::db::migrate(&pool, &wardline_routing::MIGRATOR)
        .await
        .expect("migrate");
    let api = Api::new(pool.clone(), Arc::new(Notify::new()));
    for (id, level) in [("an.a", 5), ("an.b", 3), ("an.c", 1)] {
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
                    module: pb::SkillModule::Printing as i32,
                    level,
                }],
                max_concurrent_tickets: 2,
                availability: Availability::Available as i32,
                ..Default::default()
            }),
            expected_version: 0,
        }))
        .await
        .expect("analyst upserted");
    }
    let routing = TicketEvents {
        cache: Arc::new(PolicyCache::new()),
    };
    (db, pool, routing)
}

fn snapshot(id: Uuid, n: usize) -> TicketSnapshot {
    TicketSnapshot {
        ticket_id: id.to_string(),
        number: format!("STM-{n:04}"),
        facility_id: "main".into(),
        category: Category::Printing as i32,
        priority: if n.is_multiple_of(2) {
            Priority::P2
        } else {
            Priority::P3
        } as i32,
        status: TicketStatus::New as i32,
        caller_role: CallerRole::NonClinical as i32,
        created_at: Some(timestamp(Utc::now() - Duration::minutes(60 - n as i64))),
        ..Default::default()
    }
}

fn created(id: Uuid, n: usize) -> Incoming {
    let payload = Payload::TicketCreated(TicketCreated {
        ticket: Some(snapshot(id, n)),
        caller: None,
        category_classified: false,
    });
    Incoming::new(envelope("intake", TENANT, &id.to_string(), 1, payload), 1)
}

fn acknowledged(id: Uuid, n: usize, analyst: &str) -> Incoming {
    let mut snap = snapshot(id, n);
    snap.status = TicketStatus::Acknowledged as i32;
    let payload = Payload::TicketAcknowledged(TicketAcknowledged {
        ticket: Some(snap),
        analyst_id: analyst.into(),
    });
    Incoming::new(envelope("intake", TENANT, &id.to_string(), 2, payload), 1)
}

async fn apply(pool: &PgPool, routing: &TicketEvents, events: &[Incoming]) {
    let mut tx = pool.begin().await.unwrap();
    wardline_kit::consumer::apply_with(routing, &mut tx, events)
        .await
        .expect("handled");
    tx.commit().await.unwrap();
}

/// (ticket number, state, assignee) of every ticket, and each analyst's load.
async fn outcome(pool: &PgPool) -> (Vec<(String, String, String)>, Vec<(String, i32)>) {
    let tickets = sqlx::query_as("SELECT number, state, assignee FROM tickets ORDER BY number")
        .fetch_all(pool)
        .await
        .unwrap();
    let loads = sqlx::query_as("SELECT analyst_id, current_load FROM analysts ORDER BY analyst_id")
        .fetch_all(pool)
        .await
        .unwrap();
    (tickets, loads)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_new_tickets_ends_as_one_event_after_another_would() {
    let (_a, batched, routing_a) = setup("rt_batch_a").await;
    let (_b, single, routing_b) = setup("rt_batch_b").await;
    let ids: Vec<Uuid> = (0..10).map(|_| Uuid::now_v7()).collect();
    // Creations, with an acknowledgement of the second ticket in between
    // (after its creation: its order is kept) and the fourth taken directly
    // by an analyst in the same batch.
    let mut events: Vec<Incoming> = ids
        .iter()
        .enumerate()
        .map(|(n, id)| created(*id, n))
        .collect();
    events.insert(2, acknowledged(ids[1], 1, "an.a"));
    events.push(acknowledged(ids[3], 3, "an.c"));

    apply(&batched, &routing_a, &events).await;
    for e in &events {
        apply(&single, &routing_b, std::slice::from_ref(e)).await;
    }
    let (got, expected) = (outcome(&batched).await, outcome(&single).await);
    assert_eq!(got, expected);
    // Three analysts of capacity two took six; the seventh was picked up
    // directly by an.c (which counts, whatever the capacity).
    let assigned = got.0.iter().filter(|(_, _, a)| !a.is_empty()).count();
    assert_eq!(assigned, 7, "{got:?}");
    // Every new ticket has its SLA timers, every assignment its ack timer
    // unless acknowledged; one routing event per new ticket.
    let count = |sql: &'static str| {
        let pool = batched.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        count("SELECT count(*) FROM timers WHERE kind IN ('response', 'resolution')").await,
        10 * 2 - 2
    );
    for sql in [
        "SELECT count(*) FROM assignments",
        "SELECT count(*) FROM timers",
        "SELECT count(*) FROM outbox",
    ] {
        let single: i64 = sqlx::query_scalar(sql).fetch_one(&single).await.unwrap();
        assert_eq!(count(sql).await, single, "{sql}");
    }
}

/// The names routing stores for proto enums are the proto's labels, all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_enum_labels_are_the_protos() {
    use wardline_kit::sql::check_list;
    let (_db, pool, _) = setup("rt_labels").await;
    for (constraint, labels) in [
        (
            "assignments_state_named",
            check_list::<pb::AssignmentState>(),
        ),
        (
            "assignments_trigger_named",
            check_list::<pb::DecisionTrigger>(),
        ),
    ] {
        let def: String = sqlx::query_scalar(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = $1",
        )
        .bind(constraint)
        .fetch_one(&pool)
        .await
        .unwrap();
        let stored: Vec<&str> = def.split('\'').skip(1).step_by(2).collect();
        let proto: Vec<&str> = labels.split(", ").map(|l| l.trim_matches('\'')).collect();
        assert_eq!(stored, proto, "{constraint}: {def}");
    }
}
