//! `wardctl demo`: the walk-through the README's main command runs.
//!
//! 1. Wait until intake answers (ListTenants, up to `--wait-secs`).
//! 2. Create two hospitals idempotently (fixed request ids; ALREADY_EXISTS is fine).
//! 3. Create the analyst roster in routing idempotently ([`routing::ROSTER`],
//!    fixed request ids) and make everyone available. When routing is not
//!    reachable the demo says so and runs without it from here on.
//! 4. Give each hospital a contract in billing ([`billing::CONTRACTS`], fixed
//!    request ids, from the first of the current month in its zone), or show
//!    the version billing already holds. When billing is not reachable the
//!    demo says so and runs without it.
//! 5. Add each hospital's supervisor to notification as a recipient of
//!    every new call by email ([`notification::RECIPIENTS`], fixed request
//!    ids). When notification is not reachable the demo says so and runs
//!    without it.
//! 6. Start watching ticket events on NATS *before* filing anything.
//! 7. File a handful of realistic tickets (fresh request ids per run).
//! 8. Wait (up to `--routing-wait-secs`) until intake shows each ticket
//!    assigned or queued, print where each went, and explain one decision.
//! 9. Work one of them: acknowledge, start, note, resolve — as its assigned
//!    analyst (a token with their id as subject), else as wardctl; as far as
//!    the state machine allows (a refusal is shown, not fatal).
//! 10. List each tenant's tickets, then the events received for this run's
//!     tickets: subject, Nats-Msg-Id, traceparent presence, number, kind.
//! 11. Wait (up to `--billing-wait-secs`) until billing rated each call,
//!     show how each was charged, and each hospital's month: calls,
//!     allowance, overage, after hours, draft invoice total.
//! 12. Wait (up to `--notification-wait-secs`) for notification's
//!     deliveries about the run's tickets and show them.
//! 13. Summarise (tickets by priority, assignments per analyst, each
//!     tenant's queue, draft invoice totals, deliveries by channel and
//!     status and where the email went); fail when an expected event is
//!     missing or duplicated: every ticket's `ticket.created`, with routing
//!     its `ticket.assigned` or `ticket.queued`, and the worked ticket's
//!     lifecycle events; or when billing metered a call more than once.
//!
//! What must hold: nothing free-text is printed in the event section (events
//! carry none anyway), and every ticket gets its own trace, started here.

pub mod billing;
pub mod notification;
pub mod routing;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, Result, bail};
use opentelemetry::trace::TraceContextExt as _;
use secrecy::SecretString;
use serde_json::{Value, json};
use tonic::Code;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use wardline_proto::common::{CallerRole, Category, Channel, Impact, Urgency};
use wardline_proto::events::ResolutionCode;
use wardline_proto::intake::{
    AcknowledgeTicketRequest, AddFacilityRequest, AddNoteRequest, Caller, CreateTenantRequest,
    CreateTicketRequest, Facility, GetTenantRequest, ListTenantsRequest, ListTicketsRequest,
    ResolveTicketRequest, StartTicketRequest, Tenant, Ticket,
};

use crate::cli::{DemoArgs, Service};
use crate::commands::{Context, print_json};
use crate::events::{self, ReceivedEvent};
use crate::grpc::{self, Session, describe_status};
use crate::render::{self, Zone};
use crate::table::Table;

/// A hospital the demo creates.
#[derive(Debug, Clone, Copy)]
pub struct DemoTenant {
    /// Slug.
    pub id: &'static str,
    /// Display name.
    pub name: &'static str,
    /// IANA zone.
    pub time_zone: &'static str,
    /// Ticket number prefix.
    pub prefix: &'static str,
    /// `(id, name)` of each facility.
    pub facilities: &'static [(&'static str, &'static str)],
}

/// The demo's hospitals.
pub const TENANTS: [DemoTenant; 2] = [
    DemoTenant {
        id: "stmarys",
        name: "St Mary's Regional",
        time_zone: "America/Chicago",
        prefix: "STM",
        facilities: &[
            ("main-campus", "St Mary's Main Campus"),
            ("north-clinic", "St Mary's North Clinic"),
        ],
    },
    DemoTenant {
        id: "lakeside",
        name: "Lakeside Health",
        time_zone: "America/New_York",
        prefix: "LKS",
        facilities: &[("lakeside-hospital", "Lakeside Hospital")],
    },
];

/// A call the demo files.
#[derive(Debug, Clone, Copy)]
pub struct DemoTicket {
    /// Tenant slug.
    pub tenant: &'static str,
    /// Facility slug.
    pub facility: &'static str,
    /// One line for the progress output (our own words, not the description).
    pub story: &'static str,
    /// Caller id.
    pub caller_id: &'static str,
    /// Caller name.
    pub caller_name: &'static str,
    /// Caller role.
    pub role: CallerRole,
    /// Caller email.
    pub email: &'static str,
    /// Caller phone (E.164, fictional 555 numbers).
    pub phone: &'static str,
    /// Channel.
    pub channel: Channel,
    /// Application code.
    pub application: &'static str,
    /// Category; `None` lets intake classify the description.
    pub category: Option<Category>,
    /// Urgency.
    pub urgency: Urgency,
    /// Impact.
    pub impact: Impact,
    /// Patient care blocked right now.
    pub blocked: bool,
    /// What the caller said (no patient identifiers).
    pub description: &'static str,
}

/// The demo's calls. The fourth (wristband printer) is the one worked in step 5;
/// the fifth has no category, to show intake's keyword classification.
pub const TICKETS: [DemoTicket; 5] = [
    DemoTicket {
        tenant: "stmarys",
        facility: "main-campus",
        story: "nurse on 4 West at 3 a.m.: eMAR barcode scanner won't scan, patient care blocked",
        caller_id: "rn.alvarez",
        caller_name: "Maria Alvarez, RN",
        role: CallerRole::Nurse,
        email: "maria.alvarez@stmarys.example",
        phone: "+13125550142",
        channel: Channel::Phone,
        application: "ehr",
        category: Some(Category::MedicationAdministration),
        urgency: Urgency::Critical,
        impact: Impact::SingleUser,
        blocked: true,
        description: "It's 3 a.m. on 4 West: the barcode scanner on medication cart 2 will not read \
            wristbands or medication barcodes in the eMAR. The 03:00 doses are due and I cannot \
            document administration. Patient care is blocked.",
    },
    DemoTicket {
        tenant: "stmarys",
        facility: "main-campus",
        story: "hospitalist can't sign admission orders in CPOE, admissions waiting",
        caller_id: "dr.okafor",
        caller_name: "Dr. Chidi Okafor",
        role: CallerRole::Physician,
        email: "chidi.okafor@stmarys.example",
        phone: "+13125550187",
        channel: Channel::Portal,
        application: "ehr",
        category: Some(Category::Orders),
        urgency: Urgency::Critical,
        impact: Impact::SingleUser,
        blocked: false,
        description: "Cannot sign orders in CPOE: after entering admission orders the Sign button \
            stays greyed out and a banner says 'provider credentials could not be verified'. \
            Logged out and back in twice.",
    },
    DemoTicket {
        tenant: "lakeside",
        facility: "lakeside-hospital",
        story: "pharmacist's verification queue is missing orders from the inpatient units",
        caller_id: "rph.chen",
        caller_name: "Li Chen, PharmD",
        role: CallerRole::Pharmacist,
        email: "li.chen@lakeside.example",
        phone: "+16175550123",
        channel: Channel::Phone,
        application: "pharmacy",
        category: Some(Category::Orders),
        urgency: Urgency::High,
        impact: Impact::Department,
        blocked: false,
        description: "The pharmacist verification queue has not shown new medication orders from \
            the inpatient units since about 14:00. Nurses are calling about unverified orders; \
            we are verifying from printed order reports.",
    },
    DemoTicket {
        tenant: "stmarys",
        facility: "north-clinic",
        story: "registration clerk's wristband printer jams",
        caller_id: "reg.patel",
        caller_name: "Anita Patel",
        role: CallerRole::NonClinical,
        email: "anita.patel@stmarys.example",
        phone: "",
        channel: Channel::Portal,
        application: "adt",
        category: Some(Category::Printing),
        urgency: Urgency::Medium,
        impact: Impact::MultipleUsers,
        blocked: false,
        description: "The wristband printer at the north clinic registration desk jams after every \
            second band. Both registration clerks share it; we are writing temporary bands by hand.",
    },
    DemoTicket {
        tenant: "lakeside",
        facility: "lakeside-hospital",
        story: "respiratory therapist's Wi-Fi keeps dropping (no category given)",
        caller_id: "rt.nguyen",
        caller_name: "Sam Nguyen, RRT",
        role: CallerRole::OtherClinical,
        email: "sam.nguyen@lakeside.example",
        phone: "",
        channel: Channel::Email,
        application: "ehr",
        category: None,
        urgency: Urgency::Low,
        impact: Impact::SingleUser,
        blocked: false,
        description: "The Wi-Fi keeps disconnecting in the respiratory therapy office on 2 East; \
            the wireless network comes back after a minute or two, then drops again.",
    },
];

/// Index in [`TICKETS`] of the ticket worked in step 5.
const WORKED: usize = 3;

impl DemoTicket {
    /// The CreateTicket request for the `n`th ticket (1-based) of run `run_id`.
    pub fn request(&self, n: usize, run_id: &str) -> CreateTicketRequest {
        CreateTicketRequest {
            request_id: format!("demo-ticket-{n}-{run_id}"),
            facility_id: self.facility.to_owned(),
            caller: Some(Caller {
                caller_id: self.caller_id.to_owned(),
                name: self.caller_name.to_owned(),
                role: self.role as i32,
                email: self.email.to_owned(),
                phone: self.phone.to_owned(),
            }),
            channel: self.channel as i32,
            application: self.application.to_owned(),
            category: self.category.unwrap_or(Category::Unspecified) as i32,
            urgency: self.urgency as i32,
            impact: self.impact as i32,
            patient_care_blocked: self.blocked,
            description: self.description.to_owned(),
        }
    }
}

impl DemoTenant {
    /// The CreateTenant request (a fixed request id: re-running is a no-op).
    pub fn request(&self) -> CreateTenantRequest {
        CreateTenantRequest {
            request_id: format!("demo-tenant-{}", self.id),
            tenant_id: self.id.to_owned(),
            name: self.name.to_owned(),
            time_zone: self.time_zone.to_owned(),
            ticket_prefix: self.prefix.to_owned(),
            facilities: self
                .facilities
                .iter()
                .map(|(id, name)| Facility {
                    facility_id: (*id).to_owned(),
                    name: (*name).to_owned(),
                })
                .collect(),
            reopen_window_hours: 0,
        }
    }
}

/// A run id: the UTC time to the millisecond, so each run files new tickets.
pub fn run_id(now: chrono::DateTime<chrono::Utc>) -> String {
    now.format("%Y%m%dT%H%M%S%3fZ").to_string()
}

/// Progress lines: stdout for people, stderr when stdout carries JSON.
struct Progress {
    to_stderr: bool,
    steps: usize,
}

impl Progress {
    fn step(&self, n: usize, text: &str) {
        self.print(&format!("\n==> [{n}/{}] {text}", self.steps));
    }

    fn line(&self, text: &str) {
        if text.is_empty() {
            self.print("");
        } else {
            self.print(&format!("    {text}"));
        }
    }

    fn block(&self, text: &str) {
        for l in text.lines() {
            self.line(l);
        }
    }

    fn print(&self, text: &str) {
        if self.to_stderr {
            eprintln!("{text}");
        } else {
            println!("{text}");
        }
    }
}

/// Runs the demo.
pub async fn run(ctx: &Context, args: &DemoArgs) -> Result<()> {
    let p = Progress {
        to_stderr: ctx.json,
        steps: 13,
    };
    let token = ctx.admin_token()?;
    let run = run_id(chrono::Utc::now());
    let run_started = SystemTime::now();
    p.print(&format!("Wardline demo, run {run}"));

    // 1. intake
    p.step(
        1,
        &format!(
            "waiting for intake at {} (up to {} s)",
            ctx.intake_url, args.wait_secs
        ),
    );
    let started = Instant::now();
    let admin = wait_for_intake(ctx, &token, Duration::from_secs(args.wait_secs), &p).await?;
    p.line(&format!(
        "intake answered after {:.1} s",
        started.elapsed().as_secs_f64()
    ));

    // 2. tenants
    p.step(2, "creating the demo hospitals (idempotent)");
    let mut tenants = Vec::new();
    for t in &TENANTS {
        tenants.push(ensure_tenant(&admin, t, &p).await?);
    }
    let zone_of = |tenant_id: &str| {
        let tz = tenants
            .iter()
            .find(|t| t.tenant_id == tenant_id)
            .map_or("", |t| t.time_zone.as_str());
        Zone::for_tenant(tz, ctx.utc)
    };

    // 3. routing and the roster
    p.step(
        3,
        &format!("the analyst roster in routing at {}", ctx.routing_url),
    );
    let routing = match routing::connect(&ctx.routing_url, ctx.timeout, &token).await? {
        routing::Reach::Up(session) => {
            routing::ensure_roster(&session, &run, &p).await?;
            Some(session)
        }
        routing::Reach::Down(why) => {
            say_down(
                Service::Routing,
                &ctx.routing_url,
                &why,
                "continuing with intake only: no assignments and no routing events are expected",
                &p,
            );
            None
        }
    };

    // 4. billing and the contracts
    p.step(4, &format!("contracts in billing at {}", ctx.billing_url));
    let billing = match billing::connect(&ctx.billing_url, ctx.timeout, &token).await? {
        routing::Reach::Up(session) => {
            let wait = Duration::from_secs(args.billing_wait_secs);
            let billed = billing::ensure_contracts(&session, &tenants, wait, &p).await?;
            Some((session, billed))
        }
        routing::Reach::Down(why) => {
            say_down(
                Service::Billing,
                &ctx.billing_url,
                &why,
                "continuing without billing: no contracts, usage or invoices are shown",
                &p,
            );
            None
        }
    };

    // 5. notification and the supervisors
    p.step(
        5,
        &format!("recipients in notification at {}", ctx.notification_url),
    );
    let notification =
        match notification::connect(&ctx.notification_url, ctx.timeout, &token).await? {
            routing::Reach::Up(session) => {
                notification::ensure_recipients(&session, &p).await?;
                Some(session)
            }
            routing::Reach::Down(why) => {
                say_down(
                    Service::Notification,
                    &ctx.notification_url,
                    &why,
                    "continuing without notification: nobody is told, no deliveries are shown",
                    &p,
                );
                None
            }
        };

    // 6. events
    p.step(
        6,
        &format!("subscribing to ticket events on {}", ctx.nats_url),
    );
    let mut watch = events::watch(
        &ctx.nats_url,
        events::TICKET_EVENTS,
        Duration::from_secs(20),
    )
    .await?;
    p.line(&format!("listening via {}", watch.source));

    // 7. tickets
    p.step(7, &format!("filing {} tickets", TICKETS.len()));
    let mut created: Vec<Ticket> = Vec::new();
    for (i, spec) in TICKETS.iter().enumerate() {
        let session = admin.for_tenant(Some(spec.tenant))?;
        let span = tracing::info_span!(
            parent: None,
            "wardctl.demo.create_ticket",
            otel.kind = "client",
            tenant = spec.tenant,
            ticket_number = tracing::field::Empty,
        );
        let trace_id = span.context().span().span_context().trace_id();
        let req = spec.request(i + 1, &run);
        let ticket = async { session.tickets().create_ticket(req).await }
            .instrument(span.clone())
            .await
            .map_err(|s| anyhow::anyhow!("{}", describe_status(&s)))
            .with_context(|| format!("creating demo ticket {} ({})", i + 1, spec.story))?
            .into_inner();
        span.record("ticket_number", ticket.number.as_str());
        let classified = if ticket.category_classified {
            " (classified by intake)"
        } else {
            ""
        };
        p.line(&format!(
            "{}  {}  {}{}  {}",
            ticket.number,
            render::priority(ticket.priority),
            render::category(ticket.category),
            classified,
            spec.story
        ));
        p.line(&format!("            trace {trace_id}"));
        created.push(ticket);
    }

    // 8. routing's decisions
    let mut current = created.clone();
    let mut explained = None;
    match &routing {
        None => p.step(8, "routing's decisions: skipped (routing is not reachable)"),
        Some(routing_session) => {
            p.step(
                8,
                &format!(
                    "waiting up to {} s for routing to assign or queue each ticket",
                    args.routing_wait_secs
                ),
            );
            let wait = Duration::from_secs(args.routing_wait_secs);
            let waited = Instant::now();
            current = routing::wait_routed(&admin, &created, wait).await?;
            let routed = current.iter().filter(|t| routing::routed(t)).count();
            p.line(&format!(
                "{routed} of {} tickets routed after {:.1} s",
                current.len(),
                waited.elapsed().as_secs_f64()
            ));
            let reasons = routing::queue_reasons(routing_session, &current).await;
            p.print("");
            p.block(&routing::routing_table(&current, &reasons, wait).render());
            if let Some(t) = routing::pick_explained(&current) {
                explained = routing::explain(routing_session, t, zone_of(&t.tenant_id), &p).await?;
            }
        }
    }

    // 9. work one ticket
    let worked = current[WORKED].clone();
    p.step(
        9,
        &format!("working {} ({})", worked.number, TICKETS[WORKED].story),
    );
    let (worker, actor) = worker_for(ctx, &admin, &worked, routing.is_some(), &p)?;
    let worked_kinds = work_ticket(&worker, &worked, &run, &p).await?;

    // 10. tickets and events
    p.step(10, "tickets per tenant, then the events of this run");
    for t in &tenants {
        let zone = zone_of(&t.tenant_id);
        let session = admin.for_tenant(Some(&t.tenant_id))?;
        let latest =
            crate::commands::ticket::list(&session, ListTicketsRequest::default(), 10).await?;
        p.print("");
        p.line(&format!(
            "{} ({}), latest {} tickets, times in {}:",
            t.name,
            t.tenant_id,
            latest.len(),
            zone.name()
        ));
        p.block(&render::ticket_table(&latest, zone).render());
    }

    let mut expected: Vec<Expected> = created
        .iter()
        .map(|t| Expected::new(t, "ticket.created"))
        .collect();
    if routing.is_some() {
        expected.extend(
            created
                .iter()
                .map(|t| Expected::any(t, &["ticket.assigned", "ticket.queued"])),
        );
    }
    expected.extend(worked_kinds.iter().map(|k| Expected::new(&worked, k)));
    p.print("");
    p.line(&format!(
        "waiting up to {} s for {} expected events ...",
        args.event_wait_secs,
        expected.len()
    ));
    let ours: HashMap<&str, &str> = created
        .iter()
        .map(|t| (t.ticket_id.as_str(), t.number.as_str()))
        .collect();
    let outcome = collect_events(
        &mut watch,
        &ours,
        &expected,
        Duration::from_secs(args.event_wait_secs),
    )
    .await;
    drop(watch);
    p.print("");
    p.block(&events_table(&outcome.events).render());
    if outcome.undecodable > 0 {
        p.line(&format!(
            "{} message(s) could not be decoded as EventEnvelope",
            outcome.undecodable
        ));
    }
    if outcome.others > 0 {
        p.line(&format!(
            "({} ticket events about other tickets ignored)",
            outcome.others
        ));
    }

    // 11. billing
    let billing_outcome = match &billing {
        None => {
            p.step(11, "billing: skipped (billing is not reachable)");
            billing::BillingOutcome::Unreachable(ctx.billing_url.clone())
        }
        Some((session, billed)) => {
            p.step(
                11,
                &format!(
                    "waiting up to {} s for billing to meter this run's calls",
                    args.billing_wait_secs
                ),
            );
            let wait = Duration::from_secs(args.billing_wait_secs);
            billing::report(session, billed, &created, wait, &p).await
        }
    };

    // 12. notification
    let notification_outcome = match &notification {
        None => {
            p.step(12, "notification: skipped (notification is not reachable)");
            notification::NotificationOutcome::Unreachable(ctx.notification_url.clone())
        }
        Some(session) => {
            p.step(
                12,
                &format!(
                    "waiting up to {} s for notification's deliveries about this run's tickets",
                    args.notification_wait_secs
                ),
            );
            let wait = Duration::from_secs(args.notification_wait_secs);
            let zone = zone_of(&created[0].tenant_id);
            let mail = args.mail_dir.as_deref();
            notification::report(session, &created, wait, mail, run_started, zone, &p).await
        }
    };

    // 13. summary
    p.step(13, "summary");
    let routed = match &routing {
        Some(session) => RoutingOutcome::Routed {
            tickets: current.clone(),
            explained,
            queues: routing::queue_depths(
                session,
                &tenants
                    .iter()
                    .map(|t| t.tenant_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .await,
        },
        None => RoutingOutcome::Unreachable(ctx.routing_url.clone()),
    };
    let summary = Summary::new(
        &created,
        &expected,
        &outcome,
        &worked,
        &worked_kinds,
        &actor,
        routed,
    )
    .with_billing(&billing_outcome)
    .with_notification(&notification_outcome);
    p.block(&summary.text());
    if ctx.json {
        print_json(&summary.json(&run, &created, &outcome));
    }
    if !summary.ok() {
        bail!("{}", summary.problem());
    }
    p.print(
        "\ndemo finished: all expected events arrived exactly once, and no call was metered twice",
    );
    Ok(())
}

/// Says that an optional service is not reachable, what the demo does
/// without it, and how to point the demo at it.
fn say_down(service: Service, url: &str, why: &str, without: &str, p: &Progress) {
    let name = service.name();
    p.line(&format!(
        "{} IS NOT REACHABLE at {url}: {why}",
        name.to_ascii_uppercase()
    ));
    p.line(without);
    p.line(&format!(
        "(start {name}, or point {} at it, and run the demo again)",
        service.setting()
    ));
}

/// Retries ListTenants until intake answers or `wait` passes. Connection
/// failures and UNAVAILABLE are retried; anything else (a wrong secret:
/// UNAUTHENTICATED) ends the wait at once.
async fn wait_for_intake(
    ctx: &Context,
    token: &SecretString,
    wait: Duration,
    p: &Progress,
) -> Result<Session> {
    let deadline = Instant::now() + wait;
    let mut last_report = Instant::now();
    loop {
        let attempt = async {
            let channel = grpc::connect(&ctx.intake_url, ctx.timeout).await?;
            let session = Session::new(channel, token, None)?;
            session
                .tenants()
                .list_tenants(ListTenantsRequest {
                    page_size: 1,
                    page_token: String::new(),
                })
                .await?;
            anyhow::Ok(session)
        }
        .await;
        let err = match attempt {
            Ok(session) => return Ok(session),
            Err(e) => e,
        };
        if let Some(s) = err.downcast_ref::<tonic::Status>()
            && !matches!(
                s.code(),
                Code::Unavailable | Code::DeadlineExceeded | Code::Unknown
            )
        {
            return Err(err);
        }
        if Instant::now() >= deadline {
            return Err(err.context(format!(
                "intake at {} did not answer within {} s",
                ctx.intake_url,
                wait.as_secs()
            )));
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            p.line(&format!("not yet: {}", crate::error_text(&err)));
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Creates the tenant (or finds it), then adds any facility it lacks.
async fn ensure_tenant(admin: &Session, t: &DemoTenant, p: &Progress) -> Result<Tenant> {
    let scoped = admin.for_tenant(Some(t.id))?;
    let (mut tenant, note) = match admin.tenants().create_tenant(t.request()).await {
        Ok(r) => (r.into_inner(), ""),
        Err(s) if s.code() == Code::AlreadyExists => {
            let got = scoped
                .tenants()
                .get_tenant(GetTenantRequest {
                    tenant_id: t.id.to_owned(),
                })
                .await?
                .into_inner();
            (got, " (already there)")
        }
        Err(s) => return Err(anyhow::Error::new(s).context(format!("creating tenant {}", t.id))),
    };
    for (id, name) in t.facilities {
        if tenant.facilities.iter().any(|f| f.facility_id == *id) {
            continue;
        }
        let req = AddFacilityRequest {
            request_id: format!("demo-facility-{}-{id}", t.id),
            facility: Some(Facility {
                facility_id: (*id).to_owned(),
                name: (*name).to_owned(),
            }),
        };
        tenant = scoped.tenants().add_facility(req).await?.into_inner();
        p.line(&format!("added facility {id} to {}", t.id));
    }
    let facilities: Vec<&str> = tenant
        .facilities
        .iter()
        .map(|f| f.facility_id.as_str())
        .collect();
    p.line(&format!(
        "{}  {}, {}, numbers {}-…, facilities {}{note}",
        tenant.tenant_id,
        tenant.name,
        tenant.time_zone,
        tenant.ticket_prefix,
        facilities.join(", ")
    ));
    Ok(tenant)
}

/// Who works the demo's ticket: its assigned analyst, with a token of
/// their own (subject = analyst id, role analyst) when wardctl can mint one;
/// otherwise wardctl itself as vendor admin. Returns the intake session and
/// the actor's name.
fn worker_for(
    ctx: &Context,
    admin: &Session,
    ticket: &Ticket,
    routing_up: bool,
    p: &Progress,
) -> Result<(Session, String)> {
    let scoped = admin.for_tenant(Some(&ticket.tenant_id))?;
    let admin_actor = format!("{} (vendor admin)", crate::commands::WARDCTL_SUBJECT);
    let analyst = ticket.assignee_analyst_id.as_str();
    if analyst.is_empty() {
        let why = if !routing_up {
            "routing is not running".to_owned()
        } else if ticket.queued {
            "routing queued it".to_owned()
        } else {
            "routing has not decided yet".to_owned()
        };
        p.line(&format!(
            "{} is {} and nobody is assigned ({why}): wardctl takes it as vendor admin",
            ticket.number,
            render::status(ticket.status)
        ));
        return Ok((scoped, admin_actor));
    }
    match ctx.analyst_token(analyst, &ticket.tenant_id) {
        Ok(token) => {
            p.line(&format!(
                "{} is assigned to {analyst}: working it as {analyst} (analyst token for {})",
                ticket.number, ticket.tenant_id
            ));
            let session = Session::new(admin.channel(), &token, Some(&ticket.tenant_id))?;
            Ok((session, analyst.to_owned()))
        }
        Err(e) => {
            p.line(&format!(
                "{} is assigned to {analyst}, but wardctl cannot act as them ({}): working it with its own token",
                ticket.number,
                crate::error_text(&e)
            ));
            Ok((scoped, admin_actor))
        }
    }
}

/// Acknowledge, start, note, resolve — as far as the ticket's state allows.
/// Returns the event kinds intake should have published.
async fn work_ticket(
    session: &Session,
    ticket: &Ticket,
    run: &str,
    p: &Progress,
) -> Result<Vec<&'static str>> {
    let mut kinds = Vec::new();
    let id = ticket.ticket_id.clone();

    let mut flowing = true;
    let ack = session
        .tickets()
        .acknowledge_ticket(AcknowledgeTicketRequest {
            request_id: format!("demo-ack-{run}"),
            ticket_id: id.clone(),
            expected_version: 0,
        })
        .await;
    flowing &= step_result(p, "acknowledge", ack, &mut kinds, "ticket.acknowledged")?;
    if flowing {
        let start = session
            .tickets()
            .start_ticket(StartTicketRequest {
                request_id: format!("demo-start-{run}"),
                ticket_id: id.clone(),
                expected_version: 0,
            })
            .await;
        flowing &= step_result(p, "start", start, &mut kinds, "ticket.started")?;
    }
    let note = session
        .tickets()
        .add_note(AddNoteRequest {
            request_id: format!("demo-note-{run}"),
            ticket_id: id.clone(),
            body: "Cleared the jam and replaced the worn platen roller; printed ten test bands \
                without a jam. Spare roller left at the desk."
                .to_owned(),
            public: true,
        })
        .await
        .map_err(|s| anyhow::anyhow!("adding a note: {}", describe_status(&s)))?
        .into_inner();
    kinds.push("ticket.note_added");
    p.line(&format!(
        "note        added ({}), {}",
        if note.public { "public" } else { "internal" },
        note.note_id
    ));
    if flowing {
        let resolve = session
            .tickets()
            .resolve_ticket(ResolveTicketRequest {
                request_id: format!("demo-resolve-{run}"),
                ticket_id: id.clone(),
                expected_version: 0,
                resolution_code: ResolutionCode::Hardware as i32,
                first_contact_resolution: false,
            })
            .await;
        step_result(p, "resolve", resolve, &mut kinds, "ticket.resolved")?;
    } else {
        p.line("resolve     skipped (the ticket never left NEW)");
    }
    Ok(kinds)
}

/// Reports one lifecycle call. FAILED_PRECONDITION (wrong state) is shown
/// and stops the chain; any other failure ends the demo.
fn step_result(
    p: &Progress,
    what: &str,
    result: Result<tonic::Response<Ticket>, tonic::Status>,
    kinds: &mut Vec<&'static str>,
    kind: &'static str,
) -> Result<bool> {
    match result {
        Ok(r) => {
            let t = r.into_inner();
            p.line(&format!("{what:<11} ok: {}", render::ticket_line(&t)));
            kinds.push(kind);
            Ok(true)
        }
        Err(s) if s.code() == Code::FailedPrecondition => {
            p.line(&format!("{what:<11} refused: {}", describe_status(&s)));
            Ok(false)
        }
        Err(s) => Err(anyhow::anyhow!("{what}: {}", describe_status(&s))),
    }
}

/// What arrived while waiting.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Events about this run's tickets, in arrival order.
    pub events: Vec<ReceivedEvent>,
    /// Count per `(ticket_id, kind)`.
    pub counts: HashMap<(String, String), usize>,
    /// Ticket events about other tickets.
    pub others: usize,
    /// Messages that were not envelopes.
    pub undecodable: usize,
}

impl Outcome {
    /// Records one received event.
    pub fn add(&mut self, e: ReceivedEvent, ours: &HashMap<&str, &str>) {
        let key = match (e.ticket(), e.kind()) {
            (Some((id, _)), Some(kind)) if ours.contains_key(id) => (id.to_owned(), kind),
            (Some(_), Some(_)) => {
                self.others += 1;
                return;
            }
            _ => {
                self.undecodable += usize::from(e.envelope.is_err());
                self.others += usize::from(e.envelope.is_ok());
                return;
            }
        };
        *self.counts.entry(key).or_default() += 1;
        self.events.push(e);
    }

    /// How often `kind` arrived about ticket `ticket_id`.
    pub fn count(&self, ticket_id: &str, kind: &str) -> usize {
        self.counts
            .get(&(ticket_id.to_owned(), kind.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// How often any of `e`'s kinds arrived.
    pub fn count_any(&self, e: &Expected) -> usize {
        e.kinds.iter().map(|k| self.count(&e.ticket_id, k)).sum()
    }

    /// True when each expected event arrived at least once.
    pub fn complete(&self, expected: &[Expected]) -> bool {
        expected.iter().all(|e| self.count_any(e) > 0)
    }
}

/// An event the demo's calls must have caused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Ticket id.
    pub ticket_id: String,
    /// Ticket number, for messages.
    pub number: String,
    /// `aggregate.event`, e.g. `ticket.created`; any one of them will do
    /// (routing either assigns or queues a ticket).
    pub kinds: Vec<String>,
}

impl Expected {
    /// `kind` about `ticket`.
    pub fn new(ticket: &Ticket, kind: &str) -> Self {
        Self::any(ticket, &[kind])
    }

    /// One of `kinds` about `ticket`.
    pub fn any(ticket: &Ticket, kinds: &[&str]) -> Self {
        Self {
            ticket_id: ticket.ticket_id.clone(),
            number: ticket.number.clone(),
            kinds: kinds.iter().map(|k| (*k).to_owned()).collect(),
        }
    }

    /// `ticket.assigned|queued`, for messages.
    pub fn label(&self) -> String {
        match self.kinds.split_first() {
            None => String::new(),
            Some((first, rest)) => {
                let mut out = first.clone();
                for k in rest {
                    out.push('|');
                    out.push_str(k.rsplit('.').next().unwrap_or(k));
                }
                out
            }
        }
    }
}

/// Waits until every expected event arrived (plus a second for stray
/// duplicates) or `wait` passes.
async fn collect_events(
    watch: &mut events::EventWatch,
    ours: &HashMap<&str, &str>,
    expected: &[Expected],
    wait: Duration,
) -> Outcome {
    let mut outcome = Outcome::default();
    let mut deadline = tokio::time::Instant::now() + wait;
    let mut settling = false;
    loop {
        if !settling && outcome.complete(expected) {
            settling = true;
            deadline = deadline.min(tokio::time::Instant::now() + Duration::from_secs(1));
        }
        match tokio::time::timeout_at(deadline, watch.events.recv()).await {
            Ok(Some(e)) => outcome.add(e, ours),
            Ok(None) | Err(_) => return outcome,
        }
    }
}

/// The event section: ids and codes only.
pub fn events_table(events: &[ReceivedEvent]) -> Table {
    // A subject holds a tenant slug of up to 32 characters: never cut it.
    let mut table = Table::new(&[
        "SUBJECT",
        "NATS-MSG-ID",
        "TRACEPARENT",
        "TICKET",
        "V",
        "EVENT",
    ])
    .max_cell(120);
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for e in events {
        let (number, id) = e.ticket().map_or(("-", ""), |(id, n)| (n, id));
        let kind = e.kind().unwrap_or_else(|| "?".to_owned());
        let n = seen.entry((id.to_owned(), kind.clone())).or_default();
        *n += 1;
        let version = e
            .envelope
            .as_ref()
            .map_or("-".to_owned(), |env| env.aggregate_version.to_string());
        table.row([
            e.subject.clone(),
            e.msg_id.clone().unwrap_or_else(|| "(none)".to_owned()),
            if e.traceparent { "yes" } else { "no" }.to_owned(),
            number.to_owned(),
            version,
            if *n > 1 {
                format!("{kind} (DUPLICATE #{n})")
            } else {
                kind
            },
        ]);
    }
    table
}

/// What routing did with the run's tickets, for the summary.
#[derive(Debug, Clone)]
pub enum RoutingOutcome {
    /// Routing answered: the tickets as last read from intake, and the
    /// assignment explained, if one was.
    Routed {
        /// The tickets after waiting for routing.
        tickets: Vec<Ticket>,
        /// Assignment id of the explained decision.
        explained: Option<String>,
        /// Each tenant's queue after the run.
        queues: Vec<routing::QueueDepth>,
    },
    /// Nothing answered at this URL.
    Unreachable(String),
}

/// The verdict of a run.
pub struct Summary {
    created: usize,
    created_once: usize,
    missing: Vec<String>,
    duplicated: Vec<String>,
    without_trace: usize,
    without_msg_id: usize,
    priorities: BTreeMap<String, usize>,
    classified: Vec<String>,
    worked: String,
    routing_text: String,
    routing_json: Value,
    billing_text: Option<String>,
    billing_json: Value,
    billing_problems: Vec<String>,
    notification_text: Option<String>,
    notification_json: Value,
}

impl Summary {
    fn new(
        created: &[Ticket],
        expected: &[Expected],
        outcome: &Outcome,
        worked: &Ticket,
        worked_kinds: &[&str],
        actor: &str,
        routing: RoutingOutcome,
    ) -> Self {
        let mut missing = Vec::new();
        let mut duplicated = Vec::new();
        for e in expected {
            if outcome.count_any(e) == 0 {
                missing.push(format!("{} {}", e.number, e.label()));
            }
            for kind in &e.kinds {
                let n = outcome.count(&e.ticket_id, kind);
                if n > 1 {
                    duplicated.push(format!("{} {kind} x{n}", e.number));
                }
            }
        }
        let (routing_text, routing_json) = routing_summary(&routing);
        let mut priorities = BTreeMap::new();
        for t in created {
            *priorities.entry(render::priority(t.priority)).or_default() += 1;
        }
        let classified = created
            .iter()
            .filter(|t| t.category_classified)
            .map(|t| format!("{} -> {}", t.number, render::category(t.category)))
            .collect();
        let steps: Vec<&str> = worked_kinds
            .iter()
            .map(|k| k.trim_start_matches("ticket."))
            .collect();
        Self {
            created: created.len(),
            created_once: created
                .iter()
                .filter(|t| outcome.count(&t.ticket_id, "ticket.created") == 1)
                .count(),
            missing,
            duplicated,
            without_trace: outcome.events.iter().filter(|e| !e.traceparent).count(),
            without_msg_id: outcome.events.iter().filter(|e| e.msg_id.is_none()).count(),
            priorities,
            classified,
            worked: format!("{} by {actor}: {}", worked.number, steps.join(", ")),
            routing_text,
            routing_json,
            billing_text: None,
            billing_json: Value::Null,
            billing_problems: Vec::new(),
            notification_text: None,
            notification_json: Value::Null,
        }
    }

    /// The same verdict with the run's deliveries (reported, never fatal).
    fn with_notification(mut self, n: &notification::NotificationOutcome) -> Self {
        self.notification_text = Some(n.text());
        self.notification_json = n.json();
        self
    }

    /// The same verdict with what billing made of the run: a call metered
    /// more than once fails it.
    fn with_billing(mut self, billing: &billing::BillingOutcome) -> Self {
        self.billing_text = Some(billing.text());
        self.billing_json = billing.json();
        self.billing_problems = billing.problems();
        self
    }

    fn ok(&self) -> bool {
        self.missing.is_empty() && self.duplicated.is_empty() && self.billing_problems.is_empty()
    }

    fn problem(&self) -> String {
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            parts.push(format!(
                "{} expected event(s) missing: {}",
                self.missing.len(),
                self.missing.join(", ")
            ));
        }
        if !self.duplicated.is_empty() {
            parts.push(format!(
                "event(s) delivered more than once: {}",
                self.duplicated.join(", ")
            ));
        }
        parts.extend(self.billing_problems.iter().cloned());
        parts.join("; ")
    }

    fn text(&self) -> String {
        let once = if self.created_once == self.created {
            format!(
                "{} ticket.created events received once each",
                self.created_once
            )
        } else {
            format!(
                "only {} of {} ticket.created events received exactly once",
                self.created_once, self.created
            )
        };
        let prio: Vec<String> = self
            .priorities
            .iter()
            .map(|(p, n)| format!("{p}: {n}"))
            .collect();
        let mut out = format!(
            "{} tickets created, {once}; {}\n",
            self.created,
            prio.join(", ")
        );
        if !self.classified.is_empty() {
            out.push_str(&format!(
                "classified by intake from the description: {}\n",
                self.classified.join(", ")
            ));
        }
        out.push_str(&self.routing_text);
        out.push('\n');
        for part in [&self.billing_text, &self.notification_text]
            .into_iter()
            .flatten()
        {
            out.push_str(part);
            out.push('\n');
        }
        out.push_str(&format!("worked {}\n", self.worked));
        if self.without_trace > 0 {
            out.push_str(&format!(
                "{} event(s) without a traceparent header\n",
                self.without_trace
            ));
        }
        if self.without_msg_id > 0 {
            out.push_str(&format!(
                "{} event(s) without a Nats-Msg-Id header\n",
                self.without_msg_id
            ));
        }
        if !self.ok() {
            out.push_str(&format!("PROBLEM: {}\n", self.problem()));
        }
        out
    }

    fn json(&self, run: &str, created: &[Ticket], outcome: &Outcome) -> Value {
        json!({
            "run_id": run,
            "ok": self.ok(),
            "tickets": created.iter().map(|t| json!({
                "ticket_id": t.ticket_id,
                "number": t.number,
                "tenant_id": t.tenant_id,
                "priority": render::priority_opt(t.priority),
                "category": render::category_opt(t.category),
                "category_classified": t.category_classified,
                "status": render::status_opt(t.status),
            })).collect::<Vec<_>>(),
            "events": outcome.events.iter().map(|e| json!({
                "subject": e.subject,
                "nats_msg_id": e.msg_id,
                "traceparent": e.traceparent,
                "ticket_number": e.ticket().map(|(_, n)| n),
                "kind": e.kind(),
            })).collect::<Vec<_>>(),
            "priorities": self.priorities,
            "routing": self.routing_json,
            "billing": self.billing_json,
            "notification": self.notification_json,
            "missing": self.missing,
            "duplicated": self.duplicated,
        })
    }
}

/// The summary's routing line and JSON.
fn routing_summary(routing: &RoutingOutcome) -> (String, Value) {
    match routing {
        RoutingOutcome::Unreachable(url) => (
            format!("routing not reachable at {url}: the demo ran intake only"),
            json!({"reachable": false, "url": url}),
        ),
        RoutingOutcome::Routed {
            tickets,
            explained,
            queues,
        } => {
            let assigned = tickets
                .iter()
                .filter(|t| !t.assignee_analyst_id.is_empty())
                .count();
            let queued = tickets
                .iter()
                .filter(|t| t.assignee_analyst_id.is_empty() && t.queued)
                .count();
            let pending = tickets.len() - assigned - queued;
            let mut per_analyst: BTreeMap<&str, usize> = BTreeMap::new();
            for t in tickets.iter().filter(|t| !t.assignee_analyst_id.is_empty()) {
                *per_analyst.entry(&t.assignee_analyst_id).or_default() += 1;
            }
            let who: Vec<String> = per_analyst
                .iter()
                .map(|(a, n)| format!("{a} {n}"))
                .collect();
            let mut text = format!("routing: {assigned} assigned");
            if !who.is_empty() {
                text.push_str(&format!(" ({})", who.join(", ")));
            }
            text.push_str(&format!(", {queued} queued"));
            if pending > 0 {
                text.push_str(&format!(", {pending} not routed in time"));
            }
            if !queues.is_empty() {
                let q: Vec<String> = queues.iter().map(routing::QueueDepth::text).collect();
                text.push_str(&format!(
                    "\nqueue now, per tenant (tickets of every run still waiting): {}",
                    q.join(", ")
                ));
            }
            let json = json!({
                "reachable": true,
                "assigned": assigned,
                "queued": queued,
                "not_routed": pending,
                "explained_assignment_id": explained,
                "assigned_per_analyst": per_analyst,
                "queues": queues.iter().map(|q| json!({
                    "tenant_id": q.tenant_id,
                    "waiting": q.waiting.as_ref().ok().map(|per| per.iter().map(|(_, n)| n).sum::<u32>()),
                    "by_priority": q.waiting.as_ref().ok().map(|per| per.iter().cloned().collect::<BTreeMap<_, _>>()),
                    "error": q.waiting.as_ref().err(),
                })).collect::<Vec<_>>(),
                "tickets": tickets.iter().map(|t| json!({
                    "number": t.number,
                    "assignee_analyst_id": (!t.assignee_analyst_id.is_empty()).then_some(&t.assignee_analyst_id),
                    "queued": t.queued,
                    "status": render::status_opt(t.status),
                })).collect::<Vec<_>>(),
            });
            (text, json)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;
    use wardline_proto::events::event_envelope::Payload;
    use wardline_proto::events::{TicketAssigned, TicketCreated, TicketQueued, TicketSnapshot};

    #[test]
    fn demo_data_is_consistent() {
        for t in &TICKETS {
            let tenant = TENANTS
                .iter()
                .find(|x| x.id == t.tenant)
                .expect("tenant exists");
            assert!(
                tenant.facilities.iter().any(|(f, _)| *f == t.facility),
                "{} {}",
                t.tenant,
                t.facility
            );
            assert!(!t.description.is_empty() && t.description.len() <= 10_000);
            assert!(
                t.phone.is_empty()
                    || (t.phone.starts_with('+')
                        && t.phone[1..].bytes().all(|b| b.is_ascii_digit()))
            );
        }
        assert!(
            TICKETS.iter().any(|t| t.blocked),
            "one ticket shows the P1 fast lane"
        );
        assert!(
            TICKETS.iter().any(|t| t.category.is_none()),
            "one ticket shows classification"
        );
        assert_eq!(TICKETS[WORKED].category, Some(Category::Printing));
        let req = TICKETS[0].request(1, "20250101T000000000Z");
        assert_eq!(req.request_id, "demo-ticket-1-20250101T000000000Z");
        assert!(req.request_id.len() <= 128);
        assert_eq!(TENANTS[0].request().request_id, "demo-tenant-stmarys");
        assert_eq!(TENANTS[0].request().facilities.len(), 2);
    }

    #[test]
    fn run_ids_are_timestamps() {
        let t = chrono::DateTime::parse_from_rfc3339("2025-03-04T05:06:07.089Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(run_id(t), "20250304T050607089Z");
    }

    fn created_event(ticket_id: &str, number: &str) -> ReceivedEvent {
        let env = wardline_kit::events::envelope(
            "intake",
            "stmarys",
            ticket_id,
            1,
            Payload::TicketCreated(TicketCreated {
                ticket: Some(TicketSnapshot {
                    ticket_id: ticket_id.into(),
                    number: number.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        );
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Msg-Id", env.event_id.as_str());
        ReceivedEvent::from_parts(
            "wardline.events.stmarys.ticket.created",
            Some(&h),
            &env.encode_to_vec(),
        )
    }

    #[test]
    fn outcomes_count_ours_and_flag_duplicates_and_gaps() {
        let ours: HashMap<&str, &str> = [("t1", "STM-000001"), ("t2", "STM-000002")].into();
        let created = vec![
            Ticket {
                ticket_id: "t1".into(),
                number: "STM-000001".into(),
                priority: 1,
                ..Default::default()
            },
            Ticket {
                ticket_id: "t2".into(),
                number: "STM-000002".into(),
                priority: 3,
                ..Default::default()
            },
        ];
        let expected: Vec<Expected> = created
            .iter()
            .map(|t| Expected::new(t, "ticket.created"))
            .collect();
        let mut o = Outcome::default();
        o.add(created_event("t1", "STM-000001"), &ours);
        o.add(created_event("elsewhere", "STM-000099"), &ours);
        o.add(ReceivedEvent::from_parts("x", None, b"\xff\xff"), &ours);
        assert!(!o.complete(&expected));
        assert_eq!((o.others, o.undecodable), (1, 1));
        o.add(created_event("t2", "STM-000002"), &ours);
        assert!(o.complete(&expected));
        let worked = Ticket {
            number: "STM-000002".into(),
            ..Default::default()
        };
        let down = || RoutingOutcome::Unreachable("http://127.0.0.1:50052".into());
        let s = Summary::new(
            &created,
            &expected,
            &o,
            &worked,
            &["ticket.note_added"],
            "wardctl (vendor admin)",
            down(),
        );
        assert!(s.ok(), "{}", s.text());
        assert!(
            s.text().starts_with(
                "2 tickets created, 2 ticket.created events received once each; P1: 1, P3: 1\n"
            ),
            "{}",
            s.text()
        );
        assert!(
            s.text().contains(
                "routing not reachable at http://127.0.0.1:50052: the demo ran intake only\nworked STM-000002 by wardctl (vendor admin): note_added\n"
            ),
            "{}",
            s.text()
        );
        assert_eq!(s.without_trace, 2, "the test events carry no traceparent");
        assert!(
            s.text().contains("2 event(s) without a traceparent header"),
            "{}",
            s.text()
        );

        o.add(created_event("t2", "STM-000002"), &ours);
        let s = Summary::new(&created, &expected, &o, &worked, &[], "x", down());
        assert!(!s.ok());
        assert!(
            s.problem().contains("STM-000002 ticket.created x2"),
            "{}",
            s.problem()
        );
        let table = events_table(&o.events).render();
        assert!(table.contains("ticket.created (DUPLICATE #2)"), "{table}");

        let s = Summary::new(
            &created,
            &expected,
            &Outcome::default(),
            &worked,
            &[],
            "x",
            down(),
        );
        assert!(
            s.problem()
                .starts_with("2 expected event(s) missing: STM-000001 ticket.created"),
            "{}",
            s.problem()
        );
        assert!(s.text().contains("only 0 of 2"), "{}", s.text());
    }

    #[test]
    fn billing_joins_the_summary_and_double_metering_fails_it() {
        let ours: HashMap<&str, &str> = [("t1", "STM-000001")].into();
        let created = vec![Ticket {
            ticket_id: "t1".into(),
            number: "STM-000001".into(),
            tenant_id: "stmarys".into(),
            priority: 1,
            ..Default::default()
        }];
        let expected = vec![Expected::new(&created[0], "ticket.created")];
        let mut o = Outcome::default();
        o.add(created_event("t1", "STM-000001"), &ours);
        let down = || RoutingOutcome::Unreachable("http://127.0.0.1:50052".into());
        let summary = |b: &billing::BillingOutcome| {
            Summary::new(&created, &expected, &o, &created[0], &[], "x", down()).with_billing(b)
        };
        let unreachable = billing::BillingOutcome::Unreachable("http://127.0.0.1:50053".into());
        let s = summary(&unreachable);
        assert!(s.ok(), "billing being down does not fail the demo");
        assert!(
            s.text().contains(
                "the demo ran intake only\nbilling not reachable at http://127.0.0.1:50053: no contracts, usage or invoices\n"
            ),
            "{}",
            s.text()
        );
        assert_eq!(s.json("r", &created, &o)["billing"]["reachable"], false);

        let billed = vec![billing::Billed {
            tenant_id: "stmarys".into(),
            time_zone: "America/Chicago".into(),
            contract: Some(billing::CONTRACTS[0].contract("2026-03-01")),
        }];
        let base = |kind: wardline_proto::billing::LineKind| wardline_proto::billing::Charge {
            ticket_id: "t1".into(),
            kind: kind as i32,
            ..Default::default()
        };
        let mut charges = HashMap::new();
        charges.insert(
            "t1".to_owned(),
            vec![base(wardline_proto::billing::LineKind::CallsIncluded)],
        );
        let once = billing::BillingOutcome::checked(
            &created,
            &billed,
            &charges,
            vec![],
            Duration::from_secs(10),
            None,
        );
        let s = summary(&once);
        assert!(s.ok(), "{}", s.problem());
        assert!(
            s.text()
                .contains("billing: 1 of 1 calls metered exactly once\n"),
            "{}",
            s.text()
        );
        charges
            .get_mut("t1")
            .unwrap()
            .push(base(wardline_proto::billing::LineKind::Overage));
        let twice = billing::BillingOutcome::checked(
            &created,
            &billed,
            &charges,
            vec![],
            Duration::from_secs(10),
            None,
        );
        let s = summary(&twice);
        assert!(!s.ok());
        assert!(
            s.problem()
                .contains("call(s) metered more than once by billing: STM-000001 x2"),
            "{}",
            s.problem()
        );
        assert_eq!(
            s.json("r", &created, &o)["billing"]["rated_more_than_once"][0],
            "STM-000001 x2"
        );
    }

    fn routing_event(ticket_id: &str, payload: Payload) -> ReceivedEvent {
        let env = wardline_kit::events::envelope("routing", "stmarys", ticket_id, 1, payload);
        let kind = ReceivedEvent::from_parts("s", None, &env.encode_to_vec())
            .kind()
            .unwrap();
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Msg-Id", env.event_id.as_str());
        ReceivedEvent::from_parts(
            &format!("wardline.events.stmarys.{kind}"),
            Some(&h),
            &env.encode_to_vec(),
        )
    }

    fn assigned(ticket_id: &str, number: &str) -> ReceivedEvent {
        routing_event(
            ticket_id,
            Payload::TicketAssigned(TicketAssigned {
                ticket_id: ticket_id.into(),
                number: number.into(),
                analyst_id: "rn.okonkwo".into(),
                ..Default::default()
            }),
        )
    }

    fn queued(ticket_id: &str, number: &str) -> ReceivedEvent {
        routing_event(
            ticket_id,
            Payload::TicketQueued(TicketQueued {
                ticket_id: ticket_id.into(),
                number: number.into(),
                reason_code: "no_capacity".into(),
                ..Default::default()
            }),
        )
    }

    #[test]
    fn routing_events_are_expected_as_assigned_or_queued() {
        let ours: HashMap<&str, &str> = [("t1", "STM-000001"), ("t2", "STM-000002")].into();
        let created = vec![
            Ticket {
                ticket_id: "t1".into(),
                number: "STM-000001".into(),
                assignee_analyst_id: "rn.okonkwo".into(),
                priority: 1,
                ..Default::default()
            },
            Ticket {
                ticket_id: "t2".into(),
                number: "STM-000002".into(),
                queued: true,
                priority: 2,
                ..Default::default()
            },
        ];
        let mut expected: Vec<Expected> = created
            .iter()
            .map(|t| Expected::new(t, "ticket.created"))
            .collect();
        expected.extend(
            created
                .iter()
                .map(|t| Expected::any(t, &["ticket.assigned", "ticket.queued"])),
        );
        assert_eq!(expected[2].label(), "ticket.assigned|queued");
        let mut o = Outcome::default();
        o.add(created_event("t1", "STM-000001"), &ours);
        o.add(created_event("t2", "STM-000002"), &ours);
        assert!(!o.complete(&expected));
        o.add(assigned("t1", "STM-000001"), &ours);
        o.add(queued("t2", "STM-000002"), &ours);
        assert!(o.complete(&expected));
        // A queued ticket assigned later (the queue drained) is no duplicate.
        o.add(assigned("t2", "STM-000002"), &ours);
        let routed = || RoutingOutcome::Routed {
            tickets: created.clone(),
            explained: Some("a-1".into()),
            queues: vec![
                routing::QueueDepth {
                    tenant_id: "stmarys".into(),
                    waiting: Ok(vec![("P2".into(), 1)]),
                },
                routing::QueueDepth {
                    tenant_id: "lakeside".into(),
                    waiting: Ok(vec![]),
                },
                routing::QueueDepth {
                    tenant_id: "other".into(),
                    waiting: Err("UNAVAILABLE".into()),
                },
            ],
        };
        let worked = created[0].clone();
        let s = Summary::new(
            &created,
            &expected,
            &o,
            &worked,
            &["ticket.acknowledged"],
            "rn.okonkwo",
            routed(),
        );
        assert!(s.ok(), "{}", s.problem());
        assert!(
            s.text().contains(
                "routing: 1 assigned (rn.okonkwo 1), 1 queued\n\
                 queue now, per tenant (tickets of every run still waiting): stmarys 1 (P2 1), lakeside 0, other ?\n\
                 worked STM-000001 by rn.okonkwo: acknowledged\n"
            ),
            "{}",
            s.text()
        );
        let v = s.json("r", &created, &o);
        assert_eq!(v["routing"]["assigned"], 1);
        assert_eq!(v["routing"]["explained_assignment_id"], "a-1");
        assert_eq!(v["routing"]["assigned_per_analyst"]["rn.okonkwo"], 1);
        assert_eq!(v["routing"]["queues"][0]["waiting"], 1);
        assert_eq!(v["routing"]["queues"][0]["by_priority"]["P2"], 1);
        assert_eq!(v["routing"]["queues"][2]["error"], "UNAVAILABLE");

        // Deliveries join the summary after billing, and never fail it.
        let n = notification::NotificationOutcome::checked(
            &created,
            &HashMap::new(),
            Some(("/tmp/mail".into(), Ok(0))),
            None,
        );
        let with = Summary::new(
            &created,
            &expected,
            &o,
            &worked,
            &["ticket.acknowledged"],
            "rn.okonkwo",
            routed(),
        )
        .with_billing(&billing::BillingOutcome::Unreachable("http://b".into()))
        .with_notification(&n);
        assert!(with.ok(), "{}", with.problem());
        let text = with.text();
        assert!(
            text.contains(
                "billing not reachable at http://b: no contracts, usage or invoices\n\
                 notification: 0 deliveries for this run's tickets; nobody told yet about STM-000001, STM-000002\n\
                 email: 0 message(s) reached /tmp/mail during the run"
            ),
            "{text}"
        );
        let v = with.json("r", &created, &o);
        assert_eq!(v["notification"]["reachable"], true);
        assert_eq!(v["notification"]["mail_dir"], "/tmp/mail");
        assert_eq!(
            v["routing"]["tickets"][1]["assignee_analyst_id"],
            Value::Null
        );

        o.add(assigned("t1", "STM-000001"), &ours);
        let s = Summary::new(&created, &expected, &o, &worked, &[], "x", routed());
        assert!(
            s.problem().contains("STM-000001 ticket.assigned x2"),
            "{}",
            s.problem()
        );
        let s = Summary::new(
            &created,
            &expected,
            &Outcome::default(),
            &worked,
            &[],
            "x",
            routed(),
        );
        assert!(
            s.problem().contains("STM-000002 ticket.assigned|queued"),
            "{}",
            s.problem()
        );
    }
}
