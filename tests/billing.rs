//! Billing against real NATS and PostgreSQL: hand-computed invoices for two
//! hospitals, exactly-once metering through redelivery, duplicates and
//! SIGKILL, and issued invoices that never change.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use common::*;
use wardline_billing::contract::example;
use wardline_kit::events::{envelope, timestamp};
use wardline_proto::billing::contract_service_client::ContractServiceClient;
use wardline_proto::billing::invoice_service_client::InvoiceServiceClient;
use wardline_proto::billing::usage_service_client::UsageServiceClient;
use wardline_proto::billing::*;
use wardline_proto::common::{Money, Priority};
use wardline_proto::events::event_envelope::Payload;
use wardline_proto::events::{
    EventEnvelope, SlaBreached, SlaTarget, TenantCreated, TenantInfo, TicketCreated, TicketSnapshot,
};
use wardline_testkit::{Auth, ServiceProcess, TestDb, TestNats, free_port};

type Invoices = InvoiceServiceClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Auth>,
>;

fn vendor(addr: SocketAddr, tenant: &str) -> Auth {
    let _ = addr;
    Auth::new(&vendor_token(), Some(tenant))
}

fn tenant_created(tenant: &str, tz: &str) -> EventEnvelope {
    envelope(
        "intake",
        tenant,
        tenant,
        1,
        Payload::TenantCreated(TenantCreated {
            tenant: Some(TenantInfo {
                tenant_id: tenant.into(),
                name: tenant.into(),
                time_zone: tz.into(),
                ticket_prefix: "X".into(),
                facilities: vec![],
                active: true,
            }),
        }),
    )
}

fn ticket_created(
    tenant: &str,
    n: u32,
    at: DateTime<Utc>,
    clinical: bool,
    priority: Priority,
) -> (String, EventEnvelope) {
    let id = uuid::Uuid::now_v7().to_string();
    let env = envelope(
        "intake",
        tenant,
        &id,
        1,
        Payload::TicketCreated(TicketCreated {
            ticket: Some(TicketSnapshot {
                ticket_id: id.clone(),
                number: format!("T-{n:06}"),
                facility_id: "main".into(),
                category: if clinical { 2 } else { 10 },
                clinical_category: clinical,
                priority: priority as i32,
                created_at: Some(timestamp(at)),
                ..Default::default()
            }),
            caller: None,
            category_classified: false,
        }),
    );
    (id, env)
}

fn breach(tenant: &str, ticket_id: &str, priority: Priority, at: DateTime<Utc>) -> EventEnvelope {
    envelope(
        "routing",
        tenant,
        ticket_id,
        2,
        Payload::SlaBreached(SlaBreached {
            ticket_id: ticket_id.into(),
            number: "T".into(),
            priority: priority as i32,
            target: SlaTarget::Response as i32,
            deadline: Some(timestamp(at)),
            breached_at: Some(timestamp(at)),
            internal: false,
        }),
    )
}

fn local(tz: &str, y: i32, m: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    let tz: chrono_tz::Tz = tz.parse().unwrap();
    tz.with_ymd_and_hms(y, m, d, h, mi, 0)
        .unwrap()
        .with_timezone(&Utc)
}

fn usd(minor: i64) -> Option<Money> {
    Some(Money {
        currency: "USD".into(),
        minor_units: minor,
    })
}

async fn create_contract(addr: SocketAddr, tenant: &str, c: Contract) -> Contract {
    ContractServiceClient::with_interceptor(wardline_testkit::channel(addr), vendor(addr, tenant))
        .create_contract_version(CreateContractVersionRequest {
            request_id: format!("contract-{tenant}"),
            contract: Some(c),
            expected_latest_version: 0,
        })
        .await
        .unwrap_or_else(|e| panic!("contract for {tenant}: {e:?}"))
        .into_inner()
}

fn invoices(addr: SocketAddr, tenant: &str) -> Invoices {
    InvoiceServiceClient::with_interceptor(wardline_testkit::channel(addr), vendor(addr, tenant))
}

async fn usage(addr: SocketAddr, tenant: &str, period: &str) -> Usage {
    UsageServiceClient::with_interceptor(wardline_testkit::channel(addr), vendor(addr, tenant))
        .get_usage(GetUsageRequest {
            period: period.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn wait_calls(addr: SocketAddr, tenant: &str, period: &str, n: u64) {
    wardline_testkit::eventually(30, "calls recorded", || async {
        let u = usage(addr, tenant, period).await;
        (u.calls + u.unbilled_calls >= n).then_some(())
    })
    .await;
}

fn line<'a>(inv: &'a Invoice, code: &str) -> &'a InvoiceLine {
    inv.lines
        .iter()
        .find(|l| l.description_code == code)
        .unwrap_or_else(|| panic!("no line {code}: {:#?}", inv.lines))
}

fn amount(m: &Option<Money>) -> i64 {
    m.as_ref().unwrap().minor_units
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_for_two_hospitals_matches_the_hand_computed_invoices_and_never_changes_once_issued()
 {
    let nats = TestNats::start();
    let db = TestDb::create("billing").await;
    let billing = start_billing(&db, &nats).await;
    let addr = billing.grpc;
    let js = nats.jetstream().await;
    publish_event(&js, &tenant_created("stmarys", "America/Chicago")).await;
    publish_event(&js, &tenant_created("lakeside", "America/New_York")).await;
    wardline_testkit::eventually(10, "tenants known", || async {
        let pool = db.pool().await;
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants")
            .fetch_one(&pool)
            .await
            .unwrap();
        (n == 2).then_some(())
    })
    .await;

    // St Mary's: the example rate card, 2 calls included, $100 minimum,
    // $50 per P1 response breach capped at 10 %.
    let mut stm = example("USD", "2026-01-01");
    stm.calls_included_per_month = 2;
    stm.monthly_minimum = usd(10_000);
    stm.sla_credits = Some(SlaCredits {
        per_p1_response_breach: usd(5_000),
        per_p2_response_breach: usd(2_000),
        cap_bps: 1_000,
    });
    create_contract(addr, "stmarys", stm).await;
    // Lakeside: from March 1, 1 call included, flat $20 overage, no surcharge, $300 minimum, banker's rounding.
    let mut lks = example("USD", "2026-03-01");
    lks.calls_included_per_month = 1;
    lks.overage_price_per_call = usd(2_000);
    lks.after_hours_surcharge_bps = 0;
    lks.monthly_minimum = usd(30_000);
    lks.rounding = RoundingRule::HalfEven as i32;
    create_contract(addr, "lakeside", lks).await;

    let chi = "America/Chicago";
    let ny = "America/New_York";
    let stm_calls = [
        (local(chi, 2026, 3, 2, 9, 0), true, Priority::P1), // included
        (local(chi, 2026, 3, 2, 10, 0), false, Priority::P3), // included
        (local(chi, 2026, 3, 3, 22, 0), true, Priority::P1), // $45 + 25 % = $11.25 (after hours)
        (local(chi, 2026, 3, 7, 12, 0), false, Priority::P4), // Saturday: $10 + $2.50
        (local(chi, 2026, 3, 9, 9, 0), true, Priority::P2), // after the DST change: $35
        (local(chi, 2026, 3, 9, 16, 30), false, Priority::P3), // 16:30 CDT, inside hours: $15
        (
            Utc.with_ymd_and_hms(2026, 4, 1, 3, 30, 0).unwrap(),
            false,
            Priority::P2,
        ), // March 31 22:30 local: $25 + $6.25
    ];
    let mut stm_ids = Vec::new();
    let mut all_events = Vec::new();
    for (i, (at, clinical, p)) in stm_calls.iter().enumerate() {
        let (id, env) = ticket_created("stmarys", i as u32, *at, *clinical, *p);
        stm_ids.push(id);
        all_events.push(env);
    }
    all_events.push(breach(
        "stmarys",
        &stm_ids[2],
        Priority::P1,
        local(chi, 2026, 3, 3, 22, 20),
    ));
    let lks_calls = [
        (local(ny, 2026, 2, 27, 10, 0), true, Priority::P1), // before the contract: unbilled
        (local(ny, 2026, 3, 5, 10, 0), true, Priority::P1),  // included
        (local(ny, 2026, 3, 6, 11, 0), false, Priority::P4), // overage $20
        (local(ny, 2026, 3, 20, 23, 0), true, Priority::P3), // overage $20
    ];
    for (i, (at, clinical, p)) in lks_calls.iter().enumerate() {
        all_events.push(ticket_created("lakeside", 100 + i as u32, *at, *clinical, *p).1);
    }
    // Arrival order must not matter: publish newest first.
    all_events.reverse();
    for e in &all_events {
        publish_event(&js, e).await;
    }
    wait_calls(addr, "stmarys", "2026-03", 7).await;
    wait_calls(addr, "lakeside", "2026-03", 3).await;

    // Issue March for both and check every figure by hand.
    let issue = |tenant: &'static str| async move {
        invoices(addr, tenant)
            .issue_invoice(IssueInvoiceRequest {
                request_id: format!("issue-{tenant}-2026-03"),
                period: "2026-03".into(),
            })
            .await
            .unwrap()
            .into_inner()
    };
    let a = issue("stmarys").await;
    assert_eq!(a.status(), InvoiceStatus::Issued);
    assert_eq!(a.calls, 7);
    assert_eq!(line(&a, "calls_included").quantity, 2);
    assert_eq!(amount(&line(&a, "tier_price.clinical.p1").amount), 4_500);
    assert_eq!(amount(&line(&a, "after_hours.clinical.p1").amount), 1_125);
    assert_eq!(amount(&line(&a, "after_hours.technical.p4").amount), 250);
    assert_eq!(amount(&line(&a, "after_hours.technical.p2").amount), 625);
    assert_eq!(amount(&line(&a, "tier_price.clinical.p2").amount), 3_500);
    assert_eq!(amount(&line(&a, "tier_price.technical.p3").amount), 1_500);
    assert_eq!(amount(&a.subtotal), 15_000);
    assert_eq!(amount(&line(&a, "sla_credit.p1_response").amount), -5_000);
    assert_eq!(amount(&line(&a, "sla_credit_cap").amount), 3_500);
    assert_eq!(amount(&a.credits), -1_500);
    assert_eq!(amount(&a.total), 13_500);
    for l in &a.lines {
        assert_eq!(
            amount(&l.amount),
            amount(&l.unit_price) * l.quantity as i64,
            "{l:?}"
        );
    }

    let b = issue("lakeside").await;
    assert_eq!(b.calls, 3);
    assert_eq!(line(&b, "overage").quantity, 2);
    assert_eq!(amount(&line(&b, "overage").amount), 4_000);
    assert_eq!(amount(&line(&b, "minimum_top_up").amount), 26_000);
    assert_eq!(amount(&b.total), 30_000);
    let unbilled = UsageServiceClient::with_interceptor(
        wardline_testkit::channel(addr),
        vendor(addr, "lakeside"),
    )
    .list_unbilled(ListUnbilledRequest::default())
    .await
    .unwrap()
    .into_inner();
    assert_eq!(unbilled.calls.len(), 1);
    assert_eq!(unbilled.calls[0].reason_code, "not_yet_in_force");

    // Issuing again is refused; the same request id returns the invoice.
    let err = invoices(addr, "stmarys")
        .issue_invoice(IssueInvoiceRequest {
            request_id: "again".into(),
            period: "2026-03".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    let replay = issue("stmarys").await;
    assert_eq!(replay, a);
    // The current month cannot be issued yet.
    let now_period = Utc::now().format("%Y-%m").to_string();
    let err = invoices(addr, "stmarys")
        .issue_invoice(IssueInvoiceRequest {
            request_id: "too-early".into(),
            period: now_period,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);

    // Redelivered and duplicated events change nothing; a late March call
    // becomes an adjustment on April, and March stays as issued.
    for (i, e) in all_events.iter().enumerate() {
        publish_event_as(&js, e, &format!("dup-{i}")).await;
    }
    let (_, late) = ticket_created(
        "stmarys",
        99,
        local(chi, 2026, 3, 30, 10, 0),
        true,
        Priority::P1,
    );
    publish_event(&js, &late).await;
    wardline_testkit::eventually(15, "late call on April", || async {
        let u = usage(addr, "stmarys", "2026-04").await;
        (u.calls == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let march = invoices(addr, "stmarys")
        .get_invoice(GetInvoiceRequest {
            invoice_id: a.invoice_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(march, a, "an issued invoice never changes");
    let april = invoices(addr, "stmarys")
        .get_draft_invoice(GetDraftInvoiceRequest {
            period: "2026-04".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(line(&april, "late_charge").kind(), LineKind::Adjustment);
    assert_eq!(amount(&line(&april, "late_charge").amount), 4_500);
    assert_eq!(
        usage(addr, "stmarys", "2026-03").await.calls,
        7,
        "duplicates were not counted"
    );
    let pool = db.pool().await;
    let calls: i64 = sqlx::query_scalar("SELECT count(*) FROM calls")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(calls, 7 + 4 + 1);

    // The rebuild from the rated events matches to the cent; exports carry the totals.
    let check = invoices(addr, "stmarys")
        .rebuild_check(RebuildCheckRequest {
            period: "2026-03".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(check.matches, "{:?}", check.differences);
    let csv = invoices(addr, "stmarys")
        .export_invoice(ExportInvoiceRequest {
            invoice_id: a.invoice_id.clone(),
            format: ExportFormat::Csv as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(csv.file_name, "stmarys-2026-03.csv");
    let text = String::from_utf8(csv.content).unwrap();
    assert!(
        text.contains(",TOTAL,") && text.contains("135.00,13500,USD"),
        "{text}"
    );
    let json = invoices(addr, "stmarys")
        .export_invoice(ExportInvoiceRequest {
            invoice_id: a.invoice_id.clone(),
            format: ExportFormat::Json as i32,
        })
        .await
        .unwrap()
        .into_inner();
    let v: serde_json::Value = serde_json::from_slice(&json.content).unwrap();
    assert_eq!(v["total"]["minorUnits"], "13500");
    billing.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_billing_roles_see_billing_data_and_a_tenant_admin_only_their_own() {
    let nats = TestNats::start();
    let db = TestDb::create("billing").await;
    let billing = start_billing(&db, &nats).await;
    let addr = billing.grpc;
    let js = nats.jetstream().await;
    publish_event(&js, &tenant_created("stmarys", "America/Chicago")).await;
    wardline_testkit::eventually(10, "tenant known", || async {
        let pool = db.pool().await;
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants")
            .fetch_one(&pool)
            .await
            .unwrap();
        (n == 1).then_some(())
    })
    .await;
    create_contract(addr, "stmarys", example("USD", "2026-01-01")).await;
    let as_role = |token: String| {
        InvoiceServiceClient::with_interceptor(
            wardline_testkit::channel(addr),
            Auth::new(&token, None),
        )
    };
    let analyst = wardline_testkit::token("an", "stmarys", &[wardline_kit::auth::Role::Analyst]);
    let err = as_role(analyst)
        .get_draft_invoice(GetDraftInvoiceRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    let fin = wardline_testkit::token("fin", "stmarys", &[wardline_kit::auth::Role::Billing]);
    assert!(
        as_role(fin)
            .get_draft_invoice(GetDraftInvoiceRequest::default())
            .await
            .is_ok()
    );
    let admin = admin_token("stmarys");
    let draft = as_role(admin.clone())
        .get_draft_invoice(GetDraftInvoiceRequest::default())
        .await
        .unwrap()
        .into_inner();
    // Another tenant's invoice id is NOT_FOUND for this admin.
    let other = admin_token("lakeside");
    let err = as_role(other)
        .get_invoice(GetInvoiceRequest {
            invoice_id: draft.invoice_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    // A tenant admin cannot create contracts; bad input names the field.
    let err = ContractServiceClient::with_interceptor(
        wardline_testkit::channel(addr),
        Auth::new(&admin, None),
    )
    .create_contract_version(CreateContractVersionRequest {
        request_id: "x".into(),
        contract: Some(example("USD", "2027-01-01")),
        expected_latest_version: 1,
    })
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    let mut bad = example("USD", "2027-01-01");
    bad.rate_card.pop();
    let err = ContractServiceClient::with_interceptor(
        wardline_testkit::channel(addr),
        vendor(addr, "stmarys"),
    )
    .create_contract_version(CreateContractVersionRequest {
        request_id: "y".into(),
        contract: Some(bad),
        expected_latest_version: 1,
    })
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().starts_with("contract.rate_card"),
        "{}",
        err.message()
    );
    let err = ContractServiceClient::with_interceptor(
        wardline_testkit::channel(addr),
        vendor(addr, "stmarys"),
    )
    .create_contract_version(CreateContractVersionRequest {
        request_id: "z".into(),
        contract: Some(example("USD", "2027-01-01")),
        expected_latest_version: 0,
    })
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Aborted);
    billing.stop().await;
}

fn start_billing_process(
    db: &TestDb,
    nats: &TestNats,
    grpc: SocketAddr,
    admin: SocketAddr,
    log: &Path,
) -> ServiceProcess {
    spawn_process(
        "wardline-billing",
        billing_env(db, nats),
        &[],
        admin,
        grpc,
        log,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billing_killed_repeatedly_while_10000_tickets_flow_bills_each_exactly_once() {
    let nats = TestNats::start();
    let db = TestDb::create("billing_crash").await;
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("billing.log");
    let grpc: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut billing = start_billing_process(&db, &nats, grpc, admin, &log);
    let js = nats.jetstream().await;
    publish_event(&js, &tenant_created("stmarys", "America/Chicago")).await;
    create_contract_when_ready(grpc).await;

    const N: u32 = 10_000;
    let publisher = {
        let js = js.clone();
        tokio::spawn(async move {
            let mut acks = Vec::new();
            for i in 0..N {
                let at = local("America/Chicago", 2026, 3, 1 + i % 28, 8 + i % 12, i % 60);
                let (_, env) = ticket_created(
                    "stmarys",
                    i,
                    at,
                    i % 2 == 0,
                    [Priority::P1, Priority::P2, Priority::P3, Priority::P4][(i % 4) as usize],
                );
                let subject = wardline_kit::events::subject(&env).unwrap();
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", env.event_id.as_str());
                use prost::Message;
                acks.push(
                    js.publish_with_headers(subject, headers, env.encode_to_vec().into())
                        .await
                        .unwrap(),
                );
                if acks.len() >= 500 {
                    for a in acks.drain(..) {
                        a.await.unwrap();
                    }
                }
            }
            for a in acks {
                a.await.unwrap();
            }
        })
    };
    let pool = db.pool().await;
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM calls")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    // Kill it three times while the events flow.
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        billing.kill9();
        let seen = count().await;
        eprintln!("round {round}: SIGKILL after {seen} calls recorded");
        billing = start_billing_process(&db, &nats, grpc, admin, &log);
    }
    publisher.await.unwrap();
    wardline_testkit::eventually(240, "every call recorded", || async {
        (count().await >= i64::from(N)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        count().await,
        i64::from(N),
        "each ticket billed exactly once"
    );
    let inbox: i64 =
        sqlx::query_scalar("SELECT count(*) FROM inbox WHERE subject LIKE '%ticket.created'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(inbox, i64::from(N));
    let u = usage(grpc, "stmarys", "2026-03").await;
    assert_eq!(u.calls, u64::from(N));
    assert_eq!(
        billing.terminate(20),
        Some(0),
        "log:\n{}",
        billing.log_tail()
    );
}

async fn create_contract_when_ready(addr: SocketAddr) {
    wardline_testkit::eventually(20, "tenant known to billing", || async {
        ContractServiceClient::with_interceptor(
            wardline_testkit::channel(addr),
            vendor(addr, "stmarys"),
        )
        .create_contract_version(CreateContractVersionRequest {
            request_id: "c1".into(),
            contract: Some(example("USD", "2026-01-01")),
            expected_latest_version: 0,
        })
        .await
        .ok()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_arrives_before_its_tenant_is_billed_as_soon_as_the_tenant_is_known() {
    let nats = TestNats::start();
    let db = TestDb::create("billing").await;
    let billing = start_billing(&db, &nats).await;
    let js = nats.jetstream().await;
    // The call comes first (events are not ordered across aggregates)...
    let (_, call) = ticket_created(
        "stmarys",
        1,
        local("America/Chicago", 2026, 3, 2, 9, 0),
        true,
        Priority::P1,
    );
    publish_event(&js, &call).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    // ...then its tenant. The retried call must not wait for an ack timeout.
    publish_event(&js, &tenant_created("stmarys", "America/Chicago")).await;
    let pool = db.pool().await;
    wardline_testkit::eventually(8, "the early call recorded after its tenant", || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM calls")
            .fetch_one(&pool)
            .await
            .unwrap();
        (n == 1).then_some(())
    })
    .await;
    billing.stop().await;
}

/// Issue 11's done-when: against nats-server with the shipped permission
/// layout, neither an anonymous client nor the routing service's own
/// identity can publish `ticket.created`, so billing meters no forged call;
/// intake's identity can, and billing meters that one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billing_meters_no_forged_call_because_only_intake_may_publish_ticket_created() {
    let nats = TestNats::start();
    let db = TestDb::create("billing").await;
    let billing = start_billing(&db, &nats).await;
    let intake =
        async_nats::jetstream::new(nats.client_as("intake").await.expect("intake signs in"));
    publish_event(&intake, &tenant_created("stmarys", "America/Chicago")).await;
    create_contract_when_ready(billing.grpc).await;
    let at = local("America/Chicago", 2026, 3, 2, 9, 0);

    // No credentials: the server refuses the connection itself.
    let anonymous = async_nats::ConnectOptions::new()
        .add_root_certificates(nats.ca_file())
        .require_tls(true)
        .connection_timeout(Duration::from_secs(5))
        .connect(nats.url())
        .await;
    let e = anonymous.expect_err("an anonymous client is refused");
    assert!(
        format!("{e:?}").to_lowercase().contains("auth"),
        "refused for its credentials: {e:?}"
    );

    // Routing's own identity: signed in, but ticket.created is not its event.
    let routing = nats
        .config_for("routing")
        .options("routing")
        .expect("routing's options")
        .request_timeout(Some(Duration::from_secs(2)))
        .connect(nats.url())
        .await
        .expect("routing signs in");
    let routing_js = async_nats::jetstream::new(routing);
    let (_, forged) = ticket_created("stmarys", 1, at, true, Priority::P1);
    let subject = wardline_kit::events::subject(&forged).unwrap();
    assert_eq!(subject, "wardline.events.stmarys.ticket.created");
    let refused = match routing_js
        .publish(
            subject.clone(),
            prost::Message::encode_to_vec(&forged).into(),
        )
        .await
    {
        Ok(ack) => ack.await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "routing's identity published {subject}");
    // Routing's own events still go through (the permission is per kind).
    let (ticket_id, _) = ticket_created("stmarys", 9, at, true, Priority::P1);
    let breach = breach("stmarys", &ticket_id, Priority::P1, at);
    routing_js
        .publish(
            wardline_kit::events::subject(&breach).unwrap(),
            prost::Message::encode_to_vec(&breach).into(),
        )
        .await
        .expect("routing publishes its own sla_breached")
        .await
        .expect("and JetStream stores it");

    // The real producer's call, published after the forgeries: once
    // billing has it, everything before it has been seen too.
    let (genuine_id, genuine) = ticket_created("stmarys", 2, at, true, Priority::P1);
    publish_event(&intake, &genuine).await;
    let pool = db.pool().await;
    let ids: Vec<uuid::Uuid> =
        wardline_testkit::eventually(30, "the genuine call metered", || async {
            let ids: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT ticket_id FROM calls")
                .fetch_all(&pool)
                .await
                .unwrap();
            (!ids.is_empty()).then_some(ids)
        })
        .await;
    assert_eq!(
        ids,
        vec![uuid::Uuid::parse_str(&genuine_id).unwrap()],
        "only the genuine call is metered"
    );
    let on_stream = wardline_testkit::events::read_all(
        &nats,
        "wardline.events.stmarys.ticket.created",
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(
        on_stream.len(),
        1,
        "the forged event never reached the stream"
    );
    billing.stop().await;
}
