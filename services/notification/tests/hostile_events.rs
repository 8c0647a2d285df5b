//! Issue 12, part 7: hostile events through notification's real consumer
//! path into its real database. Each mutated envelope (huge strings, NUL,
//! invalid UTF-8, no UUIDs, missing parts, another tenant) ends applied or
//! dead-lettered within seconds, never retried in a loop, no handler
//! panics, no reason quotes the event's text, and notification goes on
//! applying what comes after.

mod common;

use common::*;
use wardline_proto::common::Priority;
use wardline_testkit::hostile;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_events_end_applied_or_dead_lettered_and_the_consumer_goes_on() {
    let h = spawn().await;
    let seeds = [
        ticket_created(&new_id(), "STM-000001", Priority::P2),
        analyst("an.ruiz", 1, true, false),
    ];
    let cases = hostile::envelopes(&seeds, 40, 12);
    let js = h.nats.jetstream().await;
    let pool = h.db.pool().await;
    let outcome = hostile::survive(&js, &pool, &cases, &seeds[0]).await;
    assert!(!outcome.dead.is_empty(), "some of them are refused");
    h.stop().await;
}
