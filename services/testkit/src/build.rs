//! Events as producers build them, for tests that play one service's
//! part: the tenant and ticket events intake publishes, and publishing
//! them the way the outbox relay does. Tests adjust the returned values
//! (struct update syntax) rather than growing a builder per test file.

use async_nats::jetstream;
use chrono::{DateTime, Utc};
use prost::Message as _;
use wardline_kit::events::{envelope, timestamp};
use wardline_proto::common::{CallerRole, Category, Priority, TicketStatus};
use wardline_proto::events::event_envelope::Payload;
use wardline_proto::events::{
    CallerContact, EventEnvelope, TenantCreated, TenantInfo, TicketCreated, TicketSnapshot,
};

/// `tenant.created` for `tenant` in time zone `tz`.
pub fn tenant_created(tenant: &str, tz: &str) -> EventEnvelope {
    envelope(
        "intake",
        tenant,
        tenant,
        1,
        Payload::TenantCreated(TenantCreated {
            tenant: Some(TenantInfo {
                tenant_id: tenant.into(),
                name: tenant.into(),
                time_zone: tz.into(),
                ticket_prefix: "TST".into(),
                facilities: vec![],
                active: true,
            }),
        }),
    )
}

/// A new ticket's snapshot: facility `main`, a clinical category
/// (medication administration), a nurse's call, status new, created `at`.
pub fn snapshot(
    ticket_id: &str,
    number: &str,
    priority: Priority,
    at: DateTime<Utc>,
) -> TicketSnapshot {
    TicketSnapshot {
        ticket_id: ticket_id.into(),
        number: number.into(),
        facility_id: "main".into(),
        category: Category::MedicationAdministration as i32,
        clinical_category: true,
        priority: priority as i32,
        status: TicketStatus::New as i32,
        caller_role: CallerRole::Nurse as i32,
        caller_id: "caller-7".into(),
        created_at: Some(timestamp(at)),
        ..Default::default()
    }
}

/// The caller contact intake sends with a new ticket.
pub fn caller() -> CallerContact {
    CallerContact {
        caller_id: "caller-7".into(),
        name: "Riley Jones".into(),
        email: "riley@stmarys.example.org".into(),
        phone: "+13125550100".into(),
    }
}

/// `ticket.created` (version 1) of `ticket` in `tenant`, with [`caller`].
pub fn ticket_created(tenant: &str, ticket: TicketSnapshot) -> EventEnvelope {
    let id = ticket.ticket_id.clone();
    envelope(
        "intake",
        tenant,
        &id,
        1,
        Payload::TicketCreated(TicketCreated {
            ticket: Some(ticket),
            caller: Some(caller()),
            category_classified: false,
        }),
    )
}

/// Publishes `env` on its subject with `Nats-Msg-Id` = `msg_id`, as the
/// outbox relay does, and waits for the PubAck.
pub async fn publish(js: &jetstream::Context, env: &EventEnvelope, msg_id: &str) {
    let subject = wardline_kit::events::subject(env).expect("the envelope has a payload");
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", msg_id);
    js.publish_with_headers(subject, headers, env.encode_to_vec().into())
        .await
        .expect("publish")
        .await
        .expect("PubAck");
}
