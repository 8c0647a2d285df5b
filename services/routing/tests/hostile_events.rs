//! Issue 12, part 7: hostile events through routing's real consumer path
//! into its real database. Each mutated envelope (huge strings, NUL,
//! invalid UTF-8, no UUIDs, missing parts, another tenant) ends applied or
//! dead-lettered within seconds, never retried in a loop, no handler
//! panics, no reason quotes the event's text, and routing goes on
//! applying what comes after.

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use wardline_kit::config::Env;
use wardline_proto::common::Priority;
use wardline_testkit::{TestDb, TestNats, build, hostile};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_events_end_applied_or_dead_lettered_and_the_consumer_goes_on() {
    let nats = TestNats::start();
    let db = TestDb::create("routing_hostile").await;
    let config = wardline_routing::Config::from_env(&Env::from_pairs(
        vec![
            ("ROUTING_GRPC_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
            ("ROUTING_ADMIN_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
            ("ROUTING_DATABASE_URL".to_owned(), db.url()),
            ("ROUTING_MIGRATE_DATABASE_URL".to_owned(), db.owner_url()),
            ("WARDLINE_SHUTDOWN_TIMEOUT_MS".to_owned(), "5000".to_owned()),
        ]
        .into_iter()
        .chain(wardline_testkit::auth_env())
        .chain(nats.service_env("routing", &[]))
        .collect::<Vec<_>>(),
    ))
    .expect("routing accepts the test configuration");
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let app = wardline_routing::Application::build(config, shutdown.clone())
        .await
        .expect("routing builds");
    tokio::spawn(app.run_until_stopped());
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
