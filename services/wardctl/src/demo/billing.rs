//! The billing half of `wardctl demo`: a contract version for each hospital
//! before any call is filed, then what billing metered for the run's calls
//! and what each hospital's draft invoice holds so far.
//!
//! Billing is optional for the demo, like routing: when nothing answers at
//! `--billing-url`, [`connect`] says why and the demo goes on without it.
//! A call must be rated exactly once: a second base charge for one of the
//! run's tickets fails the demo; a call not rated within the wait is
//! reported, not fatal (billing may just be behind).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use chrono::{DateTime, Datelike as _, Utc};
use chrono_tz::Tz;
use secrecy::SecretString;
use serde_json::{Value, json};
use tonic::Code;
use wardline_proto::billing::{
    Charge, Contract, CreateContractVersionRequest, GetContractRequest, GetDraftInvoiceRequest,
    GetUsageRequest, Invoice, LineKind, ListChargesRequest, ListUnbilledRequest, SlaCredits, Usage,
};
use wardline_proto::common::Money;
use wardline_proto::intake::{Tenant, Ticket};

use super::Progress;
use super::routing::Reach;
use crate::cli::example_contract;
use crate::grpc::{Session, describe_status};
use crate::render::billing as render;
use crate::render::{self as labels};
use crate::table::Table;

/// Currency of the demo's contracts.
pub const CURRENCY: &str = "USD";

/// The contract terms of a demo hospital, on top of the example rate card
/// (clinical P1-P4 45/35/25/20, technical 30/25/15/10, weekdays
/// 08:00-17:00, 25 % after hours, half-up). Amounts in minor units.
#[derive(Debug, Clone, Copy)]
pub struct DemoContract {
    /// Tenant slug.
    pub tenant: &'static str,
    /// What kind of deal it is, for the progress output.
    pub story: &'static str,
    /// Calls a month that are not charged.
    pub included: u32,
    /// Flat price of each call beyond the allowance.
    pub overage: Option<i64>,
    /// Least amount billed for a month.
    pub minimum: Option<i64>,
    /// `(per P1 response breach, per P2 response breach, cap in bps)`.
    pub credits: Option<(i64, i64, u32)>,
}

/// The demo's contracts: a subscription with an allowance for St Mary's,
/// pay-per-call at a flat price for Lakeside.
pub const CONTRACTS: [DemoContract; 2] = [
    DemoContract {
        tenant: "stmarys",
        story: "subscription: 100 calls a month included, 2500.00 minimum, SLA credits",
        included: 100,
        overage: None,
        minimum: Some(250_000),
        credits: Some((5000, 2500, 1000)),
    },
    DemoContract {
        tenant: "lakeside",
        story: "pay per call: a flat 32.50 for every call, no allowance",
        included: 0,
        overage: Some(3250),
        minimum: None,
        credits: None,
    },
];

fn usd(minor_units: i64) -> Option<Money> {
    Some(Money {
        currency: CURRENCY.to_owned(),
        minor_units,
    })
}

impl DemoContract {
    /// The contract version, in force from `effective_from`.
    pub fn contract(&self, effective_from: &str) -> Contract {
        let mut c = example_contract(CURRENCY, effective_from);
        c.calls_included_per_month = self.included;
        c.overage_price_per_call = self.overage.and_then(usd);
        c.monthly_minimum = self.minimum.and_then(usd);
        c.sla_credits = self.credits.map(|(p1, p2, cap_bps)| SlaCredits {
            per_p1_response_breach: usd(p1),
            per_p2_response_breach: usd(p2),
            cap_bps,
        });
        c
    }

    /// The CreateContractVersion request: a fixed request id and
    /// `expected_latest_version` 0, so only the very first run creates a
    /// version; later runs (another month, a purged key) are refused and
    /// show what billing holds.
    pub fn request(&self, effective_from: &str) -> CreateContractVersionRequest {
        CreateContractVersionRequest {
            request_id: format!("demo-contract-{}", self.tenant),
            contract: Some(self.contract(effective_from)),
            expected_latest_version: 0,
        }
    }
}

/// The local date of `now` in `time_zone` (UTC when the zone is unknown).
fn local_date(time_zone: &str, now: DateTime<Utc>) -> chrono::NaiveDate {
    match time_zone.parse::<Tz>() {
        Ok(tz) => now.with_timezone(&tz).date_naive(),
        Err(_) => now.date_naive(),
    }
}

/// Today, `YYYY-MM-DD`, in `time_zone`.
pub fn today(time_zone: &str, now: DateTime<Utc>) -> String {
    local_date(time_zone, now).format("%Y-%m-%d").to_string()
}

/// The first day of the month `now` falls in, in `time_zone` (UTC when the
/// zone is unknown): a date any first contract version may start on, since
/// the current period cannot have been issued yet.
pub fn first_of_month(time_zone: &str, now: DateTime<Utc>) -> String {
    let local = local_date(time_zone, now);
    local
        .with_day(1)
        .unwrap_or(local)
        .format("%Y-%m-%d")
        .to_string()
}

/// The local period `YYYY-MM` of an instant in `time_zone`.
pub fn period_of(time_zone: &str, at: DateTime<Utc>) -> String {
    match time_zone.parse::<Tz>() {
        Ok(tz) => at.with_timezone(&tz).format("%Y-%m").to_string(),
        Err(_) => at.format("%Y-%m").to_string(),
    }
}

/// Connects to billing and makes one call (see [`super::routing::reach`]).
pub async fn connect(url: &str, timeout: Duration, token: &SecretString) -> Result<Reach> {
    super::routing::reach(url, timeout, token, "billing", |s| async move {
        s.usage()
            .list_unbilled(ListUnbilledRequest {
                page_size: 1,
                ..Default::default()
            })
            .await
    })
    .await
}

/// A demo hospital as billing holds it.
#[derive(Debug, Clone)]
pub struct Billed {
    /// Tenant slug.
    pub tenant_id: String,
    /// IANA zone (from intake).
    pub time_zone: String,
    /// The version in force now (or the latest), when there is one.
    pub contract: Option<Contract>,
}

/// The version in force now, else the latest one.
async fn current_version(session: &Session) -> Result<Option<Contract>> {
    match session
        .contracts()
        .get_contract(GetContractRequest::default())
        .await
    {
        Ok(c) => Ok(Some(c.into_inner())),
        Err(s) if s.code() == Code::NotFound => {
            Ok(crate::commands::billing::list_versions(session)
                .await?
                .into_iter()
                .next())
        }
        Err(s) => Err(s.into()),
    }
}

/// Creates each hospital's first contract version (from the first of the
/// current month in its zone), or shows the one billing holds. Billing
/// learns tenants from intake's events, so NOT_FOUND is retried for up to
/// `wait`.
pub(super) async fn ensure_contracts(
    billing: &Session,
    tenants: &[Tenant],
    wait: Duration,
    p: &Progress,
) -> Result<Vec<Billed>> {
    let mut out = Vec::new();
    let deadline = Instant::now() + wait;
    for spec in &CONTRACTS {
        let Some(tenant) = tenants.iter().find(|t| t.tenant_id == spec.tenant) else {
            continue;
        };
        let scoped = billing.for_tenant(Some(spec.tenant))?;
        let from = first_of_month(&tenant.time_zone, Utc::now());
        let req = spec.request(&from);
        let mut waited_for_tenant = false;
        let asked = Utc::now();
        let (contract, note) = loop {
            match scoped
                .contracts()
                .create_contract_version(req.clone())
                .await
            {
                Ok(c) => {
                    let c = c.into_inner();
                    // The fixed request id replays an earlier run's version.
                    let earlier = labels::utc(c.created_at.as_ref())
                        .is_some_and(|t| t < asked - chrono::Duration::seconds(5));
                    let note = if earlier {
                        " (already there)".to_owned()
                    } else {
                        " (created)".to_owned()
                    };
                    break (Some(c), note);
                }
                // Billing has not applied the tenant's tenant.created yet.
                Err(s) if s.code() == Code::NotFound && Instant::now() < deadline => {
                    if !waited_for_tenant {
                        p.line(&format!(
                            "{:<9} billing has not heard of {} yet; waiting for intake's tenant event ...",
                            spec.tenant, spec.tenant
                        ));
                        waited_for_tenant = true;
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(s) if s.code() == Code::NotFound => {
                    break (
                        None,
                        format!(
                            "billing still does not know the tenant after {} s ({}): its calls stay unbilled",
                            wait.as_secs(),
                            describe_status(&s)
                        ),
                    );
                }
                // A version exists (the fixed request id served another
                // month, or expected_latest_version 0 is stale): show it.
                Err(s) if matches!(s.code(), Code::FailedPrecondition | Code::Aborted) => {
                    let existing = current_version(&scoped)
                        .await
                        .with_context(|| format!("reading {}'s contract", spec.tenant))?;
                    break match existing {
                        Some(c) => (Some(c), " (already there)".to_owned()),
                        None => (
                            None,
                            format!("refused ({}): its calls stay unbilled", describe_status(&s)),
                        ),
                    };
                }
                Err(s) => {
                    return Err(anyhow::Error::new(s)
                        .context(format!("creating {}'s contract", spec.tenant)));
                }
            }
        };
        match &contract {
            Some(c) => {
                p.line(&format!(
                    "{:<9} {}{note}",
                    spec.tenant,
                    render::contract_line(c)
                ));
                p.line(&format!("{:<9} {}", "", spec.story));
                // Dates YYYY-MM-DD compare as strings.
                if c.effective_from > today(&tenant.time_zone, Utc::now()) {
                    p.line(&format!(
                        "{:<9} not in force before {}: this month's calls stay unbilled",
                        "", c.effective_from
                    ));
                }
            }
            None => p.line(&format!("{:<9} no contract: {note}", spec.tenant)),
        }
        out.push(Billed {
            tenant_id: spec.tenant.to_owned(),
            time_zone: tenant.time_zone.clone(),
            contract,
        });
    }
    if let Some(c) = out.iter().find_map(|b| b.contract.as_ref()) {
        p.print("");
        p.line(&format!(
            "rate card of {} v{} (price per call, {}; wardctl --tenant {} contract get):",
            c.tenant_id, c.version, c.currency, c.tenant_id
        ));
        p.block(&render::rate_card_table(c).render());
    }
    Ok(out)
}

/// Charges that meter a call (one per rated call): included, overage or
/// rate-card price.
pub fn is_base_charge(c: &Charge) -> bool {
    [
        LineKind::CallsIncluded,
        LineKind::Overage,
        LineKind::TierPrice,
    ]
    .iter()
    .any(|k| c.kind == *k as i32)
}

/// Re-reads each ticket's charges (in the period of its creation) until
/// every ticket of a tenant with a contract has its base charge, or `wait`
/// passes. Returns `ticket_id -> charges`.
pub(super) async fn wait_rated(
    billing: &Session,
    created: &[Ticket],
    billed: &[Billed],
    wait: Duration,
) -> Result<HashMap<String, Vec<Charge>>> {
    let deadline = Instant::now() + wait;
    let mut charges: HashMap<String, Vec<Charge>> = HashMap::new();
    let expected: Vec<(&Ticket, &Billed)> = created
        .iter()
        .filter_map(|t| {
            billed
                .iter()
                .find(|b| b.tenant_id == t.tenant_id && b.contract.is_some())
                .map(|b| (t, b))
        })
        .collect();
    loop {
        for (t, b) in &expected {
            if charges
                .get(&t.ticket_id)
                .is_some_and(|c| c.iter().any(is_base_charge))
            {
                continue;
            }
            let at = labels::utc(t.created_at.as_ref()).unwrap_or_else(Utc::now);
            let session = billing.for_tenant(Some(&t.tenant_id))?;
            let req = ListChargesRequest {
                period: period_of(&b.time_zone, at),
                ticket_id: t.ticket_id.clone(),
                page_size: 500,
                ..Default::default()
            };
            let got = session
                .usage()
                .list_charges(req)
                .await
                .map_err(|s| anyhow::anyhow!("{}", describe_status(&s)))
                .with_context(|| format!("reading the charges of {}", t.number))?
                .into_inner()
                .charges;
            charges.insert(t.ticket_id.clone(), got);
        }
        let done = expected.iter().all(|(t, _)| {
            charges
                .get(&t.ticket_id)
                .is_some_and(|c| c.iter().any(is_base_charge))
        });
        if done || Instant::now() >= deadline {
            return Ok(charges);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// How each of the run's calls was rated.
pub fn calls_table(created: &[Ticket], charges: &HashMap<String, Vec<Charge>>) -> Table {
    let mut table = Table::new(&["NUMBER", "TIER", "PRI", "CHARGED AS", "AMOUNT"]);
    for t in created {
        let mine = charges.get(&t.ticket_id).map_or(&[][..], Vec::as_slice);
        let base: Vec<&Charge> = mine.iter().filter(|c| is_base_charge(c)).collect();
        let (tier, how) = match base.first() {
            None => ("-".to_owned(), "not rated (yet)".to_owned()),
            Some(b) => {
                let mut how = b.rule_code.clone();
                if let Some(s) = mine
                    .iter()
                    .find(|c| c.kind == LineKind::AfterHoursSurcharge as i32)
                {
                    how.push_str(&format!(
                        " + after hours ({})",
                        render::after_hours(s.after_hours)
                    ));
                }
                if base.len() > 1 {
                    how.push_str(&format!("  RATED {} TIMES", base.len()));
                }
                (render::tier(b.tier), how)
            }
        };
        let amount = if mine.is_empty() {
            "-".to_owned()
        } else {
            render::charges_total(mine)
        };
        table.row([
            t.number.clone(),
            tier,
            labels::priority(t.priority),
            how,
            amount,
        ]);
    }
    table
}

/// One hospital's month in billing.
#[derive(Debug, Clone)]
pub struct BillingRow {
    /// Tenant slug.
    pub tenant_id: String,
    /// `v1 from 2026-03-01`, when there is a contract.
    pub contract: Option<String>,
    /// The current period's usage.
    pub usage: Option<Usage>,
    /// The current period's draft invoice.
    pub draft: Option<Invoice>,
    /// Why usage or the draft could not be read.
    pub error: Option<String>,
}

/// Reads each hospital's usage and draft invoice of the current period.
pub(super) async fn rows(billing: &Session, billed: &[Billed]) -> Vec<BillingRow> {
    let mut rows = Vec::new();
    for b in billed {
        let mut row = BillingRow {
            tenant_id: b.tenant_id.clone(),
            contract: b
                .contract
                .as_ref()
                .map(|c| format!("v{} from {}", c.version, c.effective_from)),
            usage: None,
            draft: None,
            error: None,
        };
        let read = async {
            let session = billing.for_tenant(Some(&b.tenant_id))?;
            let usage = session
                .usage()
                .get_usage(GetUsageRequest::default())
                .await?
                .into_inner();
            let draft = session
                .invoices()
                .get_draft_invoice(GetDraftInvoiceRequest::default())
                .await?
                .into_inner();
            anyhow::Ok((usage, draft))
        }
        .await;
        match read {
            Ok((usage, draft)) => {
                row.usage = Some(usage);
                row.draft = Some(draft);
            }
            Err(e) => row.error = Some(crate::error_text(&e)),
        }
        rows.push(row);
    }
    rows
}

/// This month per hospital: calls, allowance used, overage, after hours,
/// unbilled, and the draft invoice's total.
pub fn billing_table(rows: &[BillingRow]) -> Table {
    let mut table = Table::new(&[
        "TENANT",
        "CONTRACT",
        "PERIOD",
        "CALLS",
        "INCLUDED",
        "OVERAGE",
        "AFTER HOURS",
        "UNBILLED",
        "DRAFT TOTAL",
    ]);
    for r in rows {
        let contract = r.contract.clone().unwrap_or_else(|| "none".to_owned());
        match (&r.usage, &r.draft) {
            (Some(u), Some(d)) => table.row([
                r.tenant_id.clone(),
                contract,
                u.period.clone(),
                u.calls.to_string(),
                format!("{} of {}", u.included_calls, u.calls_included_allowance),
                u.overage_calls.to_string(),
                u.after_hours_calls.to_string(),
                u.unbilled_calls.to_string(),
                render::amount_cur(d.total.as_ref()),
            ]),
            _ => table.row([
                r.tenant_id.clone(),
                contract,
                "-".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
                format!(
                    "not readable: {}",
                    r.error.as_deref().unwrap_or("no answer")
                ),
            ]),
        }
    }
    table
}

/// What billing made of the run, for the summary.
#[derive(Debug, Clone)]
pub enum BillingOutcome {
    /// Nothing answered at this URL.
    Unreachable(String),
    /// Billing answered.
    Checked {
        /// Calls of tenants with a contract (expected to be rated).
        expected: usize,
        /// Of which rated exactly once.
        rated_once: usize,
        /// Numbers of calls not rated within the wait.
        not_rated: Vec<String>,
        /// `NUMBER xN` of calls rated more than once.
        duplicated: Vec<String>,
        /// Seconds waited at most.
        waited_secs: u64,
        /// Each hospital's month.
        rows: Vec<BillingRow>,
        /// Why reading the charges stopped early, if it did.
        error: Option<String>,
    },
}

impl BillingOutcome {
    /// What the run's charges say: which calls were rated once, which not
    /// yet, which more than once.
    pub fn checked(
        created: &[Ticket],
        billed: &[Billed],
        charges: &HashMap<String, Vec<Charge>>,
        rows: Vec<BillingRow>,
        waited: Duration,
        error: Option<String>,
    ) -> Self {
        let mut expected = 0;
        let mut rated_once = 0;
        let mut not_rated = Vec::new();
        let mut duplicated = Vec::new();
        for t in created {
            if !billed
                .iter()
                .any(|b| b.tenant_id == t.tenant_id && b.contract.is_some())
            {
                continue;
            }
            expected += 1;
            let n = charges
                .get(&t.ticket_id)
                .map_or(0, |c| c.iter().filter(|c| is_base_charge(c)).count());
            match n {
                0 => not_rated.push(t.number.clone()),
                1 => rated_once += 1,
                n => duplicated.push(format!("{} x{n}", t.number)),
            }
        }
        BillingOutcome::Checked {
            expected,
            rated_once,
            not_rated,
            duplicated,
            waited_secs: waited.as_secs(),
            rows,
            error,
        }
    }

    /// Calls rated more than once (a failure of the demo).
    pub fn problems(&self) -> Vec<String> {
        match self {
            BillingOutcome::Checked { duplicated, .. } if !duplicated.is_empty() => {
                vec![format!(
                    "call(s) metered more than once by billing: {}",
                    duplicated.join(", ")
                )]
            }
            _ => Vec::new(),
        }
    }

    /// The summary's billing line.
    pub fn text(&self) -> String {
        match self {
            BillingOutcome::Unreachable(url) => {
                format!("billing not reachable at {url}: no contracts, usage or invoices")
            }
            BillingOutcome::Checked {
                expected,
                rated_once,
                not_rated,
                duplicated,
                waited_secs,
                rows,
                error,
            } => {
                let mut text =
                    format!("billing: {rated_once} of {expected} calls metered exactly once");
                if !not_rated.is_empty() {
                    text.push_str(&format!(
                        ", {} not rated within {waited_secs} s ({})",
                        not_rated.len(),
                        not_rated.join(", ")
                    ));
                }
                if !duplicated.is_empty() {
                    text.push_str(&format!(", rated twice or more: {}", duplicated.join(", ")));
                }
                let totals: Vec<String> = rows
                    .iter()
                    .filter_map(|r| {
                        r.draft.as_ref().map(|d| {
                            format!("{} {}", r.tenant_id, render::amount_cur(d.total.as_ref()))
                        })
                    })
                    .collect();
                if !totals.is_empty() {
                    text.push_str(&format!("; draft invoices: {}", totals.join(", ")));
                }
                if let Some(e) = error {
                    text.push_str(&format!(" (stopped reading charges: {e})"));
                }
                text
            }
        }
    }

    /// The summary's billing JSON.
    pub fn json(&self) -> Value {
        match self {
            BillingOutcome::Unreachable(url) => json!({"reachable": false, "url": url}),
            BillingOutcome::Checked {
                expected,
                rated_once,
                not_rated,
                duplicated,
                rows,
                error,
                ..
            } => json!({
                "reachable": true,
                "calls_expected": expected,
                "calls_rated_once": rated_once,
                "not_rated": not_rated,
                "rated_more_than_once": duplicated,
                "error": error,
                "tenants": rows.iter().map(|r| json!({
                    "tenant_id": r.tenant_id,
                    "contract": r.contract,
                    "period": r.usage.as_ref().map(|u| u.period.clone()),
                    "calls": r.usage.as_ref().map(|u| u.calls),
                    "calls_included_allowance": r.usage.as_ref().map(|u| u.calls_included_allowance),
                    "included_calls": r.usage.as_ref().map(|u| u.included_calls),
                    "overage_calls": r.usage.as_ref().map(|u| u.overage_calls),
                    "after_hours_calls": r.usage.as_ref().map(|u| u.after_hours_calls),
                    "unbilled_calls": r.usage.as_ref().map(|u| u.unbilled_calls),
                    "draft_total": render::money_json(r.draft.as_ref().and_then(|d| d.total.as_ref())),
                    "error": r.error,
                })).collect::<Vec<_>>(),
            }),
        }
    }
}

/// The billing step: wait for the run's calls to be rated, show how each
/// was charged and each hospital's month so far.
pub(super) async fn report(
    billing: &Session,
    billed: &[Billed],
    created: &[Ticket],
    wait: Duration,
    p: &Progress,
) -> BillingOutcome {
    let waited = Instant::now();
    let (charges, error) = match wait_rated(billing, created, billed, wait).await {
        Ok(c) => (c, None),
        Err(e) => {
            let text = crate::error_text(&e);
            p.line(&format!("BILLING STOPPED ANSWERING: {text}"));
            (HashMap::new(), Some(text))
        }
    };
    let rated = created
        .iter()
        .filter(|t| {
            charges
                .get(&t.ticket_id)
                .is_some_and(|c| c.iter().any(is_base_charge))
        })
        .count();
    p.line(&format!(
        "{rated} of {} calls rated after {:.1} s",
        created.len(),
        waited.elapsed().as_secs_f64()
    ));
    p.print("");
    p.block(&calls_table(created, &charges).render());
    let rows = rows(billing, billed).await;
    p.print("");
    p.line("this month per hospital (calls of every run so far):");
    p.block(&billing_table(&rows).render());
    if let Some(r) = rows.iter().find(|r| r.draft.is_some()) {
        p.line(&format!(
            "(every line of a draft: wardctl --tenant {} invoice draft; the charges: wardctl --tenant {} charges)",
            r.tenant_id, r.tenant_id
        ));
    }
    BillingOutcome::checked(created, billed, &charges, rows, wait, error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::{TENANTS, TICKETS};
    use prost_types::Timestamp;

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn contracts_start_on_the_first_of_the_month_in_the_tenant_zone() {
        // 03:30 UTC on 1 March is still 28 February in Chicago.
        let t = at("2026-03-01T03:30:00Z");
        assert_eq!(first_of_month("America/Chicago", t), "2026-02-01");
        assert_eq!(first_of_month("America/New_York", t), "2026-02-01");
        assert_eq!(first_of_month("Europe/Berlin", t), "2026-03-01");
        assert_eq!(first_of_month("Not/AZone", t), "2026-03-01");
        assert_eq!(
            first_of_month("UTC", at("2026-12-31T23:59:59Z")),
            "2026-12-01"
        );
        assert_eq!(today("America/Chicago", t), "2026-02-28");
        assert_eq!(period_of("America/Chicago", t), "2026-02");
        assert_eq!(period_of("UTC", t), "2026-03");
    }

    #[test]
    fn every_demo_hospital_has_a_valid_contract() {
        for t in &TENANTS {
            assert!(
                CONTRACTS.iter().any(|c| c.tenant == t.id),
                "{} has no contract",
                t.id
            );
        }
        for spec in &CONTRACTS {
            let req = spec.request("2026-03-01");
            assert_eq!(req.request_id, format!("demo-contract-{}", spec.tenant));
            assert_eq!(req.expected_latest_version, 0);
            let c = req.contract.unwrap();
            // Billing accepts it.
            wardline_billing::contract::terms_from_proto(&c, 1)
                .unwrap_or_else(|e| panic!("{}: {e}", spec.tenant));
            assert_eq!(c.rate_card.len(), 8);
            assert_eq!(c.effective_from, "2026-03-01");
        }
        let stm = CONTRACTS[0].contract("2026-03-01");
        assert_eq!(stm.calls_included_per_month, 100);
        assert_eq!(stm.monthly_minimum.unwrap().minor_units, 250_000);
        let lks = CONTRACTS[1].contract("2026-03-01");
        assert_eq!(lks.overage_price_per_call.unwrap().minor_units, 3250);
        assert_eq!(lks.calls_included_per_month, 0);
        assert_eq!(lks.monthly_minimum, None);
    }

    fn ticket(n: usize, tenant: &str) -> Ticket {
        Ticket {
            ticket_id: format!("t{n}"),
            number: format!(
                "{}-00000{n}",
                if tenant == "stmarys" { "STM" } else { "LKS" }
            ),
            tenant_id: tenant.into(),
            priority: 2,
            created_at: Some(Timestamp {
                seconds: 1_772_323_200,
                nanos: 0,
            }),
            ..Default::default()
        }
    }

    fn charge(ticket: &str, kind: LineKind, rule: &str, minor: i64) -> Charge {
        Charge {
            ticket_id: ticket.into(),
            kind: kind as i32,
            rule_code: rule.into(),
            tier: 1,
            amount: usd(minor),
            ..Default::default()
        }
    }

    fn billed() -> Vec<Billed> {
        vec![
            Billed {
                tenant_id: "stmarys".into(),
                time_zone: "America/Chicago".into(),
                contract: Some(CONTRACTS[0].contract("2026-03-01")),
            },
            Billed {
                tenant_id: "lakeside".into(),
                time_zone: "America/New_York".into(),
                contract: None,
            },
        ]
    }

    #[test]
    fn calls_are_expected_rated_exactly_once() {
        let created = vec![
            ticket(1, "stmarys"),
            ticket(2, "stmarys"),
            ticket(3, "lakeside"),
        ];
        let mut charges: HashMap<String, Vec<Charge>> = HashMap::new();
        charges.insert(
            "t1".into(),
            vec![
                charge("t1", LineKind::TierPrice, "rate_card.clinical.p2", 3500),
                charge("t1", LineKind::AfterHoursSurcharge, "after_hours", 875),
            ],
        );
        let o = BillingOutcome::checked(
            &created,
            &billed(),
            &charges,
            vec![],
            Duration::from_secs(10),
            None,
        );
        assert!(o.problems().is_empty());
        assert_eq!(
            o.text(),
            "billing: 1 of 2 calls metered exactly once, 1 not rated within 10 s (STM-000002)"
        );
        let table = calls_table(&created, &charges).render();
        assert!(
            table.contains(
                "STM-000001  clinical  P2   rate_card.clinical.p2 + after hours (-)  43.75 USD"
            ),
            "{table}"
        );
        assert!(
            table.contains("STM-000002  -         P2   not rated (yet)"),
            "{table}"
        );

        charges.insert(
            "t2".into(),
            vec![
                charge("t2", LineKind::CallsIncluded, "included", 0),
                charge("t2", LineKind::Overage, "overage", 3250),
            ],
        );
        let o = BillingOutcome::checked(
            &created,
            &billed(),
            &charges,
            vec![],
            Duration::from_secs(10),
            None,
        );
        assert_eq!(
            o.problems(),
            vec!["call(s) metered more than once by billing: STM-000002 x2"]
        );
        assert!(
            calls_table(&created, &charges)
                .render()
                .contains("RATED 2 TIMES")
        );
        let v = o.json();
        assert_eq!(v["calls_expected"], 2, "lakeside has no contract here");
        assert_eq!(v["rated_more_than_once"][0], "STM-000002 x2");
        assert_eq!(
            BillingOutcome::Unreachable("http://127.0.0.1:50053".into()).text(),
            "billing not reachable at http://127.0.0.1:50053: no contracts, usage or invoices"
        );
    }

    #[test]
    fn the_billing_table_shows_each_month_and_draft_total() {
        let rows = vec![
            BillingRow {
                tenant_id: "stmarys".into(),
                contract: Some("v1 from 2026-03-01".into()),
                usage: Some(Usage {
                    period: "2026-03".into(),
                    calls: 3,
                    included_calls: 3,
                    calls_included_allowance: 100,
                    after_hours_calls: 1,
                    ..Default::default()
                }),
                draft: Some(Invoice {
                    total: usd(250_000),
                    ..Default::default()
                }),
                error: None,
            },
            BillingRow {
                tenant_id: "lakeside".into(),
                contract: None,
                usage: None,
                draft: None,
                error: Some("UNAVAILABLE".into()),
            },
        ];
        let out = billing_table(&rows).render();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[1],
            "stmarys   v1 from 2026-03-01  2026-03  3      3 of 100  0        1            0         2500.00 USD"
        );
        assert!(lines[2].ends_with("not readable: UNAVAILABLE"), "{out}");
        let o =
            BillingOutcome::checked(&[], &billed(), &HashMap::new(), rows, Duration::ZERO, None);
        assert!(
            o.text().ends_with("; draft invoices: stmarys 2500.00 USD"),
            "{}",
            o.text()
        );
        assert_eq!(o.json()["tenants"][0]["draft_total"]["amount"], "2500.00");
    }

    #[test]
    fn demo_tickets_fall_to_tenants_with_contracts() {
        for t in &TICKETS {
            assert!(CONTRACTS.iter().any(|c| c.tenant == t.tenant));
        }
    }
}
