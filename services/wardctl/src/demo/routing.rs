//! The routing half of `wardctl demo`: a small analyst roster, waiting for
//! routing to assign or queue each ticket, and one decision explained.
//!
//! Routing is optional for the demo: when nothing answers at
//! `--routing-url`, [`connect`] says why and the demo runs intake alone.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use secrecy::SecretString;
use tonic::Code;
use wardline_proto::events::Availability;
use wardline_proto::intake::{GetTicketRequest, Ticket};
use wardline_proto::routing::{
    Analyst, ClinicalCredential, ExplainAssignmentRequest, GetAnalystRequest, GetQueueRequest,
    ListAnalystsRequest, ListAssignmentsRequest, SetAvailabilityRequest, Skill, SkillModule,
    TenantCoverage, UpsertAnalystRequest,
};

use super::Progress;
use crate::grpc::{self, Session, describe_status};
use crate::render::routing as render;
use crate::render::{self as labels, Zone};
use crate::table::Table;

/// An analyst of the demo roster.
#[derive(Debug, Clone, Copy)]
pub struct DemoAnalyst {
    /// Analyst id (the subject of their token).
    pub id: &'static str,
    /// Display name.
    pub name: &'static str,
    /// What they do, for the progress output.
    pub role: &'static str,
    /// Work email.
    pub email: &'static str,
    /// Mobile (E.164, fictional 555 numbers).
    pub phone: &'static str,
    /// IANA zone.
    pub time_zone: &'static str,
    /// `(tenant, facilities)`; no facilities means all of them.
    pub coverage: &'static [(&'static str, &'static [&'static str])],
    /// `(module, level)`.
    pub skills: &'static [(SkillModule, u32)],
    /// Clinical credentials.
    pub credentials: &'static [ClinicalCredential],
    /// Most tickets held at once.
    pub max_tickets: u32,
    /// Supervisor.
    pub supervisor: bool,
    /// Tier 2.
    pub tier2: bool,
    /// On call.
    pub on_call: bool,
}

/// The demo's help desk: four analysts for St Mary's and one vendor-wide.
/// No shifts: routing treats an analyst without a roster as always on
/// shift, so the demo routes the same at 3 p.m. and 3 a.m.
pub const ROSTER: [DemoAnalyst; 5] = [
    DemoAnalyst {
        id: "rn.okonkwo",
        name: "Grace Okonkwo, RN",
        role: "nurse informaticist, inpatient main campus (eMAR, orders, patient lists)",
        email: "grace.okonkwo@wardline.example",
        phone: "+13125550111",
        time_zone: "America/Chicago",
        coverage: &[("stmarys", &["main-campus"])],
        skills: &[
            (SkillModule::MedicationAdministration, 4),
            (SkillModule::Orders, 3),
            (SkillModule::PatientLists, 3),
        ],
        credentials: &[ClinicalCredential::Rn],
        max_tickets: 6,
        supervisor: false,
        tier2: false,
        on_call: true,
    },
    DemoAnalyst {
        id: "pharmd.reyes",
        name: "Daniel Reyes, PharmD",
        role: "clinical applications pharmacist (orders, results), tier 2",
        email: "daniel.reyes@wardline.example",
        phone: "+13125550112",
        time_zone: "America/Chicago",
        coverage: &[("stmarys", &[])],
        skills: &[(SkillModule::Orders, 5), (SkillModule::Results, 3)],
        credentials: &[ClinicalCredential::Pharmd],
        max_tickets: 5,
        supervisor: false,
        tier2: true,
        on_call: false,
    },
    DemoAnalyst {
        id: "tech.lindqvist",
        name: "Erik Lindqvist",
        role: "technical analyst (printing, devices, network, access, ADT)",
        email: "erik.lindqvist@wardline.example",
        phone: "+13125550113",
        time_zone: "America/Chicago",
        coverage: &[("stmarys", &[])],
        skills: &[
            (SkillModule::Printing, 4),
            (SkillModule::Devices, 4),
            (SkillModule::Network, 3),
            (SkillModule::LoginAccess, 4),
            (SkillModule::RegistrationAdt, 2),
        ],
        credentials: &[],
        max_tickets: 4,
        supervisor: false,
        tier2: false,
        on_call: false,
    },
    DemoAnalyst {
        id: "sup.haddad",
        name: "Nadia Haddad",
        role: "service desk supervisor",
        email: "nadia.haddad@wardline.example",
        phone: "+13125550114",
        time_zone: "America/Chicago",
        coverage: &[("stmarys", &[])],
        skills: &[
            (SkillModule::LoginAccess, 3),
            (SkillModule::Scheduling, 3),
            (SkillModule::RegistrationAdt, 3),
        ],
        credentials: &[],
        max_tickets: 2,
        supervisor: true,
        tier2: false,
        on_call: true,
    },
    DemoAnalyst {
        id: "vendor.mbeki",
        name: "Thandi Mbeki, RN",
        role: "vendor-wide clinical analyst, every tenant (orders, network)",
        email: "thandi.mbeki@wardline.example",
        phone: "+16175550115",
        time_zone: "America/New_York",
        coverage: &[("*", &[])],
        skills: &[(SkillModule::Orders, 4), (SkillModule::Network, 3)],
        credentials: &[ClinicalCredential::Rn],
        max_tickets: 6,
        supervisor: false,
        tier2: false,
        on_call: false,
    },
];

impl DemoAnalyst {
    /// The UpsertAnalyst request (a fixed request id: re-running is a no-op).
    pub fn request(&self) -> UpsertAnalystRequest {
        UpsertAnalystRequest {
            request_id: format!("demo-analyst-{}", self.id),
            analyst: Some(Analyst {
                analyst_id: self.id.to_owned(),
                name: self.name.to_owned(),
                email: self.email.to_owned(),
                phone: self.phone.to_owned(),
                time_zone: self.time_zone.to_owned(),
                coverage: self
                    .coverage
                    .iter()
                    .map(|(t, f)| TenantCoverage {
                        tenant_id: (*t).to_owned(),
                        facility_ids: f.iter().map(|s| (*s).to_owned()).collect(),
                    })
                    .collect(),
                skills: self
                    .skills
                    .iter()
                    .map(|(m, l)| Skill {
                        module: *m as i32,
                        level: *l,
                    })
                    .collect(),
                credentials: self.credentials.iter().map(|c| *c as i32).collect(),
                languages: vec!["en".to_owned()],
                max_concurrent_tickets: self.max_tickets,
                availability: Availability::Available as i32,
                supervisor: self.supervisor,
                tier2: self.tier2,
                on_call: self.on_call,
                ..Default::default()
            }),
            expected_version: 0,
        }
    }
}

/// Routing as the demo found it.
pub enum Reach {
    /// Answering; calls go through this session (vendor token, no tenant).
    Up(Session),
    /// Not reachable, and why.
    Down(String),
}

/// Connects to `service` at `url` and makes one call, `probe`. Nothing
/// listening (connection refused, UNAVAILABLE, no answer in time) is
/// [`Reach::Down`]; anything else, such as a wrong secret, is an error.
/// Every optional service of the demo is reached this way.
pub async fn reach<T, Fut>(
    url: &str,
    timeout: Duration,
    token: &SecretString,
    service: &str,
    probe: impl FnOnce(Session) -> Fut,
) -> Result<Reach>
where
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let channel = match grpc::connect(url, timeout).await {
        Ok(c) => c,
        Err(e) => return Ok(Reach::Down(crate::error_text(&e))),
    };
    let session = Session::new(channel, token, None)?;
    match probe(session.clone()).await {
        Ok(_) => Ok(Reach::Up(session)),
        Err(s) if matches!(s.code(), Code::Unavailable | Code::DeadlineExceeded) => {
            Ok(Reach::Down(describe_status(&s)))
        }
        Err(s) => {
            Err(anyhow::Error::new(s).context(format!("{service} at {url} refused the demo")))
        }
    }
}

/// Connects to routing and makes one call (see [`reach`]).
pub async fn connect(url: &str, timeout: Duration, token: &SecretString) -> Result<Reach> {
    reach(url, timeout, token, "routing", |s| async move {
        s.analysts()
            .list_analysts(ListAnalystsRequest {
                page_size: 1,
                ..Default::default()
            })
            .await
    })
    .await
}

/// Upserts the roster (fixed request ids), makes everyone available, and
/// returns the analysts as routing now holds them.
pub(super) async fn ensure_roster(
    routing: &Session,
    run: &str,
    p: &Progress,
) -> Result<Vec<Analyst>> {
    let mut analysts = Vec::new();
    for a in &ROSTER {
        let mut notes: Vec<String> = Vec::new();
        match routing.analysts().upsert_analyst(a.request()).await {
            Ok(_) => {}
            // The fixed request id was used for an earlier definition of this
            // analyst: keep what routing holds.
            Err(s) if s.code() == Code::FailedPrecondition => {
                notes.push(
                    "kept as stored (the demo's request id served an older definition)".into(),
                );
            }
            Err(s) => {
                return Err(anyhow::Error::new(s).context(format!("creating analyst {}", a.id)));
            }
        }
        // A replayed upsert returns the first result: read the current state.
        let mut current = routing
            .analysts()
            .get_analyst(GetAnalystRequest {
                analyst_id: a.id.to_owned(),
            })
            .await
            .with_context(|| format!("reading analyst {}", a.id))?
            .into_inner();
        if current.availability != Availability::Available as i32 {
            let was = render::availability(current.availability);
            current = routing
                .analysts()
                .set_availability(SetAvailabilityRequest {
                    request_id: format!("demo-available-{}-{run}", a.id),
                    analyst_id: a.id.to_owned(),
                    availability: Availability::Available as i32,
                    expected_version: 0,
                })
                .await
                .with_context(|| format!("making analyst {} available", a.id))?
                .into_inner();
            notes.push(format!("was {was}, now available"));
        }
        let note = if notes.is_empty() {
            String::new()
        } else {
            format!(" ({})", notes.join("; "))
        };
        p.line(&format!("{:<15} {}{note}", a.id, a.role));
        analysts.push(current);
    }
    p.print("");
    p.block(&render::analyst_table(&analysts).render());
    Ok(analysts)
}

/// True once routing has decided: an assignee, or a place in the queue.
pub fn routed(t: &Ticket) -> bool {
    !t.assignee_analyst_id.is_empty() || t.queued
}

/// Re-reads the tickets from intake until each is [`routed`] or `wait`
/// passes; returns them as last read.
pub async fn wait_routed(
    intake: &Session,
    created: &[Ticket],
    wait: Duration,
) -> Result<Vec<Ticket>> {
    let deadline = Instant::now() + wait;
    let mut latest: Vec<Ticket> = created.to_vec();
    loop {
        for t in latest.iter_mut().filter(|t| !routed(t)) {
            let session = intake.for_tenant(Some(&t.tenant_id))?;
            *t = session
                .tickets()
                .get_ticket(GetTicketRequest {
                    ticket_id: t.ticket_id.clone(),
                    number: String::new(),
                })
                .await
                .with_context(|| format!("reading {}", t.number))?
                .into_inner();
        }
        if latest.iter().all(routed) || Instant::now() >= deadline {
            return Ok(latest);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Why each queued ticket waits (`ticket_id -> reason_code`), from routing's queues.
pub async fn queue_reasons(routing: &Session, tickets: &[Ticket]) -> HashMap<String, String> {
    let mut reasons = HashMap::new();
    let mut tenants: Vec<&str> = tickets
        .iter()
        .filter(|t| t.queued)
        .map(|t| t.tenant_id.as_str())
        .collect();
    tenants.sort_unstable();
    tenants.dedup();
    for tenant in tenants {
        let Ok(session) = routing.for_tenant(Some(tenant)) else {
            continue;
        };
        let req = GetQueueRequest {
            priorities: Vec::new(),
            page_size: 500,
            page_token: String::new(),
        };
        match session.queues().get_queue(req).await {
            Ok(q) => reasons.extend(
                q.into_inner()
                    .tickets
                    .into_iter()
                    .map(|t| (t.ticket_id, t.reason_code)),
            ),
            Err(s) => tracing::debug!(tenant, error = %describe_status(&s), "queue not readable"),
        }
    }
    reasons
}

/// A tenant's queue after the run: how many wait, per priority (or why it
/// could not be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDepth {
    /// Tenant slug.
    pub tenant_id: String,
    /// `(priority label, count)`, P1 first; `Err` when unreadable.
    pub waiting: Result<Vec<(String, u32)>, String>,
}

impl QueueDepth {
    /// `stmarys 0`, `lakeside 2 (P1 1, P3 1)`, `lakeside ?`.
    pub fn text(&self) -> String {
        match &self.waiting {
            Err(_) => format!("{} ?", self.tenant_id),
            Ok(per) if per.is_empty() => format!("{} 0", self.tenant_id),
            Ok(per) => {
                let total: u32 = per.iter().map(|(_, n)| n).sum();
                let parts: Vec<String> = per.iter().map(|(p, n)| format!("{p} {n}")).collect();
                format!("{} {total} ({})", self.tenant_id, parts.join(", "))
            }
        }
    }
}

/// Each tenant's queue as routing holds it now.
pub async fn queue_depths(routing: &Session, tenants: &[&str]) -> Vec<QueueDepth> {
    let mut out = Vec::new();
    for tenant in tenants {
        let read = async {
            let q = routing
                .for_tenant(Some(tenant))?
                .queues()
                .get_queue(GetQueueRequest {
                    page_size: 1,
                    ..Default::default()
                })
                .await?
                .into_inner();
            anyhow::Ok(
                q.by_priority
                    .iter()
                    .map(|c| (labels::priority(c.priority), c.count))
                    .collect(),
            )
        };
        out.push(QueueDepth {
            tenant_id: (*tenant).to_owned(),
            waiting: read.await.map_err(|e| crate::error_text(&e)),
        });
    }
    out
}

/// The assignee column: the analyst, `queued (reason)`, or not routed.
pub fn assignee_text(t: &Ticket, reasons: &HashMap<String, String>, waited: Duration) -> String {
    if !t.assignee_analyst_id.is_empty() {
        t.assignee_analyst_id.clone()
    } else if t.queued {
        match reasons.get(&t.ticket_id).filter(|r| !r.is_empty()) {
            Some(r) => format!("queued ({r})"),
            None => "queued".to_owned(),
        }
    } else {
        format!(
            "not routed within {} s (status {})",
            waited.as_secs(),
            labels::status(t.status)
        )
    }
}

/// Where routing put each ticket.
pub fn routing_table(
    tickets: &[Ticket],
    reasons: &HashMap<String, String>,
    waited: Duration,
) -> Table {
    let mut table = Table::new(&[
        "NUMBER", "PRI", "CATEGORY", "CALLER", "FACILITY", "ASSIGNEE",
    ]);
    for t in tickets {
        table.row([
            t.number.clone(),
            labels::priority(t.priority),
            labels::category(t.category),
            t.caller
                .as_ref()
                .map_or("-".to_owned(), |c| labels::caller_role(c.role)),
            t.facility_id.clone(),
            assignee_text(t, reasons, waited),
        ]);
    }
    table
}

/// Which assigned ticket to explain: the physician's orders ticket (several
/// qualified analysts compete for it) when assigned, else the first assigned.
pub fn pick_explained(tickets: &[Ticket]) -> Option<&Ticket> {
    const PREFERENCE: [usize; 5] = [1, 0, 2, 4, 3];
    PREFERENCE
        .iter()
        .filter_map(|i| tickets.get(*i))
        .find(|t| !t.assignee_analyst_id.is_empty())
}

/// Prints routing's recorded decision for `ticket`'s latest assignment;
/// returns the assignment id.
pub(super) async fn explain(
    routing: &Session,
    ticket: &Ticket,
    zone: Zone,
    p: &Progress,
) -> Result<Option<String>> {
    let session = routing.for_tenant(Some(&ticket.tenant_id))?;
    let latest = session
        .queues()
        .list_assignments(ListAssignmentsRequest {
            ticket_id: ticket.ticket_id.clone(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .with_context(|| format!("listing the assignments of {}", ticket.number))?
        .into_inner()
        .assignments
        .into_iter()
        .next();
    let Some(a) = latest else {
        p.line(&format!("{} has no assignment to explain", ticket.number));
        return Ok(None);
    };
    let e = session
        .queues()
        .explain_assignment(ExplainAssignmentRequest {
            assignment_id: a.assignment_id.clone(),
        })
        .await
        .with_context(|| format!("explaining assignment {}", a.assignment_id))?
        .into_inner();
    p.print("");
    p.line(&format!(
        "why {} went to {} (wardctl --tenant {} explain {}):",
        ticket.number, e.chosen_analyst_id, ticket.tenant_id, a.assignment_id
    ));
    p.print("");
    p.block(&render::explanation_text(&e, zone));
    Ok(Some(a.assignment_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::{TENANTS, TICKETS};

    #[test]
    fn the_roster_fits_the_tenants_and_the_tickets() {
        for a in &ROSTER {
            assert!(
                !a.id.is_empty()
                    && a.id.len() <= 64
                    && a.id.bytes().all(|b| b.is_ascii_lowercase()
                        || b.is_ascii_digit()
                        || b"._-".contains(&b)),
                "{}",
                a.id
            );
            assert!((1..=100).contains(&a.max_tickets));
            assert!(a.phone.starts_with('+') && a.phone[1..].bytes().all(|b| b.is_ascii_digit()));
            assert!(
                a.time_zone.parse::<chrono_tz::Tz>().is_ok(),
                "{}",
                a.time_zone
            );
            for (tenant, facilities) in a.coverage {
                if *tenant == "*" {
                    assert!(facilities.is_empty());
                    continue;
                }
                let t = TENANTS.iter().find(|t| t.id == *tenant).expect("tenant");
                for f in *facilities {
                    assert!(t.facilities.iter().any(|(id, _)| id == f), "{f}");
                }
            }
            let mut modules: Vec<i32> = a.skills.iter().map(|(m, _)| *m as i32).collect();
            modules.sort_unstable();
            modules.dedup();
            assert_eq!(modules.len(), a.skills.len(), "one skill per module");
            assert!(a.skills.iter().all(|(_, l)| (1..=5).contains(l)));
            let req = a.request();
            assert_eq!(req.request_id, format!("demo-analyst-{}", a.id));
            assert_eq!(
                req.analyst.unwrap().availability,
                Availability::Available as i32
            );
        }
        // Every tenant of a demo ticket has someone covering it.
        for t in &TICKETS {
            assert!(ROSTER.iter().any(|a| {
                a.coverage.iter().any(|(c, f)| {
                    *c == "*" || (*c == t.tenant && (f.is_empty() || f.contains(&t.facility)))
                })
            }));
        }
        assert!(ROSTER.iter().any(|a| a.supervisor));
        assert!(
            ROSTER
                .iter()
                .any(|a| a.coverage.iter().any(|(c, _)| *c == "*"))
        );
    }

    fn ticket(n: usize, assignee: &str, queued: bool) -> Ticket {
        Ticket {
            ticket_id: format!("t{n}"),
            number: format!("STM-00000{n}"),
            assignee_analyst_id: assignee.into(),
            queued,
            status: 1,
            priority: 2,
            category: 1,
            ..Default::default()
        }
    }

    #[test]
    fn routed_tickets_show_their_assignee_or_queue_reason() {
        let tickets = vec![
            ticket(1, "rn.okonkwo", false),
            ticket(2, "", true),
            ticket(3, "", false),
        ];
        assert!(routed(&tickets[0]) && routed(&tickets[1]) && !routed(&tickets[2]));
        let reasons: HashMap<String, String> = [("t2".to_owned(), "no_capacity".to_owned())].into();
        let out = routing_table(&tickets, &reasons, Duration::from_secs(15)).render();
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[1].ends_with("rn.okonkwo"), "{out}");
        assert!(lines[2].ends_with("queued (no_capacity)"), "{out}");
        assert!(
            lines[3].ends_with("not routed within 15 s (status new)"),
            "{out}"
        );
        assert_eq!(
            assignee_text(&tickets[1], &HashMap::new(), Duration::ZERO),
            "queued"
        );
    }

    #[test]
    fn the_explained_ticket_prefers_the_contested_one() {
        let mut tickets: Vec<Ticket> = (1..=5).map(|n| ticket(n, "someone", false)).collect();
        assert_eq!(pick_explained(&tickets).unwrap().number, "STM-000002");
        tickets[1].assignee_analyst_id.clear();
        assert_eq!(pick_explained(&tickets).unwrap().number, "STM-000001");
        for t in &mut tickets {
            t.assignee_analyst_id.clear();
        }
        assert!(pick_explained(&tickets).is_none());
    }
}
