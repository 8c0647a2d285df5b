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

use chrono::{DateTime, Utc};
use prost::Message as _;
use sqlx::PgConnection;
use tracing::Instrument as _;
use uuid::Uuid;
use wardline_kit::consumer::{Batch, EventHandler, HandleError, Incoming};
use wardline_proto::common::{Category, TicketStatus};
use wardline_proto::events::event_envelope::Payload;
use wardline_proto::events::{
    AnalystInfo, EscalationLevel, EventEnvelope, SlaTarget, TicketSnapshot,
};
use wardline_proto::notification::Preferences;

use crate::domain::audience::{self, QuietHours, Subscription};
use crate::domain::template::Vars;
use crate::domain::{
    DeliveryState, EventKind, NotificationChannel, Priority, RecipientKind, channel_label, code,
    kind_label,
};

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

/// Recipient tenant of analysts who cover every tenant.
pub const VENDOR_TENANT: &str = "_vendor";
/// Envelope tenant of routing's events about such analysts.
pub const ALL_TENANTS_EVENT: &str = "_all";

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

/// A recipient as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RecipientRow {
    pub recipient_id: Uuid,
    pub tenant_id: String,
    pub kind: i16,
    pub subject_id: String,
    pub name: String,
    pub email: String,
    pub phone: String,
    pub pager: String,
    pub addresses_managed: bool,
    pub preferences: Option<Vec<u8>>,
    pub active: bool,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Columns of [`RecipientRow`].
pub const RECIPIENT_COLUMNS: &str =
    "recipient_id, tenant_id, kind, subject_id, name, email, phone, pager,
    addresses_managed, preferences, active, version, created_at, updated_at";

impl RecipientRow {
    /// The kind.
    pub fn kind(&self) -> RecipientKind {
        RecipientKind::try_from(i32::from(self.kind)).unwrap_or(RecipientKind::Custom)
    }

    /// Decoded preferences (defaults when none or unreadable).
    pub fn preferences(&self) -> Preferences {
        self.preferences
            .as_deref()
            .and_then(|b| Preferences::decode(b).ok())
            .unwrap_or_default()
    }

    /// The address for `channel`, if any.
    pub fn address(&self, channel: NotificationChannel) -> Option<&str> {
        let a = match channel {
            NotificationChannel::Email => &self.email,
            NotificationChannel::Sms => &self.phone,
            NotificationChannel::Pager => &self.pager,
            _ => return None,
        };
        Some(a.as_str()).filter(|a| !a.is_empty())
    }
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

#[derive(Debug, sqlx::FromRow)]
struct TicketRow {
    caller_id: String,
    number: String,
    priority: i16,
    status: i16,
    category: i16,
    ticket_version: i64,
    routing_seq: i64,
}

async fn ticket(conn: &mut PgConnection, id: Uuid) -> Result<Option<TicketRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT caller_id, number, priority, status, category, ticket_version, routing_seq
           FROM tickets WHERE ticket_id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
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
        env: &EventEnvelope,
        snap: &TicketSnapshot,
        kind: Option<EventKind>,
        created: Option<&wardline_proto::events::CallerContact>,
    ) -> Result<Option<Facts>, HandleError> {
        let id = parse_id(&snap.ticket_id, "ticket.ticket_id")?;
        let version = env.aggregate_version as i64;
        tracing::Span::current().record("ticket_id", snap.ticket_id.as_str());
        match ticket(conn, id).await? {
            None => {
                let Some(caller) = created else {
                    // The ticket's TicketCreated (with the caller's contact)
                    // has not been applied yet: this event came early.
                    return Err(HandleError::Retry("ticket not seen yet".into()));
                };
                sqlx::query(
                    "INSERT INTO tickets (ticket_id, tenant_id, number, caller_id, caller_name, caller_email,
                        caller_phone, priority, status, category, assignee, ticket_version)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                )
                .bind(id)
                .bind(&env.tenant_id)
                .bind(&snap.number)
                .bind(&snap.caller_id)
                // The caller's name stays in intake (older events carried it).
                .bind("")
                .bind(&caller.email)
                .bind(&caller.phone)
                .bind(snap.priority as i16)
                .bind(snap.status as i16)
                .bind(snap.category as i16)
                .bind(&snap.assignee_analyst_id)
                .bind(version)
                .execute(&mut *conn)
                .await?;
                upsert_caller(conn, &env.tenant_id, &snap.caller_id, caller).await?;
            }
            Some(t) if version > t.ticket_version => {
                sqlx::query(
                    "UPDATE tickets SET number = $2, priority = $3, status = $4, category = $5,
                        assignee = CASE WHEN $6 = '' THEN assignee ELSE $6 END, ticket_version = $7, updated_at = now()
                      WHERE ticket_id = $1",
                )
                .bind(id)
                .bind(&snap.number)
                .bind(snap.priority as i16)
                .bind(snap.status as i16)
                .bind(snap.category as i16)
                .bind(&snap.assignee_analyst_id)
                .bind(version)
                .execute(&mut *conn)
                .await?;
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
    async fn routing_event(
        &self,
        conn: &mut PgConnection,
        env: &EventEnvelope,
        ticket_id: &str,
        kind: EventKind,
        priority: i32,
        assign_to: Option<&str>,
    ) -> Result<Facts, HandleError> {
        let id = parse_id(ticket_id, "ticket_id")?;
        tracing::Span::current().record("ticket_id", ticket_id);
        let Some(t) = ticket(conn, id).await? else {
            return Err(HandleError::Retry("ticket not seen yet".into()));
        };
        let seq = env.aggregate_version as i64;
        if let Some(analyst) = assign_to
            && seq > t.routing_seq
        {
            sqlx::query("UPDATE tickets SET assignee = $2, routing_seq = $3, updated_at = now() WHERE ticket_id = $1")
                .bind(id)
                .bind(analyst)
                .bind(seq)
                .execute(&mut *conn)
                .await?;
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

    /// Records the deliveries of `facts` (unless the event is too old).
    async fn record(
        &self,
        conn: &mut PgConnection,
        env: &EventEnvelope,
        facts: Facts,
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
        let mut recipients: Vec<RecipientRow> = Vec::new();
        if let Some(caller) = &facts.caller {
            let sql = format!(
                "SELECT {RECIPIENT_COLUMNS} FROM recipients WHERE tenant_id = $1 AND kind = 1 AND subject_id = $2 AND active"
            );
            recipients.extend(
                sqlx::query_as::<_, RecipientRow>(sqlx::AssertSqlSafe(sql))
                    .bind(tenant)
                    .bind(caller)
                    .fetch_all(&mut *conn)
                    .await?,
            );
        }
        if let Some(analyst) = &facts.analyst {
            let sql = format!(
                "SELECT {RECIPIENT_COLUMNS} FROM recipients
                  WHERE tenant_id IN ($1, '{VENDOR_TENANT}') AND kind = 2 AND subject_id = $2 AND active
                  ORDER BY (tenant_id = $1) DESC LIMIT 1"
            );
            let found: Option<RecipientRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(tenant)
                .bind(analyst)
                .fetch_optional(&mut *conn)
                .await?;
            match found {
                Some(r) => recipients.push(r),
                None => {
                    let known: bool = sqlx::query_scalar(
                        "SELECT EXISTS (SELECT 1 FROM analysts WHERE analyst_id = $1)",
                    )
                    .bind(analyst)
                    .fetch_one(&mut *conn)
                    .await?;
                    if !known {
                        return Err(HandleError::Retry(
                            "analyst not in the directory yet".into(),
                        ));
                    }
                }
            }
        }
        if facts.broadcast {
            let sql = format!(
                "SELECT {RECIPIENT_COLUMNS} FROM recipients
                  WHERE ((tenant_id = $1 AND kind IN (3, 4, 5)) OR (tenant_id = '{VENDOR_TENANT}' AND kind IN (3, 4)))
                    AND active ORDER BY recipient_id"
            );
            recipients.extend(
                sqlx::query_as::<_, RecipientRow>(sqlx::AssertSqlSafe(sql))
                    .bind(tenant)
                    .fetch_all(&mut *conn)
                    .await?,
            );
        }
        let now = Utc::now();
        let vars = serde_json::to_value(facts.vars.pairs()).unwrap_or_default();
        let trace = wardline_kit::telemetry::trace_headers(&tracing::Span::current());
        let traceparent = trace.get("traceparent").cloned();
        let mut rows: Vec<NewDelivery> = Vec::new();
        for r in &recipients {
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
                rows.push(NewDelivery {
                    channel,
                    recipient_id: Some(r.recipient_id),
                    endpoint_id: None,
                    target: r.recipient_id.to_string(),
                    address: address.to_owned(),
                    state: if held {
                        DeliveryState::Deferred
                    } else {
                        DeliveryState::Pending
                    },
                    next_attempt_at: at,
                });
            }
        }
        if self.enabled.webhook {
            let endpoints: Vec<(Uuid, String)> = sqlx::query_as(
                "SELECT endpoint_id, url FROM webhook_endpoints
                  WHERE tenant_id = $1 AND deleted_at IS NULL AND $2 = ANY(event_kinds) ORDER BY created_at",
            )
            .bind(tenant)
            .bind(facts.kind as i16)
            .fetch_all(&mut *conn)
            .await?;
            for (endpoint_id, url) in endpoints {
                rows.push(NewDelivery {
                    channel: NotificationChannel::Webhook,
                    recipient_id: None,
                    endpoint_id: Some(endpoint_id),
                    target: endpoint_id.to_string(),
                    address: url,
                    state: DeliveryState::Pending,
                    next_attempt_at: now,
                });
            }
        }
        for d in rows {
            let inserted = sqlx::query(
                "INSERT INTO deliveries (delivery_id, tenant_id, source_event_id, event_kind, channel, recipient_id,
                    endpoint_id, target, address, ticket_id, number, priority, vars, state, next_attempt_at, traceparent)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
                 ON CONFLICT (source_event_id, target, channel) DO NOTHING",
            )
            .bind(Uuid::now_v7())
            .bind(tenant)
            .bind(event_id)
            .bind(facts.kind as i16)
            .bind(d.channel as i16)
            .bind(d.recipient_id)
            .bind(d.endpoint_id)
            .bind(&d.target)
            .bind(&d.address)
            .bind(facts.ticket_id)
            .bind(&facts.number)
            .bind(facts.priority as i16)
            .bind(&vars)
            .bind(d.state as i16)
            .bind(d.next_attempt_at)
            .bind(&traceparent)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if inserted == 1 {
                metrics::counter!("wardline_notification_deliveries_recorded_total", "channel" => channel_label(d.channel))
                    .increment(1);
            }
        }
        Ok(())
    }
}

struct NewDelivery {
    channel: NotificationChannel,
    recipient_id: Option<Uuid>,
    endpoint_id: Option<Uuid>,
    target: String,
    address: String,
    state: DeliveryState,
    next_attempt_at: DateTime<Utc>,
}

/// Creates or refreshes the CALLER recipient from a ticket's contact
/// (addresses an admin set are kept).
async fn upsert_caller(
    conn: &mut PgConnection,
    tenant: &str,
    caller_id: &str,
    c: &wardline_proto::events::CallerContact,
) -> Result<(), sqlx::Error> {
    if caller_id.is_empty() {
        return Ok(());
    }
    // Shown by the caller's id: the name is free text that stays in intake
    // (events published before carried it; it is ignored).
    let name = caller_id;
    sqlx::query(
        "INSERT INTO recipients (recipient_id, tenant_id, kind, subject_id, name, email, phone)
         VALUES ($1, $2, 1, $3, $4, $5, $6)
         ON CONFLICT (tenant_id, kind, subject_id) WHERE kind <> 5 DO UPDATE
            SET name = EXCLUDED.name, email = EXCLUDED.email, phone = EXCLUDED.phone,
                version = recipients.version + 1, updated_at = now()
          WHERE NOT recipients.addresses_managed
            AND (recipients.name, recipients.email, recipients.phone) IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.email, EXCLUDED.phone)",
    )
    .bind(Uuid::now_v7())
    .bind(tenant)
    .bind(caller_id)
    .bind(name)
    .bind(&c.email)
    .bind(&c.phone)
    .execute(conn)
    .await?;
    Ok(())
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
    let held: Option<i64> =
        sqlx::query_scalar("SELECT version FROM analysts WHERE analyst_id = $1 FOR UPDATE")
            .bind(&a.analyst_id)
            .fetch_optional(&mut *conn)
            .await?;
    if held.is_some_and(|h| h > version) {
        return Ok(()); // stale copy
    }
    sqlx::query(
        "INSERT INTO analysts (analyst_id, version, supervisor, on_call, tenants) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (analyst_id) DO UPDATE SET version = EXCLUDED.version, supervisor = EXCLUDED.supervisor,
            on_call = EXCLUDED.on_call, tenants = EXCLUDED.tenants, updated_at = now()",
    )
    .bind(&a.analyst_id)
    .bind(version)
    .bind(a.supervisor)
    .bind(a.on_call)
    .bind(&a.tenants)
    .execute(&mut *conn)
    .await?;
    let (rtenant, covers) = if env.tenant_id == ALL_TENANTS_EVENT {
        (VENDOR_TENANT, a.tenants.iter().any(|t| t == "*"))
    } else {
        (env.tenant_id.as_str(), a.tenants.contains(&env.tenant_id))
    };
    for (kind, wanted) in [
        (RecipientKind::Analyst, covers),
        (RecipientKind::Supervisor, covers && a.supervisor),
        (RecipientKind::OnCall, covers && a.on_call),
    ] {
        if wanted {
            let name = if a.name.trim().is_empty() {
                &a.analyst_id
            } else {
                &a.name
            };
            sqlx::query(
                "INSERT INTO recipients (recipient_id, tenant_id, kind, subject_id, name, email, phone, pager)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (tenant_id, kind, subject_id) WHERE kind <> 5 DO UPDATE
                    SET name = EXCLUDED.name,
                        email = CASE WHEN recipients.addresses_managed THEN recipients.email ELSE EXCLUDED.email END,
                        phone = CASE WHEN recipients.addresses_managed THEN recipients.phone ELSE EXCLUDED.phone END,
                        pager = CASE WHEN recipients.addresses_managed THEN recipients.pager ELSE EXCLUDED.pager END,
                        active = TRUE, version = recipients.version + 1, updated_at = now()",
            )
            .bind(Uuid::now_v7())
            .bind(rtenant)
            .bind(kind as i16)
            .bind(&a.analyst_id)
            .bind(name)
            .bind(&a.email)
            .bind(&a.phone)
            .bind(&a.pager)
            .execute(&mut *conn)
            .await?;
        } else {
            sqlx::query(
                "UPDATE recipients SET active = FALSE, version = version + 1, updated_at = now()
                  WHERE tenant_id = $1 AND kind = $2 AND subject_id = $3 AND active",
            )
            .bind(rtenant)
            .bind(kind as i16)
            .bind(&a.analyst_id)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

impl EventHandler for Events {
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

impl Events {
    async fn apply_one(
        &self,
        conn: &mut PgConnection,
        event: &Incoming,
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
                    env,
                    &s,
                    Some(EventKind::TicketReceived),
                    Some(&caller),
                )
                .await?
            }
            Payload::TicketAcknowledged(p) => {
                self.snapshot_event(
                    conn,
                    env,
                    &snap(&p.ticket)?,
                    Some(EventKind::TicketAcknowledged),
                    None,
                )
                .await?
            }
            Payload::TicketStarted(p) => {
                self.snapshot_event(conn, env, &snap(&p.ticket)?, None, None)
                    .await?
            }
            Payload::TicketTransferred(p) => {
                self.snapshot_event(conn, env, &snap(&p.ticket)?, None, None)
                    .await?
            }
            Payload::TicketHeld(p) => {
                self.snapshot_event(
                    conn,
                    env,
                    &snap(&p.ticket)?,
                    Some(EventKind::TicketOnHold),
                    None,
                )
                .await?
            }
            Payload::TicketResolved(p) => {
                self.snapshot_event(
                    conn,
                    env,
                    &snap(&p.ticket)?,
                    Some(EventKind::TicketResolved),
                    None,
                )
                .await?
            }
            Payload::TicketClosed(p) => {
                self.snapshot_event(
                    conn,
                    env,
                    &snap(&p.ticket)?,
                    Some(EventKind::TicketClosed),
                    None,
                )
                .await?
            }
            Payload::TicketReopened(p) => {
                self.snapshot_event(
                    conn,
                    env,
                    &snap(&p.ticket)?,
                    Some(EventKind::TicketReopened),
                    None,
                )
                .await?
            }
            Payload::TicketNoteAdded(p) => {
                // Only notes the caller can see are told (that there is one,
                // never what it says).
                let kind = p.public.then_some(EventKind::TicketPublicNote);
                self.snapshot_event(conn, env, &snap(&p.ticket)?, kind, None)
                    .await?
            }
            Payload::TicketAssigned(p) => Some(
                self.routing_event(
                    conn,
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
            Payload::InvoiceIssued(p) => {
                let mut vars = self.base_vars(env, EventKind::InvoiceIssued);
                let total = p
                    .total
                    .as_ref()
                    .map(|m| {
                        let sign = if m.minor_units < 0 { "-" } else { "" };
                        let abs = m.minor_units.unsigned_abs();
                        format!("{} {sign}{}.{:02}", m.currency, abs / 100, abs % 100)
                    })
                    .unwrap_or_default();
                vars.set("invoice.id", p.invoice_id.clone())
                    .set("invoice.period", p.period.clone())
                    .set("invoice.total", total)
                    .set("invoice.calls", p.calls.to_string());
                Some(Facts {
                    kind: EventKind::InvoiceIssued,
                    ticket_id: None,
                    number: String::new(),
                    priority: Priority::Unspecified,
                    vars,
                    caller: None,
                    analyst: None,
                    broadcast: true,
                })
            }
            _ => None,
        };
        match facts {
            Some(f) => self.record(conn, env, f).await,
            None => Ok(()),
        }
    }
}
