//! Intake benchmark: prints numbers, asserts nothing.
//!
//!     cargo bench -p wardline-intake --bench intake                 # flat out, 10 s
//!     BENCH_RATE=4000 cargo bench -p wardline-intake --bench intake # fixed arrival rate
//!     BENCH_CONCURRENCY=256 BENCH_SECONDS=20 cargo bench -p wardline-intake --bench intake
//!
//! A real intake (release build, in this process) against PostgreSQL and a
//! private nats-server, driven over gRPC by `BENCH_CONCURRENCY` clients
//! spread over 10 tenants. Measures, with HdrHistogram:
//! - create: the CreateTicket round trip seen by the client (at a fixed
//!   rate, from the intended send time, so a stall is not hidden);
//! - create to event: from the intended send time to `ticket.created`
//!   arriving on a NATS subscription (commit + outbox relay + JetStream).
//!
//! Also prints the mean group-commit batch and this process's CPU per
//! ticket (client, intake and relay together; PostgreSQL and NATS are
//! separate processes). Logging is off, as it would be at `warn`.
//!
//! Needs `WARDLINE_NATS_SERVER_BIN` and `WARDLINE_TEST_DATABASE_URL` like the tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use hdrhistogram::Histogram;
use prost::Message;
use tokio_util::sync::CancellationToken;
use wardline_intake::{Application, Config};
use wardline_kit::auth::Role;
use wardline_kit::config::Env;
use wardline_proto::common::{CallerRole, Channel, Impact, Urgency};
use wardline_proto::events::EventEnvelope;
use wardline_proto::intake::tenant_service_client::TenantServiceClient;
use wardline_proto::intake::ticket_service_client::TicketServiceClient;
use wardline_proto::intake::{Caller, CreateTenantRequest, CreateTicketRequest, Facility};
use wardline_testkit::{Auth, TestDb, TestNats};

const TENANTS: usize = 10;

/// What the book holds for a ticket until both sides were seen.
enum Mark {
    /// The client got its response; the intended send time.
    Sent(Instant),
    /// The event arrived first; its arrival time.
    Seen(Instant),
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn request(id: String) -> CreateTicketRequest {
    CreateTicketRequest {
        request_id: id,
        facility_id: "main".into(),
        caller: Some(Caller {
            caller_id: "rn.jones".into(),
            name: "Riley Jones, RN".into(),
            role: CallerRole::Nurse as i32,
            email: "riley.jones@example.org".into(),
            phone: "+13125550100".into(),
        }),
        channel: Channel::Phone as i32,
        application: "ehr".into(),
        category: 0,
        urgency: Urgency::High as i32,
        impact: Impact::SingleUser as i32,
        patient_care_blocked: false,
        description: "Patient list is incomplete after the unit transfer; cannot see two patients"
            .into(),
    }
}

fn cpu_seconds() -> f64 {
    // utime + stime of this process, in clock ticks (fields 14 and 15).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // After the ')' the fields start at state (3), so utime (14) is index 11.
    (ticks(11) + ticks(12)) / 100.0
}

fn print_row(name: &str, h: &Histogram<u64>) {
    let ms = |v: u64| v as f64 / 1000.0;
    println!(
        "{name:<18} n={:<7} p50 {:>7.2} ms  p95 {:>7.2} ms  p99 {:>7.2} ms  max {:>8.2} ms",
        h.len(),
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.95)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max()),
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let concurrency = env_usize("BENCH_CONCURRENCY", 128);
    let seconds = env_usize("BENCH_SECONDS", 10) as u64;
    let rate = env_usize("BENCH_RATE", 0);
    let nats = TestNats::start();
    let db = TestDb::create("intake").await;
    let pairs: Vec<(String, String)> = [
        ("INTAKE_GRPC_ADDR", "127.0.0.1:0".to_owned()),
        ("INTAKE_ADMIN_ADDR", "127.0.0.1:0".to_owned()),
        ("INTAKE_DATABASE_URL", db.url()),
        ("INTAKE_MIGRATE_DATABASE_URL", db.owner_url()),
        ("INTAKE_TENANT_RATE", "0".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .chain(wardline_testkit::auth_env())
    .chain(
        std::env::vars()
            .filter(|(k, _)| k.starts_with("INTAKE_CREATE_") || k == "INTAKE_DB_MAX_CONNECTIONS"),
    )
    .chain(nats.service_env("intake", &[]))
    .collect();
    let config = Config::from_env(&Env::from_pairs(pairs)).expect("config");
    let shutdown = CancellationToken::new();
    let app = Application::build(config, shutdown.clone())
        .await
        .expect("intake builds");
    let (grpc, admin) = (app.grpc_addr(), app.admin_addr());
    let server = tokio::spawn(app.run_until_stopped());

    let vendor = Auth::new(
        &wardline_testkit::token("ops", "*", &[Role::VendorAdmin]),
        None,
    );
    let mut tenants =
        TenantServiceClient::with_interceptor(wardline_testkit::channel(grpc), vendor);
    for t in 0..TENANTS {
        tenants
            .create_tenant(CreateTenantRequest {
                request_id: format!("tenant-{t}"),
                tenant_id: format!("t{t:02}"),
                name: format!("Hospital {t}"),
                time_zone: "America/Chicago".into(),
                ticket_prefix: format!("H{}", (b'A' + t as u8) as char),
                facilities: vec![Facility {
                    facility_id: "main".into(),
                    name: "Main".into(),
                }],
                reopen_window_hours: 0,
            })
            .await
            .expect("tenant");
    }

    // ticket id -> whichever came first: the response to the client (with
    // the intended send time) or the event (with its arrival time). One
    // lock for both sides, so neither can miss the other.
    let book: Arc<Mutex<HashMap<String, Mark>>> = Arc::default();
    let to_event = Arc::new(Mutex::new(Histogram::<u64>::new(3).unwrap()));
    let client = nats.client().await;
    let mut sub = client
        .subscribe("wardline.events.*.ticket.created")
        .await
        .expect("subscribe");
    {
        let (book, to_event) = (book.clone(), to_event.clone());
        tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                let now = Instant::now();
                let Ok(env) = EventEnvelope::decode(msg.payload) else {
                    continue;
                };
                let mut book = book.lock().unwrap();
                match book.remove(&env.aggregate_id) {
                    Some(Mark::Sent(at)) => {
                        let _ = to_event
                            .lock()
                            .unwrap()
                            .record((now - at).as_micros() as u64);
                    }
                    _ => {
                        book.insert(env.aggregate_id, Mark::Seen(now));
                    }
                }
            }
        });
    }

    // Channels: HTTP/2 multiplexes, a few connections spread the work.
    let channels: Vec<_> = (0..4).map(|_| wardline_testkit::channel(grpc)).collect();
    let clients: Vec<_> = (0..TENANTS)
        .map(|t| {
            let token = wardline_testkit::requester_token(
                "rn.jones",
                &format!("t{t:02}"),
                Some("riley.jones@example.org"),
                Some("+13125550100"),
            );
            (0..channels.len())
                .map(|c| {
                    TicketServiceClient::with_interceptor(
                        channels[c].clone(),
                        Auth::new(&token, None),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();

    let create = Arc::new(Mutex::new(Histogram::<u64>::new(3).unwrap()));
    let errors = Arc::new(Mutex::new(HashMap::<String, u64>::new()));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let cpu0 = cpu_seconds();
    let mut tasks = Vec::new();
    let interval = (rate > 0).then(|| Duration::from_secs_f64(concurrency as f64 / rate as f64));
    for w in 0..concurrency {
        let mut c = clients[w % TENANTS][w % channels.len()].clone();
        let (create, errors, book, to_event) = (
            create.clone(),
            errors.clone(),
            book.clone(),
            to_event.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            // Worker w takes every concurrency-th slot of the schedule.
            let mut intended = started
                + interval.map_or(Duration::ZERO, |i| i.mul_f64(w as f64 / concurrency as f64));
            while Instant::now() < deadline {
                if interval.is_some() {
                    tokio::time::sleep_until(intended.into()).await;
                } else {
                    intended = Instant::now();
                }
                n += 1;
                let res = c.create_ticket(request(format!("w{w}-{n}"))).await;
                let done = Instant::now();
                match res {
                    Ok(r) => {
                        let id = r.into_inner().ticket_id;
                        let _ = create
                            .lock()
                            .unwrap()
                            .record((done - intended).as_micros() as u64);
                        let mut book = book.lock().unwrap();
                        match book.remove(&id) {
                            Some(Mark::Seen(ev)) => {
                                let waited = ev.saturating_duration_since(intended);
                                let _ = to_event.lock().unwrap().record(waited.as_micros() as u64);
                            }
                            _ => {
                                book.insert(id, Mark::Sent(intended));
                            }
                        }
                    }
                    Err(e) => {
                        *errors
                            .lock()
                            .unwrap()
                            .entry(format!("{:?}", e.code()))
                            .or_default() += 1
                    }
                }
                if let Some(i) = interval {
                    intended += i;
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("worker");
    }
    let elapsed = started.elapsed();
    // Let the last events arrive.
    for _ in 0..50 {
        let waiting = book
            .lock()
            .unwrap()
            .values()
            .any(|m| matches!(m, Mark::Sent(_)));
        if !waiting {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cpu = cpu_seconds() - cpu0;

    let create = create.lock().unwrap().clone();
    let to_event = to_event.lock().unwrap().clone();
    let metrics = http_get(admin, "/metrics").await;
    let batch_sum = metric(&metrics, "wardline_intake_create_batch_size_sum");
    let batch_count = metric(&metrics, "wardline_intake_create_batch_size_count");
    println!();
    println!(
        "intake: {} creates in {:.1} s = {:.0} creates/s ({}, {concurrency} clients, {TENANTS} tenants)",
        create.len(),
        elapsed.as_secs_f64(),
        create.len() as f64 / elapsed.as_secs_f64(),
        if rate > 0 {
            format!("offered {rate}/s")
        } else {
            "flat out".into()
        },
    );
    print_row("create", &create);
    print_row("create -> event", &to_event);
    println!(
        "mean batch {:.1} tickets per transaction; CPU {:.3} ms per ticket in this process; errors {:?}; events missing {}",
        batch_sum / batch_count.max(1.0),
        cpu * 1000.0 / create.len().max(1) as f64,
        errors.lock().unwrap(),
        book.lock()
            .unwrap()
            .values()
            .filter(|m| matches!(m, Mark::Sent(_)))
            .count(),
    );
    shutdown.cancel();
    let _ = server.await;
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return String::new();
    };
    let _ = s
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out).await;
    out
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}
