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

use chrono::Utc;
use chrono_tz::Tz;
use sqlx::PgConnection;
use tracing::Instrument as _;
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

/// Publishes `call.metered` for a call just recorded, through the outbox
/// on the consumer's connection: it commits (or not) with the call row, so
/// there is exactly one per call. Contract version and after hours are
/// those of the version in force on the call's local date, as rating will
/// see them (a version added later for an earlier date is not reflected).
async fn metered(conn: &mut PgConnection, tz: Tz, call: &NewCall<'_>) -> Result<(), HandleError> {
    let terms = store::version_in_force(conn, call.tenant, call.local_date).await?;
    let (contract_version, after) = match &terms {
        Some(t) => (
            t.version,
            after_hours(tz, call.created_at, &t.week, &t.holidays) != AfterHours::No,
        ),
        None => (0, false),
    };
    let ticket_id = call.ticket_id.to_string();
    let env = wardline_kit::events::envelope(
        "billing",
        call.tenant,
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
    );
    wardline_kit::outbox::enqueue(conn, &env)
        .await
        .map_err(|e| match e {
            wardline_kit::outbox::OutboxError::Db(e) => HandleError::from(e),
            other => HandleError::Retry(other.to_string()),
        })
}

/// Applies billing's events.
pub struct BillingEvents;

fn poison(what: &str) -> HandleError {
    HandleError::Poison(format!("invalid_event: {what}"))
}

impl EventHandler for BillingEvents {
    async fn handle(&self, batch: &mut Batch<'_>, events: &[Incoming]) -> Result<(), HandleError> {
        // One event at a time, each in its own span (so what it publishes
        // continues its trace), inside the batch's transaction.
        for event in events {
            self.apply_one(batch.conn(), event)
                .instrument(event.span.clone())
                .await?;
        }
        Ok(())
    }
}

impl BillingEvents {
    async fn apply_one(
        &self,
        conn: &mut PgConnection,
        event: &Incoming,
    ) -> Result<(), HandleError> {
        let env = &event.envelope;
        let tenant = env.tenant_id.as_str();
        let event_id = Uuid::parse_str(&env.event_id).map_err(|_| poison("event_id"))?;
        match env.payload.as_ref() {
            Some(Payload::TenantCreated(p)) => {
                let t = p.tenant.as_ref().ok_or_else(|| poison("tenant"))?;
                store::upsert_tenant(conn, &t.tenant_id, &t.time_zone).await?;
            }
            Some(Payload::TenantUpdated(p)) => {
                let t = p.tenant.as_ref().ok_or_else(|| poison("tenant"))?;
                store::upsert_tenant(conn, &t.tenant_id, &t.time_zone).await?;
            }
            Some(Payload::TicketCreated(p)) => {
                let snap = p.ticket.as_ref().ok_or_else(|| poison("ticket"))?;
                let ticket_id =
                    Uuid::parse_str(&snap.ticket_id).map_err(|_| poison("ticket_id"))?;
                let created_at = snap
                    .created_at
                    .as_ref()
                    .and_then(from_timestamp)
                    .ok_or_else(|| poison("created_at"))?;
                let Some(tz) = store::tenant_zone(conn, tenant).await? else {
                    return Err(HandleError::Retry(
                        "unknown tenant (tenant event not applied yet)".into(),
                    ));
                };
                let date = local_date(tz, created_at);
                let own = Period::of(date);
                let (billed, late) = store::billing_period(conn, tenant, own).await?;
                let priority = i16::try_from(snap.priority)
                    .ok()
                    .filter(|p| (1..=4).contains(p))
                    .ok_or_else(|| poison("priority"))?;
                let call = NewCall {
                    tenant,
                    ticket_id,
                    number: &snap.number,
                    event_id,
                    created_at,
                    local_date: date,
                    tier: if snap.clinical_category {
                        Tier::Clinical
                    } else {
                        Tier::Technical
                    },
                    priority,
                    category: snap.category as i16,
                    period: own,
                    billed,
                    late,
                };
                let recorded = store::record_call(conn, &call).await?;
                tracing::Span::current().record("ticket_id", snap.ticket_id.as_str());
                if recorded {
                    metered(conn, tz, &call).await?;
                    metrics::counter!("wardline_billing_calls_total", "late" => if late { "true" } else { "false" }).increment(1);
                }
            }
            Some(Payload::SlaBreached(p)) => {
                let ticket_id = Uuid::parse_str(&p.ticket_id).map_err(|_| poison("ticket_id"))?;
                let detected_at = p
                    .breached_at
                    .as_ref()
                    .and_then(from_timestamp)
                    .or_else(|| env.occurred_at.as_ref().and_then(from_timestamp))
                    .unwrap_or_else(Utc::now);
                let Some(tz) = store::tenant_zone(conn, tenant).await? else {
                    return Err(HandleError::Retry(
                        "unknown tenant (tenant event not applied yet)".into(),
                    ));
                };
                let target = SlaTarget::try_from(p.target).unwrap_or(SlaTarget::Unspecified);
                if target == SlaTarget::Unspecified {
                    return Err(poison("target"));
                }
                let own = Period::of(local_date(tz, detected_at));
                let (billed, late) = store::billing_period(conn, tenant, own).await?;
                store::record_breach(
                    conn,
                    &NewBreach {
                        tenant,
                        ticket_id,
                        target: target as i16,
                        number: &p.number,
                        event_id,
                        detected_at,
                        priority: i16::try_from(p.priority).unwrap_or(4).clamp(1, 4),
                        period: own,
                        billed,
                        late,
                    },
                )
                .await?;
            }
            _ => {}
        }
        Ok(())
    }
}
