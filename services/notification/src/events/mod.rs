//! The consumer of intake's, routing's and billing's events: it keeps the
//! local copies (callers' contacts per ticket, the analyst directory) and
//! RECORDS deliveries. It never sends.
//!
//! What must hold:
//! - Deliveries are rows written in the consumer's transaction, together
//!   with the inbox entry; the sender picks them up after the commit. A
//!   crash before the commit records nothing and the event is redelivered;
//!   after it, the rows are there and the event is not applied again.
//! - `UNIQUE (source_event_id, target, channel)` makes a second delivery
//!   for the same event, recipient and channel impossible, even if an
//!   event were applied twice.
//! - Order-tolerant: snapshots update the ticket only when newer; an event
//!   that needs a caller or analyst not seen yet is retried (it came early).
//! - Nothing here reads free text: events have none, and template
//!   variables are built from ids and codes only.

use std::time::Duration;

use chrono::Utc;
use sqlx::PgConnection;
use tracing::Instrument as _;
use uuid::Uuid;
use wardline_kit::consumer::{Batch, EventHandler, HandleError, Incoming};
use wardline_proto::common::{Category, TicketStatus};
use wardline_proto::events::event_envelope::Payload;
use wardline_proto::events::{
    AnalystInfo, CallerContact, EscalationLevel, EventEnvelope, SlaTarget, TicketSnapshot,
};
use wardline_proto::notification::Preferences;

use crate::domain::audience::{self, QuietHours, Subscription};
use crate::domain::template::Vars;
use crate::domain::{
    DeliveryState, EventKind, NotificationChannel, Priority, RecipientKind, channel_label, code,
    kind_label,
};
use crate::store::deliveries::{self, NewDelivery};
use crate::store::webhooks::{self, Subscribed};
use crate::store::{analysts, recipients, tickets};

/// Event kinds notification consumes.
pub const CONSUMED: &[&str] = &[
    "ticket.created",
    "ticket.acknowledged",
    "ticket.started",
    "ticket.held",
    "ticket.resolved",
    "ticket.closed",
    "ticket.reopened",
    "ticket.transferred",
    "ticket.note_added",
    "ticket.assigned",
    "ticket.queued",
    "ticket.escalated",
    "ticket.sla_breached",
    "analyst.upserted",
    "invoice.issued",
];

pub use crate::store::VENDOR_TENANT;
/// Envelope tenant of routing's events about such analysts.
pub use wardline_kit::events::ALL_TENANTS_EVENT;

/// Which channels are configured (nothing is recorded for the others).
#[derive(Debug, Clone, Copy)]
pub struct Enabled {
    /// Email.
    pub email: bool,
    /// SMS gateway.
    pub sms: bool,
    /// Webhooks.
    pub webhook: bool,
    /// Pager provider.
    pub pager: bool,
}

impl Enabled {
    fn has(&self, c: NotificationChannel) -> bool {
        match c {
            NotificationChannel::Email => self.email,
            NotificationChannel::Sms => self.sms,
            NotificationChannel::Webhook => self.webhook,
            NotificationChannel::Pager => self.pager,
            NotificationChannel::Unspecified => false,
        }
    }
}

/// Applies events and records deliveries.
pub struct Events {
    /// Configured channels.
    pub enabled: Enabled,
    /// Base of ticket links.
    pub link_base_url: String,
    /// Older events notify nobody.
    pub max_event_age: Duration,
}

/// Subscriptions and quiet hours of stored preferences.
pub fn rules(p: &Preferences) -> (Vec<Subscription>, Option<QuietHours>) {
    let subs = p
        .subscriptions
        .iter()
        .map(|s| Subscription {
            kind: EventKind::try_from(s.event_kind).unwrap_or(EventKind::Unspecified),
            channels: s
                .channels
                .iter()
                .filter_map(|c| NotificationChannel::try_from(*c).ok())
                .collect(),
        })
        .collect();
    let quiet = p.quiet_hours.as_ref().and_then(|q| {
        Some(QuietHours {
            start: audience::parse_hhmm(&q.start)?,
            end: audience::parse_hhmm(&q.end)?,
            tz: q.time_zone.parse().ok()?,
        })
    });
    (subs, quiet)
}

/// What an event is about, for recording its deliveries.
struct Facts {
    kind: EventKind,
    ticket_id: Option<Uuid>,
    number: String,
    priority: Priority,
    vars: Vars,
    /// The ticket's caller hears it (if subscribed).
    caller: Option<String>,
    /// This analyst hears it (if subscribed).
    analyst: Option<String>,
    /// The tenant's supervisors, on-call and custom recipients may hear it.
    broadcast: bool,
}

fn status_code(s: i32) -> String {
    TicketStatus::try_from(s)
        .map(|s| code(s.as_str_name(), "TICKET_STATUS_"))
        .unwrap_or_default()
}

fn category_code(c: i32) -> String {
    Category::try_from(c)
        .map(|c| code(c.as_str_name(), "CATEGORY_"))
        .unwrap_or_default()
}

fn parse_id(s: &str, field: &str) -> Result<Uuid, HandleError> {
    Uuid::parse_str(s).map_err(|_| HandleError::Poison(format!("{field} is not a UUID")))
}

impl Events {
    fn base_vars(&self, env: &EventEnvelope, kind: EventKind) -> Vars {
        let mut v = Vars::new();
        v.set("event.id", env.event_id.clone())
            .set("event.kind", kind_label(kind))
            .set("tenant.id", env.tenant_id.clone());
        v
    }

    #[allow(clippy::too_many_arguments)]
    fn ticket_vars(
        &self,
        v: &mut Vars,
        tenant: &str,
        id: &str,
        number: &str,
        priority: i32,
        status: i32,
        category: i32,
    ) {
        v.set("ticket.id", id)
            .set("ticket.number", number)
            .set("ticket.priority", crate::domain::priority_label(priority))
            .set("ticket.status", status_code(status))
            .set("ticket.category", category_code(category))
            .set(
                "ticket.url",
                format!("{}/t/{tenant}/tickets/{number}", self.link_base_url),
            );
    }

    /// Applies an intake snapshot (when newer) and returns the facts of the
    /// event for the caller, or None when the event notifies nobody.
    async fn snapshot_event(
        &self,
        conn: &mut PgConnection,
        out: &mut Recorded,
        env: &EventEnvelope,
        snap: &TicketSnapshot,
        kind: Option<EventKind>,
        created: Option<&CallerContact>,
    ) -> Result<Option<Facts>, HandleError> {
        let id = parse_id(&snap.ticket_id, "ticket.ticket_id")?;
        let version = env.aggregate_version as i64;
        tracing::Span::current().record("ticket_id", snap.ticket_id.as_str());
        match out.tickets.get(&id).cloned() {
            None => {
                let Some(caller) = created else {
                    // The ticket's TicketCreated (with the caller's contact)
                    // has not been applied yet: this event came early.
                    return Err(HandleError::Retry("ticket not seen yet".into()));
                };
                tickets::insert(conn, id, &env.tenant_id, snap, caller, version).await?;
                out.tickets.insert(
                    id,
                    tickets::TicketRow {
                        ticket_id: id,
                        caller_id: snap.caller_id.clone(),
                        number: snap.number.clone(),
                        priority: snap.priority as i16,
                        status: snap.status as i16,
                        category: snap.category as i16,
                        ticket_version: version,
                        routing_seq: 0,
                    },
                );
                if !snap.caller_id.is_empty() {
                    recipients::upsert_caller(conn, &env.tenant_id, &snap.caller_id, caller)
                        .await?;
                }
            }
            Some(mut t) if version > t.ticket_version => {
                tickets::apply_snapshot(conn, id, snap, version).await?;
                t.number.clone_from(&snap.number);
                t.priority = snap.priority as i16;
                t.status = snap.status as i16;
                t.category = snap.category as i16;
                t.ticket_version = version;
                out.tickets.insert(id, t);
            }
            Some(_) => {} // stale snapshot: the event still happened and is told
        }
        let Some(kind) = kind else { return Ok(None) };
        let mut vars = self.base_vars(env, kind);
        self.ticket_vars(
            &mut vars,
            &env.tenant_id,
            &snap.ticket_id,
            &snap.number,
            snap.priority,
            snap.status,
            snap.category,
        );
        Ok(Some(Facts {
            kind,
            ticket_id: Some(id),
            number: snap.number.clone(),
            priority: Priority::try_from(snap.priority).unwrap_or(Priority::Unspecified),
            vars,
            caller: Some(snap.caller_id.clone()),
            analyst: None,
            broadcast: true,
        }))
    }

    /// Facts of one of routing's ticket events (the ticket must be known).
    #[allow(clippy::too_many_arguments)]
    async fn routing_event(
        &self,
        conn: &mut PgConnection,
        out: &mut Recorded,
        env: &EventEnvelope,
        ticket_id: &str,
        kind: EventKind,
        priority: i32,
        assign_to: Option<&str>,
    ) -> Result<Facts, HandleError> {
        let id = parse_id(ticket_id, "ticket_id")?;
        tracing::Span::current().record("ticket_id", ticket_id);
        let Some(t) = out.tickets.get(&id).cloned() else {
            return Err(HandleError::Retry("ticket not seen yet".into()));
        };
        let seq = env.aggregate_version as i64;
        if let Some(analyst) = assign_to
            && seq > t.routing_seq
        {
            tickets::assign(conn, id, analyst, seq).await?;
            if let Some(held) = out.tickets.get_mut(&id) {
                held.routing_seq = seq;
            }
        }
        let status = if kind == EventKind::TicketAssigned {
            TicketStatus::Assigned as i32
        } else {
            i32::from(t.status)
        };
        let mut vars = self.base_vars(env, kind);
        let priority = if priority == 0 {
            i32::from(t.priority)
        } else {
            priority
        };
        self.ticket_vars(
            &mut vars,
            &env.tenant_id,
            ticket_id,
            &t.number,
            priority,
            status,
            i32::from(t.category),
        );
        Ok(Facts {
            kind,
            ticket_id: Some(id),
            number: t.number,
            priority: Priority::try_from(priority).unwrap_or(Priority::Unspecified),
            vars,
            caller: Some(t.caller_id),
            analyst: assign_to.map(str::to_owned),
            broadcast: true,
        })
    }

    /// Adds the deliveries of `facts` to the batch's (unless the event is
    /// too old): one query for its recipients, the tenant's endpoints from
    /// the batch's one read.
    async fn record(
        &self,
        conn: &mut PgConnection,
        env: &EventEnvelope,
        facts: Facts,
        out: &mut Recorded,
    ) -> Result<(), HandleError> {
        let event_id = parse_id(&env.event_id, "event_id")?;
        tracing::Span::current().record("event_kind", kind_label(facts.kind));
        if let Some(at) = env
            .occurred_at
            .as_ref()
            .and_then(wardline_kit::events::from_timestamp)
            && Utc::now()
                .signed_duration_since(at)
                .to_std()
                .unwrap_or_default()
                > self.max_event_age
        {
            tracing::debug!("event older than NOTIFICATION_MAX_EVENT_AGE_SECS: nobody is notified");
            metrics::counter!("wardline_notification_stale_events_total").increment(1);
            return Ok(());
        }
        let tenant = env.tenant_id.as_str();
        let (recipients, analyst_found) = recipients::audience(
            conn,
            tenant,
            facts.caller.as_deref(),
            facts.analyst.as_deref(),
            facts.broadcast,
        )
        .await?;
        if let Some(analyst) = &facts.analyst
            && !analyst_found
            && !analysts::exists(conn, analyst).await?
        {
            return Err(HandleError::Retry(
                "analyst not in the directory yet".into(),
            ));
        }
        let now = Utc::now();
        let trace = wardline_kit::telemetry::trace_headers(&tracing::Span::current());
        // The facts' variables, with who each message is for.
        let vars_for = |role: &str| {
            let mut v = facts.vars.clone();
            v.set("recipient.role", role);
            serde_json::to_value(v.pairs()).unwrap_or_default()
        };
        let row =
            |channel, recipient_id, endpoint_id, target, address, state, at, vars| NewDelivery {
                tenant_id: tenant.to_owned(),
                source_event_id: event_id,
                event_kind: facts.kind,
                channel,
                recipient_id,
                endpoint_id,
                target,
                address,
                ticket_id: facts.ticket_id,
                number: facts.number.clone(),
                priority: facts.priority as i16,
                vars,
                state,
                next_attempt_at: at,
                traceparent: trace.get("traceparent").cloned(),
            };
        // Serialized once per audience, not once per recipient.
        let mut by_role: std::collections::HashMap<String, serde_json::Value> = Default::default();
        for r in &recipients {
            let vars = by_role
                .entry(role(r.kind()))
                .or_insert_with_key(|role| vars_for(role))
                .clone();
            let prefs = r.preferences();
            let (subs, quiet) = rules(&prefs);
            let channels = audience::channels_for(r.kind(), &subs, facts.kind, facts.priority);
            for channel in channels {
                if channel == NotificationChannel::Webhook || !self.enabled.has(channel) {
                    continue;
                }
                let Some(address) = r.address(channel) else {
                    continue;
                };
                let (at, held) = audience::send_at(facts.kind, facts.priority, quiet.as_ref(), now);
                let state = if held {
                    DeliveryState::Deferred
                } else {
                    DeliveryState::Pending
                };
                out.rows.push(row(
                    channel,
                    Some(r.recipient_id),
                    None,
                    r.recipient_id.to_string(),
                    address.to_owned(),
                    state,
                    at,
                    vars.clone(),
                ));
            }
        }
        if self.enabled.webhook {
            let subscribed: Vec<(Uuid, String)> = out
                .endpoints(conn, tenant)
                .await?
                .iter()
                .filter(|(_, _, kinds)| kinds.contains(&(facts.kind as i16)))
                .map(|(id, url, _)| (*id, url.clone()))
                .collect();
            for (endpoint_id, url) in subscribed {
                out.rows.push(row(
                    NotificationChannel::Webhook,
                    None,
                    Some(endpoint_id),
                    endpoint_id.to_string(),
                    url,
                    DeliveryState::Pending,
                    now,
                    vars_for("webhook"),
                ));
            }
        }
        Ok(())
    }
}

/// `recipient.role` of a recipient of `kind`: `caller`, `analyst`,
/// `supervisor`, `on_call` or `custom`.
fn role(kind: RecipientKind) -> String {
    crate::domain::code(kind.as_str_name(), "RECIPIENT_KIND_").to_lowercase()
}

/// What a batch's events add up to: the deliveries to record (in one
/// statement at the end of the batch), the batch's tickets (locked and
/// read in one statement at its start, kept current as its events apply)
/// and the tenant's webhook endpoints (read once per batch, when the first
/// event needs them).
#[derive(Default)]
struct Recorded {
    rows: Vec<NewDelivery>,
    tickets: std::collections::HashMap<Uuid, tickets::TicketRow>,
    endpoints: Option<(String, Vec<Subscribed>)>,
}

impl Recorded {
    async fn endpoints(
        &mut self,
        conn: &mut PgConnection,
        tenant: &str,
    ) -> Result<&[Subscribed], sqlx::Error> {
        if self.endpoints.as_ref().is_none_or(|(t, _)| t != tenant) {
            let list = webhooks::subscribed(conn, tenant).await?;
            self.endpoints = Some((tenant.to_owned(), list));
        }
        Ok(self
            .endpoints
            .as_ref()
            .map(|(_, l)| l.as_slice())
            .unwrap_or_default())
    }
}

/// Applies an analyst directory event: the directory row (newest version
/// wins) and the analyst's ANALYST, SUPERVISOR and ON_CALL recipients in
/// the envelope's tenant (`_vendor` for analysts covering every tenant).
async fn apply_analyst(
    conn: &mut PgConnection,
    env: &EventEnvelope,
    a: &AnalystInfo,
) -> Result<(), HandleError> {
    if a.analyst_id.is_empty() {
        return Err(HandleError::Poison("analyst without an id".into()));
    }
    let version = env.aggregate_version as i64;
    let held = analysts::lock_version(conn, &a.analyst_id).await?;
    if held.is_some_and(|h| h > version) {
        return Ok(()); // stale copy
    }
    analysts::upsert(conn, a, version).await?;
    let (rtenant, covers) = if env.tenant_id == ALL_TENANTS_EVENT {
        (VENDOR_TENANT, a.tenants.iter().any(|t| t == "*"))
    } else {
        (env.tenant_id.as_str(), a.tenants.contains(&env.tenant_id))
    };
    let name = if a.name.trim().is_empty() {
        &a.analyst_id
    } else {
        &a.name
    };
    for (kind, wanted) in [
        (RecipientKind::Analyst, covers),
        (RecipientKind::Supervisor, covers && a.supervisor),
        (RecipientKind::OnCall, covers && a.on_call),
    ] {
        if wanted {
            recipients::upsert_from_directory(conn, rtenant, kind, a, name).await?;
        } else {
            recipients::deactivate(conn, rtenant, kind, &a.analyst_id).await?;
        }
    }
    Ok(())
}

impl EventHandler for Events {
    async fn handle(&self, batch: &mut Batch<'_>, events: &[Incoming]) -> Result<(), HandleError> {
        // One event at a time, each in its own span (so what it records
        // continues its trace), inside the batch's transaction; the
        // deliveries of all of them in one statement at the end.
        let mut out = Recorded::default();
        let mut ids: Vec<Uuid> = events
            .iter()
            .filter_map(|e| e.envelope.payload.as_ref())
            .filter_map(ticket_of)
            .filter_map(|t| Uuid::parse_str(t).ok())
            .collect();
        ids.sort();
        ids.dedup();
        out.tickets = tickets::lock_many(batch.conn(), &ids)
            .await?
            .into_iter()
            .map(|t| (t.ticket_id, t))
            .collect();
        for event in events {
            self.apply_one(batch.conn(), event, &mut out)
                .instrument(event.span.clone())
                .await?;
        }
        for channel in deliveries::insert_many(batch.conn(), &out.rows).await? {
            let channel = NotificationChannel::try_from(i32::from(channel))
                .unwrap_or(NotificationChannel::Unspecified);
            metrics::counter!("wardline_notification_deliveries_recorded_total", "channel" => channel_label(channel))
                .increment(1);
        }
        Ok(())
    }
}

/// The ticket an event is about, if any.
fn ticket_of(payload: &Payload) -> Option<&str> {
    match payload {
        Payload::TicketCreated(p) => p.ticket.as_ref().map(|t| t.ticket_id.as_str()),
        Payload::TicketAssigned(p) => Some(&p.ticket_id),
        Payload::TicketQueued(p) => Some(&p.ticket_id),
        Payload::TicketEscalated(p) => Some(&p.ticket_id),
        Payload::SlaBreached(p) => Some(&p.ticket_id),
        other => intake_event(other)
            .and_then(|(t, _)| t.as_ref())
            .map(|t| t.ticket_id.as_str()),
    }
}

/// Intake's ticket events: the snapshot they carry and what they tell
/// people (None: they only update the ticket). Other payloads: None.
fn intake_event(payload: &Payload) -> Option<(&Option<TicketSnapshot>, Option<EventKind>)> {
    Some(match payload {
        Payload::TicketAcknowledged(p) => (&p.ticket, Some(EventKind::TicketAcknowledged)),
        Payload::TicketStarted(p) => (&p.ticket, None),
        Payload::TicketTransferred(p) => (&p.ticket, None),
        Payload::TicketHeld(p) => (&p.ticket, Some(EventKind::TicketOnHold)),
        Payload::TicketResolved(p) => (&p.ticket, Some(EventKind::TicketResolved)),
        Payload::TicketClosed(p) => (&p.ticket, Some(EventKind::TicketClosed)),
        Payload::TicketReopened(p) => (&p.ticket, Some(EventKind::TicketReopened)),
        // Only notes the caller can see are told (that there is one, never
        // what it says).
        Payload::TicketNoteAdded(p) => (&p.ticket, p.public.then_some(EventKind::TicketPublicNote)),
        _ => return None,
    })
}

impl Events {
    async fn apply_one(
        &self,
        conn: &mut PgConnection,
        event: &Incoming,
        out: &mut Recorded,
    ) -> Result<(), HandleError> {
        let env = &event.envelope;
        let payload = env
            .payload
            .as_ref()
            .ok_or_else(|| HandleError::Poison("no payload".into()))?;
        let snap = |t: &Option<TicketSnapshot>| {
            t.clone()
                .ok_or_else(|| HandleError::Poison("ticket event without a snapshot".into()))
        };
        if let Some((ticket, kind)) = intake_event(payload) {
            let facts = self
                .snapshot_event(conn, out, env, &snap(ticket)?, kind, None)
                .await?;
            return match facts {
                Some(f) => self.record(conn, env, f, out).await,
                None => Ok(()),
            };
        }
        let facts = match payload {
            Payload::AnalystUpserted(p) => {
                let a = p.analyst.as_ref().ok_or_else(|| {
                    HandleError::Poison("analyst.upserted without an analyst".into())
                })?;
                return apply_analyst(conn, env, a).await;
            }
            Payload::TicketCreated(p) => {
                let s = snap(&p.ticket)?;
                let caller = p.caller.clone().unwrap_or_default();
                self.snapshot_event(
                    conn,
                    out,
                    env,
                    &s,
                    Some(EventKind::TicketReceived),
                    Some(&caller),
                )
                .await?
            }
            Payload::TicketAssigned(p) => Some(
                self.routing_event(
                    conn,
                    out,
                    env,
                    &p.ticket_id,
                    EventKind::TicketAssigned,
                    p.priority,
                    Some(&p.analyst_id),
                )
                .await
                .map(|mut f| {
                    f.vars.set("analyst.id", p.analyst_id.clone());
                    f.broadcast = false;
                    f
                })?,
            ),
            Payload::TicketQueued(p) => Some(
                self.routing_event(
                    conn,
                    out,
                    env,
                    &p.ticket_id,
                    EventKind::TicketQueued,
                    p.priority,
                    None,
                )
                .await?,
            ),
            Payload::TicketEscalated(p) => Some(
                self.routing_event(
                    conn,
                    out,
                    env,
                    &p.ticket_id,
                    EventKind::TicketEscalated,
                    p.priority,
                    None,
                )
                .await
                .map(|mut f| {
                    let level = EscalationLevel::try_from(p.level)
                        .map(|l| code(l.as_str_name(), "ESCALATION_LEVEL_"))
                        .unwrap_or_default();
                    f.vars
                        .set("escalation.level", level)
                        .set("escalation.reason", p.reason_code.clone())
                        .set("analyst.id", p.to_analyst_id.clone());
                    f.caller = None;
                    f
                })?,
            ),
            Payload::SlaBreached(p) => Some(
                self.routing_event(
                    conn,
                    out,
                    env,
                    &p.ticket_id,
                    EventKind::SlaBreached,
                    p.priority,
                    None,
                )
                .await
                .map(|mut f| {
                    let mut target = SlaTarget::try_from(p.target)
                        .map(|t| code(t.as_str_name(), "SLA_TARGET_"))
                        .unwrap_or_default();
                    if p.internal {
                        // The tenant's own stricter target: an alert, not a contractual breach.
                        target = format!("INTERNAL_{target}");
                    }
                    f.vars.set("sla.target", target);
                    f.caller = None;
                    f
                })?,
            ),
            Payload::InvoiceIssued(p) => Some(self.invoice_facts(env, p)),
            _ => None,
        };
        match facts {
            Some(f) => self.record(conn, env, f, out).await,
            None => Ok(()),
        }
    }

    fn invoice_facts(
        &self,
        env: &EventEnvelope,
        p: &wardline_proto::events::InvoiceIssued,
    ) -> Facts {
        let mut vars = self.base_vars(env, EventKind::InvoiceIssued);
        let total = p
            .total
            .as_ref()
            // The currency's own decimals (ISO 4217), not always two.
            .map(|m| {
                format!(
                    "{} {}",
                    m.currency,
                    wardline_proto::money::format(m.minor_units, &m.currency)
                )
            })
            .unwrap_or_default();
        vars.set("invoice.id", p.invoice_id.clone())
            .set("invoice.period", p.period.clone())
            .set("invoice.total", total)
            .set("invoice.calls", p.calls.to_string());
        Facts {
            kind: EventKind::InvoiceIssued,
            ticket_id: None,
            number: String::new(),
            priority: Priority::Unspecified,
            vars,
            caller: None,
            analyst: None,
            broadcast: true,
        }
    }
}
