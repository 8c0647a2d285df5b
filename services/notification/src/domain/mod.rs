//! Notification's domain: who hears what on which channel, when quiet
//! hours hold a message, how a failed attempt is classified and retried,
//! how webhooks are signed, and what a template may say. Plain Rust over
//! the contract's enums; no tonic, sqlx or NATS in here.

pub mod audience;
pub mod egress;
pub mod retry;
pub mod sealing;
pub mod signature;
pub mod template;

pub use wardline_proto::common::Priority;
pub use wardline_proto::notification::{
    AttemptOutcome, DeliveryState, ErrorClass, EventKind, NotificationChannel, RecipientKind,
};

/// Channel label in metrics, logs and `DeliveryOutcome.channel`.
pub fn channel_label(c: NotificationChannel) -> &'static str {
    match c {
        NotificationChannel::Email => "email",
        NotificationChannel::Sms => "sms",
        NotificationChannel::Webhook => "webhook",
        NotificationChannel::Pager => "pager",
        NotificationChannel::Unspecified => "unspecified",
    }
}

/// Event kind label (`ticket_received` ...), used in spans and webhook bodies.
pub fn kind_label(k: EventKind) -> &'static str {
    match k {
        EventKind::TicketReceived => "ticket_received",
        EventKind::TicketAssigned => "ticket_assigned",
        EventKind::TicketResolved => "ticket_resolved",
        EventKind::TicketEscalated => "ticket_escalated",
        EventKind::SlaBreached => "sla_breached",
        EventKind::InvoiceIssued => "invoice_issued",
        EventKind::TicketAcknowledged => "ticket_acknowledged",
        EventKind::TicketQueued => "ticket_queued",
        EventKind::TicketOnHold => "ticket_on_hold",
        EventKind::TicketReopened => "ticket_reopened",
        EventKind::TicketClosed => "ticket_closed",
        EventKind::TicketPublicNote => "ticket_public_note",
        EventKind::Unspecified => "unspecified",
    }
}

/// Every event kind a recipient or endpoint can subscribe to.
pub const EVENT_KINDS: &[EventKind] = &[
    EventKind::TicketReceived,
    EventKind::TicketAssigned,
    EventKind::TicketResolved,
    EventKind::TicketEscalated,
    EventKind::SlaBreached,
    EventKind::InvoiceIssued,
    EventKind::TicketAcknowledged,
    EventKind::TicketQueued,
    EventKind::TicketOnHold,
    EventKind::TicketReopened,
    EventKind::TicketClosed,
    EventKind::TicketPublicNote,
];

/// Every channel.
pub const CHANNELS: &[NotificationChannel] = &[
    NotificationChannel::Email,
    NotificationChannel::Sms,
    NotificationChannel::Webhook,
    NotificationChannel::Pager,
];

/// "P1".."P4", or "" when unknown.
pub fn priority_label(p: i32) -> &'static str {
    match Priority::try_from(p) {
        Ok(Priority::P1) => "P1",
        Ok(Priority::P2) => "P2",
        Ok(Priority::P3) => "P3",
        Ok(Priority::P4) => "P4",
        _ => "",
    }
}

/// The enum's name without its prefix (`CATEGORY_ORDERS` -> `ORDERS`).
pub fn code(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix).unwrap_or(name).to_owned()
}
