//! `wardctl load --tickets 200 --rate 100 --json` against the real four
//! services (in process, fresh databases, a private nats-server): every
//! ticket is created, assigned by routing, metered by billing (its
//! `call.metered` event) and notified (the load command's own webhook
//! receiver). The numbers are printed, not asserted; the counts are.

mod common;

use clap::Parser as _;
use common::*;
use wardctl::cli::{Cli, Command};
use wardctl::commands::Context;
use wardline_testkit::{HttpSink, TestDb, TestNats, TestSmtp};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_tickets_at_a_hundred_a_second_are_created_assigned_billed_and_notified() {
    let nats = TestNats::start();
    let intake_db = TestDb::create("load_intake").await;
    let routing_db = TestDb::create("load_routing").await;
    let billing_db = TestDb::create("load_billing").await;
    let notification_db = TestDb::create("load_notification").await;
    let (smtp, sms, pager) = (
        TestSmtp::start().await,
        HttpSink::start().await,
        HttpSink::start().await,
    );
    let intake = start_intake(&intake_db, &nats).await;
    let routing = start_routing(&routing_db, &nats).await;
    let billing = start_billing(&billing_db, &nats).await;
    let notification = start_notification(&notification_db, &nats, &smtp, &sms, &pager).await;

    let url = |a: std::net::SocketAddr| format!("http://{a}");
    let pg_url = std::env::var("WARDLINE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| wardctl::cli::DEFAULT_PG_URL.to_owned());
    let argv: Vec<String> = [
        "wardctl",
        "--intake-url",
        &url(intake.grpc),
        "--routing-url",
        &url(routing.grpc),
        "--billing-url",
        &url(billing.grpc),
        "--nats-url",
        &nats.url(),
        "--secret",
        wardline_testkit::SECRET,
        "load",
        "--tickets",
        "200",
        "--rate",
        "100",
        "--json",
        "--notification-url",
        &url(notification.grpc),
        "--pg-url",
        &pg_url,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let cli = Cli::try_parse_from(&argv).expect("the command line parses");
    let ctx = Context::from_cli(&cli);
    assert!(ctx.json);
    let Command::Load(args) = &cli.command else {
        panic!("not wardctl load")
    };
    let report = wardctl::load::measure(&ctx, args)
        .await
        .expect("the load run completes");
    println!("{}", report.render());
    let j = report.to_json();
    println!("{}", serde_json::to_string_pretty(&j).unwrap());

    assert_eq!(j["sent"], 200);
    assert_eq!(j["created"], 200, "errors: {}", j["errors"]);
    assert_eq!(j["errors"], serde_json::json!({}));
    assert_eq!(j["assigned"], 200);
    assert_eq!(j["queued"], 0);
    assert_eq!(j["billed"], 200);
    assert_eq!(j["notified"], 200);
    for stage in [
        wardctl::load::STAGE_CREATE,
        wardctl::load::STAGE_ASSIGNED,
        wardctl::load::STAGE_BILLED,
        wardctl::load::STAGE_NOTIFIED,
    ] {
        assert_eq!(j["stages"][stage]["count"], 200, "{stage}");
        assert!(j["stages"][stage]["p99_ms"].is_number(), "{stage}");
    }
    assert!(
        j["limits"]["postgres_rows_per_second"]["per_second"].is_number(),
        "{}",
        j["limits"]
    );
    assert!(
        j["limits"]["jetstream_messages_per_second"]["per_second"].is_number(),
        "{}",
        j["limits"]
    );

    notification.stop().await;
    billing.stop().await;
    routing.stop().await;
    intake.stop().await;
}
