//! A scenario file: the seed data and calls `wardctl demo` plays. Each
//! entry holds the message of the RPC that creates it, in the proto3 JSON
//! mapping (see `scenarios/demo.yaml`), so the services validate what it
//! says; this module only checks that the entries refer to each other
//! correctly. Unknown fields are errors, at every level.

use std::path::Path;

use anyhow::{Context as _, Result, bail, ensure};
use serde::{Deserialize, Serialize};
use wardline_proto::billing::Contract;
use wardline_proto::events::ResolutionCode;
use wardline_proto::intake::{CreateTenantRequest, CreateTicketRequest};
use wardline_proto::notification::Recipient;
use wardline_proto::routing::Analyst;

/// The demo wardctl ships (`services/wardctl/scenarios/demo.yaml`).
pub const SHIPPED: &str = include_str!("../../scenarios/demo.yaml");

/// The example contract version (`services/wardctl/scenarios/example-contract.yaml`),
/// which the load generator gives its tenants.
pub const EXAMPLE_CONTRACT: &str = include_str!("../../scenarios/example-contract.yaml");

/// Everything a run creates, in order.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Hospitals (their request ids are filled in: `demo-tenant-<id>`).
    pub tenants: Vec<CreateTenantRequest>,
    /// The help desk in routing.
    #[serde(default)]
    pub analysts: Vec<SeedAnalyst>,
    /// A contract version per hospital in billing.
    #[serde(default)]
    pub contracts: Vec<SeedContract>,
    /// Notification recipients.
    #[serde(default)]
    pub recipients: Vec<SeedRecipient>,
    /// The calls, filed in order.
    pub calls: Vec<Call>,
    /// 1-based calls whose decision to explain: the first one assigned.
    #[serde(default)]
    pub explain: Vec<usize>,
    /// The call worked end to end.
    #[serde(default)]
    pub work: Option<Work>,
}

/// An analyst and what they do (for the progress output).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedAnalyst {
    /// One line about them.
    pub role: String,
    /// As UpsertAnalyst takes it.
    pub analyst: Analyst,
}

/// A hospital's contract version.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedContract {
    /// Tenant slug.
    pub tenant: String,
    /// What kind of deal it is.
    pub story: String,
    /// As CreateContractVersion takes it; an empty `effectiveFrom` starts
    /// on the first of the current month in the tenant's zone.
    pub contract: Contract,
}

/// A recipient of one hospital.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedRecipient {
    /// Tenant slug.
    pub tenant: String,
    /// Who they are.
    pub story: String,
    /// As UpsertRecipient takes it.
    pub recipient: Recipient,
}

/// Where routing should put a call on a fresh system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// Given to an analyst.
    Assigned,
    /// Waiting in the queue.
    Queued,
}

impl Expect {
    /// `assigned` or `queued`.
    pub fn label(self) -> &'static str {
        match self {
            Expect::Assigned => "assigned",
            Expect::Queued => "queued",
        }
    }
}

/// One call.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Call {
    /// Tenant slug.
    pub tenant: String,
    /// One line for the output (our words, never the description).
    pub story: String,
    /// Where routing should put it.
    pub expect: Expect,
    /// As CreateTicket takes it (request id filled in per run).
    pub ticket: CreateTicketRequest,
}

/// The call worked by its analyst.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Work {
    /// 1-based index into `calls`.
    pub call: usize,
    /// A public note's body.
    pub note: String,
    /// How it is resolved.
    pub resolution: ResolutionCode,
}

impl Scenario {
    /// The shipped demo, or the YAML file at `path`.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let (text, name) = match path {
            None => (SHIPPED.to_owned(), "the shipped demo scenario".to_owned()),
            Some(p) => (
                std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read the scenario {}", p.display()))?,
                p.display().to_string(),
            ),
        };
        let scenario: Self =
            serde_norway::from_str(&text).with_context(|| format!("{name} is not a scenario"))?;
        scenario
            .check()
            .with_context(|| format!("{name} does not hold together"))?;
        Ok(scenario)
    }

    /// The 1-based call `n`.
    pub fn call(&self, n: usize) -> Option<&Call> {
        n.checked_sub(1).and_then(|i| self.calls.get(i))
    }

    /// Entries name tenants the scenario creates, and calls that exist.
    fn check(&self) -> Result<()> {
        ensure!(!self.calls.is_empty(), "calls: at least one");
        let known = |t: &str| self.tenants.iter().any(|x| x.tenant_id == t);
        let named = self
            .calls
            .iter()
            .map(|c| ("calls", &c.tenant))
            .chain(self.contracts.iter().map(|c| ("contracts", &c.tenant)))
            .chain(self.recipients.iter().map(|r| ("recipients", &r.tenant)));
        for (what, tenant) in named {
            if !known(tenant) {
                bail!("{what}: tenant {tenant:?} is not among the scenario's tenants");
            }
        }
        for n in self
            .explain
            .iter()
            .chain(self.work.as_ref().map(|w| &w.call))
        {
            ensure!(
                self.call(*n).is_some(),
                "call {n} does not exist (calls are numbered 1 to {})",
                self.calls.len()
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wardline_proto::common::{Category, Priority};
    use wardline_proto::notification::EventKind;

    #[test]
    fn the_shipped_demo_reads() {
        let s = Scenario::load(None).unwrap();
        assert_eq!(s.tenants.len(), 2);
        assert_eq!(s.analysts.len(), 5);
        assert_eq!(s.calls.len(), 5);
        assert!(s.calls.iter().all(|c| c.expect == Expect::Assigned));
        let scanner = &s.calls[0].ticket;
        assert!(scanner.patient_care_blocked);
        assert_eq!(scanner.category, Category::MedicationAdministration as i32);
        assert!(!scanner.description.contains('\n'));
        assert_eq!(s.calls[4].ticket.category, 0, "left to intake's classifier");
        // YAML anchors share the rate card and the supervisors' subscriptions.
        let lakeside = &s.contracts[1].contract;
        assert_eq!(lakeside.rate_card.len(), 8);
        assert_eq!(lakeside.rate_card[0].priority, Priority::P1 as i32);
        assert_eq!(
            lakeside
                .overage_price_per_call
                .as_ref()
                .unwrap()
                .minor_units,
            3250
        );
        let subs = &s.recipients[1]
            .recipient
            .preferences
            .as_ref()
            .unwrap()
            .subscriptions;
        assert_eq!(subs[0].event_kind, EventKind::TicketReceived as i32);
        assert_eq!(
            s.work.as_ref().unwrap().resolution,
            ResolutionCode::Hardware
        );
        assert_eq!(s.call(2).unwrap().tenant, "stmarys");
        assert!(s.call(0).is_none() && s.call(6).is_none());
    }

    #[test]
    fn mistakes_are_named() {
        let base = "tenants: [{tenantId: a}]\ncalls: [{tenant: a, story: s, expect: queued, ticket: {}}]\n";
        let dir = tempfile::tempdir().unwrap();
        let write = |text: &str| {
            let p = dir.path().join("s.yaml");
            std::fs::write(&p, text).unwrap();
            Scenario::load(Some(&p)).map_err(|e| format!("{e:#}"))
        };
        assert!(write(base).is_ok());
        let e = write(&base.replace("ticket: {}", "ticket: {facility: x}")).unwrap_err();
        assert!(e.contains("facility"), "{e}");
        let e = write(&base.replace("tenant: a,", "tenant: b,")).unwrap_err();
        assert!(e.contains("tenant \"b\""), "{e}");
        let e = write(&format!("{base}explain: [2]\n")).unwrap_err();
        assert!(e.contains("call 2 does not exist"), "{e}");
        let e = write(&base.replace("queued", "lost")).unwrap_err();
        assert!(e.contains("lost"), "{e}");
    }
}
