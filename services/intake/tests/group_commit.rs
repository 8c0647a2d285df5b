//! CreateTicket's group commit: many requests share a transaction, yet each
//! gets exactly the answer it would have got alone.

mod common;

use std::collections::{BTreeSet, HashMap};

use common::*;
use tonic::Code;
use wardline_testkit::events;

/// Hundreds of concurrent creates over two tenants: every one succeeds,
/// numbers are gap-free and unique per tenant, one event per ticket, and
/// several requests really did share transactions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_get_unique_gap_free_numbers_and_one_event_each() {
    let app = start_with(
        wardline_testkit::TestNats::start(),
        wardline_testkit::TestDb::create("intake").await,
        &[
            ("INTAKE_TENANT_RATE", "0"),
            ("INTAKE_CREATE_CONCURRENCY", "2"),
        ],
    )
    .await;
    app.create_tenant("stmarys", "STM").await;
    app.create_tenant("lakeside", "LKS").await;
    let per_tenant = 300;
    let mut calls = Vec::new();
    for tenant in ["stmarys", "lakeside"] {
        let client = app.tickets(&nurse_token(tenant));
        for i in 0..per_tenant {
            let mut c = client.clone();
            calls.push(tokio::spawn(async move {
                let t = c
                    .create_ticket(nurse_ticket(&format!("{tenant}-{i}")))
                    .await
                    .expect("created")
                    .into_inner();
                (tenant, t.number, t.ticket_id)
            }));
        }
    }
    let mut numbers: HashMap<&str, BTreeSet<String>> = HashMap::new();
    let mut ids = BTreeSet::new();
    for c in calls {
        let (tenant, number, id) = c.await.unwrap();
        assert!(numbers.entry(tenant).or_default().insert(number));
        assert!(ids.insert(id));
    }
    let expected = |prefix: &str| -> BTreeSet<String> {
        (1..=per_tenant)
            .map(|n| format!("{prefix}-{n:06}"))
            .collect()
    };
    assert_eq!(numbers["stmarys"], expected("STM"), "no gap, no repeat");
    assert_eq!(numbers["lakeside"], expected("LKS"));

    let seen = events::wait_for(
        app.nats(),
        "wardline.events.*.ticket.created",
        2 * per_tenant,
        30,
    )
    .await;
    assert_eq!(seen.len(), 2 * per_tenant, "one event per ticket");
    let evented: BTreeSet<String> = seen
        .iter()
        .map(|e| e.envelope.aggregate_id.clone())
        .collect();
    assert_eq!(evented, ids);

    // Proof that requests were grouped: fewer transactions than tickets.
    let metrics = http_get(app.admin, "/metrics").await;
    let count = metric(&metrics, "wardline_intake_create_batch_size_count");
    assert!(
        count < (2 * per_tenant) as f64,
        "{count} batches for {} tickets",
        2 * per_tenant
    );
}

/// Good and bad requests in the same moment: the bad ones get their own
/// error naming the field, the good ones their tickets, a repeated key its
/// first answer, and a refused key can be used again once corrected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_in_a_batch_gets_its_own_answer() {
    let app = start_with(
        wardline_testkit::TestNats::start(),
        wardline_testkit::TestDb::create("intake").await,
        &[
            ("INTAKE_TENANT_RATE", "0"),
            ("INTAKE_CREATE_CONCURRENCY", "1"),
        ],
    )
    .await;
    app.create_tenant("stmarys", "STM").await;
    let client = app.tickets(&nurse_token("stmarys"));
    let ghost = app.tickets(&nurse_token("ghost"));

    for round in 0..5 {
        let mut calls = Vec::new();
        for i in 0..40 {
            let (mut c, mut req) = (client.clone(), nurse_ticket(&format!("r{round}-{i}")));
            let kind = i % 4;
            match kind {
                0 => req.facility_id = "west-wing".into(), // unknown facility
                1 => req.request_id = format!("r{round}-shared"), // same key, same request
                _ => {}
            }
            if kind == 3 && i % 8 == 3 {
                c = ghost.clone(); // unknown tenant
            }
            calls.push(tokio::spawn(async move {
                (kind, i, c.create_ticket(req).await.map(|r| r.into_inner()))
            }));
        }
        let mut shared = BTreeSet::new();
        for call in calls {
            let (kind, i, res) = call.await.unwrap();
            match (kind, res) {
                (0, Err(e)) => {
                    assert_eq!(e.code(), Code::NotFound, "{e:?}");
                    assert!(e.message().contains("facility_id"), "{}", e.message());
                }
                (1, Ok(t)) => {
                    shared.insert(t.ticket_id);
                }
                (3, Err(e)) if i % 8 == 3 => {
                    assert_eq!(e.code(), Code::NotFound, "{e:?}");
                    assert!(e.message().contains("ghost"), "{}", e.message());
                }
                (_, Ok(t)) => assert!(t.number.starts_with("STM-")),
                (k, r) => panic!("request kind {k} #{i}: unexpected {r:?}"),
            }
        }
        assert_eq!(shared.len(), 1, "one ticket per repeated key: {shared:?}");
    }

    // A refused key leaves nothing behind: corrected, it succeeds.
    let mut c = client.clone();
    let mut req = nurse_ticket("fix-me");
    req.facility_id = "west-wing".into();
    assert_eq!(
        c.create_ticket(req).await.unwrap_err().code(),
        Code::NotFound
    );
    let t = c
        .create_ticket(nurse_ticket("fix-me"))
        .await
        .expect("the corrected retry is fresh")
        .into_inner();

    // 5 rounds x (20 plain + 1 shared) tickets, then the corrected one,
    // minus the ghost tenant's 5 per round: numbers stay gap-free.
    let expected = 5 * (20 - 5 + 1) + 1;
    assert_eq!(t.number, format!("STM-{expected:06}"));
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in metrics"))
}
