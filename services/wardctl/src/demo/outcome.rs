//! What a demo run did, as the summary prints it and `--json` (and the
//! end-to-end test) reads it: per call where routing put it, how billing
//! charged it and how many messages it caused; per tenant its queue and
//! draft invoice; the deliveries by channel, status and event; the events
//! seen; and what to try next.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;
use wardline_proto::common::Money;

use super::scenario::Expect;

/// One call of the run.
#[derive(Debug, Clone, Serialize)]
pub struct CallOutcome {
    /// Ticket number, e.g. `STM-000012`.
    pub number: String,
    /// Ticket id.
    pub ticket_id: String,
    /// Tenant slug.
    pub tenant_id: String,
    /// `P1`..`P4`.
    pub priority: String,
    /// Category label (intake's when it classified the description).
    pub category: String,
    /// Whether intake classified the category.
    pub classified: bool,
    /// Where the scenario expects routing to put it.
    pub expect: Expect,
    /// The analyst it went to.
    pub assignee: Option<String>,
    /// Waiting in the queue, and why.
    pub queued: Option<String>,
    /// Base charges billing recorded (1: metered once).
    pub charges: usize,
    /// How it was charged, e.g. `rate_card.technical.p3 + after hours (closed-day)`.
    pub charged_as: Option<String>,
    /// Messages notification recorded about it.
    pub deliveries: usize,
}

impl CallOutcome {
    /// Whether routing put it where the scenario expects.
    pub fn as_expected(&self) -> bool {
        match self.expect {
            Expect::Assigned => self.assignee.is_some(),
            Expect::Queued => self.assignee.is_none() && self.queued.is_some(),
        }
    }

    /// `assigned`, `queued` or `not routed`.
    pub fn placed(&self) -> &'static str {
        match (&self.assignee, &self.queued) {
            (Some(_), _) => "assigned",
            (None, Some(_)) => "queued",
            (None, None) => "not routed",
        }
    }
}

/// A tenant after the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TenantOutcome {
    /// Tenant slug.
    pub tenant_id: String,
    /// Tickets waiting in routing's queue (of every run), per priority.
    pub queue: BTreeMap<String, u32>,
    /// The draft invoice's total of the current month.
    pub draft_total: Option<Money>,
    /// Why the queue or the invoice could not be read.
    pub errors: Vec<String>,
}

/// The worked call.
#[derive(Debug, Clone, Serialize)]
pub struct Worked {
    /// Ticket number.
    pub number: String,
    /// Who worked it.
    pub actor: String,
    /// What happened, e.g. `acknowledged`, `started`, `note_added`, `resolved`.
    pub steps: Vec<String>,
}

/// The whole run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    /// Run id (a UTC timestamp).
    pub run_id: String,
    /// The calls, in filing order.
    pub calls: Vec<CallOutcome>,
    /// `(number, analyst)` of the decision explained.
    pub explained: Option<(String, String)>,
    /// The worked call.
    pub worked: Option<Worked>,
    /// Every tenant of the scenario.
    pub tenants: Vec<TenantOutcome>,
    /// Tenants with a contract (their calls are rated).
    pub billed_tenants: Vec<String>,
    /// Deliveries about the run's calls per channel, per status.
    pub deliveries: BTreeMap<String, BTreeMap<String, usize>>,
    /// Deliveries per event kind.
    pub deliveries_by_event: BTreeMap<String, usize>,
    /// The mail sink's directory and the messages it got during the run.
    pub mail: Option<(PathBuf, Result<usize, String>)>,
    /// Events about the run's calls on NATS, per kind.
    pub events: BTreeMap<String, usize>,
    /// Commands worth running next.
    pub try_next: Vec<String>,
}

fn counted<K: std::fmt::Display, V: std::fmt::Display>(m: &BTreeMap<K, V>) -> String {
    m.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Outcome {
    /// The summary, one line per subject.
    pub fn text(&self) -> String {
        let mut out = Vec::new();
        let mut priorities: BTreeMap<&str, usize> = BTreeMap::new();
        for c in &self.calls {
            *priorities.entry(&c.priority).or_default() += 1;
        }
        let events: usize = self.events.values().sum();
        out.push(format!(
            "{} tickets created ({}); {events} events about them on NATS ({})",
            self.calls.len(),
            (priorities.iter().map(|(p, n)| format!("{p}: {n}")))
                .collect::<Vec<_>>()
                .join(", "),
            counted(&self.events)
        ));
        let classified: Vec<String> = (self.calls.iter().filter(|c| c.classified))
            .map(|c| format!("{} -> {}", c.number, c.category))
            .collect();
        if !classified.is_empty() {
            out.push(format!(
                "classified by intake from the description: {}",
                classified.join(", ")
            ));
        }
        out.push(self.routing_line());
        if let Some((number, analyst)) = &self.explained {
            out.push(format!("explained: why {number} went to {analyst}"));
        }
        let queues: Vec<String> = self.tenants.iter().map(queue_text).collect();
        out.push(format!(
            "queue now, per tenant (tickets of every run still waiting): {}",
            queues.join(", ")
        ));
        out.push(self.billing_line());
        out.extend(self.notification_lines());
        if let Some(w) = &self.worked {
            out.push(format!(
                "worked {} by {}: {}",
                w.number,
                w.actor,
                w.steps.join(", ")
            ));
        }
        out.push("try next:".to_owned());
        out.extend(self.try_next.iter().map(|c| format!("  {c}")));
        out.join("\n") + "\n"
    }

    fn routing_line(&self) -> String {
        let mut per_analyst: BTreeMap<&str, usize> = BTreeMap::new();
        for a in self.calls.iter().filter_map(|c| c.assignee.as_deref()) {
            *per_analyst.entry(a).or_default() += 1;
        }
        let assigned: usize = per_analyst.values().sum();
        let queued = self.calls.iter().filter(|c| c.placed() == "queued").count();
        let mut line = format!("routing: {assigned} assigned");
        if !per_analyst.is_empty() {
            line.push_str(&format!(" ({})", counted(&per_analyst)));
        }
        line.push_str(&format!(", {queued} queued"));
        let pending = self.calls.len() - assigned - queued;
        if pending > 0 {
            line.push_str(&format!(", {pending} not routed in time"));
        }
        let odd: Vec<String> = (self.calls.iter().filter(|c| !c.as_expected()))
            .map(|c| {
                format!(
                    "{} {} (expected {})",
                    c.number,
                    c.placed(),
                    c.expect.label()
                )
            })
            .collect();
        if odd.is_empty() {
            line.push_str("; as the scenario expects");
        } else {
            line.push_str(&format!("; unlike the scenario: {}", odd.join(", ")));
        }
        line
    }

    fn billing_line(&self) -> String {
        let billed: Vec<&CallOutcome> = (self.calls.iter())
            .filter(|c| self.billed_tenants.contains(&c.tenant_id))
            .collect();
        let once = billed.iter().filter(|c| c.charges == 1).count();
        let mut line = format!(
            "billing: {once} of {} calls metered exactly once",
            billed.len()
        );
        let not_yet: Vec<&str> = (billed.iter().filter(|c| c.charges == 0))
            .map(|c| c.number.as_str())
            .collect();
        if !not_yet.is_empty() {
            line.push_str(&format!(", not rated yet: {}", not_yet.join(", ")));
        }
        let twice: Vec<String> = (billed.iter().filter(|c| c.charges > 1))
            .map(|c| format!("{} x{}", c.number, c.charges))
            .collect();
        if !twice.is_empty() {
            line.push_str(&format!(", METERED MORE THAN ONCE: {}", twice.join(", ")));
        }
        let totals: Vec<String> = (self.tenants.iter())
            .filter_map(|t| {
                t.draft_total
                    .as_ref()
                    .map(|m| format!("{} {m}", t.tenant_id))
            })
            .collect();
        if !totals.is_empty() {
            line.push_str(&format!("; draft invoices: {}", totals.join(", ")));
        }
        line
    }

    fn notification_lines(&self) -> Vec<String> {
        let total: usize = self.deliveries.values().flat_map(|s| s.values()).sum();
        let channels: Vec<String> = (self.deliveries.iter())
            .map(|(c, per)| format!("{c} {} ({})", per.values().sum::<usize>(), counted(per)))
            .collect();
        let mut first = format!("notification: {total} deliveries for this run's tickets");
        if total > 0 {
            first.push_str(&format!(
                ": {}; by event: {}",
                channels.join("; "),
                counted(&self.deliveries_by_event)
            ));
        }
        let silent: Vec<&str> = (self.calls.iter().filter(|c| c.deliveries == 0))
            .map(|c| c.number.as_str())
            .collect();
        if !silent.is_empty() {
            first.push_str(&format!("; nobody told yet about {}", silent.join(", ")));
        }
        let mail = match &self.mail {
            Some((dir, Ok(n))) => format!(
                "email: {n} message(s) reached {} during the run (the local mail sink; earlier tickets' too)",
                dir.display()
            ),
            Some((dir, Err(e))) => format!("email: the mail sink's directory {} is not readable: {e}", dir.display()),
            None => "email: in the mailbox of notification's SMTP relay (Mailpit at http://localhost:8025 under compose)".to_owned(),
        };
        vec![first, mail]
    }
}

/// `stmarys 0`, `lakeside 2 (P1 1, P3 1)`, `lakeside ?`.
fn queue_text(t: &TenantOutcome) -> String {
    let total: u32 = t.queue.values().sum();
    if !t.errors.is_empty() && t.queue.is_empty() {
        format!("{} ?", t.tenant_id)
    } else if total == 0 {
        format!("{} 0", t.tenant_id)
    } else {
        format!("{} {total} ({})", t.tenant_id, counted(&t.queue))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(number: &str, tenant: &str, assignee: Option<&str>, charges: usize) -> CallOutcome {
        CallOutcome {
            number: number.into(),
            ticket_id: format!("id-{number}"),
            tenant_id: tenant.into(),
            priority: "P2".into(),
            category: "network".into(),
            classified: number.ends_with('8'),
            expect: Expect::Assigned,
            assignee: assignee.map(str::to_owned),
            queued: assignee.is_none().then(|| "no_capacity".to_owned()),
            charges,
            charged_as: None,
            deliveries: 2,
        }
    }

    #[test]
    fn the_summary_says_what_happened_to_every_call() {
        let o = Outcome {
            run_id: "r".into(),
            calls: vec![
                call("STM-000012", "stmarys", Some("tech.lindqvist"), 1),
                call("LKS-000008", "lakeside", None, 2),
            ],
            explained: Some(("STM-000012".into(), "tech.lindqvist".into())),
            tenants: vec![TenantOutcome {
                tenant_id: "lakeside".into(),
                queue: BTreeMap::from([("P2".to_owned(), 3)]),
                draft_total: Some(Money {
                    currency: "USD".into(),
                    minor_units: 32_504,
                }),
                errors: vec![],
            }],
            billed_tenants: vec!["stmarys".into(), "lakeside".into()],
            deliveries: BTreeMap::from([(
                "email".to_owned(),
                BTreeMap::from([("delivered".to_owned(), 4)]),
            )]),
            deliveries_by_event: BTreeMap::from([("ticket-received".to_owned(), 4)]),
            events: BTreeMap::from([("ticket.created".to_owned(), 2)]),
            try_next: vec!["wardctl --tenant stmarys queue".into()],
            ..Default::default()
        };
        let text = o.text();
        for want in [
            "2 tickets created (P2: 2); 2 events about them on NATS (ticket.created 2)\n",
            "classified by intake from the description: LKS-000008 -> network\n",
            "routing: 1 assigned (tech.lindqvist 1), 1 queued; unlike the scenario: LKS-000008 queued (expected assigned)\n",
            "queue now, per tenant (tickets of every run still waiting): lakeside 3 (P2 3)\n",
            "billing: 1 of 2 calls metered exactly once, METERED MORE THAN ONCE: LKS-000008 x2; draft invoices: lakeside 325.04 USD\n",
            "notification: 4 deliveries for this run's tickets: email 4 (delivered 4); by event: ticket-received 4\n",
            "email: in the mailbox of notification's SMTP relay",
            "try next:\n  wardctl --tenant stmarys queue\n",
        ] {
            assert!(text.contains(want), "{want:?} in\n{text}");
        }
        let j = serde_json::to_value(&o).unwrap();
        assert_eq!(j["tenants"][0]["draft_total"]["minorUnits"], "32504");
        assert_eq!(j["calls"][1]["expect"], "assigned");
    }
}
