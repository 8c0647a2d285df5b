//! `wardctl demo`: plays a scenario ([`scenario`]; the shipped one unless
//! `--scenario FILE`) against the running services and shows what each
//! did with it:
//!
//! 1. waits until intake answers, and connects to routing, billing and
//!    notification;
//! 2. creates the tenants, the analyst roster (everyone available), a
//!    contract per hospital and the recipients ([`seed`], fixed request
//!    ids: a second run changes nothing);
//! 3. watches the ticket events on NATS, then files the calls, each in its
//!    own trace;
//! 4. waits until routing placed each call, shows where, explains one
//!    decision, and works one call as its analyst ([`follow`]);
//! 5. waits until billing rated the calls and shows how, and each
//!    hospital's month; waits for notification's deliveries and shows them;
//! 6. shows the events seen and the summary ([`outcome`]), with what to
//!    try next.
//!
//! The demo waits for what it shows and fails only when a service refuses
//! it; whether the pipeline did everything exactly once is the end-to-end
//! tests' job (`tests/demo.rs` plays this scenario and checks the outcome).
//! Nothing free-text is printed: descriptions and notes stay in intake.

pub mod follow;
pub mod outcome;
pub mod scenario;
pub mod seed;

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, Result};
use opentelemetry::trace::TraceContextExt as _;
use secrecy::SecretString;
use tonic::Code;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use wardline_proto::billing::{BillingTier, Charge, LineKind};
use wardline_proto::common::{CallerRole, Category};
use wardline_proto::intake::{
    CreateTicketRequest, ListTenantsRequest, ListTicketsRequest, Tenant, Ticket,
};
use wardline_proto::notification::{Delivery, EventKind, NotificationChannel};

use crate::cli::DemoArgs;
use crate::commands::{Context, print_json};
use crate::events::{self, EventWatch, ReceivedEvent};
use crate::grpc::{self, Session};
use crate::render::{self, Zone, label};
use crate::table::Table;
use outcome::{CallOutcome, Outcome, TenantOutcome, Worked};
use scenario::Scenario;

/// Progress lines: stdout for people, stderr when stdout carries JSON.
pub struct Progress {
    to_stderr: bool,
    step: std::cell::Cell<usize>,
}

impl Progress {
    fn step(&self, text: &str) {
        self.step.set(self.step.get() + 1);
        self.print(&format!("\n==> [{}] {text}", self.step.get()));
    }

    fn line(&self, text: &str) {
        self.print(format!("    {text}").trim_end());
    }

    fn block(&self, text: &str) {
        text.lines().for_each(|l| self.line(l));
    }

    fn print(&self, text: &str) {
        if self.to_stderr {
            eprintln!("{text}");
        } else {
            println!("{text}");
        }
    }
}

/// The services a run talks to, all as wardctl (vendor admin).
struct Services {
    intake: Session,
    routing: Session,
    billing: Session,
    notification: Session,
}

/// A run in progress.
struct Run<'a> {
    ctx: &'a Context,
    args: &'a DemoArgs,
    scenario: Scenario,
    p: Progress,
    id: String,
    s: Services,
    tenants: Vec<Tenant>,
    created: Vec<Ticket>,
    outcome: Outcome,
}

/// Plays the scenario; prints progress and the summary (the outcome as
/// JSON on stdout with `--json`) and returns the outcome.
pub async fn run(ctx: &Context, args: &DemoArgs) -> Result<Outcome> {
    let scenario = Scenario::load(args.scenario.as_deref())?;
    let p = Progress {
        to_stderr: ctx.json,
        step: Default::default(),
    };
    let id = chrono::Utc::now().format("%Y%m%dT%H%M%S%3fZ").to_string();
    let started = SystemTime::now();
    p.print(&format!("Wardline demo, run {id}"));
    let s = connect(ctx, args, &p).await?;
    let mut run = Run {
        ctx,
        args,
        scenario,
        p,
        outcome: Outcome {
            run_id: id.clone(),
            ..Default::default()
        },
        id,
        s,
        tenants: Vec::new(),
        created: Vec::new(),
    };
    run.seed().await?;
    let mut watch = events::watch(
        &ctx.nats_url,
        events::TICKET_EVENTS,
        Duration::from_secs(20),
    )
    .await?;
    run.p
        .line(&format!("watching ticket events via {}", watch.source));
    run.file_calls().await?;
    let tickets = run.routing().await?;
    run.work(&tickets).await?;
    run.tickets_per_tenant().await?;
    let charges = run.billing().await?;
    let deliveries = run.notification(started).await?;
    run.events(&mut watch).await;
    run.finish(&tickets, &charges, &deliveries).await;
    run.p.step("summary");
    run.p.block(&run.outcome.text());
    if ctx.json {
        print_json(&run.outcome);
    }
    Ok(run.outcome)
}

/// Waits for intake (connection refused and UNAVAILABLE are retried for
/// `--wait-secs`), then connects to the other services.
async fn connect(ctx: &Context, args: &DemoArgs, p: &Progress) -> Result<Services> {
    let token = ctx.admin_token()?;
    p.step(&format!(
        "waiting for intake at {} (up to {} s)",
        ctx.intake_url, args.wait_secs
    ));
    let waited = Instant::now();
    let deadline = waited + Duration::from_secs(args.wait_secs);
    let intake = loop {
        let attempt = async {
            let session = Session::new(
                grpc::connect(&ctx.intake_url, ctx.timeout).await?,
                &token,
                None,
            )?;
            session
                .tenants()
                .list_tenants(ListTenantsRequest::default())
                .await?;
            anyhow::Ok(session)
        };
        match attempt.await {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline && transient(&e) => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e.context(format!("intake at {} did not answer", ctx.intake_url))),
        }
    };
    p.line(&format!(
        "intake answered after {:.1} s",
        waited.elapsed().as_secs_f64()
    ));
    let at = |url: &str, name: &str| {
        let token = token.clone();
        let (url, name) = (url.to_owned(), name.to_owned());
        async move { reach(&url, &name, ctx, &token).await }
    };
    Ok(Services {
        intake,
        routing: at(&ctx.routing_url, "routing").await?,
        billing: at(&ctx.billing_url, "billing").await?,
        notification: at(&ctx.notification_url, "notification").await?,
    })
}

/// Not answering yet: no connection, UNAVAILABLE, no answer in time.
fn transient(e: &anyhow::Error) -> bool {
    match e.downcast_ref::<tonic::Status>() {
        Some(s) => matches!(
            s.code(),
            Code::Unavailable | Code::DeadlineExceeded | Code::Unknown
        ),
        None => true,
    }
}

async fn reach(url: &str, name: &str, ctx: &Context, token: &SecretString) -> Result<Session> {
    let channel = grpc::connect(url, ctx.timeout)
        .await
        .with_context(|| format!("{name} is not reachable (set {})", setting(name)))?;
    Session::new(channel, token, None)
}

fn setting(service: &str) -> String {
    format!(
        "WARDCTL_{}_URL or --{service}-url",
        service.to_ascii_uppercase()
    )
}

impl Run<'_> {
    fn zone(&self, tenant: &str) -> Zone {
        let tz = self.tenants.iter().find(|t| t.tenant_id == tenant);
        Zone::for_tenant(tz.map_or("", |t| t.time_zone.as_str()), self.ctx.utc)
    }

    fn tenant_ids(&self) -> Vec<String> {
        self.tenants.iter().map(|t| t.tenant_id.clone()).collect()
    }

    async fn seed(&mut self) -> Result<()> {
        let (s, p) = (&self.s, &self.p);
        p.step("the hospitals in intake");
        for t in &self.scenario.tenants {
            self.tenants.push(seed::tenant(&s.intake, t, p).await?);
        }
        p.step(&format!(
            "the analyst roster in routing at {}",
            self.ctx.routing_url
        ));
        seed::roster(&s.routing, &self.scenario.analysts, &self.id, p).await?;
        p.step(&format!("contracts in billing at {}", self.ctx.billing_url));
        let wait = Duration::from_secs(self.args.billing_wait_secs);
        self.outcome.billed_tenants =
            seed::contracts(&s.billing, &self.scenario.contracts, &self.tenants, wait, p).await?;
        p.step(&format!(
            "recipients in notification at {}",
            self.ctx.notification_url
        ));
        seed::recipients(&s.notification, &self.scenario.recipients, p).await
    }

    /// Files the calls, each in a trace of its own whose id is printed.
    async fn file_calls(&mut self) -> Result<()> {
        self.p
            .step(&format!("filing {} calls", self.scenario.calls.len()));
        for (i, call) in self.scenario.calls.iter().enumerate() {
            let session = self.s.intake.for_tenant(Some(&call.tenant))?;
            let span = tracing::info_span!(parent: None, "wardctl.demo.create_ticket",
                otel.kind = "client", tenant = %call.tenant);
            let trace_id = span.context().span().span_context().trace_id();
            let req = CreateTicketRequest {
                request_id: format!("demo-ticket-{}-{}", i + 1, self.id),
                ..call.ticket.clone()
            };
            let ticket = async { session.tickets().create_ticket(req).await }
                .instrument(span)
                .await
                .with_context(|| format!("filing call {} ({})", i + 1, call.story))?
                .into_inner();
            let classified = if ticket.category_classified {
                " (classified by intake)"
            } else {
                ""
            };
            self.p.line(&format!(
                "{}  {}  {}{classified}  {}",
                ticket.number,
                render::priority(ticket.priority),
                label::<Category>(ticket.category),
                call.story
            ));
            self.p.line(&format!("            trace {trace_id}"));
            self.created.push(ticket);
        }
        Ok(())
    }

    /// Where routing put each call, and one decision explained.
    async fn routing(&mut self) -> Result<Vec<Ticket>> {
        let wait = Duration::from_secs(self.args.routing_wait_secs);
        self.p.step(&format!(
            "waiting up to {} s for routing to place each call",
            wait.as_secs()
        ));
        let waited = Instant::now();
        let tickets = follow::routed_tickets(&self.s.intake, &self.created, wait).await?;
        let routed = tickets.iter().filter(|t| follow::routed(t)).count();
        self.p.line(&format!(
            "{routed} of {} placed after {:.1} s",
            tickets.len(),
            waited.elapsed().as_secs_f64()
        ));
        let queues = follow::queues(&self.s.routing, &self.tenant_ids()).await;
        let reasons: HashMap<String, String> = queues.iter().flat_map(|q| q.2.clone()).collect();
        self.p.print("");
        self.p.block(&routing_table(&tickets, &reasons).render());
        for (tenant, per, _) in queues {
            let mut t = TenantOutcome {
                tenant_id: tenant,
                ..Default::default()
            };
            match per {
                Ok(per) => t.queue = per.into_iter().collect(),
                Err(e) => t.errors.push(format!("queue: {e}")),
            }
            self.outcome.tenants.push(t);
        }
        self.outcome.calls = (self.scenario.calls.iter().zip(&tickets))
            .map(|(call, t)| call_outcome(call.expect, t, &reasons))
            .collect();
        self.explain(&tickets).await?;
        Ok(tickets)
    }

    async fn explain(&mut self, tickets: &[Ticket]) -> Result<()> {
        let pick = (self.scenario.explain.iter())
            .filter_map(|n| tickets.get(n - 1))
            .find(|t| !t.assignee_analyst_id.is_empty());
        let Some(t) = pick else { return Ok(()) };
        let Some(e) = follow::explanation(&self.s.routing, t).await? else {
            return Ok(());
        };
        let assignment = e
            .assignment
            .as_ref()
            .map_or("", |a| a.assignment_id.as_str());
        self.p.print("");
        self.p.line(&format!(
            "why {} went to {} (wardctl --tenant {} explain {assignment}):",
            t.number, e.chosen_analyst_id, t.tenant_id
        ));
        self.p.print("");
        self.p.block(&render::routing::explanation_text(
            &e,
            self.zone(&t.tenant_id),
        ));
        self.outcome.explained = Some((t.number.clone(), e.chosen_analyst_id.clone()));
        Ok(())
    }

    /// Works the scenario's call as its assigned analyst (a token of their
    /// own), or as wardctl when nobody is assigned.
    async fn work(&mut self, tickets: &[Ticket]) -> Result<()> {
        let Some(work) = self.scenario.work.clone() else {
            return Ok(());
        };
        let t = &tickets[work.call - 1];
        self.p.step(&format!(
            "working {} ({})",
            t.number,
            self.scenario.calls[work.call - 1].story
        ));
        let analyst = t.assignee_analyst_id.as_str();
        let (session, actor) = if analyst.is_empty() {
            self.p.line(&format!(
                "nobody is assigned to {}: wardctl takes it as vendor admin",
                t.number
            ));
            (
                self.s.intake.for_tenant(Some(&t.tenant_id))?,
                "wardctl (vendor admin)".to_owned(),
            )
        } else {
            let token = self.ctx.analyst_token(analyst, &t.tenant_id)?;
            self.p.line(&format!(
                "{} is assigned to {analyst}: working it with {analyst}'s own token",
                t.number
            ));
            (
                Session::new(self.s.intake.channel(), &token, Some(&t.tenant_id))?,
                analyst.to_owned(),
            )
        };
        let steps =
            follow::work(&session, t, &work.note, work.resolution, &self.id, &self.p).await?;
        self.outcome.worked = Some(Worked {
            number: t.number.clone(),
            actor,
            steps,
        });
        Ok(())
    }

    async fn tickets_per_tenant(&self) -> Result<()> {
        self.p.step("the latest tickets per tenant");
        for t in &self.tenants {
            let zone = self.zone(&t.tenant_id);
            let session = self.s.intake.for_tenant(Some(&t.tenant_id))?;
            let latest =
                crate::commands::ticket::list(&session, ListTicketsRequest::default(), 10).await?;
            self.p.print("");
            self.p.line(&format!(
                "{} ({}), times in {}:",
                t.name,
                t.tenant_id,
                zone.name()
            ));
            self.p.block(&render::ticket_table(&latest, zone).render());
        }
        Ok(())
    }

    /// How billing charged each call, and each hospital's month.
    async fn billing(&mut self) -> Result<HashMap<String, Vec<Charge>>> {
        let wait = Duration::from_secs(self.args.billing_wait_secs);
        self.p.step(&format!(
            "waiting up to {} s for billing to rate the calls",
            wait.as_secs()
        ));
        let rated: Vec<(Ticket, String)> = (self.created.iter())
            .filter(|t| self.outcome.billed_tenants.contains(&t.tenant_id))
            .map(|t| {
                let tz = self.tenants.iter().find(|x| x.tenant_id == t.tenant_id);
                (
                    t.clone(),
                    tz.map_or("UTC", |x| x.time_zone.as_str()).to_owned(),
                )
            })
            .collect();
        let charges = follow::charges(&self.s.billing, &rated, wait).await?;
        self.p.block(&calls_table(&self.created, &charges).render());
        let mut month =
            Table::of("TENANT|PERIOD|CALLS|INCLUDED|OVERAGE|AFTER HOURS|UNBILLED|DRAFT TOTAL");
        for t in &mut self.outcome.tenants {
            match follow::month(&self.s.billing, &t.tenant_id).await {
                Ok((u, draft)) => {
                    month.row([
                        t.tenant_id.clone(),
                        u.period.clone(),
                        u.calls.to_string(),
                        format!("{} of {}", u.included_calls, u.calls_included_allowance),
                        u.overage_calls.to_string(),
                        u.after_hours_calls.to_string(),
                        u.unbilled_calls.to_string(),
                        render::amount_cur(draft.total.as_ref()),
                    ]);
                    t.draft_total = draft.total;
                }
                Err(e) => t.errors.push(format!("billing: {}", crate::error_text(&e))),
            }
        }
        self.p.print("");
        self.p
            .line("this month per hospital (calls of every run so far):");
        self.p.block(&month.render());
        Ok(charges)
    }

    /// The deliveries about the calls, and what reached the mail sink.
    async fn notification(
        &mut self,
        started: SystemTime,
    ) -> Result<HashMap<String, Vec<Delivery>>> {
        let wait = Duration::from_secs(self.args.notification_wait_secs);
        self.p.step(&format!(
            "waiting up to {} s for notification's deliveries",
            wait.as_secs()
        ));
        let deliveries = follow::deliveries(&self.s.notification, &self.created, wait).await?;
        let mut all: Vec<Delivery> = deliveries.values().flatten().cloned().collect();
        all.sort_by(|a, b| (&a.number, a.event_kind).cmp(&(&b.number, b.event_kind)));
        let zone = self
            .created
            .first()
            .map_or(Zone::Utc, |t| self.zone(&t.tenant_id));
        self.p
            .block(&render::notification::delivery_table(&all, zone).render());
        for d in &all {
            let status = render::notification::status(d);
            let channel = label::<NotificationChannel>(d.channel);
            *self
                .outcome
                .deliveries
                .entry(channel)
                .or_default()
                .entry(status)
                .or_default() += 1;
            *self
                .outcome
                .deliveries_by_event
                .entry(label::<EventKind>(d.event_kind))
                .or_default() += 1;
        }
        self.outcome.mail = self.args.mail_dir.as_ref().map(|dir| {
            let n = mail_files_since(dir, started).map_err(|e| e.to_string());
            (dir.clone(), n)
        });
        Ok(deliveries)
    }

    /// The events about the run's calls that arrived (waiting a moment for
    /// the last ones).
    async fn events(&mut self, watch: &mut EventWatch) {
        self.p.step("the events of this run's calls on NATS");
        let mut seen: Vec<ReceivedEvent> = Vec::new();
        while let Ok(Some(e)) =
            tokio::time::timeout(Duration::from_secs(1), watch.events.recv()).await
        {
            if e.ticket()
                .is_some_and(|(id, _)| self.created.iter().any(|t| t.ticket_id == id))
            {
                seen.push(e);
            }
        }
        for e in &seen {
            *self
                .outcome
                .events
                .entry(e.kind().unwrap_or_default())
                .or_default() += 1;
        }
        self.p.block(&events::events_table(&seen).render());
    }

    /// Fills in the per-call counts and what to try next.
    async fn finish(
        &mut self,
        tickets: &[Ticket],
        charges: &HashMap<String, Vec<Charge>>,
        deliveries: &HashMap<String, Vec<Delivery>>,
    ) {
        for (c, t) in self.outcome.calls.iter_mut().zip(tickets) {
            let mine = charges.get(&t.ticket_id).map_or(&[][..], Vec::as_slice);
            c.charges = mine.iter().filter(|c| follow::is_base_charge(c)).count();
            c.charged_as = charged_as(mine);
            c.deliveries = deliveries.get(&t.ticket_id).map_or(0, Vec::len);
        }
        self.outcome.try_next = try_next(&self.outcome, &self.tenant_ids());
    }
}

fn call_outcome(
    expect: scenario::Expect,
    t: &Ticket,
    reasons: &HashMap<String, String>,
) -> CallOutcome {
    CallOutcome {
        number: t.number.clone(),
        ticket_id: t.ticket_id.clone(),
        tenant_id: t.tenant_id.clone(),
        priority: render::priority(t.priority).to_owned(),
        category: label::<Category>(t.category),
        classified: t.category_classified,
        expect,
        assignee: Some(t.assignee_analyst_id.clone()).filter(|a| !a.is_empty()),
        queued: (t.queued && t.assignee_analyst_id.is_empty())
            .then(|| reasons.get(&t.ticket_id).cloned().unwrap_or_default()),
        charges: 0,
        charged_as: None,
        deliveries: 0,
    }
}

/// Where routing put each call.
fn routing_table(tickets: &[Ticket], reasons: &HashMap<String, String>) -> Table {
    let mut table = Table::of("NUMBER|PRI|CATEGORY|CALLER|FACILITY|ASSIGNEE");
    for t in tickets {
        let assignee = match (t.assignee_analyst_id.as_str(), t.queued) {
            ("", true) => format!(
                "queued ({})",
                reasons.get(&t.ticket_id).map_or("", String::as_str)
            ),
            ("", false) => format!(
                "not placed yet (status {})",
                label::<wardline_proto::common::TicketStatus>(t.status)
            ),
            (a, _) => a.to_owned(),
        };
        table.row([
            t.number.clone(),
            render::priority(t.priority).to_owned(),
            label::<Category>(t.category),
            t.caller
                .as_ref()
                .map_or("-".to_owned(), |c| label::<CallerRole>(c.role)),
            t.facility_id.clone(),
            assignee,
        ]);
    }
    table
}

/// `rule_code` of the base charge, with the after-hours surcharge's reason.
fn charged_as(charges: &[Charge]) -> Option<String> {
    let base = charges.iter().find(|c| follow::is_base_charge(c))?;
    let mut how = base.rule_code.clone();
    if let Some(s) = charges
        .iter()
        .find(|c| c.kind == LineKind::AfterHoursSurcharge as i32)
    {
        let reason = label::<wardline_proto::billing::AfterHoursReason>(s.after_hours);
        how.push_str(&format!(" + after hours ({reason})"));
    }
    Some(how)
}

/// How each call was charged.
fn calls_table(created: &[Ticket], charges: &HashMap<String, Vec<Charge>>) -> Table {
    let mut table = Table::of("NUMBER|TIER|PRI|CHARGED AS|AMOUNT");
    for t in created {
        let mine = charges.get(&t.ticket_id).map_or(&[][..], Vec::as_slice);
        let base = mine.iter().find(|c| follow::is_base_charge(c));
        table.row([
            t.number.clone(),
            base.map_or("-".to_owned(), |b| label::<BillingTier>(b.tier)),
            render::priority(t.priority).to_owned(),
            charged_as(mine).unwrap_or_else(|| "not rated (yet)".to_owned()),
            if mine.is_empty() {
                "-".to_owned()
            } else {
                render::billing::charges_total(mine)
            },
        ]);
    }
    table
}

/// Files in `dir` ending in `.eml` modified since `since`: what the mail
/// sink received during the run (messages about earlier runs' tickets sent
/// meanwhile, an escalation say, included).
pub fn mail_files_since(dir: &std::path::Path, since: SystemTime) -> std::io::Result<usize> {
    let mut n = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let fresh = entry.metadata()?.modified().is_ok_and(|m| m >= since);
        n += usize::from(fresh && entry.path().extension().is_some_and(|e| e == "eml"));
    }
    Ok(n)
}

/// Commands that look further into what the run did.
fn try_next(o: &Outcome, tenants: &[String]) -> Vec<String> {
    let first = tenants.first().map_or("TENANT", String::as_str);
    let last = tenants.last().map_or(first, String::as_str);
    let tenant_of = |number: &str| {
        (o.calls.iter().find(|c| c.number == number)).map_or(first, |c| c.tenant_id.as_str())
    };
    let mut out = Vec::new();
    if let Some(w) = &o.worked {
        let t = tenant_of(&w.number);
        out.push(format!(
            "wardctl --tenant {t} ticket get {}    # the worked call, with its note",
            w.number
        ));
        out.push(format!(
            "wardctl --tenant {t} delivery list --ticket {}    # who was told, on which channel",
            w.number
        ));
    }
    if let Some((number, _)) = &o.explained {
        out.push(format!(
            "wardctl --tenant {} explain {number}    # every candidate and why it lost",
            tenant_of(number)
        ));
    }
    out.push(format!(
        "wardctl --tenant {first} queue    # what waits, and why"
    ));
    out.push(format!(
        "wardctl --tenant {last} invoice draft    # this month's invoice so far"
    ));
    out.push(format!(
        "wardctl --tenant {first} contract get    # the terms that price the calls"
    ));
    out.push(format!(
        "wardctl --tenant {first} analyst list    # the roster, its load and skills"
    ));
    out
}
