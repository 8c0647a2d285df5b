//! Intake's consumer of routing's events: it keeps the assignee, queue
//! flag, escalation level and breached targets on the ticket so that
//! GetTicket shows what routing did. The rules (order tolerance, stale
//! assignments, people's actions winning over routing's) are
//! [`crate::domain::routing`]'s.
//!
//! Set-based: a batch of any size costs two statements. Its tickets are
//! read and locked with one `SELECT … FOR UPDATE`, every event is folded
//! in stream order over those rows in memory ([`RoutingView::apply`], the
//! lifecycle transition included, so assignments and queueings of one
//! ticket within the batch end at the newest, and `routing_seq` keeps
//! ruling across batches), and the tickets that changed are written back
//! with one `UPDATE … FROM UNNEST`, every kind of event at once. The
//! result is that of applying the events one transaction at a time
//! (`tests/routing_events.rs` checks it against real PostgreSQL).
//!
//! An event for a ticket intake has not committed yet is retried. Routing
//! only hears of a ticket from intake's `ticket.created`, which the outbox
//! publishes after the ticket committed, so this happens only when a
//! ticket's row is gone or replayed events outrun a restore: rare. The
//! whole batch is then retried ([`HandleError::Retry`]); the kit rolls it
//! back and applies its events one at a time, so the known tickets are
//! applied at once and only the unknown one waits for its budget. Sorting
//! known from unknown here would buy nothing in the rare case and cost a
//! branch in the common one.

use std::collections::HashMap;

use uuid::Uuid;
use wardline_kit::consumer::{Batch, EventHandler, HandleError, Incoming};
use wardline_proto::events::event_envelope::Payload;

use crate::domain::routing::{RoutingChange, RoutingView};
use crate::storage;

/// Event kinds intake consumes.
pub const CONSUMED: &[&str] = &[
    "ticket.assigned",
    "ticket.queued",
    "ticket.escalated",
    "ticket.sla_breached",
];

/// Applies routing's ticket events.
pub struct RoutingEvents;

/// The ticket an event is about and what it changes; `None` for events
/// that are not intake's business (acknowledged, nothing to do).
fn change_of(event: &Incoming) -> Result<Option<(Uuid, RoutingChange)>, HandleError> {
    let env = &event.envelope;
    let seq = env.aggregate_version as i64;
    let (ticket_id, change) = match env.payload.as_ref() {
        Some(Payload::TicketAssigned(p)) => (
            &p.ticket_id,
            RoutingChange::Assigned {
                seq,
                analyst_id: p.analyst_id.clone(),
            },
        ),
        Some(Payload::TicketQueued(p)) => (&p.ticket_id, RoutingChange::Queued { seq }),
        Some(Payload::TicketEscalated(p)) => (
            &p.ticket_id,
            RoutingChange::Escalated {
                level: i16::try_from(p.level).unwrap_or(0),
            },
        ),
        // A tenant's internal target is an alert, not a breach of the ticket's SLA.
        Some(Payload::SlaBreached(p)) if p.internal => return Ok(None),
        Some(Payload::SlaBreached(p)) => (
            &p.ticket_id,
            RoutingChange::Breached {
                target: p.target as i16,
            },
        ),
        _ => return Ok(None),
    };
    let id = Uuid::parse_str(ticket_id)
        .map_err(|_| HandleError::Poison("ticket_id is not a UUID".into()))?;
    event.span.record("ticket_id", ticket_id.as_str());
    Ok(Some((id, change)))
}

impl EventHandler for RoutingEvents {
    async fn handle(&self, batch: &mut Batch<'_>, events: &[Incoming]) -> Result<(), HandleError> {
        let mut changes = Vec::with_capacity(events.len());
        for event in events {
            if let Some(c) = change_of(event)? {
                changes.push(c);
            }
        }
        if changes.is_empty() {
            return Ok(());
        }
        let mut ids: Vec<Uuid> = changes.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids.dedup();
        let tenant = batch.tenant().to_owned();
        let mut views: HashMap<Uuid, RoutingView> =
            storage::lock_routing_views(batch.conn(), &tenant, &ids)
                .await?
                .into_iter()
                .collect();
        if views.len() < ids.len() {
            return Err(HandleError::Retry("ticket not committed yet".into()));
        }
        let mut changed: Vec<Uuid> = Vec::new();
        for (id, change) in &changes {
            let view = views.get_mut(id).expect("every ticket was read");
            if view.apply(change) {
                changed.push(*id);
            } else {
                tracing::debug!(ticket_id = %id, "stale or known routing event skipped");
            }
        }
        changed.sort_unstable();
        changed.dedup();
        let rows: Vec<(Uuid, &RoutingView)> = changed.iter().map(|id| (*id, &views[id])).collect();
        // Routing's changes bump the version (clients' expected_version sees
        // them) without an intake event: routing already published the fact.
        storage::update_routing_views(batch.conn(), &tenant, &rows, chrono::Utc::now()).await?;
        Ok(())
    }
}
