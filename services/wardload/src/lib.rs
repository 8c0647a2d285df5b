//! `wardline-load`: drives CreateTicket through the whole pipeline and
//! reports latency and throughput per stage, what each ticket costs (CPU
//! per process, statements and commits per database), and the machine's
//! PostgreSQL and JetStream ceilings measured in the same run.
//!
//! 1. Seed ([`seed`]): fresh tenants, analysts with capacity for the
//!    planned tickets, a contract per tenant, a webhook per tenant to the
//!    receiver this command runs on 127.0.0.1 ([`hooks`]).
//! 2. Watch ([`watch`]): core NATS subscriptions to
//!    `wardline.events.<tenant>.>` before sending: `ticket.assigned` and
//!    `ticket.queued` from routing, `call.metered` from billing. Arrival
//!    instants are kept per ticket id and joined with the sends at the end.
//! 3. Send ([`send`]): open loop at `--rate` (latency from the intended
//!    send instant, so stalls are not hidden by coordinated omission), or
//!    `--flat-out` with `--concurrency` callers. Tickets due in the first
//!    `--warmup` flow but are not measured.
//! 4. Drain: wait (up to `--drain-secs`) until every measured ticket is
//!    assigned or queued, billed, and notified.
//! 5. Report ([`report`]): percentiles per stage, errors by gRPC code, CPU
//!    per process ([`cpu`]), statements and commits per ticket per
//!    database ([`pgstats`]), then the limits ([`limits`]) and the
//!    pipeline's throughput as a share of each.

pub mod cpu;
pub mod hooks;
pub mod limits;
pub mod pgstats;
pub mod plan;
pub mod report;
pub mod seed;
pub mod send;
pub mod stats;
pub mod watch;

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::Parser;
use secrecy::SecretString;
use wardctl::grpc::{self, Session};
use wardline_kit::auth::signing::{Claims, Signer};
use wardline_kit::auth::{ALL_TENANTS, Role};

pub use plan::Plan;
pub use report::{Report, STAGE_ASSIGNED, STAGE_BILLED, STAGE_CREATE, STAGE_NOTIFIED};

/// Default PostgreSQL of the limit probe and the statistics.
pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The command line. The service addresses and the secret are read from
/// the same variables as wardctl's.
#[derive(Debug, Clone, Parser)]
#[command(name = "wardline-load", version, about, long_about = None)]
pub struct Args {
    /// Intake's gRPC endpoint.
    #[arg(long, env = "WARDCTL_INTAKE_URL", default_value = wardctl::cli::DEFAULT_INTAKE_URL)]
    pub intake_url: String,
    /// Routing's gRPC endpoint.
    #[arg(long, env = "WARDCTL_ROUTING_URL", default_value = wardctl::cli::DEFAULT_ROUTING_URL)]
    pub routing_url: String,
    /// Billing's gRPC endpoint.
    #[arg(long, env = "WARDCTL_BILLING_URL", default_value = wardctl::cli::DEFAULT_BILLING_URL)]
    pub billing_url: String,
    /// Notification's gRPC endpoint.
    #[arg(long, env = "WARDCTL_NOTIFICATION_URL", default_value = wardctl::cli::DEFAULT_NOTIFICATION_URL)]
    pub notification_url: String,
    /// NATS server the services publish on.
    #[arg(long, env = "NATS_URL", default_value = wardctl::cli::DEFAULT_NATS_URL)]
    pub nats_url: String,
    /// The development issuer's key (`wardctl dev-issuer init`) that signs
    /// the load's tokens; the services verify its JWKS.
    #[arg(long, env = "WARDLINE_DEV_ISSUER_KEY")]
    pub issuer_key: Option<std::path::PathBuf>,
    /// Or an HS256 secret (services in development with WARDLINE_JWT_SECRET).
    #[arg(long, env = "WARDLINE_JWT_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// Seconds to wait for a connection and for each call.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Fixed arrival rate in tickets per second (open loop; 50 unless --flat-out).
    #[arg(long, value_parser = plan::positive)]
    pub rate: Option<f64>,
    /// Send as fast as --concurrency callers can, each waiting for its answer.
    #[arg(long, conflicts_with = "rate")]
    pub flat_out: bool,
    /// Callers of --flat-out.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub concurrency: u16,
    /// Seconds to send (measured part; default 10 unless --tickets).
    #[arg(long, value_parser = plan::positive, conflicts_with = "tickets")]
    pub duration: Option<f64>,
    /// Tickets to send (measured part).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub tickets: Option<u64>,
    /// Fresh tenants the tickets are spread over (round robin).
    #[arg(long, default_value_t = 10)]
    pub tenants: u32,
    /// Analysts per tenant (capacity sized so the planned tickets need not queue).
    #[arg(long, default_value_t = 5)]
    pub analysts: u32,
    /// Seconds of sending before measuring (those tickets flow but are not counted).
    #[arg(long, default_value_t = 0.0, value_parser = plan::non_negative)]
    pub warmup: f64,
    /// Seconds to wait after sending for assignments, billing and notifications.
    #[arg(long, default_value_t = 60)]
    pub drain_secs: u64,
    /// PostgreSQL the limit probe writes to (a scratch schema, dropped after)
    /// and whose statistics (pg_stat_database, pg_stat_statements) are read.
    #[arg(long, env = "WARDCTL_PG_URL", default_value = DEFAULT_PG_URL, hide_env_values = true)]
    pub pg_url: String,
    /// Seconds each limit probe runs.
    #[arg(long, default_value_t = 3.0, value_parser = plan::positive)]
    pub limit_secs: f64,
    /// Do not measure the PostgreSQL and JetStream limits.
    #[arg(long)]
    pub skip_limits: bool,
}

/// Runs and prints the report (a table, or JSON with `--json`).
pub async fn run(args: &Args) -> Result<()> {
    let report = measure(args).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        print!("{}", report.render());
    }
    Ok(())
}

/// The connections a run uses, as a vendor admin of every tenant.
pub struct Clients {
    /// Intake, spread over a few connections.
    pub intake: Vec<Session>,
    /// Routing.
    pub routing: Session,
    /// Billing.
    pub billing: Session,
    /// Notification, when it answers.
    pub notification: Option<Session>,
}

async fn clients(args: &Args, token: &SecretString) -> Result<Clients> {
    let timeout = Duration::from_secs(args.timeout);
    let at = |url: &str| {
        let url = url.to_owned();
        async move {
            let channel = grpc::connect(&url, timeout).await?;
            Session::new(channel, token, None)
        }
    };
    let mut intake = Vec::new();
    for _ in 0..send::CONNECTIONS {
        intake.push(at(&args.intake_url).await?);
    }
    Ok(Clients {
        intake,
        routing: at(&args.routing_url).await.context("routing")?,
        billing: at(&args.billing_url).await.context("billing")?,
        notification: at(&args.notification_url).await.ok(),
    })
}

/// Seeds, sends, drains and measures; progress goes to stderr.
pub async fn measure(args: &Args) -> Result<Report> {
    let plan = Plan::of(args)?;
    let token = Signer::for_development(
        args.issuer_key.as_deref(),
        args.secret.clone().map(SecretString::from).as_ref(),
    )?
    .sign(&Claims::new(
        "wardline-load",
        ALL_TENANTS,
        &[Role::VendorAdmin],
        Duration::from_secs(3600),
    ))
    .context("cannot mint a token")?;
    let clients = clients(args, &SecretString::from(token)).await?;
    let run = seed::run_id(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    eprintln!("wardline-load {run}: {}", plan.describe());
    if limits::autovacuum_off(&args.pg_url).await {
        eprintln!(
            "note: PostgreSQL at {} runs with autovacuum off: every run is slower than the last and these numbers are not a deployment's (ALTER SYSTEM SET autovacuum = on; SELECT pg_reload_conf();)",
            limits::redact(&args.pg_url)
        );
    }
    let seeded = seed::everything(&clients, &plan, &run).await?;
    let watch = watch::Watch::start(&args.nats_url, &seeded.tenants).await?;
    let pg_before = pgstats::sample(&args.pg_url).await;
    let sent = send::send(&clients.intake, &seeded, &plan, &watch, &seeded.receiver).await?;
    let drained = drain(&sent, &watch, &seeded, Duration::from_secs(args.drain_secs)).await;
    let cpu_after = cpu::sample();
    let pg = pgstats::since(&args.pg_url, pg_before).await;
    watch.stop().await;
    let mut report = report::collect(&plan, &seeded, &sent, &watch, drained, cpu_after, pg);
    seed::cleanup(&clients, &seeded).await;
    if !args.skip_limits {
        let d = Duration::from_secs_f64(args.limit_secs);
        eprintln!(
            "measuring limits: PostgreSQL and JetStream for {:.0} s each",
            d.as_secs_f64()
        );
        report.pg = Some(limits::postgres(&args.pg_url, d).await);
        report.jetstream = Some(limits::jetstream(&args.nats_url, d).await);
    }
    Ok(report)
}

/// Waits until every measured ticket is assigned or queued, billed, and
/// (when webhooks are on) notified, or `wait` passes. Returns the seconds
/// from the end of sending.
async fn drain(
    sent: &send::Sent,
    watch: &watch::Watch,
    seeded: &seed::Seeded,
    wait: Duration,
) -> f64 {
    let deadline = Instant::now() + wait;
    let notify = seeded.notified_off.is_none();
    loop {
        let done = sent
            .measured()
            .all(|(id, ..)| watch.finished(id, notify.then_some(&seeded.receiver)));
        if done || Instant::now() >= deadline {
            return sent.ended.elapsed().as_secs_f64();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
