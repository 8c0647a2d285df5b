//! Billing meters a batch of events set-based: one transaction of the
//! consumer loop with many `ticket.created` of one tenant (and copies of
//! some, re-published under new event ids) records each call once and
//! publishes one `call.metered` per call, exactly as applying the same
//! events one at a time does; a redelivery of the whole batch changes
//! nothing. Real PostgreSQL, the handler driven as the loop drives it.

use chrono::{DateTime, TimeZone, Utc};
use prost::Message as _;
use sqlx::PgPool;
use wardline_billing::domain::calendar::Period;
use wardline_billing::events::BillingEvents;
use wardline_kit::consumer::Incoming;
use wardline_proto::common::Priority;
use wardline_proto::events::event_envelope::Payload;
use wardline_proto::events::{CallMetered, EventEnvelope, SlaBreached, SlaTarget};
use wardline_testkit::TestDb;
use wardline_testkit::build::{snapshot, tenant_created, ticket_created};

const TENANT: &str = "stmarys";
const TZ: &str = "America/Chicago";

/// A migrated billing database that knows the tenant, with the example
/// contract from 1 January 2026 and January 2026 already invoiced.
async fn billing(prefix: &str) -> (TestDb, PgPool) {
    let db = TestDb::create(prefix).await;
    let pool = db.pool().await;
    wardline_kit::db::migrate(&pool, &wardline_billing::MIGRATOR)
        .await
        .expect("migrate");
    apply(&pool, &[tenant_created(TENANT, TZ)]).await;
    let mut contract = wardline_billing::contract::example("USD", "2026-01-01");
    contract.contract_id = uuid::Uuid::now_v7().to_string();
    contract.version = 1;
    let mut conn = pool.acquire().await.unwrap();
    wardline_billing::store::insert_version(
        &mut conn,
        TENANT,
        &contract,
        chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
    )
    .await
    .expect("contract stored");
    wardline_billing::invoice::issue(
        &mut conn,
        TENANT,
        Period {
            year: 2026,
            month: 1,
        },
    )
    .await
    .expect("January issued");
    (db, pool)
}

/// `events` as one batch of the consumer loop: one transaction.
async fn apply(pool: &PgPool, events: &[EventEnvelope]) {
    let incoming: Vec<Incoming> = events.iter().map(|e| Incoming::new(e.clone(), 1)).collect();
    let mut tx = pool.begin().await.unwrap();
    wardline_kit::consumer::apply_with(&BillingEvents, &mut tx, &incoming)
        .await
        .expect("handled");
    tx.commit().await.unwrap();
}

fn local(m: u32, d: u32, h: u32) -> DateTime<Utc> {
    let tz: chrono_tz::Tz = TZ.parse().unwrap();
    tz.with_ymd_and_hms(2026, m, d, h, 0, 0)
        .earliest()
        .unwrap()
        .with_timezone(&Utc)
}

/// 50 calls of one tenant: business hours, nights, a weekend, January
/// (invoiced already, so billed late on February), every priority; then
/// a copy of every fifth under a new event id, mixed in among the others;
/// six response breaches among them, and three internal-target alerts
/// (never credited).
fn fifty_calls_with_copies() -> Vec<EventEnvelope> {
    let priorities = [Priority::P1, Priority::P2, Priority::P3, Priority::P4];
    let calls: Vec<EventEnvelope> = (0..50u32)
        .map(|n| {
            let at = match n % 5 {
                0 => local(2, 2 + n % 3, 10), // weekday, business hours
                1 => local(2, 3, 2),          // weekday night
                2 => local(2, 7, 12),         // Saturday
                3 => local(1, 20, 9),         // January: issued, so late
                _ => local(3, 2, 16),         // March, same contract
            };
            let id = uuid::Uuid::now_v7().to_string();
            ticket_created(
                TENANT,
                snapshot(&id, &format!("STM-{n:06}"), priorities[n as usize % 4], at),
            )
        })
        .collect();
    let mut batch = Vec::new();
    for (i, call) in calls.iter().enumerate() {
        batch.push(call.clone());
        if i % 5 == 4 {
            // The call five back, re-published under a new event id.
            let mut copy = calls[i - 4].clone();
            copy.event_id = uuid::Uuid::now_v7().to_string();
            batch.push(copy);
        }
    }
    // Response breaches of the first five calls, the first one twice
    // (a new event id), and one January breach (credited late).
    for (i, call) in calls.iter().take(5).chain(calls.iter().take(1)).enumerate() {
        let at = if i == 3 {
            local(1, 21, 9)
        } else {
            local(2, 9, 9)
        };
        batch.insert(10 + 7 * i, response_breach(call, at, false));
    }
    // Three of the tenant's own internal targets missed: alerts, never credits.
    for call in &calls[5..8] {
        batch.push(response_breach(call, local(2, 9, 9), true));
    }
    batch
}

/// Routing's response breach of the ticket `call` created.
fn response_breach(call: &EventEnvelope, at: DateTime<Utc>, internal: bool) -> EventEnvelope {
    let Some(Payload::TicketCreated(t)) = &call.payload else {
        unreachable!()
    };
    let t = t.ticket.as_ref().unwrap();
    wardline_kit::events::envelope(
        "routing",
        TENANT,
        &t.ticket_id,
        2,
        Payload::SlaBreached(SlaBreached {
            ticket_id: t.ticket_id.clone(),
            number: t.number.clone(),
            priority: t.priority,
            target: SlaTarget::Response as i32,
            deadline: None,
            breached_at: Some(wardline_kit::events::timestamp(at)),
            internal,
        }),
    )
}

/// Breach rows as comparable tuples, by ticket.
async fn breaches(pool: &PgPool) -> Vec<(String, i16, String, String, bool, uuid::Uuid)> {
    sqlx::query_as(
        "SELECT ticket_id::text, target, period, billed_period, late, source_event_id
           FROM breaches ORDER BY ticket_id, target",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Call rows as comparable tuples, by ticket.
async fn calls(pool: &PgPool) -> Vec<(String, String, String, String, bool, i16, uuid::Uuid)> {
    sqlx::query_as(
        "SELECT ticket_id::text, number, period, billed_period, late, priority, source_event_id
           FROM calls ORDER BY ticket_id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// The `call.metered` events in the outbox, without their own ids.
async fn metered(pool: &PgPool) -> Vec<CallMetered> {
    let payloads: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT payload FROM outbox WHERE subject LIKE '%.call.metered' ORDER BY event_id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut out: Vec<CallMetered> = payloads
        .iter()
        .map(
            |p| match EventEnvelope::decode(p.as_slice()).unwrap().payload {
                Some(Payload::CallMetered(m)) => m,
                other => panic!("not a CallMetered: {other:?}"),
            },
        )
        .collect();
    out.sort_by(|a, b| a.ticket_id.cmp(&b.ticket_id));
    out
}

#[tokio::test]
async fn a_batch_of_fifty_calls_with_copies_is_metered_once_each_as_one_by_one_would() {
    let events = fifty_calls_with_copies();
    assert_eq!(events.len(), 69);

    let (_batched_db, batched) = billing("billing_batch").await;
    apply(&batched, &events).await;

    let (_single_db, single) = billing("billing_single").await;
    for e in &events {
        apply(&single, std::slice::from_ref(e)).await;
    }

    let recorded = calls(&batched).await;
    let credited = breaches(&batched).await;
    assert_eq!(
        credited.len(),
        5,
        "one breach per ticket and target; internal alerts credit nothing"
    );
    assert_eq!(
        credited,
        breaches(&single).await,
        "the same breaches as one by one"
    );
    assert_eq!(
        credited.iter().filter(|b| b.4).count(),
        1,
        "January's breach is late"
    );
    assert_eq!(recorded.len(), 50, "one call per ticket");
    assert_eq!(
        recorded,
        calls(&single).await,
        "the same rows as one by one"
    );
    let mut seen = std::collections::HashSet::new();
    let copies: std::collections::HashSet<String> = events
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::TicketCreated(t)) => {
                let ticket = t.ticket.as_ref().unwrap().ticket_id.clone();
                (!seen.insert(ticket)).then(|| e.event_id.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(copies.len(), 10);
    assert!(
        recorded.iter().all(|c| !copies.contains(&c.6.to_string())),
        "the first event of a ticket is the one recorded"
    );
    let late = recorded.iter().filter(|c| c.4).count();
    assert_eq!(late, 10, "January's calls are billed late");
    assert!(
        recorded
            .iter()
            .filter(|c| c.4)
            .all(|c| c.2 == "2026-01" && c.3 == "2026-02")
    );

    let sent = metered(&batched).await;
    assert_eq!(sent.len(), 50, "one call.metered per call");
    assert_eq!(
        sent,
        metered(&single).await,
        "the same events as one by one"
    );
    let after_hours = sent.iter().filter(|m| m.after_hours).count();
    assert_eq!(after_hours, 20, "nights and the Saturday");
    assert!(sent.iter().all(|m| m.contract_version == 1));

    // The whole batch again (a replay past the inbox, every event under a
    // new id): nothing new is recorded or published.
    let replay: Vec<EventEnvelope> = events
        .iter()
        .map(|e| EventEnvelope {
            event_id: uuid::Uuid::now_v7().to_string(),
            ..e.clone()
        })
        .collect();
    apply(&batched, &replay).await;
    assert_eq!(calls(&batched).await, recorded);
    assert_eq!(breaches(&batched).await, credited);
    assert_eq!(metered(&batched).await.len(), 50);
}
