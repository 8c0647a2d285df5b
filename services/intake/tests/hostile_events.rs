//! Issue 12, part 7: hostile events through intake's real consumer path
//! (routing's events about a ticket) into its real database. Each mutated
//! envelope (huge strings, NUL, invalid UTF-8, no UUIDs, missing parts,
//! another tenant) ends applied or dead-lettered within seconds, never
//! retried in a loop, no handler panics, no reason quotes the event's
//! text, and intake goes on applying what comes after.

mod common;

use common::*;
use wardline_kit::events::envelope;
use wardline_proto::common::Priority;
use wardline_proto::events::event_envelope::Payload;
use wardline_proto::events::{TicketAssigned, TicketQueued};
use wardline_testkit::hostile;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_events_end_applied_or_dead_lettered_and_the_consumer_goes_on() {
    let app = spawn_app().await;
    app.create_tenant("stmarys", "STM").await;
    let t = app.nurse_creates("stmarys", "hostile").await;
    let assigned = envelope(
        "routing",
        "stmarys",
        &t.ticket_id,
        2,
        Payload::TicketAssigned(TicketAssigned {
            ticket_id: t.ticket_id.clone(),
            number: t.number.clone(),
            assignment_id: uuid::Uuid::now_v7().to_string(),
            analyst_id: "an.ruiz".into(),
            priority: Priority::P1 as i32,
            attempt: 1,
            ..Default::default()
        }),
    );
    let queued = envelope(
        "routing",
        "stmarys",
        &t.ticket_id,
        1,
        Payload::TicketQueued(TicketQueued {
            ticket_id: t.ticket_id.clone(),
            number: t.number.clone(),
            ..Default::default()
        }),
    );
    let cases = hostile::envelopes(&[assigned.clone(), queued], 40, 78);
    let js = app.nats().jetstream().await;
    let pool = app.db().pool().await;
    let outcome = hostile::survive(&js, &pool, &cases, &assigned).await;
    assert!(!outcome.dead.is_empty(), "some of them are refused");
}
