//! Billing's consumer: tenant events (time zones), created tickets (calls)
//! and SLA breaches (credits).
//!
//! Exactly once by construction: the kit's loop records the event id in
//! the inbox inside this transaction, and a call is keyed by its ticket (a
//! breach by ticket and target), so redelivery, replay from the stream, and
//! a duplicate publish under a new message id all change nothing. A call
//! of a tenant billing has not heard of yet is retried (the tenant event
//! will come); a call of a tenant without a contract is recorded and shows
//! as unbilled until a contract covers its date.
//!
//! Set-based: a batch (one tenant) costs a constant number of statements
//! whatever its size: the tenant's zone read once, the billing periods of
//! all its facts resolved together ([`store::billing_periods`]), the
//! contract versions in force on all its call dates read in one statement,
//! one multi-row insert of calls (returning the new ones), one of breaches,
//! and the `call.metered` events written by the kit's one outbox insert,
//! each under the trace of the `ticket.created` that caused it. A tenant
//! event in the batch changes the zone the facts after it are dated in, so
//! the facts before it are recorded first (in practice tenant events are
//! rare and a batch is one run of facts).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;
use wardline_kit::consumer::{Batch, EventHandler, HandleError, Incoming};
use wardline_kit::events::from_timestamp;
use wardline_proto::events::event_envelope::Payload;
use wardline_proto::events::{CallMetered, SlaTarget};

use crate::domain::calendar::{AfterHours, Period, after_hours, local_date};
use crate::domain::rating::Tier;
use crate::store::{self, NewBreach, NewCall};

/// Event kinds billing consumes.
pub const CONSUMED: &[&str] = &[
    "tenant.created",
    "tenant.updated",
    "ticket.created",
    "ticket.sla_breached",
];

/// Applies billing's events.
pub struct BillingEvents;

fn poison(what: &str) -> HandleError {
    HandleError::Poison(format!("invalid_event: {what}"))
}

fn unknown_tenant() -> HandleError {
    HandleError::Retry("unknown tenant (tenant event not applied yet)".into())
}

/// A `ticket.created`, checked, waiting to be recorded with its batch.
struct CallFact<'e> {
    cause: &'e Incoming,
    ticket_id: Uuid,
    number: &'e str,
    event_id: Uuid,
    created_at: DateTime<Utc>,
    tier: Tier,
    priority: i16,
    category: i16,
}

/// A `ticket.sla_breached`, checked, waiting to be recorded with its batch.
struct BreachFact<'e> {
    ticket_id: Uuid,
    target: i16,
    number: &'e str,
    event_id: Uuid,
    detected_at: DateTime<Utc>,
    priority: i16,
}

/// The facts of a run of events between two tenant events.
#[derive(Default)]
struct Facts<'e> {
    calls: Vec<CallFact<'e>>,
    breaches: Vec<BreachFact<'e>>,
}

impl EventHandler for BillingEvents {
    async fn handle(&self, batch: &mut Batch<'_>, events: &[Incoming]) -> Result<(), HandleError> {
        let mut facts = Facts::default();
        for event in events {
            let env = &event.envelope;
            let event_id = || Uuid::parse_str(&env.event_id).map_err(|_| poison("event_id"));
            match env.payload.as_ref() {
                Some(Payload::TenantCreated(p)) => {
                    let t = p.tenant.as_ref().ok_or_else(|| poison("tenant"))?;
                    record(batch, std::mem::take(&mut facts)).await?;
                    store::upsert_tenant(batch.conn(), &t.tenant_id, &t.time_zone).await?;
                }
                Some(Payload::TenantUpdated(p)) => {
                    let t = p.tenant.as_ref().ok_or_else(|| poison("tenant"))?;
                    record(batch, std::mem::take(&mut facts)).await?;
                    store::upsert_tenant(batch.conn(), &t.tenant_id, &t.time_zone).await?;
                }
                Some(Payload::TicketCreated(p)) => {
                    let snap = p.ticket.as_ref().ok_or_else(|| poison("ticket"))?;
                    let ticket_id =
                        Uuid::parse_str(&snap.ticket_id).map_err(|_| poison("ticket_id"))?;
                    event.span.record("ticket_id", snap.ticket_id.as_str());
                    facts.calls.push(CallFact {
                        cause: event,
                        ticket_id,
                        number: &snap.number,
                        event_id: event_id()?,
                        created_at: snap
                            .created_at
                            .as_ref()
                            .and_then(from_timestamp)
                            .ok_or_else(|| poison("created_at"))?,
                        tier: if snap.clinical_category {
                            Tier::Clinical
                        } else {
                            Tier::Technical
                        },
                        priority: i16::try_from(snap.priority)
                            .ok()
                            .filter(|p| (1..=4).contains(p))
                            .ok_or_else(|| poison("priority"))?,
                        category: snap.category as i16,
                    });
                }
                // A tenant's internal target alerts and never credits.
                Some(Payload::SlaBreached(p)) if p.internal => {}
                Some(Payload::SlaBreached(p)) => {
                    let ticket_id =
                        Uuid::parse_str(&p.ticket_id).map_err(|_| poison("ticket_id"))?;
                    let target = SlaTarget::try_from(p.target).unwrap_or(SlaTarget::Unspecified);
                    if target == SlaTarget::Unspecified {
                        return Err(poison("target"));
                    }
                    facts.breaches.push(BreachFact {
                        ticket_id,
                        target: target as i16,
                        number: &p.number,
                        event_id: event_id()?,
                        detected_at: p
                            .breached_at
                            .as_ref()
                            .and_then(from_timestamp)
                            .or_else(|| env.occurred_at.as_ref().and_then(from_timestamp))
                            .unwrap_or_else(Utc::now),
                        priority: i16::try_from(p.priority).unwrap_or(4).clamp(1, 4),
                    });
                }
                _ => {}
            }
        }
        record(batch, facts).await
    }
}

/// Records a run of facts with a constant number of statements, and
/// publishes `call.metered` for each call that is new. The first fact of a
/// ticket (of a ticket and target) in stream order is the one recorded,
/// as applying the events one by one would.
async fn record(batch: &mut Batch<'_>, facts: Facts<'_>) -> Result<(), HandleError> {
    if facts.calls.is_empty() && facts.breaches.is_empty() {
        return Ok(());
    }
    let tenant = batch.tenant().to_owned();
    let Some(tz) = store::tenant_zone(batch.conn(), &tenant).await? else {
        return Err(unknown_tenant());
    };
    let Facts { calls, breaches } = facts.first_of_each();

    let call_dates: Vec<_> = calls.iter().map(|c| local_date(tz, c.created_at)).collect();
    let breach_dates: Vec<_> = breaches
        .iter()
        .map(|b| local_date(tz, b.detected_at))
        .collect();
    let owns: Vec<Period> = call_dates
        .iter()
        .chain(&breach_dates)
        .map(|&d| Period::of(d))
        .collect();
    let billed = store::billing_periods(batch.conn(), &tenant, &owns).await?;
    // (own period, billed period, late) of a fact dated `date`.
    let place = |date| {
        let own = Period::of(date);
        let (on, late) = billed.get(&own).copied().unwrap_or((own, false));
        (own, on, late)
    };

    let mut days = call_dates.clone();
    days.sort_unstable();
    days.dedup();
    let terms = store::versions_in_force(batch.conn(), &tenant, &days).await?;

    let rows = call_rows(&calls, &call_dates, place);
    let new = store::record_calls(batch.conn(), &tenant, &rows).await?;
    let breach_rows = breach_rows(&breaches, &breach_dates, place);
    store::record_breaches(batch.conn(), &tenant, &breach_rows).await?;

    let mut late_calls = HashMap::<bool, u64>::new();
    for (call, row) in calls.iter().zip(&rows) {
        if !new.contains(&row.ticket_id) {
            continue;
        }
        *late_calls.entry(row.late).or_default() += 1;
        batch.publish(
            call.cause,
            metered(&tenant, row, terms.get(&row.local_date), tz),
        );
    }
    for (late, n) in late_calls {
        metrics::counter!("wardline_billing_calls_total", "late" => if late { "true" } else { "false" })
            .increment(n);
    }
    Ok(())
}

impl<'e> Facts<'e> {
    /// The first call of each ticket, and the first breach of each ticket
    /// and target, in stream order.
    fn first_of_each(self) -> Self {
        let mut seen = HashSet::new();
        let calls = self
            .calls
            .into_iter()
            .filter(|c| seen.insert(c.ticket_id))
            .collect();
        let mut seen = HashSet::new();
        let breaches = self
            .breaches
            .into_iter()
            .filter(|b| seen.insert((b.ticket_id, b.target)))
            .collect();
        Self { calls, breaches }
    }
}

/// (own period, billed period, late) of a fact's local date.
type Placement = (Period, Period, bool);

/// The call rows to insert, each placed on the period it is billed on.
fn call_rows<'e>(
    calls: &[CallFact<'e>],
    dates: &[NaiveDate],
    place: impl Fn(NaiveDate) -> Placement,
) -> Vec<NewCall<'e>> {
    placed(
        calls,
        dates,
        place,
        |c, local_date, (period, billed, late)| NewCall {
            ticket_id: c.ticket_id,
            number: c.number,
            event_id: c.event_id,
            created_at: c.created_at,
            local_date,
            tier: c.tier,
            priority: c.priority,
            category: c.category,
            period,
            billed,
            late,
        },
    )
}

/// The breach rows to insert, each placed on the period it is billed on.
fn breach_rows<'e>(
    breaches: &[BreachFact<'e>],
    dates: &[NaiveDate],
    place: impl Fn(NaiveDate) -> Placement,
) -> Vec<NewBreach<'e>> {
    placed(breaches, dates, place, |b, _, (period, billed, late)| {
        NewBreach {
            ticket_id: b.ticket_id,
            target: b.target,
            number: b.number,
            event_id: b.event_id,
            detected_at: b.detected_at,
            priority: b.priority,
            period,
            billed,
            late,
        }
    })
}

/// `row` of each fact with its local date and where that date is billed.
fn placed<F, R>(
    facts: &[F],
    dates: &[NaiveDate],
    place: impl Fn(NaiveDate) -> Placement,
    row: impl Fn(&F, NaiveDate, Placement) -> R,
) -> Vec<R> {
    facts
        .iter()
        .zip(dates)
        .map(|(f, &date)| row(f, date, place(date)))
        .collect()
}

/// `call.metered` for a call just recorded: it commits (or not) with the
/// call row, so there is exactly one per call. Contract version and after
/// hours are those of the version in force on the call's local date, as
/// rating will see them (a version added later for an earlier date is not
/// reflected).
fn metered(
    tenant: &str,
    call: &NewCall<'_>,
    terms: Option<&crate::domain::rating::Terms>,
    tz: chrono_tz::Tz,
) -> wardline_proto::events::EventEnvelope {
    let (contract_version, after) = match terms {
        Some(t) => (
            t.version,
            after_hours(tz, call.created_at, &t.week, &t.holidays) != AfterHours::No,
        ),
        None => (0, false),
    };
    let ticket_id = call.ticket_id.to_string();
    wardline_kit::events::envelope(
        "billing",
        tenant,
        &ticket_id,
        1,
        Payload::CallMetered(CallMetered {
            ticket_id: ticket_id.clone(),
            number: call.number.to_owned(),
            contract_version,
            priority: i32::from(call.priority),
            after_hours: after,
            clinical: call.tier == Tier::Clinical,
            billed_period: call.billed.to_string(),
        }),
    )
}
