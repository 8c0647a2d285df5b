//! Every SQL statement of routing's engine, one module per table it owns:
//! routing's view of tickets (and the queue, which is the waiting ones),
//! assignments with the analysts' capacity they hold, and timers. The
//! analyst directory and the rules keep theirs in [`crate::directory`] and
//! [`crate::policy`].
//!
//! What must hold here: a ticket is changed only with its row locked
//! ([`tickets::lock`]); capacity is raised only by a conditional `UPDATE`
//! ([`assignments::take_capacity`]); a hand-over locks a queued ticket
//! only to take it, and checks it still waits ([`tickets::lock_waiting`]).

pub mod assignments;
pub mod internal_sla;
pub mod tickets;
pub mod timers;
