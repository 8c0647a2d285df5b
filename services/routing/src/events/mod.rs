//! What routing consumes: intake's ticket events ([`tickets`]), applied in
//! batches by the kit's consumer loop, each event's effects (assignment,
//! queueing, hand-over of freed capacity) in the batch's transaction. What
//! routing publishes is built where it is decided ([`crate::assignment`],
//! [`crate::jobs::timers`]) and written to the outbox in the same transaction.

pub mod tickets;

pub use tickets::TicketEvents;

/// Event kinds routing consumes.
pub const CONSUMED: &[&str] = &[
    "ticket.created",
    "ticket.acknowledged",
    "ticket.started",
    "ticket.held",
    "ticket.resolved",
    "ticket.closed",
    "ticket.reopened",
    "ticket.transferred",
];
