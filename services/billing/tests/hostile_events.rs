//! Issue 12, part 7: hostile events through billing's real consumer path
//! into its real database. Each mutated envelope (huge strings, NUL,
//! invalid UTF-8, no UUIDs, missing parts, another tenant) ends applied or
//! dead-lettered within seconds, never retried in a loop, no handler
//! panics, no reason quotes the event's text, and billing goes on
//! applying what comes after.

mod common;

use chrono::{TimeZone, Utc};
use wardline_proto::common::Priority;
use wardline_testkit::{build, hostile};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_events_end_applied_or_dead_lettered_and_the_consumer_goes_on() {
    let b = common::start("billing_hostile").await;
    let js = b.nats.jetstream().await;
    let pool = b.db.pool().await;

    // The tenant is known first: a call of an unknown tenant waits for it.
    let tenant = build::tenant_created("stmarys", "America/Chicago");
    let known = hostile::intact(&tenant);
    hostile::publish(&js, std::slice::from_ref(&known)).await;
    hostile::settled(&pool, std::slice::from_ref(&known), 20).await;

    let at = Utc.with_ymd_and_hms(2026, 3, 2, 15, 0, 0).unwrap();
    let ticket = uuid::Uuid::now_v7().to_string();
    let seeds = [
        tenant,
        build::ticket_created(
            "stmarys",
            build::snapshot(&ticket, "STM-000001", Priority::P2, at),
        ),
    ];
    let cases = hostile::envelopes(&seeds, 40, 34);
    let outcome = hostile::survive(&js, &pool, &cases, &seeds[1]).await;
    assert!(!outcome.dead.is_empty(), "some of them are refused");
}
