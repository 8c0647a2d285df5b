//! A batch of new tickets is decided together (one live read, one capacity
//! update, one insert) with the same outcome as one event after another.
//! Real PostgreSQL; the handler is driven as the consumer loop drives it.

mod common;

use std::sync::Arc;

use chrono::{Duration, Utc};
use sqlx::PgPool;
use uuid::Uuid;
use wardline_kit::consumer::Incoming;
use wardline_kit::events::{envelope, timestamp};
use wardline_proto::common::{CallerRole, Category, Priority, TicketStatus};
use wardline_proto::events::event_envelope::Payload;
use wardline_proto::events::{TicketAcknowledged, TicketCreated, TicketSnapshot};
use wardline_proto::routing as pb;
use wardline_routing::events::TicketEvents;
use wardline_testkit::TestDb;

use common::{TENANT, all_tenants, analyst, apply, routing};

async fn setup(prefix: &str) -> (TestDb, PgPool, Arc<TicketEvents>) {
    let (db, pool, api, handler) = routing(prefix).await;
    for (id, level) in [("an.a", 5), ("an.b", 3), ("an.c", 1)] {
        analyst(&api, id, pb::SkillModule::Printing, level, 2).await;
    }
    (db, pool, handler)
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

/// (ticket number, state, assignee) of every ticket, and each analyst's load.
async fn outcome(pool: &PgPool) -> (Vec<(String, String, String)>, Vec<(String, i32)>) {
    let mut tx = all_tenants(pool).await;
    let tickets = sqlx::query_as("SELECT number, state, assignee FROM tickets ORDER BY number")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    let loads = sqlx::query_as("SELECT analyst_id, current_load FROM analysts ORDER BY analyst_id")
        .fetch_all(&mut *tx)
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
                .fetch_one(&mut *all_tenants(&pool).await)
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
        let single: i64 = sqlx::query_scalar(sql)
            .fetch_one(&mut *all_tenants(&single).await)
            .await
            .unwrap();
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

/// Two replicas route batches over the same analysts at the same moment:
/// whichever loses a pick routes those tickets one by one; nobody ends over
/// capacity and every ticket is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_batches_never_over_assign() {
    let (_db, pool, first) = setup("rt_batch_race").await;
    let second = Arc::new(TicketEvents {
        cache: Arc::new(wardline_routing::cache::PolicyCache::new()),
    });
    for round in 0..3 {
        let tasks: Vec<_> = [first.clone(), second.clone()]
            .into_iter()
            .map(|handler| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    let events: Vec<Incoming> =
                        (0..8).map(|n| created(Uuid::now_v7(), n)).collect();
                    apply(&pool, &handler, &events).await;
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("batch applied");
        }
        let (tickets, loads) = outcome(&pool).await;
        assert_eq!(tickets.len(), 16 * (round + 1));
        let assigned = tickets.iter().filter(|(_, _, a)| !a.is_empty()).count();
        assert_eq!(assigned, 6, "round {round}: three analysts of capacity two");
        assert!(loads.iter().all(|(_, l)| *l == 2), "{loads:?}");
    }
}
