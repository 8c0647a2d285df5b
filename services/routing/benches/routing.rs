//! Routing benchmark: prints numbers, asserts nothing.
//!
//!     cargo bench -p wardline-routing --bench routing
//!     BENCH_TICKETS=5000 BENCH_RATE=500 cargo bench -p wardline-routing --bench routing
//!
//! 1. The pure decision over 1,000 analysts across 100 tenants (each tenant
//!    sees its 10 own analysts plus 50 vendor-wide ones): decisions per second.
//! 2. The whole path in one process against real PostgreSQL and a private
//!    nats-server: `ticket.created` events published to JetStream at a fixed
//!    rate (as intake would), routing's consumer deciding and assigning, the
//!    outbox relay publishing `ticket.assigned`. Prints decisions per second
//!    and event-to-assignment latency percentiles (HdrHistogram).
//!
//! Needs `WARDLINE_NATS_SERVER_BIN` and `WARDLINE_TEST_DATABASE_URL` like the tests.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use hdrhistogram::Histogram;
use prost::Message;
use tokio_util::sync::CancellationToken;
use wardline_kit::config::Env;
use wardline_proto::common::{CallerRole, Priority, TicketStatus};
use wardline_proto::events::event_envelope::Payload;
use wardline_proto::events::{Availability, EventEnvelope, TicketCreated, TicketSnapshot};
use wardline_routing::directory::{self, AnalystRow, Coverage, SkillRow};
use wardline_routing::domain::decision::{AnalystFacts, TicketFacts, decide};
use wardline_routing::domain::rules::{CATEGORIES, default_rule, module_for};
use wardline_routing::domain::{ClinicalCredential, SkillModule};
use wardline_testkit::{TestDb, TestNats};

const TENANTS: usize = 100;
const PER_TENANT: usize = 9;
const VENDOR_WIDE: usize = 100;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn tenant(i: usize) -> String {
    format!("t{i:03}")
}

/// 900 tenant analysts + 100 vendor-wide = 1,000.
fn roster() -> Vec<AnalystRow> {
    let modules: Vec<SkillModule> = CATEGORIES.iter().filter_map(|c| module_for(*c)).collect();
    let mut out = Vec::new();
    let mut n = 0usize;
    let make = |coverage: &str, n: usize| {
        let skills = (0..4)
            .map(|k| SkillRow {
                module: modules[(n + k * 3) % modules.len()] as i16,
                level: (1 + (n + k) % 5) as i16,
            })
            .collect();
        AnalystRow {
            analyst_id: format!("an{n:04}"),
            name: format!("Analyst {n}"),
            email: String::new(),
            phone: String::new(),
            pager: String::new(),
            time_zone: "UTC".into(),
            coverage: vec![Coverage {
                tenant_id: coverage.into(),
                facility_ids: vec![],
            }],
            skills,
            credentials: if n.is_multiple_of(3) {
                vec![ClinicalCredential::Rn as i16]
            } else {
                vec![]
            },
            languages: vec![],
            max_concurrent: 100,
            shifts: vec![],
            availability: Availability::Available as i16,
            supervisor: false,
            tier2: false,
            on_call: false,
            current_load: 0,
            idle_since: Utc::now(),
            version: 0,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    };
    for t in 0..TENANTS {
        for _ in 0..PER_TENANT {
            out.push(make(&tenant(t), n));
            n += 1;
        }
    }
    for _ in 0..VENDOR_WIDE {
        out.push(make("*", n));
        n += 1;
    }
    out
}

fn pure_decisions(rows: &[AnalystRow]) {
    let facts: Vec<AnalystFacts> = rows.iter().map(directory::facts).collect();
    let mut by_tenant: HashMap<String, Vec<AnalystFacts>> = HashMap::new();
    for t in 0..TENANTS {
        let name = tenant(t);
        let mine = facts
            .iter()
            .filter(|a| a.coverage.iter().any(|(c, _)| c == &name || c == "*"))
            .cloned()
            .collect();
        by_tenant.insert(name, mine);
    }
    let n = 200_000;
    let now = Utc::now();
    let started = Instant::now();
    let mut assigned = 0usize;
    for i in 0..n {
        let name = tenant(i % TENANTS);
        let rule = default_rule(CATEGORIES[i % CATEGORIES.len()]);
        let ticket = TicketFacts {
            tenant_id: name.clone(),
            facility_id: "main".into(),
            caller_role: if i.is_multiple_of(2) {
                CallerRole::Nurse
            } else {
                CallerRole::NonClinical
            },
            previous_analyst: None,
            excluded: vec![],
        };
        if decide(&ticket, &rule, &by_tenant[&name], now)
            .ranked()
            .next()
            .is_some()
        {
            assigned += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "pure decision   {n} decisions over {} candidates each: {:.0} decisions/s ({:.1} us each), {assigned} with an eligible analyst",
        by_tenant[&tenant(0)].len(),
        n as f64 / secs,
        secs * 1e6 / n as f64
    );
}

fn created_event(i: usize) -> EventEnvelope {
    let t = tenant(i % TENANTS);
    let id = uuid::Uuid::now_v7().to_string();
    let category = CATEGORIES[i % (CATEGORIES.len() - 1)];
    wardline_kit::events::envelope(
        "intake",
        &t,
        &id,
        1,
        Payload::TicketCreated(TicketCreated {
            ticket: Some(TicketSnapshot {
                ticket_id: id.clone(),
                number: format!("BEN-{i:06}"),
                facility_id: "main".into(),
                category: category as i32,
                clinical_category: wardline_routing::domain::rules::is_clinical(category),
                priority: [Priority::P1, Priority::P2, Priority::P3, Priority::P4][i % 4] as i32,
                status: TicketStatus::New as i32,
                caller_role: if i.is_multiple_of(2) {
                    CallerRole::Nurse
                } else {
                    CallerRole::NonClinical
                } as i32,
                caller_id: "bench".into(),
                created_at: Some(wardline_kit::events::timestamp(Utc::now())),
                ..Default::default()
            }),
            caller: None,
            category_classified: false,
        }),
    )
}

async fn pipeline(rows: &[AnalystRow]) -> anyhow::Result<()> {
    let tickets = env_usize("BENCH_TICKETS", 2000);
    let rate = env_usize("BENCH_RATE", 400);
    let nats = TestNats::start();
    let db = TestDb::create("bench_routing").await;
    let mut pairs = vec![
        ("ROUTING_GRPC_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
        ("ROUTING_ADMIN_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
        ("ROUTING_DATABASE_URL".to_owned(), db.url()),
        ("ROUTING_MIGRATE_DATABASE_URL".to_owned(), db.owner_url()),
        ("ROUTING_RELAY_POLL_MS".to_owned(), "200".to_owned()),
    ];
    pairs.extend(wardline_testkit::auth_env());
    pairs.extend(nats.service_env("routing", &[]));
    // Tuning variables pass through, so their effect can be measured.
    for var in [
        "ROUTING_CONSUMER_WORKERS",
        "ROUTING_DB_MAX_CONNECTIONS",
        "ROUTING_RELAY_BATCH",
    ] {
        if let Ok(v) = std::env::var(var) {
            pairs.push((var.to_owned(), v));
        }
    }
    let config = wardline_routing::Config::from_env(&Env::from_pairs(pairs))?;
    let shutdown = CancellationToken::new();
    let app = wardline_routing::Application::build(config, shutdown.clone()).await?;
    let running = tokio::spawn(app.run_until_stopped());

    let pool = db.pool().await;
    let mut conn = pool.acquire().await?;
    for a in rows {
        directory::upsert_analyst(&mut conn, a).await?;
    }
    drop(conn);

    let client = nats.client().await;
    let js = async_nats::jetstream::new(client.clone());
    let mut assigned = client
        .subscribe("wardline.events.*.ticket.assigned")
        .await?;
    let mut queued = client.subscribe("wardline.events.*.ticket.queued").await?;

    // Receive while publishing, stamping each assignment on arrival.
    let receiver = tokio::spawn(async move {
        let mut got: Vec<(String, Instant)> = Vec::with_capacity(tickets);
        let mut queued_n = 0usize;
        let deadline = Instant::now() + Duration::from_secs(180);
        while got.len() + queued_n < tickets && Instant::now() < deadline {
            tokio::select! {
                Some(m) = assigned.next() => {
                    let at = Instant::now();
                    if let Ok(EventEnvelope { payload: Some(Payload::TicketAssigned(a)), .. }) = EventEnvelope::decode(m.payload.as_ref()) {
                        got.push((a.ticket_id, at));
                    }
                }
                Some(_) = queued.next() => queued_n += 1,
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
        (got, queued_n)
    });
    let events: Vec<EventEnvelope> = (0..tickets).map(created_event).collect();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let started = Instant::now();
    let mut sent_at: HashMap<String, Instant> = HashMap::with_capacity(tickets);
    let mut next = Instant::now();
    for e in events {
        let subject = wardline_kit::events::subject(&e).expect("payload");
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", e.event_id.as_str());
        let Some(Payload::TicketCreated(c)) = &e.payload else {
            unreachable!()
        };
        sent_at.insert(
            c.ticket.as_ref().expect("snapshot").ticket_id.clone(),
            Instant::now(),
        );
        // Not awaiting the PubAck keeps the offered rate steady.
        drop(
            js.publish_with_headers(subject, headers, e.encode_to_vec().into())
                .await?,
        );
        next += interval;
        tokio::time::sleep_until(next.into()).await;
    }
    let publish_secs = started.elapsed().as_secs_f64();
    let (got, queued_n) = receiver.await?;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut last = started;
    for (id, at) in &got {
        if let Some(t0) = sent_at.get(id) {
            hist.record(at.duration_since(*t0).as_micros().max(1) as u64)?;
            last = last.max(*at);
        }
    }
    let done = got.len();
    let total_secs = last.duration_since(started).as_secs_f64();
    println!(
        "pipeline        {tickets} tickets offered at {rate}/s ({publish_secs:.1}s): {done} assigned, {queued_n} queued in {total_secs:.1}s = {:.0} decisions/s",
        (done + queued_n) as f64 / total_secs
    );
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "time to assign  p50 {:.1} ms  p95 {:.1} ms  p99 {:.1} ms  max {:.1} ms  (ticket.created published -> ticket.assigned received)",
        ms(0.50),
        ms(0.95),
        ms(0.99),
        hist.max() as f64 / 1000.0
    );
    shutdown.cancel();
    running.await??;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rows = roster();
    println!(
        "routing benchmark: {} analysts across {TENANTS} tenants ({VENDOR_WIDE} vendor-wide)",
        rows.len()
    );
    pure_decisions(&rows);
    pipeline(&rows).await
}
