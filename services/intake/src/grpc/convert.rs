//! Translation between rows and protobuf messages.

use wardline_kit::events::timestamp;
use wardline_proto::common::{Category, TicketStatus};
use wardline_proto::events::{CallerContact, TicketSnapshot};
use wardline_proto::intake::{Caller, Facility, Note, Tenant, Ticket};

use crate::domain::classify::is_clinical;
use crate::storage::{NoteRow, TenantRow, TicketRow};

pub fn tenant(t: &TenantRow) -> Tenant {
    Tenant {
        tenant_id: t.tenant_id.clone(),
        name: t.name.clone(),
        time_zone: t.time_zone.clone(),
        ticket_prefix: t.ticket_prefix.clone(),
        facilities: t
            .facilities
            .iter()
            .map(|f| Facility {
                facility_id: f.facility_id.clone(),
                name: f.name.clone(),
            })
            .collect(),
        reopen_window_hours: t.reopen_window_hours as u32,
        active: t.active,
        created_at: Some(timestamp(t.created_at)),
    }
}

pub fn tenant_info(t: &TenantRow) -> wardline_proto::events::TenantInfo {
    wardline_proto::events::TenantInfo {
        tenant_id: t.tenant_id.clone(),
        name: t.name.clone(),
        time_zone: t.time_zone.clone(),
        ticket_prefix: t.ticket_prefix.clone(),
        facilities: t
            .facilities
            .iter()
            .map(|f| wardline_proto::events::FacilityInfo {
                facility_id: f.facility_id.clone(),
                name: f.name.clone(),
            })
            .collect(),
        active: t.active,
    }
}

pub fn ticket(t: &TicketRow) -> Ticket {
    Ticket {
        ticket_id: t.ticket_id.to_string(),
        number: t.number.clone(),
        tenant_id: t.tenant_id.clone(),
        facility_id: t.facility_id.clone(),
        caller: Some(Caller {
            caller_id: t.caller_id.clone(),
            name: t.caller_name.clone(),
            role: t.caller_role.into(),
            email: t.caller_email.clone(),
            phone: t.caller_phone.clone(),
        }),
        channel: t.channel.into(),
        application: t.application.clone(),
        category: t.category.into(),
        category_classified: t.category_classified,
        urgency: t.urgency.into(),
        impact: t.impact.into(),
        patient_care_blocked: t.patient_care_blocked,
        priority: t.priority.into(),
        status: t.status.into(),
        description: t.description.clone(),
        assignee_analyst_id: t.assignee_analyst_id.clone(),
        queued: t.queued,
        escalation_level: t.escalation_level.into(),
        breached_targets: t.breached_targets.iter().map(|b| i32::from(*b)).collect(),
        resolution_code: t.resolution_code.into(),
        first_contact_resolution: t.first_contact_resolution,
        reopen_count: t.reopen_count as u32,
        version: t.version as u64,
        created_at: Some(timestamp(t.created_at)),
        updated_at: Some(timestamp(t.updated_at)),
        acknowledged_at: t.acknowledged_at.map(timestamp),
        resolved_at: t.resolved_at.map(timestamp),
        closed_at: t.closed_at.map(timestamp),
    }
}

/// The PHI-free view every ticket event carries. Built field by field from
/// codes and ids: the description is deliberately not reachable from here.
pub fn snapshot(t: &TicketRow) -> TicketSnapshot {
    let category = Category::try_from(i32::from(t.category)).unwrap_or(Category::Other);
    TicketSnapshot {
        ticket_id: t.ticket_id.to_string(),
        number: t.number.clone(),
        facility_id: t.facility_id.clone(),
        channel: t.channel.into(),
        application: t.application.clone(),
        category: category as i32,
        clinical_category: is_clinical(category),
        urgency: t.urgency.into(),
        impact: t.impact.into(),
        patient_care_blocked: t.patient_care_blocked,
        priority: t.priority.into(),
        status: t.status.into(),
        caller_role: t.caller_role.into(),
        caller_id: t.caller_id.clone(),
        assignee_analyst_id: t.assignee_analyst_id.clone(),
        created_at: Some(timestamp(t.created_at)),
        reopen_count: t.reopen_count as u32,
    }
}

/// The caller's contact as the event carries it: where to reach them, not
/// what they are called. The name is free text a client chose (it may hold
/// anything, a patient's name included), so it stays in intake's own row;
/// notification addresses callers by email and phone and shows their id.
pub fn caller_contact(t: &TicketRow) -> CallerContact {
    CallerContact {
        caller_id: t.caller_id.clone(),
        name: String::new(),
        email: t.caller_email.clone(),
        phone: t.caller_phone.clone(),
    }
}

/// The copy of a ticket response kept for replaying a retried request:
/// everything but the free text and the caller's contact details (PHI stays
/// in the ticket's own row; [`crate::storage::ticket_text`] puts it back).
pub fn stored_ticket(t: &Ticket) -> Ticket {
    let mut t = t.clone();
    t.description.clear();
    if let Some(c) = t.caller.as_mut() {
        c.name.clear();
        c.email.clear();
        c.phone.clear();
    }
    t
}

/// The stored copy of a note response: without its body.
pub fn stored_note(n: &Note) -> Note {
    Note {
        body: String::new(),
        ..n.clone()
    }
}

pub fn note(n: &NoteRow) -> Note {
    Note {
        note_id: n.note_id.to_string(),
        ticket_id: n.ticket_id.to_string(),
        author_id: n.author_id.clone(),
        body: n.body.clone(),
        public: n.public,
        created_at: Some(timestamp(n.created_at)),
    }
}

pub fn status_of(t: &TicketRow) -> TicketStatus {
    TicketStatus::try_from(i32::from(t.status)).unwrap_or(TicketStatus::Unspecified)
}

/// Short lower-case names for span fields.
pub fn priority_label(p: i16) -> &'static str {
    match p {
        1 => "P1",
        2 => "P2",
        3 => "P3",
        4 => "P4",
        _ => "unspecified",
    }
}
