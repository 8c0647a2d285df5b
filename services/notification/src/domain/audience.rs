//! Who hears which event on which channel, and when.
//!
//! The rules (defaults per recipient kind; a recipient's own subscription
//! for a kind replaces the default for that kind, and an empty one mutes it):
//!
//! | recipient kind | hears by default |
//! |---|---|
//! | CALLER (of the ticket) | received, assigned, resolved: email |
//! | ANALYST (the assignee) | assigned: email |
//! | SUPERVISOR | escalated, SLA breached: email |
//! | ON_CALL | escalated, SLA breached of a P1 ticket: pager |
//! | CUSTOM | nothing unless subscribed |
//!
//! A ticket's caller and assignee hear only about their own tickets;
//! supervisors, on-call and custom recipients are the tenant's and hear
//! what they subscribe to. Quiet hours hold non-urgent messages until they
//! end; escalations, SLA breaches and anything about a P1 ticket are urgent
//! and never held.

use chrono::{DateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::{EventKind, NotificationChannel, Priority, RecipientKind};

/// A recipient's subscription to one event kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The kind.
    pub kind: EventKind,
    /// Channels; empty mutes the kind.
    pub channels: Vec<NotificationChannel>,
}

/// A daily window of quiet in a time zone (`end <= start` crosses midnight).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuietHours {
    /// Local start, inclusive.
    pub start: NaiveTime,
    /// Local end, exclusive.
    pub end: NaiveTime,
    /// Zone of start and end.
    pub tz: Tz,
}

/// The default channels of `kind` for a recipient of `recipient` kind.
pub fn default_channels(
    recipient: RecipientKind,
    kind: EventKind,
    priority: Priority,
) -> Vec<NotificationChannel> {
    use EventKind as K;
    use NotificationChannel as C;
    match (recipient, kind) {
        (RecipientKind::Caller, K::TicketReceived | K::TicketAssigned | K::TicketResolved) => {
            vec![C::Email]
        }
        (RecipientKind::Analyst, K::TicketAssigned) => vec![C::Email],
        (RecipientKind::Supervisor, K::TicketEscalated | K::SlaBreached) => vec![C::Email],
        (RecipientKind::OnCall, K::TicketEscalated | K::SlaBreached)
            if priority == Priority::P1 =>
        {
            vec![C::Pager]
        }
        _ => Vec::new(),
    }
}

/// The channels a recipient wants `kind` on: their subscription for the
/// kind if they have one, else the default.
pub fn channels_for(
    recipient: RecipientKind,
    subscriptions: &[Subscription],
    kind: EventKind,
    priority: Priority,
) -> Vec<NotificationChannel> {
    match subscriptions.iter().find(|s| s.kind == kind) {
        Some(s) => s.channels.clone(),
        None => default_channels(recipient, kind, priority),
    }
}

/// Urgent events are never held by quiet hours.
pub fn is_urgent(kind: EventKind, priority: Priority) -> bool {
    matches!(kind, EventKind::TicketEscalated | EventKind::SlaBreached) || priority == Priority::P1
}

/// Parses `"HH:MM"`.
pub fn parse_hhmm(s: &str) -> Option<NaiveTime> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    NaiveTime::from_hms_opt(h.parse().ok()?, m.parse().ok()?, 0)
}

impl QuietHours {
    /// When the quiet window that contains `now` ends, or `None` when `now`
    /// is outside it.
    pub fn held_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.start == self.end {
            return None;
        }
        let local = now.with_timezone(&self.tz);
        let t = local.time();
        let date = local.date_naive();
        let inside = if self.start < self.end {
            t >= self.start && t < self.end
        } else {
            t >= self.start || t < self.end
        };
        if !inside {
            return None;
        }
        let end_date = if self.start > self.end && t >= self.start {
            date.succ_opt()?
        } else {
            date
        };
        let naive = end_date.and_time(self.end);
        // A gap (DST) or ambiguity: take the earliest valid instant after.
        let end = self.tz.from_local_datetime(&naive).earliest().or_else(|| {
            self.tz
                .from_local_datetime(&(naive + chrono::Duration::hours(1)))
                .earliest()
        })?;
        Some(end.with_timezone(&Utc))
    }
}

/// When a message of `kind` may be sent: now, or when quiet hours end.
pub fn send_at(
    kind: EventKind,
    priority: Priority,
    quiet: Option<&QuietHours>,
    now: DateTime<Utc>,
) -> (DateTime<Utc>, bool) {
    if is_urgent(kind, priority) {
        return (now, false);
    }
    match quiet.and_then(|q| q.held_until(now)) {
        Some(until) => (until, true),
        None => (now, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use EventKind as K;
    use NotificationChannel as C;

    #[test]
    fn defaults_per_recipient_kind() {
        let table = [
            (
                RecipientKind::Caller,
                K::TicketReceived,
                Priority::P3,
                vec![C::Email],
            ),
            (
                RecipientKind::Caller,
                K::TicketResolved,
                Priority::P3,
                vec![C::Email],
            ),
            (
                RecipientKind::Caller,
                K::TicketEscalated,
                Priority::P1,
                vec![],
            ),
            (
                RecipientKind::Analyst,
                K::TicketAssigned,
                Priority::P4,
                vec![C::Email],
            ),
            (
                RecipientKind::Analyst,
                K::TicketReceived,
                Priority::P1,
                vec![],
            ),
            (
                RecipientKind::Supervisor,
                K::SlaBreached,
                Priority::P4,
                vec![C::Email],
            ),
            (
                RecipientKind::OnCall,
                K::TicketEscalated,
                Priority::P1,
                vec![C::Pager],
            ),
            (
                RecipientKind::OnCall,
                K::TicketEscalated,
                Priority::P2,
                vec![],
            ),
            (
                RecipientKind::Custom,
                K::TicketReceived,
                Priority::P1,
                vec![],
            ),
        ];
        for (who, kind, p, want) in table {
            assert_eq!(
                default_channels(who, kind, p),
                want,
                "{who:?} {kind:?} {p:?}"
            );
        }
    }

    #[test]
    fn a_subscription_replaces_the_default_and_empty_mutes() {
        let subs = vec![
            Subscription {
                kind: K::TicketReceived,
                channels: vec![],
            },
            Subscription {
                kind: K::TicketOnHold,
                channels: vec![C::Sms],
            },
        ];
        assert!(
            channels_for(
                RecipientKind::Caller,
                &subs,
                K::TicketReceived,
                Priority::P2
            )
            .is_empty()
        );
        assert_eq!(
            channels_for(RecipientKind::Caller, &subs, K::TicketOnHold, Priority::P2),
            vec![C::Sms]
        );
        assert_eq!(
            channels_for(
                RecipientKind::Caller,
                &subs,
                K::TicketResolved,
                Priority::P2
            ),
            vec![C::Email]
        );
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn quiet_hours_hold_non_urgent_messages_until_they_end() {
        let q = QuietHours {
            start: parse_hhmm("22:00").unwrap(),
            end: parse_hhmm("07:00").unwrap(),
            tz: "America/Chicago".parse().unwrap(),
        };
        // 23:30 in Chicago (CST, UTC-6) on 15 January.
        let late = at("2026-01-16T05:30:00Z");
        assert_eq!(q.held_until(late), Some(at("2026-01-16T13:00:00Z")));
        // 02:00 local: still quiet, ends the same day at 07:00.
        assert_eq!(
            q.held_until(at("2026-01-16T08:00:00Z")),
            Some(at("2026-01-16T13:00:00Z"))
        );
        // Noon local: not quiet.
        assert_eq!(q.held_until(at("2026-01-16T18:00:00Z")), None);
        let (when, held) = send_at(K::TicketResolved, Priority::P3, Some(&q), late);
        assert!(held);
        assert_eq!(when, at("2026-01-16T13:00:00Z"));
        // Urgent: escalations, breaches, and any P1 message go at once.
        for (kind, p) in [
            (K::TicketEscalated, Priority::P4),
            (K::SlaBreached, Priority::P3),
            (K::TicketResolved, Priority::P1),
        ] {
            assert_eq!(send_at(kind, p, Some(&q), late), (late, false));
        }
    }

    #[test]
    fn same_day_windows_and_bad_times() {
        let q = QuietHours {
            start: parse_hhmm("12:00").unwrap(),
            end: parse_hhmm("13:00").unwrap(),
            tz: chrono_tz::UTC,
        };
        assert_eq!(
            q.held_until(at("2026-03-01T12:30:00Z")),
            Some(at("2026-03-01T13:00:00Z"))
        );
        assert_eq!(q.held_until(at("2026-03-01T13:00:00Z")), None);
        for bad in ["24:00", "7:00", "07-00", "", "07:60"] {
            assert!(parse_hhmm(bad).is_none(), "{bad}");
        }
    }
}
