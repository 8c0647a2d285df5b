//! `call.metered`: billing publishes exactly one `CallMetered` per recorded
//! call, through its outbox in the transaction that records the call, with
//! the contract version in force and whether the call was after hours.
//! A redelivered or re-published `ticket.created` (a new message id, which
//! slips past the stream's duplicate window) records nothing and publishes
//! nothing. Real PostgreSQL and a private nats-server, like every test here.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use prost::Message as _;
use wardline_kit::auth::Role;
use wardline_kit::events::{envelope, timestamp};
use wardline_proto::billing::CreateContractVersionRequest;
use wardline_proto::billing::contract_service_client::ContractServiceClient;
use wardline_proto::common::Priority;
use wardline_proto::events::event_envelope::Payload;
use wardline_proto::events::{EventEnvelope, TicketCreated, TicketSnapshot};
use wardline_testkit::Auth;

const TZ: &str = "America/Chicago";

fn local(d: u32, h: u32) -> DateTime<Utc> {
    let tz: chrono_tz::Tz = TZ.parse().unwrap();
    tz.with_ymd_and_hms(2026, 3, d, h, 0, 0)
        .earliest()
        .unwrap()
        .with_timezone(&Utc)
}

fn ticket_created(tenant: &str, n: u32, at: DateTime<Utc>, priority: Priority) -> EventEnvelope {
    let id = uuid::Uuid::now_v7().to_string();
    envelope(
        "intake",
        tenant,
        &id,
        1,
        Payload::TicketCreated(TicketCreated {
            ticket: Some(TicketSnapshot {
                ticket_id: id.clone(),
                number: format!("STM-{n:06}"),
                facility_id: "main".into(),
                category: 2,
                clinical_category: true,
                priority: priority as i32,
                created_at: Some(timestamp(at)),
                ..Default::default()
            }),
            caller: None,
            category_classified: false,
        }),
    )
}

async fn publish(js: &async_nats::jetstream::Context, env: &EventEnvelope, msg_id: &str) {
    let subject = wardline_kit::events::subject(env).expect("payload");
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", msg_id);
    js.publish_with_headers(subject, headers, env.encode_to_vec().into())
        .await
        .expect("publish")
        .await
        .expect("puback");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_recorded_call_is_metered_exactly_once_with_its_contract_version_and_hours() {
    let b = common::start("billing_metered").await;
    let (nats, grpc) = (&b.nats, b.grpc);

    let js = nats.jetstream().await;
    publish(
        &js,
        &wardline_testkit::build::tenant_created("stmarys", TZ),
        "tenant-stmarys",
    )
    .await;
    // A contract from 1 March (the example: weekdays 08:00-17:00).
    wardline_testkit::eventually(20, "billing knows the tenant", || async {
        ContractServiceClient::with_interceptor(
            wardline_testkit::channel(grpc),
            Auth::new(
                &wardline_testkit::token("ops", "*", &[Role::VendorAdmin]),
                Some("stmarys"),
            ),
        )
        .create_contract_version(CreateContractVersionRequest {
            request_id: "c1".into(),
            contract: Some(wardline_billing::contract::example("USD", "2026-03-01")),
            expected_latest_version: 0,
        })
        .await
        .ok()
    })
    .await;

    // Monday 2 March 10:00 (business hours), Monday 02:00 (after hours),
    // Saturday 7 March 12:00 (a closed day), and a February call before
    // any contract (version 0).
    let calls = [
        (
            ticket_created("stmarys", 1, local(2, 10), Priority::P2),
            1,
            false,
        ),
        (
            ticket_created("stmarys", 2, local(2, 2), Priority::P1),
            1,
            true,
        ),
        (
            ticket_created("stmarys", 3, local(7, 12), Priority::P4),
            1,
            true,
        ),
        (
            ticket_created(
                "stmarys",
                4,
                Utc.with_ymd_and_hms(2026, 2, 10, 18, 0, 0).unwrap(),
                Priority::P3,
            ),
            0,
            false,
        ),
    ];
    for (env, _, _) in &calls {
        publish(&js, env, &env.event_id).await;
    }
    // Each again under new message ids (past the stream's duplicate window:
    // the inbox and the call's key must hold), and once more as a true
    // duplicate (dropped by the stream).
    for (i, (env, _, _)) in calls.iter().enumerate() {
        publish(&js, env, &format!("again-{i}")).await;
        publish(&js, env, &env.event_id).await;
    }

    let seen = wardline_testkit::events::wait_for(
        nats,
        "wardline.events.stmarys.call.metered",
        calls.len(),
        20,
    )
    .await;
    // Give a would-be second copy time to be relayed.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let seen = {
        let later = wardline_testkit::events::read_all(
            nats,
            "wardline.events.stmarys.call.metered",
            Duration::from_millis(500),
        )
        .await;
        if later.len() >= seen.len() {
            later
        } else {
            seen
        }
    };
    let mut by_ticket: HashMap<String, Vec<_>> = HashMap::new();
    for s in &seen {
        assert_eq!(s.envelope.producer, "billing");
        assert_eq!(s.msg_id.as_deref(), Some(s.envelope.event_id.as_str()));
        let Some(Payload::CallMetered(m)) = &s.envelope.payload else {
            panic!("not a CallMetered on {}", s.subject)
        };
        assert_eq!(s.envelope.aggregate_id, m.ticket_id);
        by_ticket
            .entry(m.ticket_id.clone())
            .or_default()
            .push(m.clone());
    }
    assert_eq!(
        by_ticket.len(),
        calls.len(),
        "one CallMetered per call: {by_ticket:?}"
    );
    for (env, version, after_hours) in &calls {
        let Some(Payload::TicketCreated(t)) = &env.payload else {
            unreachable!()
        };
        let snap = t.ticket.as_ref().unwrap();
        let metered = &by_ticket[&snap.ticket_id];
        assert_eq!(metered.len(), 1, "{} metered once", snap.number);
        let m = &metered[0];
        assert_eq!(m.number, snap.number);
        assert_eq!(m.priority, snap.priority);
        assert_eq!(m.contract_version, *version, "{}", snap.number);
        assert_eq!(m.after_hours, *after_hours, "{}", snap.number);
        assert!(m.clinical);
    }

    // The calls and the outbox agree: as many metered events as call rows.
    let pool = b.db.pool().await;
    let (calls_n, outbox_n): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM calls),
                (SELECT count(*) FROM outbox WHERE subject LIKE '%.call.metered')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((calls_n, outbox_n), (4, 4));

    b.stop().await;
}
