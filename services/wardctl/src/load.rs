//! `wardctl load`: drives CreateTicket through the whole pipeline and
//! reports latency and throughput per stage, CPU per ticket, and the
//! machine's PostgreSQL and JetStream ceilings measured in the same run.
//!
//! 1. Seed ([`seed`]): fresh tenants, analysts with capacity for the
//!    planned tickets, a contract per tenant, a webhook per tenant to the
//!    receiver this command runs on 127.0.0.1 ([`hooks`]).
//! 2. Subscribe (core NATS) to `wardline.events.<tenant>.>` of every load
//!    tenant before sending: `ticket.assigned` and `ticket.queued` from
//!    routing, `call.metered` from billing. Arrival instants are kept per
//!    ticket id and joined with the sends at the end, so an event that
//!    beats its CreateTicket response is not lost.
//! 3. Send: open loop at `--rate` (request *i* is due at start + i/rate
//!    whatever happened before, [`stats::intended_offset`]; every latency
//!    is measured from that intended instant, so stalls are not hidden by
//!    coordinated omission), or `--flat-out` with `--concurrency` callers
//!    (latency from the actual send). Tickets due in the first `--warmup`
//!    flow but are not measured. A line per second on stderr.
//! 4. Drain: wait (up to `--drain-secs`) until every measured ticket is
//!    assigned or queued, billed, and notified when the webhook is on.
//! 5. Report: HdrHistogram percentiles per stage, errors by gRPC code,
//!    queued tickets, CPU ([`cpu`]), then the limits ([`limits`]) and the
//!    pipeline's throughput as a share of each.

pub mod cpu;
pub mod hooks;
pub mod limits;
pub mod seed;
pub mod stats;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use futures::StreamExt as _;
use prost::Message as _;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use wardline_proto::common::{CallerRole, Category, Channel, Impact, Urgency};
use wardline_proto::events::EventEnvelope;
use wardline_proto::events::event_envelope::Payload;
use wardline_proto::intake::{Caller, CreateTicketRequest};

use crate::cli::LoadArgs;
use crate::commands::{Context, print_json};
use crate::grpc::{self, Session, code_name};
use crate::table::Table;
use stats::Summary;

/// Requests in flight at most (open loop); beyond it the sender waits,
/// which shows as latency since it is measured from the intended time.
const MAX_IN_FLIGHT: usize = 10_000;
/// gRPC connections to intake the requests are spread over.
const CONNECTIONS: usize = 4;

/// How the run sends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Fixed arrival rate per second.
    Rate(f64),
    /// As fast as `n` callers go.
    FlatOut(usize),
}

/// When the run stops sending.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    /// After this many measured tickets.
    Tickets(u64),
    /// After this long (measured part).
    Duration(Duration),
}

/// A resolved plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Sending mode.
    pub mode: Mode,
    /// End of the measured part.
    pub stop: Stop,
    /// Warm-up before it.
    pub warmup: Duration,
    /// Tenants.
    pub tenants: u32,
    /// Analysts per tenant.
    pub analysts: u32,
}

impl Plan {
    /// The plan of the command line (`--rate 50` and `--duration 10` when
    /// neither is given).
    pub fn of(a: &LoadArgs) -> Result<Self> {
        let mode = match (a.rate, a.flat_out) {
            (Some(_), true) => anyhow::bail!("--rate and --flat-out exclude each other"),
            (Some(r), false) => Mode::Rate(r),
            (None, true) => Mode::FlatOut(usize::from(a.concurrency)),
            (None, false) => Mode::Rate(50.0),
        };
        let stop = match (a.tickets, a.duration) {
            (Some(_), Some(_)) => anyhow::bail!("--tickets and --duration exclude each other"),
            (Some(n), None) => Stop::Tickets(n),
            (None, Some(d)) => Stop::Duration(Duration::from_secs_f64(d)),
            (None, None) => Stop::Duration(Duration::from_secs(10)),
        };
        seed::check(a.tenants, a.analysts)?;
        Ok(Self {
            mode,
            stop,
            warmup: Duration::from_secs_f64(a.warmup),
            tenants: a.tenants,
            analysts: a.analysts,
        })
    }

    /// Measured tickets, when known in advance.
    pub fn planned(&self) -> Option<u64> {
        match (self.mode, self.stop) {
            (_, Stop::Tickets(n)) => Some(n),
            (Mode::Rate(r), Stop::Duration(d)) => Some(stats::planned(r, d)),
            (Mode::FlatOut(_), Stop::Duration(_)) => None,
        }
    }

    /// Warm-up tickets of a fixed-rate run.
    pub fn warmup_tickets(&self) -> u64 {
        match self.mode {
            Mode::Rate(r) if !self.warmup.is_zero() => stats::planned(r, self.warmup),
            _ => 0,
        }
    }

    /// One line describing it.
    pub fn describe(&self) -> String {
        let mode = match self.mode {
            Mode::Rate(r) => format!("open loop at {} tickets/s", stats::rate(Some(r))),
            Mode::FlatOut(c) => format!("flat out with {c} concurrent callers"),
        };
        let stop = match self.stop {
            Stop::Tickets(n) => format!("{n} tickets"),
            Stop::Duration(d) => format!("{:.0} s", d.as_secs_f64()),
        };
        let warm = if self.warmup.is_zero() {
            String::new()
        } else {
            format!(" after {:.0} s of warm-up", self.warmup.as_secs_f64())
        };
        format!(
            "{mode}, {stop}{warm}; {} tenants x {} analysts",
            self.tenants, self.analysts
        )
    }
}

/// The CreateTicket request of ticket `i`: a printing problem (technical
/// tier, routed on the printing skill), P3 or P4, no caller contact (so
/// notification emails nobody), no patient data.
pub fn ticket_request(i: u64) -> CreateTicketRequest {
    CreateTicketRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        facility_id: seed::FACILITIES[(i % 2) as usize].0.to_owned(),
        caller: Some(Caller {
            caller_id: format!("load-caller-{}", i % 50),
            name: "Load Caller".to_owned(),
            role: CallerRole::NonClinical as i32,
            email: String::new(),
            phone: String::new(),
        }),
        channel: Channel::Api as i32,
        application: "ehr".to_owned(),
        category: Category::Printing as i32,
        urgency: if i.is_multiple_of(2) {
            Urgency::Medium
        } else {
            Urgency::Low
        } as i32,
        impact: Impact::SingleUser as i32,
        patient_care_blocked: false,
        description: "Load test: the label printer at the nurses' station jams on every second \
            label."
            .to_owned(),
    }
}

/// Counters the progress line reads.
#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    ok: AtomicU64,
    errors: AtomicU64,
}

/// One send as recorded.
struct Sent {
    tenant: usize,
    intended: Instant,
    measured: bool,
    outcome: std::result::Result<(String, Instant), tonic::Code>,
}

/// Event arrivals by ticket id (first one counts).
#[derive(Default)]
struct Events {
    assigned: HashMap<String, Instant>,
    queued: HashSet<String>,
    billed: HashMap<String, Instant>,
}

/// The report of a run.
#[derive(Debug, Clone)]
pub struct Report {
    /// The plan as one line.
    pub plan: String,
    /// Tenant ids.
    pub tenants: Vec<String>,
    /// Measured tickets sent.
    pub sent: u64,
    /// Of them created.
    pub created: u64,
    /// Assigned (by the end of the drain).
    pub assigned: u64,
    /// Queued and never assigned.
    pub queued: u64,
    /// Billed.
    pub billed: u64,
    /// Notified (webhook received).
    pub notified: u64,
    /// Warm-up tickets sent (not measured).
    pub warmup_sent: u64,
    /// Errors by gRPC code (measured sends).
    pub errors: BTreeMap<String, u64>,
    /// Per stage: create, create->assigned, create->billed, create->notified.
    pub stages: Vec<(&'static str, Summary)>,
    /// Why notified is not measured, when it is not.
    pub notified_off: Option<String>,
    /// Seconds spent sending the measured part.
    pub send_secs: f64,
    /// Seconds waited after sending.
    pub drain_secs: f64,
    /// Capacity given to each analyst.
    pub capacity: u32,
    /// CPU used over the measured part and the drain.
    pub cpu: cpu::Usage,
    /// PostgreSQL's ceiling, unless skipped.
    pub pg: Option<limits::Limit>,
    /// JetStream's ceiling, unless skipped.
    pub jetstream: Option<limits::Limit>,
}

impl Report {
    fn stage(&self, name: &str) -> Option<&Summary> {
        self.stages.iter().find(|(n, _)| *n == name).map(|(_, s)| s)
    }

    /// Tickets per second through the whole pipeline: the slower of the
    /// assigned and billed stages.
    pub fn pipeline_rate(&self) -> Option<f64> {
        let a = self.stage(STAGE_ASSIGNED)?.throughput?;
        let b = self.stage(STAGE_BILLED)?.throughput?;
        Some(a.min(b))
    }

    /// Creates per second intake answered.
    pub fn create_rate(&self) -> Option<f64> {
        self.stage(STAGE_CREATE)?.throughput
    }

    /// The text report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("wardctl load: {}\n", self.plan));
        out.push_str(&format!(
            "sent {} tickets in {:.1} s (+{} warm-up), drained {:.1} s: created {}, assigned {}, queued {}, billed {}, notified {}\n\n",
            self.sent,
            self.send_secs,
            self.warmup_sent,
            self.drain_secs,
            self.created,
            self.assigned,
            self.queued,
            self.billed,
            match &self.notified_off {
                Some(_) => "-".to_owned(),
                None => self.notified.to_string(),
            }
        ));
        let mut t = Table::new(&stats::HEADERS);
        for (name, s) in &self.stages {
            t.row(s.row(name));
        }
        out.push_str(&t.render());
        out.push_str("\nlatency from the intended send time; per second = completions / (last completion - first intended send)\n");
        if let Some(why) = &self.notified_off {
            out.push_str(&format!("notified: not measured ({why})\n"));
        }
        if self.errors.is_empty() {
            out.push_str("errors: none\n");
        } else {
            let list: Vec<String> = self
                .errors
                .iter()
                .map(|(c, n)| format!("{c} {n}"))
                .collect();
            out.push_str(&format!("errors: {}\n", list.join(", ")));
        }
        out.push_str(&format!(
            "queued at the end: {} (each analyst could hold {} tickets)\n",
            self.queued, self.capacity
        ));

        out.push_str("\nCPU over the measured run and drain (ms per created ticket)\n");
        let mut c = Table::new(&["process", "cpu ms", "ms/ticket"]);
        if let Some((busy, share)) = self.cpu.machine {
            c.row([
                format!(
                    "machine ({} cores, {:.0}% busy)",
                    self.cpu.cores,
                    share * 100.0
                ),
                format!("{:.0}", busy as f64 * cpu::MS_PER_JIFFY),
                opt(cpu::ms_per_ticket(busy, self.created), 2),
            ]);
        }
        for (g, j) in &self.cpu.groups {
            c.row([
                g.clone(),
                format!("{:.0}", *j as f64 * cpu::MS_PER_JIFFY),
                opt(cpu::ms_per_ticket(*j, self.created), 2),
            ]);
        }
        out.push_str(&c.render());
        out.push('\n');

        if self.pg.is_some() || self.jetstream.is_some() {
            out.push_str("\nmachine limits (same run)\n");
            let mut l = Table::new(&["limit", "per second", "how"]).max_cell(60);
            if let Some(pg) = &self.pg {
                l.row([
                    "PostgreSQL ticket+outbox rows".to_owned(),
                    stats::rate(pg.per_second),
                    pg.note.clone(),
                ]);
            }
            if let Some(js) = &self.jetstream {
                l.row([
                    "JetStream publishes (acked)".to_owned(),
                    stats::rate(js.per_second),
                    js.note.clone(),
                ]);
            }
            out.push_str(&l.render());
            out.push('\n');
            let pg = self.pg.as_ref().and_then(|l| l.per_second);
            let js = self.jetstream.as_ref().and_then(|l| l.per_second);
            out.push_str(&format!(
                "pipeline {} tickets/s = {} of the PostgreSQL limit, {} of the JetStream limit\n",
                stats::rate(self.pipeline_rate()),
                stats::percent(self.pipeline_rate(), pg),
                stats::percent(self.pipeline_rate(), js),
            ));
            out.push_str(&format!(
                "intake   {} creates/s = {} of the PostgreSQL limit, {} of the JetStream limit\n",
                stats::rate(self.create_rate()),
                stats::percent(self.create_rate(), pg),
                stats::percent(self.create_rate(), js),
            ));
        }
        out
    }

    /// The JSON report.
    pub fn to_json(&self) -> Value {
        let stages: serde_json::Map<String, Value> = self
            .stages
            .iter()
            .map(|(n, s)| ((*n).to_owned(), s.to_json()))
            .collect();
        let limit = |l: &Option<limits::Limit>| {
            l.as_ref()
                .map(|l| json!({"per_second": l.per_second.map(|v| v.round()), "how": l.note}))
        };
        let cpu_ms = |j: u64| j as f64 * cpu::MS_PER_JIFFY;
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        let pg = self.pg.as_ref().and_then(|l| l.per_second);
        let js = self.jetstream.as_ref().and_then(|l| l.per_second);
        json!({
            "plan": self.plan,
            "tenants": self.tenants,
            "sent": self.sent,
            "created": self.created,
            "assigned": self.assigned,
            "queued": self.queued,
            "billed": self.billed,
            "notified": self.notified_off.is_none().then_some(self.notified),
            "notified_off": self.notified_off,
            "warmup_sent": self.warmup_sent,
            "errors": self.errors,
            "send_secs": self.send_secs,
            "drain_secs": self.drain_secs,
            "analyst_capacity": self.capacity,
            "stages": stages,
            "cpu": {
                "cores": self.cpu.cores,
                "machine_ms": self.cpu.machine.map(|(b, _)| cpu_ms(b)),
                "machine_busy_share": self.cpu.machine.map(|(_, s)| s),
                "machine_ms_per_ticket": self.cpu.machine.and_then(|(b, _)| cpu::ms_per_ticket(b, self.created)),
                "processes": self.cpu.groups.iter().map(|(g, j)| (g.clone(), json!({
                    "ms": cpu_ms(*j),
                    "ms_per_ticket": cpu::ms_per_ticket(*j, self.created),
                }))).collect::<serde_json::Map<_, _>>(),
            },
            "limits": {
                "postgres_rows_per_second": limit(&self.pg),
                "jetstream_messages_per_second": limit(&self.jetstream),
            },
            "ratios": {
                "pipeline_per_second": self.pipeline_rate(),
                "pipeline_vs_postgres": ratio(self.pipeline_rate(), pg),
                "pipeline_vs_jetstream": ratio(self.pipeline_rate(), js),
                "creates_per_second": self.create_rate(),
                "creates_vs_postgres": ratio(self.create_rate(), pg),
                "creates_vs_jetstream": ratio(self.create_rate(), js),
            },
        })
    }
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
}

/// Stage names, as printed and as JSON keys.
pub const STAGE_CREATE: &str = "create (RPC)";
/// Created to assigned.
pub const STAGE_ASSIGNED: &str = "create->assigned";
/// Created to billed.
pub const STAGE_BILLED: &str = "create->billed";
/// Created to notified.
pub const STAGE_NOTIFIED: &str = "create->notified";

/// Runs `wardctl load` and prints the report (table, or JSON with `--json`).
pub async fn run(ctx: &Context, args: &LoadArgs) -> Result<()> {
    let report = measure(ctx, args).await?;
    if ctx.json {
        print_json(&report.to_json());
    } else {
        print!("{}", report.render());
    }
    Ok(())
}

/// Seeds, sends, drains and measures; progress goes to stderr.
pub async fn measure(ctx: &Context, args: &LoadArgs) -> Result<Report> {
    let plan = Plan::of(args)?;
    let token = ctx.admin_token()?;
    let run = seed::run_id(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    let tenants = seed::tenant_ids(&run, plan.tenants);
    eprintln!("wardctl load {run}: {}", plan.describe());
    if limits::autovacuum_off(&args.pg_url).await {
        eprintln!(
            "note: PostgreSQL at {} runs with autovacuum off: rows the services update are never cleaned up, so every run is slower than the last and these numbers are not a deployment's (ALTER SYSTEM SET autovacuum = on; SELECT pg_reload_conf();)",
            limits::redact(&args.pg_url)
        );
    }

    // 1. seed
    let mut intake = Vec::new();
    for _ in 0..CONNECTIONS {
        let channel = grpc::connect(&ctx.intake_url, ctx.timeout).await?;
        intake.push(Session::new(channel, &token, None)?);
    }
    let routing = seed::connect(&ctx.routing_url, ctx.timeout, &token)
        .await
        .map_err(|e| anyhow::anyhow!("routing at {}: {e}", ctx.routing_url))?;
    let billing = seed::connect(&ctx.billing_url, ctx.timeout, &token)
        .await
        .map_err(|e| anyhow::anyhow!("billing at {}: {e}", ctx.billing_url))?;
    let per_tenant = plan
        .planned()
        .map(|n| (n + plan.warmup_tickets()).div_ceil(u64::from(plan.tenants)));
    let capacity = seed::capacity(per_tenant, plan.analysts);
    if let Some(t) = per_tenant
        && t > u64::from(capacity) * u64::from(plan.analysts)
    {
        eprintln!(
            "note: {t} tickets per tenant exceed {} analysts x {capacity} (routing's most per analyst): the rest will queue; raise --analysts or --tenants",
            plan.analysts
        );
    }
    seed::tenants(&intake[0], &run, &tenants).await?;
    seed::analysts(&routing, &tenants, plan.analysts, capacity).await?;
    seed::slow_acknowledgements(&routing, &tenants).await?;
    seed::contracts(&billing, &tenants, Duration::from_secs(30)).await?;
    let receiver = hooks::Receiver::start().await?;
    let mut hooks: Vec<seed::Hook> = Vec::new();
    let mut notification = None;
    let notified_off = match seed::connect(&ctx.notification_url, ctx.timeout, &token).await {
        Err(e) => Some(format!("notification at {}: {e}", ctx.notification_url)),
        Ok(n) => {
            let made = seed::webhooks(&n, &tenants, |t| receiver.url(t)).await?;
            notification = Some(n);
            match made {
                Ok(h) => {
                    hooks = h;
                    None
                }
                Err(why) => Some(format!(
                    "notification refused the http:// webhook ({why}); start it with NOTIFICATION_WEBHOOK_ALLOW_HTTP=true"
                )),
            }
        }
    };
    eprintln!(
        "seeded {} tenants, {} analysts each (capacity {capacity}), a contract each, {}",
        plan.tenants,
        plan.analysts,
        if notified_off.is_none() {
            format!("webhooks to {}", receiver.addr)
        } else {
            "no webhooks".to_owned()
        }
    );
    if notified_off.is_none()
        && let Some(rate) = match plan.mode {
            Mode::Rate(r) => Some(r / f64::from(plan.tenants)),
            Mode::FlatOut(_) => None,
        }
        && rate > 10.0
    {
        eprintln!(
            "note: {:.0} webhook messages/s per tenant; notification's per-tenant rate (NOTIFICATION_TENANT_RATE_PER_SEC, default 10) may hold them back: create->notified then measures that limit",
            rate
        );
    }

    // 2. events
    let events: Arc<Mutex<Events>> = Arc::default();
    let nats = async_nats::ConnectOptions::new()
        .name("wardctl-load")
        .connect(&ctx.nats_url)
        .await
        .with_context(|| format!("cannot connect to NATS at {}", ctx.nats_url))?;
    let mut watchers = Vec::new();
    for t in &tenants {
        let mut sub = nats
            .subscribe(format!("wardline.events.{t}.>"))
            .await
            .with_context(|| format!("subscribing to {t}'s events"))?;
        let events = events.clone();
        watchers.push(tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                let at = Instant::now();
                let Ok(env) = EventEnvelope::decode(m.payload.as_ref()) else {
                    continue;
                };
                let Ok(mut e) = events.lock() else { return };
                match env.payload {
                    Some(Payload::TicketAssigned(p)) => {
                        e.assigned.entry(p.ticket_id).or_insert(at);
                    }
                    Some(Payload::TicketQueued(p)) => {
                        e.queued.insert(p.ticket_id);
                    }
                    Some(Payload::CallMetered(p)) => {
                        e.billed.entry(p.ticket_id).or_insert(at);
                    }
                    _ => {}
                }
            }
        }));
    }
    nats.flush().await.context("NATS flush")?;

    // 3. send
    let counters = Arc::new(Counters::default());
    let sent: Arc<Mutex<Vec<Sent>>> = Arc::default();
    let sessions: Arc<Vec<Vec<Session>>> = Arc::new(
        intake
            .iter()
            .map(|s| {
                tenants
                    .iter()
                    .map(|t| s.for_tenant(Some(t)))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?,
    );
    let started = Instant::now();
    let measured_from = started + plan.warmup;
    let stop_progress = tokio_util::sync::CancellationToken::new();
    let progress = {
        let (counters, events, stop, notified) = (
            counters.clone(),
            events.clone(),
            stop_progress.clone(),
            receiver.arrivals.clone(),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let (a, q, b) = events
                    .lock()
                    .map(|e| (e.assigned.len(), e.queued.len(), e.billed.len()))
                    .unwrap_or_default();
                let n = notified.lock().map(|n| n.len()).unwrap_or_default();
                eprintln!(
                    "[{:>4.0}s] sent {} ok {} errors {} assigned {a} queued {q} billed {b} notified {n}",
                    started.elapsed().as_secs_f64(),
                    counters.sent.load(Ordering::Relaxed),
                    counters.ok.load(Ordering::Relaxed),
                    counters.errors.load(Ordering::Relaxed),
                );
            }
        })
    };
    let cpu_before = Arc::new(Mutex::new(None::<cpu::Sample>));
    if plan.warmup.is_zero() {
        *cpu_before.lock().unwrap_or_else(|e| e.into_inner()) = Some(cpu::sample());
    }
    let send = {
        let (sessions, counters, sent) = (sessions.clone(), counters.clone(), sent.clone());
        let tenants_n = u64::from(plan.tenants);
        move |i: u64, intended: Instant| {
            let (sessions, counters, sent) = (sessions.clone(), counters.clone(), sent.clone());
            let tenant = (i % tenants_n) as usize;
            let measured = intended >= measured_from;
            async move {
                let session = &sessions[(i as usize) % sessions.len()][tenant];
                counters.sent.fetch_add(1, Ordering::Relaxed);
                let outcome = match session.tickets().create_ticket(ticket_request(i)).await {
                    Ok(r) => {
                        counters.ok.fetch_add(1, Ordering::Relaxed);
                        Ok((r.into_inner().ticket_id, Instant::now()))
                    }
                    Err(s) => {
                        counters.errors.fetch_add(1, Ordering::Relaxed);
                        Err(s.code())
                    }
                };
                if let Ok(mut v) = sent.lock() {
                    v.push(Sent {
                        tenant,
                        intended,
                        measured,
                        outcome,
                    });
                }
            }
        }
    };
    match plan.mode {
        Mode::Rate(rate) => {
            let total = plan.warmup_tickets()
                + match plan.stop {
                    Stop::Tickets(n) => n,
                    Stop::Duration(d) => stats::planned(rate, d),
                };
            let limit = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
            let mut tasks = tokio::task::JoinSet::new();
            let mut cpu_taken = !plan.warmup.is_zero();
            for i in 0..total {
                let intended = started + stats::intended_offset(i, rate);
                tokio::time::sleep_until(intended.into()).await;
                if cpu_taken && intended >= measured_from {
                    *cpu_before.lock().unwrap_or_else(|e| e.into_inner()) = Some(cpu::sample());
                    cpu_taken = false;
                }
                let permit = limit.clone().acquire_owned().await?;
                let fut = send(i, intended);
                tasks.spawn(async move {
                    fut.await;
                    drop(permit);
                });
            }
            while tasks.join_next().await.is_some() {}
        }
        Mode::FlatOut(concurrency) => {
            let next = Arc::new(AtomicU64::new(0));
            let measured_sent = Arc::new(AtomicU64::new(0));
            let mut tasks = tokio::task::JoinSet::new();
            if !plan.warmup.is_zero() {
                let cpu_before = cpu_before.clone();
                tokio::spawn(async move {
                    tokio::time::sleep_until(measured_from.into()).await;
                    *cpu_before.lock().unwrap_or_else(|e| e.into_inner()) = Some(cpu::sample());
                });
            }
            for _ in 0..concurrency {
                let (next, measured_sent, send) =
                    (next.clone(), measured_sent.clone(), send.clone());
                let stop = plan.stop;
                tasks.spawn(async move {
                    loop {
                        let now = Instant::now();
                        let done = match stop {
                            Stop::Tickets(n) => {
                                now >= measured_from
                                    && measured_sent.fetch_add(1, Ordering::Relaxed) >= n
                            }
                            Stop::Duration(d) => now >= measured_from + d,
                        };
                        if done {
                            return;
                        }
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        send(i, now).await;
                    }
                });
            }
            while tasks.join_next().await.is_some() {}
        }
    }
    let sending_ended = Instant::now();
    let send_secs = sending_ended
        .saturating_duration_since(measured_from)
        .as_secs_f64();

    // 4. drain
    let measured: Vec<(String, usize, Instant, Instant)> = sent
        .lock()
        .map(|v| {
            v.iter()
                .filter(|s| s.measured)
                .filter_map(|s| {
                    s.outcome
                        .as_ref()
                        .ok()
                        .map(|(id, at)| (id.clone(), s.tenant, s.intended, *at))
                })
                .collect()
        })
        .unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(args.drain_secs);
    loop {
        let done = {
            let e = events.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            let n = receiver
                .arrivals
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?;
            measured.iter().all(|(id, ..)| {
                (e.assigned.contains_key(id) || e.queued.contains(id))
                    && e.billed.contains_key(id)
                    && (notified_off.is_some()
                        || !e.assigned.contains_key(id)
                        || n.contains_key(id))
            })
        };
        if done || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drain_secs = sending_ended.elapsed().as_secs_f64();
    let cpu_after = cpu::sample();
    stop_progress.cancel();
    let _ = progress.await;
    for w in &watchers {
        w.abort();
    }
    let cpu_usage = cpu_before
        .lock()
        .ok()
        .and_then(|b| b.clone())
        .map(|b| cpu::between(&b, &cpu_after))
        .unwrap_or_default();

    // 5. report
    let (all_sent, warmup_sent, errors) = {
        let v = sent.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        let mut errors: BTreeMap<String, u64> = BTreeMap::new();
        for s in v.iter().filter(|s| s.measured) {
            if let Err(code) = &s.outcome {
                *errors.entry(code_name(*code).to_owned()).or_default() += 1;
            }
        }
        (
            v.iter().filter(|s| s.measured).count() as u64,
            v.iter().filter(|s| !s.measured).count() as u64,
            errors,
        )
    };
    let first = measured.iter().map(|m| m.2).min().unwrap_or(measured_from);
    let report = {
        let (e, n) = (
            events.lock().map_err(|_| anyhow::anyhow!("poisoned"))?,
            receiver
                .arrivals
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?,
        );
        let stage = |at: &dyn Fn(&str, Instant) -> Option<Instant>| {
            let mut h = stats::histogram();
            let mut last: Option<Instant> = None;
            for (id, _, intended, created) in &measured {
                if let Some(t) = at(id, *created) {
                    stats::record(&mut h, t.saturating_duration_since(*intended));
                    last = Some(last.map_or(t, |l| l.max(t)));
                }
            }
            Summary::of(&h, last.map(|l| l.saturating_duration_since(first)))
        };
        let mut stages = vec![
            (STAGE_CREATE, stage(&|_, created| Some(created))),
            (STAGE_ASSIGNED, stage(&|id, _| e.assigned.get(id).copied())),
            (STAGE_BILLED, stage(&|id, _| e.billed.get(id).copied())),
        ];
        if notified_off.is_none() {
            stages.push((STAGE_NOTIFIED, stage(&|id, _| n.get(id).copied())));
        }
        let count = |f: &dyn Fn(&str) -> bool| measured.iter().filter(|m| f(&m.0)).count() as u64;
        Report {
            plan: plan.describe(),
            tenants: tenants.clone(),
            sent: all_sent,
            created: measured.len() as u64,
            assigned: count(&|id| e.assigned.contains_key(id)),
            queued: count(&|id| e.queued.contains(id) && !e.assigned.contains_key(id)),
            billed: count(&|id| e.billed.contains_key(id)),
            notified: count(&|id| n.contains_key(id)),
            warmup_sent,
            errors,
            stages,
            notified_off,
            send_secs,
            drain_secs,
            capacity,
            cpu: cpu_usage,
            pg: None,
            jetstream: None,
        }
    };
    let _ = nats.drain().await;
    if let Some(n) = &notification
        && !hooks.is_empty()
    {
        match seed::remove_webhooks(n, &hooks).await {
            Ok(cancelled) => eprintln!(
                "removed the run's {} webhooks ({cancelled} deliveries still pending for them cancelled)",
                hooks.len()
            ),
            Err(e) => eprintln!(
                "warning: the run's webhooks are still registered ({}); remove them with `wardctl --tenant <tenant> webhook delete <id>`",
                crate::error_text(&e)
            ),
        }
    }

    // Limits last, so they do not disturb the pipeline's measurement.
    let mut report = report;
    if !args.skip_limits {
        let d = Duration::from_secs_f64(args.limit_secs);
        eprintln!(
            "measuring limits: PostgreSQL at {} for {:.0} s",
            limits::redact(&args.pg_url),
            d.as_secs_f64()
        );
        report.pg = Some(limits::postgres(&args.pg_url, d).await);
        eprintln!(
            "measuring limits: JetStream at {} for {:.0} s",
            ctx.nats_url,
            d.as_secs_f64()
        );
        report.jetstream = Some(limits::jetstream(&ctx.nats_url, d).await);
    }
    Ok(report)
}
