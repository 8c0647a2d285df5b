//! Sending: open loop at a fixed rate (request *i* is due at start + i/rate
//! whatever happened before, and its latency counts from then), or flat
//! out with a number of callers each waiting for its answer. A line per
//! second on stderr; the CPU sample of the measured part is taken when it
//! starts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use wardctl::grpc::Session;

use crate::cpu;
use crate::hooks::Receiver;
use crate::plan::{Mode, Plan, Stop, ticket_request};
use crate::seed::Seeded;
use crate::stats;
use crate::watch::Watch;

/// Requests in flight at most (open loop); beyond it the sender waits,
/// which shows as latency since it is measured from the intended time.
const MAX_IN_FLIGHT: usize = 10_000;
/// gRPC connections to intake the requests are spread over.
pub const CONNECTIONS: usize = 4;

/// One send as recorded.
#[derive(Debug, Clone)]
pub struct Record {
    /// Index of the tenant.
    pub tenant: usize,
    /// When it was due.
    pub intended: Instant,
    /// Inside the measured part (not warm-up).
    pub measured: bool,
    /// The ticket id and when intake answered, or the failure's code.
    pub outcome: std::result::Result<(String, Instant), tonic::Code>,
}

/// Every send of a run.
#[derive(Debug)]
pub struct Sent {
    /// The sends, in completion order.
    pub records: Vec<Record>,
    /// Start of the measured part.
    pub measured_from: Instant,
    /// When the last send completed.
    pub ended: Instant,
    /// CPU at the start of the measured part.
    pub cpu_before: Option<cpu::Sample>,
}

impl Sent {
    /// `(ticket_id, intended, created)` of every measured ticket created.
    pub fn measured(&self) -> impl Iterator<Item = (&str, Instant, Instant)> {
        self.records.iter().filter(|r| r.measured).filter_map(|r| {
            r.outcome
                .as_ref()
                .ok()
                .map(|(id, at)| (id.as_str(), r.intended, *at))
        })
    }

    /// Seconds spent sending the measured part.
    pub fn send_secs(&self) -> f64 {
        self.ended
            .saturating_duration_since(self.measured_from)
            .as_secs_f64()
    }
}

/// What the concurrent senders share.
#[derive(Clone)]
struct Shared {
    sessions: Arc<Vec<Vec<Session>>>,
    records: Arc<Mutex<Vec<Record>>>,
    sent: Arc<AtomicU64>,
    ok: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    measured_from: Instant,
    cpu_before: Arc<Mutex<Option<cpu::Sample>>>,
}

impl Shared {
    /// Sends ticket `i`, due at `intended`, and records the outcome.
    async fn one(&self, i: u64, intended: Instant) {
        let tenants = self.sessions[0].len();
        let tenant = (i % tenants as u64) as usize;
        let session = &self.sessions[(i as usize) % self.sessions.len()][tenant];
        self.sent.fetch_add(1, Ordering::Relaxed);
        let outcome = match session.tickets().create_ticket(ticket_request(i)).await {
            Ok(r) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                Ok((r.into_inner().ticket_id, Instant::now()))
            }
            Err(s) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                Err(s.code())
            }
        };
        if let Ok(mut v) = self.records.lock() {
            v.push(Record {
                tenant,
                intended,
                measured: intended >= self.measured_from,
                outcome,
            });
        }
    }

    /// Takes the CPU sample the measured part starts from (once).
    fn start_measuring(&self) {
        if let Ok(mut b) = self.cpu_before.lock()
            && b.is_none()
        {
            *b = Some(cpu::sample());
        }
    }
}

/// Sends the plan's tickets over `intake` (one session per connection and
/// tenant), printing progress each second.
pub async fn send(
    intake: &[Session],
    seeded: &Seeded,
    plan: &Plan,
    watch: &Watch,
    receiver: &Receiver,
) -> Result<Sent> {
    let sessions = intake
        .iter()
        .map(|s| {
            seeded
                .tenants
                .iter()
                .map(|t| s.for_tenant(Some(t)))
                .collect()
        })
        .collect::<Result<Vec<Vec<Session>>>>()?;
    let started = Instant::now();
    let shared = Shared {
        sessions: Arc::new(sessions),
        records: Arc::default(),
        sent: Arc::default(),
        ok: Arc::default(),
        errors: Arc::default(),
        measured_from: started + plan.warmup,
        cpu_before: Arc::default(),
    };
    if plan.warmup.is_zero() {
        shared.start_measuring();
    }
    let stop = CancellationToken::new();
    let progress = tokio::spawn(progress(
        shared.clone(),
        watch.counts_fn(),
        receiver.counter(),
        started,
        stop.clone(),
    ));
    match plan.mode {
        Mode::Rate(rate) => at_rate(&shared, plan, rate, started).await?,
        Mode::FlatOut(callers) => flat_out(&shared, plan.stop, callers).await,
    }
    stop.cancel();
    let _ = progress.await;
    let records = std::mem::take(&mut *shared.records.lock().unwrap_or_else(|e| e.into_inner()));
    let cpu_before = shared.cpu_before.lock().ok().and_then(|b| b.clone());
    Ok(Sent {
        records,
        measured_from: shared.measured_from,
        ended: Instant::now(),
        cpu_before,
    })
}

/// Open loop: ticket `i` goes out at `started + i / rate`.
async fn at_rate(shared: &Shared, plan: &Plan, rate: f64, started: Instant) -> Result<()> {
    let total = plan.warmup_tickets()
        + match plan.stop {
            Stop::Tickets(n) => n,
            Stop::Duration(d) => stats::planned(rate, d),
        };
    let limit = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let intended = started + stats::intended_offset(i, rate);
        tokio::time::sleep_until(intended.into()).await;
        if intended >= shared.measured_from {
            shared.start_measuring();
        }
        let permit = limit.clone().acquire_owned().await?;
        let shared = shared.clone();
        tasks.spawn(async move {
            shared.one(i, intended).await;
            drop(permit);
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Closed loop: `callers` senders, each waiting for its answer.
async fn flat_out(shared: &Shared, stop: Stop, callers: usize) {
    let next = Arc::new(AtomicU64::new(0));
    let measured_sent = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..callers {
        let (shared, next, measured_sent) = (shared.clone(), next.clone(), measured_sent.clone());
        tasks.spawn(async move {
            loop {
                let now = Instant::now();
                if now >= shared.measured_from {
                    shared.start_measuring();
                }
                let done = match stop {
                    Stop::Tickets(n) => {
                        now >= shared.measured_from
                            && measured_sent.fetch_add(1, Ordering::Relaxed) >= n
                    }
                    Stop::Duration(d) => now >= shared.measured_from + d,
                };
                if done {
                    return;
                }
                shared.one(next.fetch_add(1, Ordering::Relaxed), now).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// A line a second: sent, answered, and what arrived downstream.
async fn progress(
    shared: Shared,
    events: impl Fn() -> (usize, usize, usize),
    notified: impl Fn() -> usize,
    started: Instant,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (a, q, b) = events();
        eprintln!(
            "[{:>4.0}s] sent {} ok {} errors {} assigned {a} queued {q} billed {b} notified {}",
            started.elapsed().as_secs_f64(),
            shared.sent.load(Ordering::Relaxed),
            shared.ok.load(Ordering::Relaxed),
            shared.errors.load(Ordering::Relaxed),
            notified()
        );
    }
}
