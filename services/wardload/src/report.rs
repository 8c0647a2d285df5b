//! The report of a run: counts, latency per stage, errors, CPU per
//! process, statements and commits per ticket per database, and the
//! machine's limits with the pipeline's share of each; as text or JSON.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{Value, json};
use wardctl::grpc::code_name;
use wardctl::table::Table;

use crate::plan::Plan;
use crate::seed::Seeded;
use crate::send::Sent;
use crate::stats::{self, Summary};
use crate::watch::Watch;
use crate::{cpu, limits, pgstats};

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
    /// Commits and statements per database, or why they are not known.
    pub pg_cost: Result<pgstats::Cost, String>,
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
        let notified = match &self.notified_off {
            Some(_) => "-".to_owned(),
            None => self.notified.to_string(),
        };
        let mut out = format!(
            "wardline-load: {}\nsent {} tickets in {:.1} s (+{} warm-up), drained {:.1} s: created {}, assigned {}, queued {}, billed {}, notified {notified}\n\n",
            self.plan,
            self.sent,
            self.send_secs,
            self.warmup_sent,
            self.drain_secs,
            self.created,
            self.assigned,
            self.queued,
            self.billed,
        );
        let mut t = Table::new(&stats::HEADERS);
        for (name, s) in &self.stages {
            t.row(s.row(name));
        }
        out.push_str(&t.render());
        out.push_str("\nlatency from the intended send time; per second = completions / (last completion - first intended send)\n");
        if let Some(why) = &self.notified_off {
            out.push_str(&format!("notified: NOT MEASURED: {why}\n"));
        }
        let errors: Vec<String> = self
            .errors
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        out.push_str(&format!(
            "errors: {}\nqueued at the end: {} (each analyst could hold {} tickets)\n",
            if errors.is_empty() {
                "none".to_owned()
            } else {
                errors.join(", ")
            },
            self.queued,
            self.capacity
        ));
        out.push_str(&self.render_cpu());
        out.push_str(&self.render_database());
        out.push_str(&self.render_limits());
        out
    }

    fn render_cpu(&self) -> String {
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
        format!(
            "\nCPU over the measured run and drain (ms per created ticket)\n{}",
            c.render()
        )
    }

    fn render_database(&self) -> String {
        let cost = match &self.pg_cost {
            Err(why) => return format!("\nPostgreSQL per ticket: not measured: {why}\n"),
            Ok(c) => c,
        };
        let per = |n: i64| {
            opt(
                (self.created > 0).then(|| n as f64 / self.created as f64),
                2,
            )
        };
        let mut t = Table::new(&[
            "database",
            "commits",
            "per ticket",
            "statements",
            "per ticket",
        ]);
        for d in &cost.databases {
            let statements = d.statements.map_or("-".to_owned(), |s| s.to_string());
            t.row([
                d.name.clone(),
                d.commits.to_string(),
                per(d.commits),
                statements,
                d.statements.map_or("-".to_owned(), per),
            ]);
        }
        let (commits, statements) = cost.totals();
        t.row([
            "all databases".to_owned(),
            commits.to_string(),
            per(commits),
            statements.map_or("-".to_owned(), |s| s.to_string()),
            statements.map_or("-".to_owned(), per),
        ]);
        let mut out = format!(
            "\nPostgreSQL over the measured run and drain (pg_stat_database, pg_stat_statements)\n{}",
            t.render()
        );
        if let Some(why) = &cost.statements_off {
            out.push_str(&format!("statements: NOT MEASURED: {why}\n"));
        }
        out
    }

    fn render_limits(&self) -> String {
        if self.pg.is_none() && self.jetstream.is_none() {
            return String::new();
        }
        let mut l = Table::new(&["limit", "per second", "how"]).max_cell(60);
        for (name, limit) in [
            ("PostgreSQL ticket+outbox rows", &self.pg),
            ("JetStream publishes (acked)", &self.jetstream),
        ] {
            if let Some(lim) = limit {
                l.row([
                    name.to_owned(),
                    stats::rate(lim.per_second),
                    lim.note.clone(),
                ]);
            }
        }
        let pg = self.pg.as_ref().and_then(|l| l.per_second);
        let js = self.jetstream.as_ref().and_then(|l| l.per_second);
        let share = |what: &str, rate: Option<f64>| {
            format!(
                "{what} {} = {} of the PostgreSQL limit, {} of the JetStream limit\n",
                stats::rate(rate),
                stats::percent(rate, pg),
                stats::percent(rate, js)
            )
        };
        format!(
            "\nmachine limits (same run)\n{}\n{}{}",
            l.render(),
            share("pipeline tickets/s", self.pipeline_rate()),
            share("intake creates/s  ", self.create_rate())
        )
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
            "cpu": self.cpu_json(),
            "postgres": self.database_json(),
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

    fn cpu_json(&self) -> Value {
        let ms = |j: u64| j as f64 * cpu::MS_PER_JIFFY;
        let processes: serde_json::Map<String, Value> = (self.cpu.groups.iter())
            .map(|(g, j)| {
                (
                    g.clone(),
                    json!({"ms": ms(*j), "ms_per_ticket": cpu::ms_per_ticket(*j, self.created)}),
                )
            })
            .collect();
        json!({
            "cores": self.cpu.cores,
            "machine_ms": self.cpu.machine.map(|(b, _)| ms(b)),
            "machine_busy_share": self.cpu.machine.map(|(_, s)| s),
            "machine_ms_per_ticket": self.cpu.machine.and_then(|(b, _)| cpu::ms_per_ticket(b, self.created)),
            "processes": processes,
        })
    }

    fn database_json(&self) -> Value {
        let per = |n: i64| (self.created > 0).then(|| n as f64 / self.created as f64);
        match &self.pg_cost {
            Err(why) => json!({"error": why}),
            Ok(c) => {
                let (commits, statements) = c.totals();
                json!({
                    "databases": c.databases.iter().map(|d| json!({
                        "name": d.name,
                        "commits": d.commits,
                        "commits_per_ticket": per(d.commits),
                        "statements": d.statements,
                        "statements_per_ticket": d.statements.and_then(per),
                    })).collect::<Vec<_>>(),
                    "commits_per_ticket": per(commits),
                    "statements_per_ticket": statements.and_then(per),
                    "statements_off": c.statements_off,
                })
            }
        }
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

/// Builds the report of a run from what was sent and what arrived.
pub fn collect(
    plan: &Plan,
    seeded: &Seeded,
    sent: &Sent,
    watch: &Watch,
    drain_secs: f64,
    cpu_after: cpu::Sample,
    pg_cost: Result<pgstats::Cost, String>,
) -> Report {
    let e = watch.events();
    let receiver = &seeded.receiver;
    let measured: Vec<(&str, Instant, Instant)> = sent.measured().collect();
    let first = measured
        .iter()
        .map(|m| m.1)
        .min()
        .unwrap_or(sent.measured_from);
    let stage = |at: &dyn Fn(&str, Instant) -> Option<Instant>| {
        let mut h = stats::histogram();
        let mut last: Option<Instant> = None;
        for (id, intended, created) in &measured {
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
    if seeded.notified_off.is_none() {
        stages.push((STAGE_NOTIFIED, stage(&|id, _| receiver.arrived(id))));
    }
    let count = |f: &dyn Fn(&str) -> bool| measured.iter().filter(|m| f(m.0)).count() as u64;
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for code in sent
        .records
        .iter()
        .filter(|r| r.measured)
        .filter_map(|r| r.outcome.as_ref().err())
    {
        *errors.entry(code_name(*code).to_owned()).or_default() += 1;
    }
    Report {
        plan: plan.describe(),
        tenants: seeded.tenants.clone(),
        sent: sent.records.iter().filter(|r| r.measured).count() as u64,
        created: measured.len() as u64,
        assigned: count(&|id| e.assigned.contains_key(id)),
        queued: count(&|id| e.queued.contains(id) && !e.assigned.contains_key(id)),
        billed: count(&|id| e.billed.contains_key(id)),
        notified: count(&|id| receiver.arrived(id).is_some()),
        warmup_sent: sent.records.iter().filter(|r| !r.measured).count() as u64,
        errors,
        stages,
        notified_off: seeded.notified_off.clone(),
        send_secs: sent.send_secs(),
        drain_secs,
        capacity: seeded.capacity,
        cpu: sent
            .cpu_before
            .as_ref()
            .map(|b| cpu::between(b, &cpu_after))
            .unwrap_or_default(),
        pg_cost,
        pg: None,
        jetstream: None,
    }
}
