//! What routing's events do to intake's view of a ticket: the assignee,
//! queue flag, escalation level and breached targets that GetTicket shows.
//!
//! Order-tolerant: routing numbers its events per ticket (`seq`, the
//! event's `aggregate_version`). Assignments and queueing replace each
//! other, so one not newer than the last applied (`routing_seq`) is
//! skipped; escalation levels (a maximum) and breached targets (a set)
//! commute and are applied in any order (skipping them as "stale" would
//! lose them). An assignment that arrives after an analyst already took
//! the ticket changes nothing but the sequence; a newer queueing of a
//! ticket that is still only assigned (routing re-routed it after the
//! analyst did not acknowledge, and nobody else was free) puts it back to
//! New, queued. Once the analyst acknowledged, the analyst has it: people's
//! actions win over routing's.
//!
//! Every change bumps the ticket's version (clients' `expected_version`
//! sees it); a skipped event bumps nothing. Folding a batch's changes over
//! the rows in stream order is, by construction, the same as applying the
//! events one transaction at a time.

use wardline_proto::common::TicketStatus;

use super::lifecycle::{Action, transition};

/// The part of a ticket routing's events change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingView {
    /// Status as stored ([`TicketStatus`] code).
    pub status: i16,
    pub assignee_analyst_id: String,
    pub queued: bool,
    pub escalation_level: i16,
    /// In the order they were first reported.
    pub breached_targets: Vec<i16>,
    /// `aggregate_version` of the last assignment or queueing applied.
    pub routing_seq: i64,
    pub version: i64,
}

/// One routing event, as it bears on the ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutingChange {
    /// `ticket.assigned` with routing's per-ticket sequence.
    Assigned { seq: i64, analyst_id: String },
    /// `ticket.queued` with routing's per-ticket sequence.
    Queued { seq: i64 },
    /// `ticket.escalated` to `level`.
    Escalated { level: i16 },
    /// `ticket.sla_breached` of `target`.
    Breached { target: i16 },
}

impl RoutingView {
    /// Applies `change`; false when it changes nothing (stale, or already
    /// known), so the ticket needs no write.
    pub fn apply(&mut self, change: &RoutingChange) -> bool {
        let status =
            TicketStatus::try_from(i32::from(self.status)).unwrap_or(TicketStatus::Unspecified);
        match change {
            RoutingChange::Assigned { seq, .. } | RoutingChange::Queued { seq }
                if *seq != 0 && *seq <= self.routing_seq =>
            {
                return false;
            }
            RoutingChange::Assigned { seq, analyst_id } => {
                self.routing_seq = *seq;
                if let Ok(to) = transition(status, Action::Assign) {
                    self.status = to as i16;
                    self.assignee_analyst_id.clone_from(analyst_id);
                    self.queued = false;
                }
            }
            RoutingChange::Queued { seq } => {
                self.routing_seq = *seq;
                match status {
                    TicketStatus::New => self.queued = true,
                    TicketStatus::Assigned => {
                        self.status = TicketStatus::New as i16;
                        self.assignee_analyst_id.clear();
                        self.queued = true;
                    }
                    _ => {}
                }
            }
            RoutingChange::Escalated { level } => {
                if *level <= self.escalation_level {
                    return false;
                }
                self.escalation_level = *level;
            }
            RoutingChange::Breached { target } => {
                if self.breached_targets.contains(target) {
                    return false;
                }
                self.breached_targets.push(*target);
            }
        }
        self.version += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RoutingChange as C;

    fn new_ticket() -> RoutingView {
        RoutingView {
            status: TicketStatus::New as i16,
            assignee_analyst_id: String::new(),
            queued: false,
            escalation_level: 0,
            breached_targets: vec![],
            routing_seq: 0,
            version: 1,
        }
    }

    fn assigned(seq: i64, who: &str) -> C {
        C::Assigned {
            seq,
            analyst_id: who.into(),
        }
    }

    fn fold(view: &mut RoutingView, changes: &[C]) -> Vec<bool> {
        changes.iter().map(|c| view.apply(c)).collect()
    }

    #[test]
    fn queued_then_assigned_then_stale_and_repeated_events() {
        let mut v = new_ticket();
        let applied = fold(
            &mut v,
            &[
                C::Queued { seq: 1 },
                assigned(2, "rn.a"),
                assigned(1, "someone.else"),
                assigned(2, "rn.a"),
                C::Breached { target: 1 },
                C::Breached { target: 1 },
            ],
        );
        assert_eq!(applied, [true, true, false, false, true, false]);
        assert_eq!(v.status, TicketStatus::Assigned as i16);
        assert_eq!(v.assignee_analyst_id, "rn.a");
        assert!(!v.queued);
        assert_eq!(v.routing_seq, 2);
        assert_eq!(v.version, 4);
    }

    #[test]
    fn a_newer_queueing_takes_an_unacknowledged_ticket_back() {
        let mut v = new_ticket();
        fold(&mut v, &[assigned(1, "rn.silent"), C::Queued { seq: 2 }]);
        assert_eq!(v.status, TicketStatus::New as i16);
        assert_eq!(v.assignee_analyst_id, "");
        assert!(v.queued);
    }

    #[test]
    fn people_win_over_routing_once_the_analyst_acknowledged() {
        let mut v = new_ticket();
        v.apply(&assigned(1, "rn.next"));
        v.status = TicketStatus::Acknowledged as i16;
        let before = v.clone();
        assert!(v.apply(&C::Queued { seq: 2 }), "the sequence moves");
        assert!(v.apply(&assigned(3, "rn.other")), "the sequence moves");
        assert_eq!(v.status, before.status);
        assert_eq!(v.assignee_analyst_id, "rn.next");
        assert!(!v.queued);
        assert_eq!(v.routing_seq, 3);
    }

    #[test]
    fn escalations_keep_the_maximum_and_breaches_the_set_in_any_order() {
        let mut v = new_ticket();
        let applied = fold(
            &mut v,
            &[
                C::Escalated { level: 2 },
                C::Breached { target: 2 },
                C::Escalated { level: 1 },
                C::Breached { target: 1 },
                C::Escalated { level: 3 },
            ],
        );
        assert_eq!(applied, [true, true, false, true, true]);
        assert_eq!(v.escalation_level, 3);
        assert_eq!(v.breached_targets, [2, 1]);
    }

    #[test]
    fn an_unnumbered_assignment_is_never_stale() {
        let mut v = new_ticket();
        v.apply(&assigned(5, "rn.a"));
        assert!(v.apply(&assigned(0, "rn.b")));
        assert_eq!(v.assignee_analyst_id, "rn.b");
        assert_eq!(v.routing_seq, 0);
    }

    fn any_change() -> impl proptest::strategy::Strategy<Value = RoutingChange> {
        use proptest::prelude::*;
        prop_oneof![
            (0i64..6, 0usize..3).prop_map(|(seq, a)| assigned(seq, ["rn.a", "rn.b", "rn.c"][a])),
            (0i64..6).prop_map(|seq| C::Queued { seq }),
            (0i16..4).prop_map(|level| C::Escalated { level }),
            (1i16..3).prop_map(|target| C::Breached { target }),
        ]
    }

    proptest::proptest! {
        /// Whatever routing sends, in whatever order: a skipped event
        /// leaves the ticket exactly as it was, an applied one bumps the
        /// version once; the level never falls and no target is listed twice.
        #[test]
        fn skipped_events_change_nothing_and_applied_ones_bump_the_version_once(
            changes in proptest::collection::vec(any_change(), 0..40),
            acknowledged in proptest::bool::ANY,
        ) {
            let mut v = new_ticket();
            if acknowledged {
                v.apply(&assigned(1, "rn.first"));
                v.status = TicketStatus::Acknowledged as i16;
            }
            for c in &changes {
                let before = v.clone();
                if v.apply(c) {
                    proptest::prop_assert_eq!(v.version, before.version + 1);
                } else {
                    proptest::prop_assert_eq!(&v, &before);
                }
                proptest::prop_assert!(v.escalation_level >= before.escalation_level);
                let mut targets = v.breached_targets.clone();
                targets.sort_unstable();
                targets.dedup();
                proptest::prop_assert_eq!(targets.len(), v.breached_targets.len());
                if acknowledged {
                    proptest::prop_assert_eq!(v.status, TicketStatus::Acknowledged as i16);
                    proptest::prop_assert_eq!(v.assignee_analyst_id.as_str(), "rn.first");
                }
            }
        }
    }
}
