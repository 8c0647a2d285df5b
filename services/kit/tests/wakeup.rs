//! Coalesced NOTIFY wake-ups against a real PostgreSQL.

use std::time::{Duration, Instant};

use sqlx::postgres::PgPoolOptions;
use wardline_kit::wakeup::Wakeup;

fn database_url() -> String {
    std::env::var("WARDLINE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Under load a trigger NOTIFYs once per transaction; a loop woken once
/// per notification kept spinning long after the load ended. However many
/// notifications arrive between two waits, the next wait returns once.
#[tokio::test]
async fn a_burst_of_notifications_is_one_wakeup_and_leaves_none_behind() {
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&database_url())
        .await
        .expect("PostgreSQL");
    let channel: &'static str =
        Box::leak(format!("wakeup_test_{}", uuid::Uuid::now_v7().simple()).into_boxed_str());
    let wakeup = Wakeup::listen(&pool, channel).await;

    let quiet = Instant::now();
    wakeup.wait(Duration::from_millis(200)).await;
    assert!(
        quiet.elapsed() >= Duration::from_millis(200),
        "woken without a notification"
    );

    for _ in 0..500 {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(channel)
            .execute(&pool)
            .await
            .unwrap();
    }
    // Let the listener read all 500.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let woken = Instant::now();
    wakeup.wait(Duration::from_secs(60)).await;
    assert!(
        woken.elapsed() < Duration::from_secs(30),
        "the burst did not wake the waiter"
    );
    let after = Instant::now();
    wakeup.wait(Duration::from_millis(300)).await;
    assert!(
        after.elapsed() >= Duration::from_millis(300),
        "a stale wake-up from the burst was left behind"
    );
}
