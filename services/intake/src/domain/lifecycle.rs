//! The ticket state machine.
//!
//! ```text
//!            assign            acknowledge         start
//!   New ───────────▶ Assigned ───────────▶ Acknowledged ──────▶ InProgress
//!    ▲   ◀── transfer ──┘ ▲                  │   ▲  hold          │  ▲
//!    │                    │ (re-route)       ▼   └── start ─ OnHold ◀┘  │
//!    │ reopen             │                resolve (from Assigned with   │
//!    │ (within window)    │                first contact, Acknowledged,  │
//!  Resolved ◀─────────────┴────────────────InProgress, OnHold) ──────────┘
//!    │ close
//!    ▼
//!  Closed (final)
//! ```
//!
//! Routing's events move a ticket between New and Assigned (and re-route an
//! Assigned ticket to another analyst); people move it everywhere else. An
//! action not allowed from the current state is an [`IllegalTransition`],
//! which the edge reports as FAILED_PRECONDITION naming both.

use wardline_proto::common::TicketStatus;

/// Something that changes a ticket's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Routing assigned (or re-assigned) an analyst.
    Assign,
    /// The analyst took the ticket.
    Acknowledge,
    /// Work starts or resumes.
    Start,
    /// Work waits on someone.
    Hold,
    /// Fixed.
    Resolve,
    /// Final.
    Close,
    /// Not fixed after all.
    Reopen,
    /// Back to routing for someone else.
    Transfer,
}

impl Action {
    /// Lower-case name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Action::Assign => "assign",
            Action::Acknowledge => "acknowledge",
            Action::Start => "start",
            Action::Hold => "hold",
            Action::Resolve => "resolve",
            Action::Close => "close",
            Action::Reopen => "reopen",
            Action::Transfer => "transfer",
        }
    }
}

/// An action that the current status does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot {} a ticket that is {}", .action.name(), status_name(*.from))]
pub struct IllegalTransition {
    /// Status the ticket is in.
    pub from: TicketStatus,
    /// What was attempted.
    pub action: Action,
}

/// Lower-case status name for messages.
pub fn status_name(s: TicketStatus) -> &'static str {
    match s {
        TicketStatus::Unspecified => "unspecified",
        TicketStatus::New => "new",
        TicketStatus::Assigned => "assigned",
        TicketStatus::Acknowledged => "acknowledged",
        TicketStatus::InProgress => "in progress",
        TicketStatus::OnHold => "on hold",
        TicketStatus::Resolved => "resolved",
        TicketStatus::Closed => "closed",
    }
}

/// The status after `action`, or why it is not allowed.
pub fn transition(from: TicketStatus, action: Action) -> Result<TicketStatus, IllegalTransition> {
    use Action as A;
    use TicketStatus as S;
    let to = match (from, action) {
        (S::New | S::Assigned, A::Assign) => S::Assigned,
        (S::Assigned, A::Acknowledge) => S::Acknowledged,
        (S::Acknowledged | S::OnHold, A::Start) => S::InProgress,
        (S::Acknowledged | S::InProgress, A::Hold) => S::OnHold,
        (S::Assigned | S::Acknowledged | S::InProgress | S::OnHold, A::Resolve) => S::Resolved,
        (S::Resolved, A::Close) => S::Closed,
        (S::Resolved, A::Reopen) => S::New,
        (S::Assigned | S::Acknowledged | S::InProgress | S::OnHold, A::Transfer) => S::New,
        _ => return Err(IllegalTransition { from, action }),
    };
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action as A;
    use TicketStatus as S;

    const STATUSES: [TicketStatus; 7] = [
        S::New,
        S::Assigned,
        S::Acknowledged,
        S::InProgress,
        S::OnHold,
        S::Resolved,
        S::Closed,
    ];
    const ACTIONS: [Action; 8] = [
        A::Assign,
        A::Acknowledge,
        A::Start,
        A::Hold,
        A::Resolve,
        A::Close,
        A::Reopen,
        A::Transfer,
    ];

    /// The complete table: every (status, action) pair, allowed or not.
    #[test]
    fn every_pair() {
        let allowed = [
            (S::New, A::Assign, S::Assigned),
            (S::Assigned, A::Assign, S::Assigned),
            (S::Assigned, A::Acknowledge, S::Acknowledged),
            (S::Acknowledged, A::Start, S::InProgress),
            (S::OnHold, A::Start, S::InProgress),
            (S::Acknowledged, A::Hold, S::OnHold),
            (S::InProgress, A::Hold, S::OnHold),
            (S::Assigned, A::Resolve, S::Resolved),
            (S::Acknowledged, A::Resolve, S::Resolved),
            (S::InProgress, A::Resolve, S::Resolved),
            (S::OnHold, A::Resolve, S::Resolved),
            (S::Resolved, A::Close, S::Closed),
            (S::Resolved, A::Reopen, S::New),
            (S::Assigned, A::Transfer, S::New),
            (S::Acknowledged, A::Transfer, S::New),
            (S::InProgress, A::Transfer, S::New),
            (S::OnHold, A::Transfer, S::New),
        ];
        for from in STATUSES {
            for action in ACTIONS {
                let want = allowed
                    .iter()
                    .find(|(f, a, _)| *f == from && *a == action)
                    .map(|(_, _, to)| *to);
                match (transition(from, action), want) {
                    (Ok(to), Some(w)) => assert_eq!(to, w, "{from:?} {action:?}"),
                    (Err(e), None) => {
                        assert_eq!(e, IllegalTransition { from, action });
                    }
                    (got, want) => panic!("{from:?} {action:?}: got {got:?}, want {want:?}"),
                }
            }
        }
    }

    #[test]
    fn closed_is_final() {
        for action in ACTIONS {
            assert!(transition(S::Closed, action).is_err());
        }
    }

    #[test]
    fn messages_name_action_and_state() {
        let e = transition(S::Closed, A::Reopen).unwrap_err();
        assert_eq!(e.to_string(), "cannot reopen a ticket that is closed");
    }
}
