//! Building event envelopes and naming their subjects.
//!
//! The mapping from payload to subject lives here, once, so that every
//! producer publishes `created` as `ticket.created` and every consumer can
//! filter on the same tokens.

use prost_types::Timestamp;
use uuid::Uuid;
use wardline_proto::events::EventEnvelope;
use wardline_proto::events::event_envelope::Payload;

/// The tenant of events about every tenant at once (routing's announcements
/// of analysts who cover all tenants): never a slug, so no hospital's
/// subject. The consumer loop applies such a batch with every tenant
/// visible ([`crate::db::Scope::AllTenants`]): its handlers write the shared
/// directory, no hospital's rows.
pub const ALL_TENANTS_EVENT: &str = "_all";

/// A new envelope with a fresh UUIDv7 event id, stamped now.
pub fn envelope(
    producer: &str,
    tenant: &str,
    aggregate_id: &str,
    aggregate_version: u64,
    payload: Payload,
) -> EventEnvelope {
    EventEnvelope {
        event_id: Uuid::now_v7().to_string(),
        tenant_id: tenant.to_owned(),
        occurred_at: Some(timestamp(chrono::Utc::now())),
        producer: producer.to_owned(),
        aggregate_id: aggregate_id.to_owned(),
        aggregate_version,
        payload: Some(payload),
    }
}

/// `(aggregate, event)` tokens of a payload, as used in subjects.
pub fn kind(payload: &Payload) -> (&'static str, &'static str) {
    match payload {
        Payload::TenantCreated(_) => ("tenant", "created"),
        Payload::TenantUpdated(_) => ("tenant", "updated"),
        Payload::TicketCreated(_) => ("ticket", "created"),
        Payload::TicketAcknowledged(_) => ("ticket", "acknowledged"),
        Payload::TicketStarted(_) => ("ticket", "started"),
        Payload::TicketHeld(_) => ("ticket", "held"),
        Payload::TicketResolved(_) => ("ticket", "resolved"),
        Payload::TicketClosed(_) => ("ticket", "closed"),
        Payload::TicketReopened(_) => ("ticket", "reopened"),
        Payload::TicketTransferred(_) => ("ticket", "transferred"),
        Payload::TicketNoteAdded(_) => ("ticket", "note_added"),
        Payload::TicketAssigned(_) => ("ticket", "assigned"),
        Payload::TicketQueued(_) => ("ticket", "queued"),
        Payload::TicketEscalated(_) => ("ticket", "escalated"),
        Payload::SlaBreached(_) => ("ticket", "sla_breached"),
        Payload::AnalystUpserted(_) => ("analyst", "upserted"),
        Payload::AnalystAvailabilityChanged(_) => ("analyst", "availability_changed"),
        Payload::InvoiceIssued(_) => ("invoice", "issued"),
        Payload::CallMetered(_) => ("call", "metered"),
        Payload::DeliveryOutcome(_) => ("delivery", "outcome"),
    }
}

/// The ticket snapshot intake's lifecycle events carry (`None` for the
/// other payloads): the one place that knows which events have one.
pub fn ticket_snapshot(payload: &Payload) -> Option<&wardline_proto::events::TicketSnapshot> {
    match payload {
        Payload::TicketCreated(e) => e.ticket.as_ref(),
        Payload::TicketAcknowledged(e) => e.ticket.as_ref(),
        Payload::TicketStarted(e) => e.ticket.as_ref(),
        Payload::TicketHeld(e) => e.ticket.as_ref(),
        Payload::TicketResolved(e) => e.ticket.as_ref(),
        Payload::TicketClosed(e) => e.ticket.as_ref(),
        Payload::TicketReopened(e) => e.ticket.as_ref(),
        Payload::TicketTransferred(e) => e.ticket.as_ref(),
        Payload::TicketNoteAdded(e) => e.ticket.as_ref(),
        _ => None,
    }
}

/// The subject an envelope is published on.
pub fn subject(env: &EventEnvelope) -> Option<String> {
    let (aggregate, event) = kind(env.payload.as_ref()?);
    Some(crate::nats::event_subject(&env.tenant_id, aggregate, event))
}

/// A protobuf timestamp from a UTC time.
pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// A UTC time from a protobuf timestamp (`None` when out of range).
pub fn from_timestamp(ts: &Timestamp) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(ts.seconds, u32::try_from(ts.nanos).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wardline_proto::events::TicketCreated;

    #[test]
    fn envelope_ids_are_v7_and_subjects_follow_the_payload() {
        let env = envelope(
            "intake",
            "stmarys",
            "t1",
            1,
            Payload::TicketCreated(TicketCreated::default()),
        );
        let id = Uuid::parse_str(&env.event_id).unwrap();
        assert_eq!(id.get_version_num(), 7);
        assert_eq!(
            subject(&env).unwrap(),
            "wardline.events.stmarys.ticket.created"
        );
        let now = chrono::Utc::now();
        assert_eq!(from_timestamp(&timestamp(now)).unwrap(), now);
    }
}
