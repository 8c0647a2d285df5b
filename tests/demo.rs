//! `wardctl demo` plays the shipped scenario against the real four services
//! (in process, fresh databases, a private nats-server, email to a local
//! SMTP server): every call is created and placed as the scenario
//! expects, metered exactly once, and somebody is told about it; the
//! worked call runs its whole lifecycle; a second run seeds nothing new.

mod common;

use clap::Parser as _;
use common::*;
use wardctl::cli::{Cli, Command};
use wardctl::commands::Context;
use wardctl::demo::outcome::Outcome;
use wardline_testkit::{HttpSink, TestDb, TestNats, TestSmtp};

async fn play(urls: &[(&str, String)]) -> Outcome {
    let mut argv: Vec<String> = vec!["wardctl".into(), "--json".into()];
    for (flag, url) in urls {
        argv.extend([format!("--{flag}"), url.clone()]);
    }
    argv.extend([
        "--env".into(),
        "development".into(),
        "--issuer-key".into(),
        wardline_testkit::issuer_key_file(),
        "demo".into(),
    ]);
    let cli = Cli::try_parse_from(&argv).expect("the command line parses");
    let ctx = Context::from_cli(&cli);
    let Command::Demo(args) = &cli.command else {
        panic!("not wardctl demo")
    };
    wardctl::demo::run(&ctx, args).await.expect("the demo runs")
}

/// `wardctl audit --ticket NUMBER` for `tenant`, as an operator runs it.
async fn audit(urls: &[(&str, String)], tenant: &str, number: &str) {
    let mut argv: Vec<String> = vec!["wardctl".into()];
    for (flag, url) in urls {
        argv.extend([format!("--{flag}"), url.clone()]);
    }
    argv.extend(
        [
            "--env",
            "development",
            "--issuer-key",
            &wardline_testkit::issuer_key_file(),
            "--tenant",
            tenant,
            "audit",
            "--ticket",
            number,
        ]
        .map(str::to_owned),
    );
    let cli = Cli::try_parse_from(&argv).expect("the command line parses");
    let ctx = Context::from_cli(&cli);
    let Command::Audit(args) = &cli.command else {
        panic!("not wardctl audit")
    };
    wardctl::commands::audit::run(&ctx, args)
        .await
        .expect("wardctl audit runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_shipped_scenario_is_created_placed_billed_and_notified() {
    let nats = TestNats::start();
    // wardctl takes its NATS identity from the environment, as in a shell
    // (scripts/demo.sh exports the same): the operator's identity, the CA.
    // SAFETY: nextest runs each test in a process of its own, and nothing
    // else in this one reads or writes the environment concurrently yet.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("NATS_NKEY_SEED_FILE", nats.nkey_file("provision"));
        std::env::set_var("NATS_CA_FILE", nats.ca_file());
    }
    let dbs = [
        TestDb::create("demo_intake").await,
        TestDb::create("demo_routing").await,
        TestDb::create("demo_billing").await,
        TestDb::create("demo_notification").await,
    ];
    let (smtp, sms, pager) = (
        TestSmtp::start().await,
        HttpSink::start().await,
        HttpSink::start().await,
    );
    let intake = start_intake(&dbs[0], &nats).await;
    let routing = start_routing(&dbs[1], &nats).await;
    let billing = start_billing(&dbs[2], &nats).await;
    let notification = start_notification(&dbs[3], &nats, &smtp, &sms, &pager).await;
    let url = |a: std::net::SocketAddr| format!("http://{a}");
    let urls = [
        ("intake-url", url(intake.grpc)),
        ("routing-url", url(routing.grpc)),
        ("billing-url", url(billing.grpc)),
        ("notification-url", url(notification.grpc)),
        ("nats-url", nats.url()),
    ];

    let o = play(&urls).await;
    println!("{}", o.text());
    assert_eq!(o.calls.len(), 5, "every call created");
    for c in &o.calls {
        assert!(
            c.as_expected(),
            "{} was {}, expected {:?}",
            c.number,
            c.placed(),
            c.expect
        );
        assert_eq!(c.charges, 1, "{} metered exactly once", c.number);
        assert!(c.deliveries > 0, "somebody was told about {}", c.number);
    }
    assert_eq!(o.billed_tenants, vec!["stmarys", "lakeside"]);
    let classified: Vec<&str> = (o.calls.iter().filter(|c| c.classified))
        .map(|c| c.category.as_str())
        .collect();
    assert_eq!(
        classified,
        vec!["network"],
        "intake classified the Wi-Fi call"
    );
    let worked = o.worked.as_ref().expect("a call was worked");
    assert_eq!(
        worked.steps,
        vec!["acknowledged", "started", "note_added", "resolved"]
    );
    assert_ne!(
        worked.actor, "wardctl (vendor admin)",
        "its analyst worked it"
    );
    assert!(o.explained.is_some(), "one decision explained");
    // Who looked at the worked call is on record (issue 15): `wardctl
    // audit` reads it, and the record names the analyst's reads and changes.
    let call = o.calls.iter().find(|c| c.number == worked.number).unwrap();
    audit(&urls, &call.tenant_id, &call.number).await;
    let records =
        wardline_proto::common::audit_service_client::AuditServiceClient::with_interceptor(
            wardline_testkit::channel(intake.grpc),
            wardline_testkit::Auth::new(&admin_token(&call.tenant_id), None),
        )
        .list_audit_records(wardline_proto::common::ListAuditRecordsRequest {
            resource_id: call.ticket_id.clone(),
            ..Default::default()
        })
        .await
        .expect("the tenant admin reads the audit trail")
        .into_inner()
        .records;
    let methods: Vec<&str> = records.iter().map(|r| r.method.as_str()).collect();
    for m in [
        "TicketService/CreateTicket",
        "TicketService/AcknowledgeTicket",
        "TicketService/AddNote",
        "TicketService/ResolveTicket",
    ] {
        assert!(methods.contains(&m), "{m} on record: {methods:?}");
    }
    let resolver = records
        .iter()
        .find(|r| r.method == "TicketService/ResolveTicket")
        .unwrap();
    assert_eq!(resolver.roles, ["analyst"], "{resolver:?}");
    for t in &o.tenants {
        let total = t.draft_total.as_ref().expect("a draft invoice");
        assert_eq!(total.currency, "USD");
        assert!(total.minor_units > 0, "{} billed something", t.tenant_id);
    }
    assert_eq!(o.events.get("ticket.created"), Some(&5), "{:?}", o.events);
    assert_eq!(o.events.get("ticket.assigned"), Some(&5), "{:?}", o.events);
    let email = o.deliveries.get("email").expect("deliveries by email");
    assert!(email.get("delivered").is_some_and(|n| *n > 0), "{email:?}");
    assert!(!smtp.messages().is_empty(), "the SMTP server received mail");

    // Played again: the seed is kept, five new calls are filed.
    let again = play(&urls).await;
    assert_eq!(again.calls.len(), 5);
    assert!(
        again
            .calls
            .iter()
            .all(|c| !o.calls.iter().any(|d| d.ticket_id == c.ticket_id))
    );
    assert!(again.calls.iter().all(|c| c.charges == 1));

    notification.stop().await;
    billing.stop().await;
    routing.stop().await;
    intake.stop().await;
}
