//! Intake's consumer of routing's events: it keeps the assignee, queue
//! flag, escalation level and breached targets on the ticket so that
//! GetTicket shows what routing did.
//!
//! Order-tolerant: routing numbers its events per ticket
//! (`aggregate_version`). Assignments and queueing replace each other, so
//! one older than the last applied (`routing_seq`) is skipped; escalation
//! levels (a maximum) and breached targets (a set) commute and are applied
//! in any order. An event for a ticket intake has not committed yet is
//! retried. An assignment that arrives after an analyst already took the
//! ticket changes nothing but the sequence; a newer queueing of a ticket
//! that is still only assigned (routing re-routed it after the analyst did
//! not acknowledge, and nobody else was free) puts it back to New, queued.

use sqlx::PgConnection;
use tracing::Instrument as _;
use uuid::Uuid;
use wardline_kit::consumer::{Batch, EventHandler, HandleError, Incoming};
use wardline_proto::common::TicketStatus;
use wardline_proto::events::event_envelope::Payload;

use crate::domain::lifecycle::{Action, transition};
use crate::storage::{self, Owner, TicketKey};

/// Event kinds intake consumes.
pub const CONSUMED: &[&str] = &[
    "ticket.assigned",
    "ticket.queued",
    "ticket.escalated",
    "ticket.sla_breached",
];

/// Applies routing's ticket events.
pub struct RoutingEvents;

impl EventHandler for RoutingEvents {
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

impl RoutingEvents {
    async fn apply_one(
        &self,
        conn: &mut PgConnection,
        event: &Incoming,
    ) -> Result<(), HandleError> {
        let env = &event.envelope;
        let ticket_id = match env.payload.as_ref() {
            Some(Payload::TicketAssigned(p)) => &p.ticket_id,
            Some(Payload::TicketQueued(p)) => &p.ticket_id,
            Some(Payload::TicketEscalated(p)) => &p.ticket_id,
            Some(Payload::SlaBreached(p)) => &p.ticket_id,
            _ => return Ok(()), // not ours: nothing to do, acknowledged.
        };
        let id = Uuid::parse_str(ticket_id)
            .map_err(|_| HandleError::Poison("ticket_id is not a UUID".into()))?;
        tracing::Span::current().record("ticket_id", ticket_id.as_str());
        let Some(mut row) =
            storage::get_ticket(conn, &env.tenant_id, Owner::Any, TicketKey::Id(id), true).await?
        else {
            return Err(HandleError::Retry("ticket not committed yet".into()));
        };
        let seq = env.aggregate_version as i64;
        // Assignment and queueing replace each other: only the newest counts.
        // Escalations (a maximum) and breaches (a set) commute, so they are
        // applied whatever their order; skipping them as "stale" would lose them.
        let stale = seq != 0 && seq <= row.routing_seq;
        let status =
            TicketStatus::try_from(i32::from(row.status)).unwrap_or(TicketStatus::Unspecified);
        match env.payload.as_ref() {
            Some(Payload::TicketAssigned(_) | Payload::TicketQueued(_)) if stale => {
                tracing::debug!(
                    seq,
                    applied = row.routing_seq,
                    "stale routing event skipped"
                );
                return Ok(());
            }
            Some(Payload::TicketAssigned(p)) => {
                row.routing_seq = seq;
                if let Ok(to) = transition(status, Action::Assign) {
                    row.status = to as i16;
                    row.assignee_analyst_id = p.analyst_id.clone();
                    row.queued = false;
                }
            }
            Some(Payload::TicketQueued(_)) => {
                row.routing_seq = seq;
                match status {
                    TicketStatus::New => row.queued = true,
                    // Routing took the ticket back (the assignee did not
                    // acknowledge in time and nobody else could take it):
                    // it waits in the queue again, with nobody on it. Once
                    // the analyst acknowledged, the analyst has it: people's
                    // actions win over routing's.
                    TicketStatus::Assigned => {
                        row.status = TicketStatus::New as i16;
                        row.assignee_analyst_id.clear();
                        row.queued = true;
                    }
                    _ => {}
                }
            }
            Some(Payload::TicketEscalated(p)) => {
                if i16::try_from(p.level).unwrap_or(0) <= row.escalation_level {
                    return Ok(());
                }
                row.escalation_level = p.level as i16;
            }
            Some(Payload::SlaBreached(p)) => {
                let target = p.target as i16;
                if row.breached_targets.contains(&target) {
                    return Ok(());
                }
                row.breached_targets.push(target);
            }
            _ => return Ok(()),
        }
        // Routing's changes bump the version (clients' expected_version sees
        // them) without an intake event: routing already published the fact.
        row.version += 1;
        row.updated_at = chrono::Utc::now();
        storage::update_ticket(conn, &row).await?;
        Ok(())
    }
}
