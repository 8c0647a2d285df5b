//! `wardline-load --tickets 200 --rate 100 --json` against the real four
//! services (in process, fresh databases, a private nats-server): every
//! ticket is created, assigned by routing, metered by billing (its
//! `call.metered` event) and notified (the load generator's own webhook
//! receiver), and the report carries the commits per ticket of the
//! services' databases. The numbers are printed, not asserted; the counts
//! are. `WARDLINE_LOAD_EXTRA_ARGS` appends arguments the run does not set
//! (`--tenants 1 --analysts 40`: one hospital, so batches fill).

mod common;

use clap::Parser as _;
use common::*;
use wardline_load::Args;
use wardline_testkit::{HttpSink, TestDb, TestNats, TestSmtp};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_tickets_at_a_hundred_a_second_are_created_assigned_billed_and_notified() {
    let nats = TestNats::start();
    // wardctl takes its NATS identity from the environment, as in a shell:
    // the operator's (provisioning) identity and the test CA.
    // SAFETY: nextest runs each test in a process of its own, and nothing
    // else in this one reads or writes the environment concurrently yet.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("NATS_NKEY_SEED_FILE", nats.nkey_file("provision"));
        std::env::set_var("NATS_CA_FILE", nats.ca_file());
    }
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
        .unwrap_or_else(|_| wardline_load::DEFAULT_PG_URL.to_owned());
    let argv: Vec<String> = [
        "wardline-load",
        "--intake-url",
        &url(intake.grpc),
        "--routing-url",
        &url(routing.grpc),
        "--billing-url",
        &url(billing.grpc),
        "--nats-url",
        &nats.url(),
        "--issuer-key",
        &wardline_testkit::issuer_key_file(),
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
    // Arguments the run does not set (e.g. `--tenants 1 --analysts 40`
    // to fill the consumers' batches), for measuring statement counts
    // against a server that preloads pg_stat_statements.
    .chain(
        std::env::var("WARDLINE_LOAD_EXTRA_ARGS")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned),
    )
    .collect();
    let args = Args::try_parse_from(&argv).expect("the command line parses");
    let report = wardline_load::measure(&args)
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
        wardline_load::STAGE_CREATE,
        wardline_load::STAGE_ASSIGNED,
        wardline_load::STAGE_BILLED,
        wardline_load::STAGE_NOTIFIED,
    ] {
        assert_eq!(j["stages"][stage]["count"], 200, "{stage}");
        assert!(j["stages"][stage]["p99_ms"].is_number(), "{stage}");
    }
    // Each service's database committed for the run's tickets; statements
    // are counted when the server preloads pg_stat_statements, and the
    // report says how to enable it when it does not.
    let dbs = j["postgres"]["databases"]
        .as_array()
        .expect("per-database costs");
    for db in [&intake_db, &routing_db, &billing_db, &notification_db] {
        let name = db.name();
        let row = dbs
            .iter()
            .find(|d| d["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {dbs:?}"));
        assert!(
            row["commits_per_ticket"].as_f64().is_some_and(|c| c > 0.0),
            "{row}"
        );
    }
    assert!(
        j["postgres"]["statements_per_ticket"].is_number()
            || j["postgres"]["statements_off"]
                .as_str()
                .is_some_and(|s| s.contains("shared_preload_libraries")),
        "{}",
        j["postgres"]
    );
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
