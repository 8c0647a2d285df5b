//! Issue 12, part 7: hostile events through routing's real consumer path
//! into its real database. Each mutated envelope (huge strings, NUL,
//! invalid UTF-8, no UUIDs, missing parts, another tenant) ends applied or
//! dead-lettered within seconds, never retried in a loop, no handler
//! panics, no reason quotes the event's text, and routing goes on
//! applying what comes after.

mod common;

use chrono::Utc;
use wardline_proto::common::Priority;
use wardline_testkit::{TestDb, TestNats, build, hostile};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_events_end_applied_or_dead_lettered_and_the_consumer_goes_on() {
    let nats = TestNats::start();
    let db = TestDb::create("routing_hostile").await;
    let (_grpc, _stop) = common::start(&nats, &db).await;
    let js = nats.jetstream().await;
    let pool = db.pool().await;

    let ticket = uuid::Uuid::now_v7().to_string();
    let seeds = [build::ticket_created(
        "stmarys",
        build::snapshot(&ticket, "STM-000001", Priority::P2, Utc::now()),
    )];
    let cases = hostile::envelopes(&seeds, 40, 56);
    let outcome = hostile::survive(&js, &pool, &cases, &seeds[0]).await;
    assert!(!outcome.dead.is_empty(), "some of them are refused");
}
