//! Billing benchmark: prints numbers, asserts nothing.
//!
//!     cargo bench -p wardline-billing --bench billing
//!     BENCH_CALLS=20000 cargo bench -p wardline-billing --bench billing
//!
//! 1. Rating in memory: a month of N calls (with surcharges, an allowance
//!    and breaches) rated into charges and invoice lines: charges per second.
//! 2. Metering end to end against real PostgreSQL and a private nats-server:
//!    N `ticket.created` events published to JetStream, billing's consumer
//!    recording each exactly once (inbox + call row + period lock): calls
//!    metered per second. Then the month's draft invoice computed from them.
//!
//! Needs `WARDLINE_NATS_SERVER_BIN` and `WARDLINE_TEST_DATABASE_URL` like the tests.

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use prost::Message;
use tokio_util::sync::CancellationToken;
use wardline_billing::domain::calendar::Period;
use wardline_billing::domain::rating::{Breach, Call, Tier, rate_period};
use wardline_kit::config::Env;
use wardline_kit::events::{envelope, timestamp};
use wardline_proto::events::event_envelope::Payload;
use wardline_proto::events::{TenantCreated, TenantInfo, TicketCreated, TicketSnapshot};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn tz() -> chrono_tz::Tz {
    "America/Chicago".parse().expect("zone")
}

fn at(i: usize) -> chrono::DateTime<Utc> {
    tz().with_ymd_and_hms(
        2026,
        3,
        1 + (i % 28) as u32,
        (6 + i % 16) as u32,
        (i % 60) as u32,
        0,
    )
    .earliest()
    .expect("a valid local time")
    .with_timezone(&Utc)
}

fn rating(n: usize) {
    let mut terms = wardline_billing::contract::terms_from_proto(
        &wardline_billing::contract::example("USD", "2026-01-01"),
        1,
    )
    .expect("example is valid");
    terms.included_per_month = (n / 10) as u32;
    terms.credit_p1_response = 5_000;
    terms.credit_cap_bps = 1_000;
    let calls: Vec<Call> = (0..n)
        .map(|i| Call {
            ticket_id: format!("t{i:08}"),
            number: format!("STM-{i:06}"),
            event_id: format!("e{i}"),
            created_at: at(i),
            tier: if i % 2 == 0 {
                Tier::Clinical
            } else {
                Tier::Technical
            },
            priority: (1 + i % 4) as u8,
            category: 1,
            late: false,
        })
        .collect();
    let breaches: Vec<Breach> = (0..n / 50)
        .map(|i| Breach {
            ticket_id: format!("t{i:08}"),
            number: String::new(),
            event_id: format!("b{i}"),
            detected_at: at(i),
            priority: 1,
            late: false,
        })
        .collect();
    let period = Period::parse("2026-03").expect("period");
    let started = Instant::now();
    let rounds = 5;
    let mut charges = 0;
    let mut total = 0;
    for _ in 0..rounds {
        let r = rate_period(
            tz(),
            period,
            std::slice::from_ref(&terms),
            &calls,
            &breaches,
        );
        charges += r.charges.len();
        total = r.total;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "rating          {n} calls/month x {rounds}: {:.0} charges/s ({:.0} calls/s), {:.1} ms per month; total {}.{:02} USD",
        charges as f64 / secs,
        (n * rounds) as f64 / secs,
        secs * 1000.0 / rounds as f64,
        total / 100,
        total % 100
    );
}

async fn metering(n: usize) -> anyhow::Result<()> {
    let nats = wardline_testkit::TestNats::start();
    let db = wardline_testkit::TestDb::create("bench_billing").await;
    let mut pairs = nats.service_env("billing", &[]);
    pairs.extend(vec![
        ("BILLING_GRPC_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
        ("BILLING_ADMIN_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
        ("BILLING_DATABASE_URL".to_owned(), db.url()),
        ("BILLING_MIGRATE_DATABASE_URL".to_owned(), db.owner_url()),
    ]);
    pairs.extend(wardline_testkit::auth_env());
    let config = wardline_billing::Config::from_env(&Env::from_pairs(pairs))?;
    let shutdown = CancellationToken::new();
    let app = wardline_billing::Application::build(config, shutdown.clone()).await?;
    let running = tokio::spawn(app.run_until_stopped());
    let js = nats.jetstream().await;
    let publish = |env: wardline_proto::events::EventEnvelope| {
        let js = js.clone();
        async move {
            let subject = wardline_kit::events::subject(&env).expect("payload");
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", env.event_id.as_str());
            js.publish_with_headers(subject, headers, env.encode_to_vec().into())
                .await
        }
    };
    publish(envelope(
        "intake",
        "stmarys",
        "stmarys",
        1,
        Payload::TenantCreated(TenantCreated {
            tenant: Some(TenantInfo {
                tenant_id: "stmarys".into(),
                time_zone: "America/Chicago".into(),
                ..Default::default()
            }),
        }),
    ))
    .await?
    .await?;
    let started = Instant::now();
    let mut acks = Vec::new();
    for i in 0..n {
        let id = uuid::Uuid::now_v7().to_string();
        let env = envelope(
            "intake",
            "stmarys",
            &id,
            1,
            Payload::TicketCreated(TicketCreated {
                ticket: Some(TicketSnapshot {
                    ticket_id: id.clone(),
                    number: format!("STM-{i:06}"),
                    clinical_category: i % 2 == 0,
                    priority: (1 + i % 4) as i32,
                    created_at: Some(timestamp(at(i))),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        );
        acks.push(publish(env).await?);
        if acks.len() >= 500 {
            for a in acks.drain(..) {
                a.await?;
            }
        }
    }
    for a in acks {
        a.await?;
    }
    let published = started.elapsed().as_secs_f64();
    let pool = db.pool().await;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let c: i64 = sqlx::query_scalar("SELECT count(*) FROM calls")
            .fetch_one(&pool)
            .await?;
        if c as usize >= n || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "metering        {n} ticket.created events (published in {published:.1}s): recorded exactly once in {secs:.1}s = {:.0} calls/s",
        n as f64 / secs
    );
    let mut conn = pool.acquire().await?;
    sqlx::query("INSERT INTO contract_versions (tenant_id, version, contract_id, effective_from, body, created_by) VALUES ('stmarys', 1, $1, '2026-01-01', $2, 'bench')")
        .bind(uuid::Uuid::now_v7())
        .bind(wardline_billing::contract::example("USD", "2026-01-01").encode_to_vec())
        .execute(&mut *conn)
        .await?;
    let t0 = Instant::now();
    let c = wardline_billing::invoice::compute(
        &mut conn,
        "stmarys",
        Period::parse("2026-03").expect("period"),
        false,
    )
    .await?;
    println!(
        "draft invoice   {} calls, {} charges, {} lines computed from the database in {:.0} ms",
        c.rated.calls,
        c.rated.charges.len(),
        c.rated.lines.len(),
        t0.elapsed().as_secs_f64() * 1000.0
    );
    drop(conn);
    shutdown.cancel();
    running.await??;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n = env_usize("BENCH_CALLS", 10_000);
    rating(n * 10);
    metering(n).await
}
